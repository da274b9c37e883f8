"""The per-request hot path, sans-I/O: `route_batch` and `frame_replies`, and nothing else.

`route_batch` turns the requests of one client read into the bytes each upstream node must
get (packed, in order) and a reassembly plan (`Routed`); `assemble` makes the client's
replies from the parts' raw replies; `frame_replies` cuts an upstream byte stream into
replies. proxy/ only writes what these return and hands replies back. Requests that need
per-connection state or several steps (HELLO, MULTI, SUBSCRIBE, SCAN, fan-outs ...) stop a
batch: `Routed.stop` says where, and `Routed.plan` says what the session must do there.
"""

from binascii import crc_hqx
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

from routing.merge import merge_split
from routing.plan import ANY_NODE, Plan, Reply, Router, Split
from routing.resp import BULK_HEADERS, Args, ReplyProtocolError, pack_command, reply_end
from routing.slots import key_hash_slot

Node: TypeAlias = str | None  # an upstream address; None: nobody serves that slot (yet)
# A client reply in a Routed.layout: the part that answers it, or (first part, split).
Step: TypeAlias = int | tuple[int, Split]


class Routed:
    """What `route_batch` decided for requests[start:stop] of one read.

    Parts are the upstream requests, numbered in request order. `nodes[node]` lists the
    parts sent to `node`, in the order of `pieces[node]`, which join into one write. A
    batch of one request sent as it is (request/response clients) has `raw` (its packed
    bytes) and `node` instead, and no dicts; `by_node()` and `packed()` read either shape.
    `filled`: parts answered here (PING, arity errors), never sent. `layout`: one Step per
    client request; None when client reply i is part i (no split: the usual case). `slot`:
    the slot of the last part (a one-request batch's, without a lookup).
    """

    __slots__ = (
        "count", "filled", "layout", "node", "nodes", "pieces", "plan", "raw", "requests",
        "slot", "start", "stop",
    )  # fmt: skip

    def __init__(self, requests: Sequence[Args], start: int) -> None:
        self.requests = requests
        self.start = start
        self.stop = start
        self.count = 0
        self.slot = ANY_NODE
        self.nodes: dict[Node, list[int]] | None = None
        self.pieces: dict[Node, list[bytes]] | None = None
        self.filled: list[tuple[int, bytes]] | None = None
        self.layout: list[Step] | None = None
        self.plan: Plan | None = None  # the plan of requests[stop], when the batch stopped there
        self.raw: bytes | None = None
        self.node: Node = None

    def part(self, index: int, router: Router) -> tuple[bytes, int]:
        """Part `index` as sent (packed) and its slot, for a resend after a redirect or a
        failure: rare, so worked out again rather than kept for every part."""
        layout = self.layout
        if layout is None:
            args = self.requests[self.start + index]
        else:
            for offset, step in enumerate(layout):
                if type(step) is int:
                    if step == index:
                        args = self.requests[self.start + offset]
                        break
                else:
                    first, split = step  # type: ignore[misc]
                    if first <= index < first + len(split.slots):
                        return split.requests[index - first], split.slots[index - first]
            else:
                raise IndexError(index)
        slot = router.plan(args)
        return pack_command(args), slot if type(slot) is int else ANY_NODE

    def by_node(self) -> dict[Node, list[int]]:
        """The parts sent to each node, in order (either shape)."""
        if self.raw is not None:
            return {self.node: [0]}
        return self.nodes or {}

    def packed(self) -> dict[Node, bytes]:
        """The bytes each node gets, in one write (either shape)."""
        if self.raw is not None:
            return {self.node: self.raw}
        return {node: b"".join(pieces) for node, pieces in (self.pieces or {}).items()}

    def requests_count(self) -> int:
        """How many client requests (and replies) this batch covers."""
        return self.stop - self.start


_NOT_DIRECT: Final = -2  # _direct_slot: Router.direct does not route it (or wrong arity)


def _direct_slot(args: Args, direct: dict[bytes, tuple[int, int]]) -> int:
    """The slot of a request that Router.direct routes (ANY_NODE: a keyless one), or
    _NOT_DIRECT: not listed there, or the wrong arity (plan() words that error)."""
    route = direct.get(args[0])
    if route is None:
        return _NOT_DIRECT
    position, arity = route
    if not position:
        return ANY_NODE
    argc = len(args)
    if argc == arity or (arity < 0 and argc >= -arity):
        key = args[position]
        # key_hash_slot, inlined for keys without a "{" (123): once per request.
        return key_hash_slot(key) if 123 in key else crc_hqx(key, 0) & 16383
    return _NOT_DIRECT


def _direct_node(
    slot: int,
    args: Args,
    reads: frozenset[bytes],
    owners: Sequence[Node] | None,
    any_node: Callable[[], Node],
    read_node: Callable[[int], Node] | None,
) -> Node:
    """Where a request _direct_slot routed goes (route_batch's arguments)."""
    if slot == ANY_NODE:
        return any_node()  # forwarded as it is (standalone)
    node = owners[slot] if owners is not None else None
    if read_node is not None and args[0] in reads:
        return read_node(slot)
    return node


