"""SCAN over a cluster: one cursor that walks every shard in turn and survives topology change.

A slotless cursor is one unsigned 64-bit number (clients parse it as one) packing the shard
(its lowest slot), the layout the iteration runs under (a 16-bit fingerprint of the slot
map), how often it started over, and the node's own cursor. When the layout changes, the
iteration starts over (at most MAX_RESTARTS times, then it carries on as it can), so a key
present for the whole iteration is returned at least once and no iteration loops forever.
Pure: the caller passes the slot map in and sends the step's request itself.
"""

from binascii import crc32
from dataclasses import dataclass, replace
from typing import Final

from routing import replies
from routing.resp import ErrorReply, array_elements, encode_bulk, is_error
from routing.slotmap import SlotMap

SLOT_BITS: Final = 14
LAYOUT_BITS: Final = 16
RESTART_BITS: Final = 2
NODE_SHIFT: Final = SLOT_BITS + LAYOUT_BITS + RESTART_BITS  # 32
MAX_RESTARTS: Final = (1 << RESTART_BITS) - 1
MAX_NODE_CURSOR: Final = (1 << (64 - NODE_SHIFT)) - 1
_U64: Final = (1 << 64) - 1
_SLOT_MASK: Final = (1 << SLOT_BITS) - 1
_LAYOUT_MASK: Final = (1 << LAYOUT_BITS) - 1
_RESTART_MASK: Final = (1 << RESTART_BITS) - 1


@dataclass(frozen=True, slots=True)
class ScanCursor:
    shard: int  # the lowest slot of the shard being walked, in `layout`
    layout: int  # ScanLayout.layout of the slot map this iteration runs under
    restarts: int  # how often the iteration started over after a layout change
    node_cursor: int  # the shard primary's own SCAN cursor

    def encode(self) -> int:
        """The cursor a client sees; never 0 (0 means "done"), since shard or restarts > 0."""
        return (
            self.node_cursor << NODE_SHIFT
            | self.restarts << (SLOT_BITS + LAYOUT_BITS)
            | self.layout << SLOT_BITS
            | self.shard
        )

    @classmethod
    def decode(cls, value: int) -> "ScanCursor":
        return cls(
            shard=value & _SLOT_MASK,
            layout=(value >> SLOT_BITS) & _LAYOUT_MASK,
            restarts=(value >> (SLOT_BITS + LAYOUT_BITS)) & _RESTART_MASK,
            node_cursor=value >> NODE_SHIFT,
        )


@dataclass(frozen=True, slots=True)
class ScanLayout:
    """What SCAN needs of one slot map; build it once per map (it walks all 16384 slots)."""

    layout: int
    starts: tuple[tuple[int, str], ...]  # (lowest slot, primary) per primary, ascending
    owners: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class ScanStep:
    """One SCAN request to one node, and the cursor state it runs under."""

    node: str
    args: tuple[bytes, ...]
    cursor: ScanCursor


def parse_cursor(raw: bytes) -> int | None:
    """A SCAN cursor as Redis reads it (db.c parseScanCursorOrReply: strtoul, base 10)."""
    text = raw.split(b"\0", 1)[0]  # a C string ends at NUL
    if not text:
        return 0
    if text[:1].isspace():
        return None
    negative = text[:1] == b"-"
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if not digits.isdigit():
        return None
    value = int(digits)
    if value > _U64:
        return None  # ERANGE
    return (-value) & _U64 if negative else value


def scan_layout(slotmap: SlotMap) -> ScanLayout:
    """Shards in slot order and a fingerprint of who owns which slot."""
    owners = slotmap.owners
    starts: dict[str, int] = {}
    runs = []
    previous: str | None = None
    for slot, owner in enumerate(owners):
        if owner is not None and owner not in starts:
            starts[owner] = slot
        if owner != previous or slot == 0:
            runs.append(b"%d=%s;" % (slot, (owner or "").encode()))
            previous = owner
    layout = crc32(b"".join(runs)) & _LAYOUT_MASK
    ordered = tuple(sorted((slot, owner) for owner, slot in starts.items()))
    return ScanLayout(layout, ordered, owners)


def plan_scan(args: list[bytes], layout: ScanLayout) -> ScanStep | ErrorReply:
    """The node to ask for this SCAN, and what to send it; Redis's error for a bad cursor."""
    value = parse_cursor(args[1])
    if value is None:
        return replies.INVALID_CURSOR
    if not layout.starts:
        return replies.SLOT_NOT_SERVED
    first = layout.starts[0][0]
    if value == 0:
        cursor = ScanCursor(first, layout.layout, 0, 0)
    else:
        cursor = ScanCursor.decode(value)
        if cursor.layout != layout.layout:
            if cursor.restarts < MAX_RESTARTS:
                # Keys may have moved into shards already walked: walk them all again.
                cursor = ScanCursor(first, layout.layout, cursor.restarts + 1, 0)
            else:
                cursor = replace(cursor, layout=layout.layout)  # carry on, best effort
    node = layout.owners[cursor.shard]
    if node is None:
        return replies.SLOT_NOT_SERVED
    return ScanStep(node, (args[0], b"%d" % cursor.node_cursor, *args[2:]), cursor)


def next_cursor(step: ScanStep, node_next: int, layout: ScanLayout) -> int | None:
    """The client's next cursor once the node answered `node_next`; 0 when all is walked."""
    cursor = step.cursor
    if node_next:
        if node_next > MAX_NODE_CURSOR:
            return None
        return replace(cursor, node_cursor=node_next).encode()
    for start, _ in layout.starts:
        if start > cursor.shard:
            return ScanCursor(start, cursor.layout, cursor.restarts, 0).encode()
    return 0


def finish_scan(step: ScanStep, raw: bytes, layout: ScanLayout) -> bytes:
    """Rewrite the node's SCAN reply with the client's next cursor; `layout` as planned."""
    if is_error(raw):
        return raw
    elements = array_elements(raw)
    if elements is None or len(elements) != 2 or elements[0][:1] != b"$":
        return replies.UNEXPECTED_FANOUT.encode()
    bulk = elements[0]
    node_next = parse_cursor(bulk[bulk.find(b"\r\n") + 2 : -2])
    if node_next is None:
        return replies.UNEXPECTED_FANOUT.encode()
    value = next_cursor(step, node_next, layout)
    if value is None:
        return replies.NODE_CURSOR_RANGE.encode()
    return b"*2\r\n" + encode_bulk(b"%d" % value) + elements[1]
