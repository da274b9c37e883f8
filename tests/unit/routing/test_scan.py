"""SCAN over a cluster: cursor parsing and packing, and whole iterations while the layout changes.

The simulation stands in for nodes: a node's SCAN returns its keys in an order of its own
(a per-process seed, as Redis's siphash seed), so a node cursor means nothing on another
node. Failovers and slot moves happen between steps or while a step is on its way.
"""

from binascii import crc32
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from routing.resp import ErrorReply, encode_array, encode_bulk, parse_reply
from routing.scan import (
    MAX_NODE_CURSOR,
    MAX_RESTARTS,
    ScanCursor,
    ScanLayout,
    ScanStep,
    finish_scan,
    parse_cursor,
    plan_scan,
    scan_layout,
)
from routing.slotmap import Shard, SlotMap
from routing.slots import SLOT_COUNT, key_hash_slot

U64 = 2**64 - 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"0", 0),
        (b"", 0),  # strtoul of "" is 0 and eptr is at the end
        (b"01", 1),
        (b"+7", 7),
        (b"-1", U64),  # strtoul negates in unsigned arithmetic
        (b"-0", 0),
        (b"18446744073709551615", U64),
        (b"18446744073709551616", None),  # ERANGE
        (b"abc", None),
        (b" 1", None),
        (b"1 ", None),
        (b"+", None),
        (b"-", None),
        (b"1x", None),
        (b"12\x00junk", 12),  # C strings end at NUL
    ],
)
def test_parse_cursor_as_redis(raw: bytes, expected: int | None) -> None:
    assert parse_cursor(raw) == expected


@given(
    shard=st.integers(0, SLOT_COUNT - 1),
    layout=st.integers(0, 2**16 - 1),
    restarts=st.integers(0, MAX_RESTARTS),
    node_cursor=st.integers(0, MAX_NODE_CURSOR),
)
def test_cursor_round_trip(shard: int, layout: int, restarts: int, node_cursor: int) -> None:
    cursor = ScanCursor(shard, layout, restarts, node_cursor)
    value = cursor.encode()
    assert 0 <= value <= U64
    assert ScanCursor.decode(value) == cursor
    assert parse_cursor(b"%d" % value) == value


@given(st.integers(0, U64))
def test_any_number_decodes(value: int) -> None:
    assert ScanCursor.decode(value).encode() == value


def three_shards() -> SlotMap:
    owners = ["a:1"] * 5461 + ["b:1"] * 5461 + ["c:1"] * (SLOT_COUNT - 10922)
    return SlotMap(owners, [Shard("a:1"), Shard("b:1"), Shard("c:1")])


def node_reply(cursor: int, keys: list[bytes]) -> bytes:
    return encode_array([encode_bulk(b"%d" % cursor), encode_array([encode_bulk(k) for k in keys])])


def test_walks_shards_in_slot_order() -> None:
    layout = scan_layout(three_shards())
    assert [s for s, _ in layout.starts] == [0, 5461, 10922]
    step = plan_scan([b"SCAN", b"0", b"COUNT", b"5"], layout)
    assert isinstance(step, ScanStep)
    assert (step.node, step.args) == ("a:1", (b"SCAN", b"0", b"COUNT", b"5"))
    # the node has more: same shard, the node's cursor inside ours
    reply = parse_reply(finish_scan(step, node_reply(17, [b"k"]), layout))
    assert isinstance(reply, list) and reply[1] == [b"k"]
    cursor = int(reply[0])  # type: ignore[arg-type]
    step = plan_scan([b"SCAN", b"%d" % cursor], layout)
    assert isinstance(step, ScanStep) and (step.node, step.args[1]) == ("a:1", b"17")
    # the node is done: the next shard from its start
    reply = parse_reply(finish_scan(step, node_reply(0, []), layout))
    assert isinstance(reply, list)
    step = plan_scan([b"SCAN", reply[0]], layout)  # type: ignore[list-item]
    assert isinstance(step, ScanStep) and (step.node, step.args[1]) == ("b:1", b"0")
    step = plan_scan([b"SCAN", b"%d" % ScanCursor(10922, layout.layout, 0, 0).encode()], layout)
    assert isinstance(step, ScanStep)
    assert finish_scan(step, node_reply(0, [b"z"]), layout) == node_reply(0, [b"z"])


def test_errors() -> None:
    layout = scan_layout(three_shards())
    assert plan_scan([b"SCAN", b"nope"], layout) == ErrorReply("ERR invalid cursor")
    empty = scan_layout(SlotMap([None] * SLOT_COUNT, []))
    assert plan_scan([b"SCAN", b"0"], empty) == ErrorReply("CLUSTERDOWN Hash slot not served")
    step = plan_scan([b"SCAN", b"0"], layout)
    assert isinstance(step, ScanStep)
    err = b"-ERR syntax error\r\n"
    assert finish_scan(step, err, layout) == err
    too_big = node_reply(MAX_NODE_CURSOR + 1, [])
    assert finish_scan(step, too_big, layout).startswith(b"-ERR slotless cannot encode")