def route_batch(
    requests: Sequence[Args],
    start: int,
    router: Router,
    owners: Sequence[Node] | None,
    any_node: Callable[[], Node],
    read_node: Callable[[int], Node] | None = None,
) -> Routed:
    """Route requests[start:] until one needs the session (see the module docstring).

    `owners`: the slot map snapshot's primary per slot (None: no map yet); `any_node()`:
    where a keyless command goes (the caller picks); `read_node(slot)`: where a single-key
    read goes when upstream.read_from sends reads to replicas (None: to the primary).
    """
    routed = Routed(requests, start)
    direct = router.direct
    reads = router.reads
    count = len(requests)
    if count - start == 1:  # one request: no pieces to join, the dispatcher takes it whole
        args = requests[start]
        slot = _direct_slot(args, direct)
        if slot != _NOT_DIRECT:
            node = _direct_node(slot, args, reads, owners, any_node, read_node)
            raw = pack_command(args)
            routed.raw = raw
            routed.node = node
            routed.stop = start + 1
            routed.count = 1
            routed.slot = slot
            return routed
    headers = BULK_HEADERS
    nodes: dict[Node, list[int]] = {}
    pieces_of: dict[Node, list[bytes]] = {}
    routed.nodes = nodes
    routed.pieces = pieces_of
    layout: list[Step] | None = None
    part = 0  # the next part's number
    slot = ANY_NODE
    index = start
    while index < count:
        args = requests[index]
        argc = len(args)
        slot = _direct_slot(args, direct)
        if slot != _NOT_DIRECT:
            node = _direct_node(slot, args, reads, owners, any_node, read_node)
        else:
            plan = router.plan(args)
            kind = type(plan)
            if kind is int:
                slot = plan  # type: ignore[assignment]
                if slot == ANY_NODE:
                    node = any_node()
                else:
                    node = owners[slot] if owners is not None else None
            elif kind is Reply or kind is Split:
                routed.count = part
                if kind is Reply:
                    _fill(routed, plan.raw)  # type: ignore[union-attr]
                else:
                    _add_split(routed, plan, owners, nodes, pieces_of)  # type: ignore[arg-type]
                part = routed.count
                layout = routed.layout
                index += 1
                continue
            else:  # Local or Special: the session's
                routed.plan = plan
                break
        if layout is not None:
            layout.append(part)
        pieces = pieces_of.get(node)
        if pieces is None:
            nodes[node] = [part]
            pieces = pieces_of[node] = []
        else:
            nodes[node].append(part)
        part += 1
        # pack_command, inlined into this node's pieces for the common two and three
        # argument requests: one join per node, later, instead of bytes per request.
        try:
            if argc == 2:
                name, first = args
                pieces += (
                    b"*2\r\n", headers[len(name)], name, b"\r\n",
                    headers[len(first)], first, b"\r\n",
                )  # fmt: skip
            elif argc == 3:
                name, first, second = args
                pieces += (
                    b"*3\r\n", headers[len(name)], name, b"\r\n",
                    headers[len(first)], first, b"\r\n",
                    headers[len(second)], second, b"\r\n",
                )  # fmt: skip
            else:
                pieces.append(pack_command(args))
        except IndexError:  # an argument of 4 KB or more
            pieces.append(pack_command(args))
        index += 1
    routed.stop = index
    routed.count = part
    routed.slot = slot
    return routed


def _fill(routed: Routed, raw: bytes) -> None:
    """A part answered here: it takes its place in the order and is never sent."""
    part = routed.count
    routed.count = part + 1
    if routed.filled is None:
        routed.filled = []
    routed.filled.append((part, raw))
    if routed.layout is not None:
        routed.layout.append(part)


def _add_split(
    routed: Routed,
    split: Split,
    owners: Sequence[Node] | None,
    nodes: dict[Node, list[int]],
    pieces_of: dict[Node, list[bytes]],
) -> None:
    first = routed.count
    if routed.layout is None:
        routed.layout = list(range(first))  # the batch so far: one part per request
    routed.layout.append((first, split))
    for offset, slot in enumerate(split.slots):
        node = owners[slot] if owners is not None else None
        raw = split.requests[offset]
        indices = nodes.get(node)
        if indices is None:
            nodes[node] = [first + offset]
            pieces_of[node] = [raw]
        else:
            indices.append(first + offset)
            pieces_of[node].append(raw)
    routed.count = first + len(split.slots)


def count_names(requests: Sequence[Args], counts: dict[bytes, int]) -> int:
    """Count each request under its raw command name (args[0], any case) in `counts`, and
    return how many names there are: the caller bounds them (proxy/stats.py folds them
    into the table's names). Once per client read: the per-command metrics' whole cost."""
    for args in requests:
        name = args[0]
        counts[name] = counts.get(name, 0) + 1
    return len(counts)


def assemble(routed: Routed, raws: list[bytes], resp3: bool) -> bytes:
    """The client's replies to the batch, in request order, from one raw reply per part."""
    layout = routed.layout
    if layout is None:
        return raws[0] if len(raws) == 1 else b"".join(raws)
    out = []
    for step in layout:
        if type(step) is int:
            out.append(raws[step])
        else:
            first, split = step  # type: ignore[misc]
            out.append(merge_split(split, raws[first : first + len(split.slots)], resp3))
    return b"".join(out)


# --- upstream replies --------------------------------------------------------------------

# Bulk reply headers ("$64") to their lengths: a dict lookup is cheaper than int() of a slice.
_BULK_LENGTHS: Final[dict[bytes, int]] = {b"$%d" % n: n for n in range(-1, 4096)}


def frame_replies(buf: bytes, ends: list[int]) -> tuple[int, str | None]:
    """Append to `ends` where each complete reply in `buf` ends (RESP2 and RESP3).

    Returns (need, error): `need` is the whole size of the incomplete bulk reply the buffer
    ends in, when its header is complete (0 otherwise), so that the caller can collect a
    large value in pieces; `error` says why the bytes after the last end are not RESP.
    """
    find = buf.find
    lengths = _BULK_LENGTHS
    pos = 0
    size = len(buf)
    while pos < size:
        # Bulk, status and integer replies framed inline: this runs once per reply.
        kind = buf[pos]
        if kind == 36:  # '$'
            length, newline = _digits_line(buf, pos + 1, size)
            if length < 0:  # "-1", or digits that _digits_line leaves to int()
                newline = find(b"\r\n", pos)
                if newline < 0:
                    return 0, None
                known = lengths.get(buf[pos:newline])
                try:
                    length = known if known is not None else int(buf[pos + 1 : newline])
                except ValueError as exc:
                    return 0, str(exc)
            end = newline + 4 + length if length >= 0 else newline + 2
            if end > size:
                return end - pos, None
        elif kind == 43 or kind == 58:  # '+' ':'
            newline = pos + 1
            while newline + 1 < size and (buf[newline] != 13 or buf[newline + 1] != 10):
                newline += 1
            if newline + 1 >= size:
                return 0, None
            end = newline + 2
        else:
            try:
                end = _reply_end(buf, pos, size)
            except (ReplyProtocolError, ValueError) as exc:
                return 0, str(exc)
            if end < 0:
                return 0, None
        ends.append(end)
        pos = end
    return 0, None


def fill_parts(
    buf: bytes,
    ends: list[int],
    first: int,
    pos: int,
    raws: list[bytes],
    indices: list[int],
    done: int,
) -> int:
    """Hand replies to one batch of parts: the reply ending at ends[first] (it begins at
    `pos`), and those after it, go to raws[indices[done]], raws[indices[done + 1]] ...,
    until the batch has all of its replies or the next reply is an error (its redirect or
    retry is the caller's). Returns how many replies it took. With frame_replies, this is
    the whole per-reply work of a pipelined or split request.
    """
    count = 0
    wanted = len(indices) - done
    available = len(ends) - first
    if available < wanted:
        wanted = available
    while count < wanted:
        if buf[pos] == 45:  # '-'
            break
        end = ends[first + count]
        raws[indices[done + count]] = buf[pos:end]
        pos = end
        count += 1
    return count


def _digits_line(buf: bytes, pos: int, size: int) -> tuple[int, int]:
    """The number in buf[pos:] when it is 1 to 18 ASCII digits and then CRLF: (value,
    position of the CR). (-1, pos) for anything else: a sign, another byte, more digits,
    or a line not complete yet, which the caller reads with int() as before."""
    end = pos
    value = 0
    while end < size and 48 <= buf[end] <= 57 and end - pos < 18:
        value = value * 10 + buf[end] - 48
        end += 1
    if end > pos and end + 1 < size and buf[end] == 13 and buf[end + 1] == 10:
        return value, end
    return -1, pos


def _reply_end(buf: bytes, pos: int, size: int) -> int:
    """reply_end for what frame_replies does not frame inline: arrays of bulk strings (MGET,
    LRANGE ...) without the general loop, anything else through it."""
    if buf[pos] == 42:  # '*'
        count, newline = _digits_line(buf, pos + 1, size)
        if count < 0:
            newline = buf.find(b"\r\n", pos)
            if newline < 0:
                return -1
            count = int(buf[pos + 1 : newline])
        end = newline + 2
        for _ in range(count):
            if end >= size:
                return -1
            if buf[end] != 36:
                return reply_end(buf, pos)
            length, newline = _digits_line(buf, end + 1, size)
            if length < 0:
                newline = buf.find(b"\r\n", end)
                if newline < 0:
                    return -1
                length = int(buf[end + 1 : newline])
            end = newline + 4 + length if length >= 0 else newline + 2
        return end if end <= size else -1
    return reply_end(buf, pos)