def test_layout_change_starts_over_then_carries_on() -> None:
    before = scan_layout(three_shards())
    owners = list(three_shards().owners)
    owners[6000] = "a:1"  # a slot moved from b to a
    after = scan_layout(SlotMap(owners, [Shard("a:1"), Shard("b:1"), Shard("c:1")]))
    assert after.layout != before.layout
    cursor = ScanCursor(5461, before.layout, 0, 99).encode()
    step = plan_scan([b"SCAN", b"%d" % cursor], after)
    assert isinstance(step, ScanStep)
    assert step.cursor == ScanCursor(0, after.layout, 1, 0) and step.node == "a:1"
    spent = ScanCursor(5461, before.layout, MAX_RESTARTS, 99).encode()
    step = plan_scan([b"SCAN", b"%d" % spent], after)
    assert isinstance(step, ScanStep)
    assert step.cursor == ScanCursor(5461, after.layout, MAX_RESTARTS, 99) and step.node == "b:1"


# --- simulation ---------------------------------------------------------------------------


@dataclass
class SimCluster:
    """Primaries by name; each node holds the keys of the slots it owns."""

    owners: list[str]
    keys: list[bytes]
    seeds: dict[str, int] = field(default_factory=dict)
    generation: int = 0

    def slotmap(self) -> SlotMap:
        names = list(dict.fromkeys(self.owners))
        return SlotMap(self.owners, [Shard(n) for n in names])

    def node_scan(self, node: str, cursor: int, count: int) -> bytes:
        seed = self.seeds.setdefault(node, crc32(node.encode()))
        mine = [k for k in self.keys if self.owners[key_hash_slot(k)] == node]

        def order(key: bytes) -> int:
            return (crc32(key, seed) & 0x7FFFFFFF) + 1

        ranked = sorted((order(k), k) for k in mine if order(k) >= cursor)
        page, rest = ranked[:count], ranked[count:]
        return node_reply(rest[0][0] if rest else 0, [k for _, k in page])

    def failover(self, index: int) -> None:
        names = list(dict.fromkeys(self.owners))
        old = names[index % len(names)]
        self.generation += 1
        new = f"{old}-r{self.generation}"
        self.owners = [new if o == old else o for o in self.owners]

    def move(self, slot: int, index: int) -> None:
        names = list(dict.fromkeys(self.owners))
        self.owners[slot] = names[index % len(names)]


Event = tuple[int, str, int, int]  # (at step, "failover" | "move", a, b)
events_strategy = st.lists(
    st.tuples(
        st.integers(1, 8),
        st.sampled_from(["failover", "move", "move_in_flight"]),
        st.integers(0, SLOT_COUNT - 1),
        st.integers(0, 5),
    ),
    max_size=8,
)


def run_iteration(
    cluster: SimCluster, events: list[Event], count: int
) -> tuple[set[bytes], int, int]:
    """Scan to the end; returns (keys seen, steps, layout changes)."""
    seen: set[bytes] = set()
    cursor = b"0"
    changes = 0
    layout_cache: dict[tuple[str, ...], ScanLayout] = {}

    def layout() -> ScanLayout:
        key = tuple(cluster.owners)
        if key not in layout_cache:
            layout_cache[key] = scan_layout(cluster.slotmap())
        return layout_cache[key]

    def apply(kind: str, a: int, b: int) -> None:
        nonlocal changes
        owners, before = tuple(cluster.owners), layout().layout
        if kind == "failover":
            cluster.failover(a)
        else:
            cluster.move(a, b)
        if tuple(cluster.owners) != owners:
            assume(layout().layout != before)  # a 16-bit fingerprint collision: 1 in 65536
            changes += 1

    for steps in range(1, 20_000):
        planned_with = layout()
        for at, kind, a, b in events:
            if at == steps and kind != "move_in_flight":
                apply(kind, a, b)
                planned_with = layout()
        step = plan_scan([b"SCAN", cursor, b"COUNT", b"%d" % count], planned_with)
        assert isinstance(step, ScanStep)
        for at, kind, a, b in events:
            if at == steps and kind == "move_in_flight":
                apply("move", a, b)  # the map changes while the step is on its way
        raw = cluster.node_scan(step.node, int(step.args[1]), count)
        reply = parse_reply(finish_scan(step, raw, planned_with))
        assert isinstance(reply, list)
        next_cursor, keys = reply
        assert isinstance(next_cursor, bytes) and isinstance(keys, list)
        seen.update(k for k in keys if isinstance(k, bytes))
        if next_cursor == b"0":
            return seen, steps, changes
        cursor = next_cursor
    raise AssertionError("the iteration never ended")


@settings(max_examples=150, deadline=None)
@given(
    shards=st.integers(1, 4),
    names=st.lists(st.binary(min_size=1, max_size=6), min_size=0, max_size=80, unique=True),
    count=st.integers(1, 12),
    events=events_strategy,
)
def test_every_key_at_least_once_and_the_end_comes(
    shards: int, names: list[bytes], count: int, events: list[Event]
) -> None:
    owners = [f"n{slot * shards // SLOT_COUNT}" for slot in range(SLOT_COUNT)]
    cluster = SimCluster(owners, names)
    seen, steps, changes = run_iteration(cluster, sorted(events), count)
    assert seen <= set(names)
    if changes <= MAX_RESTARTS:
        assert seen == set(names)
    assert steps <= (MAX_RESTARTS + 2) * (len(names) + 4 * len(events) + shards + 2)
