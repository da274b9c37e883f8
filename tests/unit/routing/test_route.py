"""route_batch and assemble: one read's requests in, per-node bytes and replies out."""

from functools import cache

import hiredis
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.commands import CommandTable, parse_command_reply
from routing.plan import ANY_NODE, Local, Router, Split
from routing.resp import (
    RequestLimits,
    encode_array,
    encode_bulk,
    encode_int,
    pack_command,
    parse_reply,
    parse_requests,
)
from routing.route import Routed, assemble, route_batch
from routing.slots import key_hash_slot

DATA = __import__("pathlib").Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"
NODES = ("n1", "n2", "n3")
OWNERS = tuple(NODES[slot * 3 // 16384] for slot in range(16384))


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


@cache
def cluster() -> Router:
    return Router(table(), "cluster")


def sent(routed: Routed) -> dict[str | None, list[list[bytes]]]:
    """What each node gets, parsed back into requests."""
    out = {}
    by_node = routed.by_node()
    for node, raw in routed.packed().items():
        parsed = parse_requests(raw, RequestLimits())
        assert parsed.error is None
        out[node] = parsed.requests
        assert len(parsed.requests) == len(by_node[node])
    return out


def replies_of(raw: bytes) -> list[object]:
    reader = hiredis.Reader()
    reader.feed(raw)
    out = []
    while (reply := reader.gets()) is not False:
        out.append(reply)
    return out


def test_single_key_requests_go_to_their_slots_owner_in_order() -> None:
    requests = [[b"GET", b"k%d" % i] for i in range(12)] + [[b"SET", b"x", b"v" * 5000]]
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1")
    assert routed.stop == len(requests) and routed.plan is None
    assert routed.layout is None and routed.filled is None
    by_node = sent(routed)
    for node, indices in routed.by_node().items():
        assert by_node[node] == [requests[i] for i in indices]
        for i in indices:
            assert OWNERS[key_hash_slot(requests[i][1])] == node
            assert routed.part(i, cluster()) == (
                pack_command(requests[i]),
                key_hash_slot(requests[i][1]),
            )


def test_a_request_that_needs_the_session_stops_the_batch() -> None:
    requests = [[b"GET", b"a"], [b"MULTI"], [b"GET", b"b"]]
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1")
    assert (routed.stop, routed.plan, routed.count) == (1, Local(b"multi"), 1)
    rest = route_batch(requests, 2, cluster(), OWNERS, lambda: "n1")
    assert (rest.stop, rest.plan, rest.count) == (3, None, 1)
    subscribe = route_batch([[b"SUBSCRIBE", b"c"]], 0, cluster(), OWNERS, lambda: "n1")
    assert (subscribe.stop, subscribe.plan) == (0, Local(b"subscribe"))


def test_local_replies_keep_their_place() -> None:
    requests = [[b"PING"], [b"GET", b"a"], [b"GET"], [b"ECHO", b"x"]]
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1")
    assert routed.stop == 4 and routed.count == 4
    assert routed.filled == [
        (0, b"+PONG\r\n"),
        (2, b"-ERR wrong number of arguments for 'get' command\r\n"),
        (3, b"$1\r\nx\r\n"),
    ]
    assert sent(routed) == {OWNERS[key_hash_slot(b"a")]: [[b"GET", b"a"]]}


def test_keyless_commands_go_to_the_node_the_caller_picked() -> None:
    routed = route_batch([[b"RANDOMKEY"], [b"LASTSAVE"]], 0, cluster(), OWNERS, lambda: "n2")
    assert sent(routed) == {"n2": [[b"LASTSAVE"]]} or routed.plan is not None
    standalone = Router(table(), "standalone")
    routed = route_batch(
        [[b"GET", b"a"], [b"RENAME", b"a", b"b"]], 0, standalone, None, lambda: "one"
    )
    assert sent(routed) == {"one": [[b"GET", b"a"], [b"RENAME", b"a", b"b"]]}
    assert [routed.part(i, standalone)[1] for i in range(2)] == [ANY_NODE, ANY_NODE]


def test_no_slot_map_sends_to_nobody() -> None:
    routed = route_batch([[b"GET", b"a"], [b"MGET", b"a", b"b"]], 0, cluster(), None, lambda: None)
    assert set(routed.by_node()) == {None}
    assert routed.stop == 2


def test_reads_go_where_read_node_says() -> None:
    asked: list[int] = []

    def read_node(slot: int) -> str:
        asked.append(slot)
        return "replica"

    requests = [[b"GET", b"a"], [b"SET", b"a", b"1"], [b"STRLEN", b"a"]]
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1", read_node)
    owner = OWNERS[key_hash_slot(b"a")]
    assert sent(routed) == {"replica": [requests[0], requests[2]], owner: [requests[1]]}
    assert asked == [key_hash_slot(b"a")] * 2


def test_a_split_in_a_pipeline_merges_in_place() -> None:
    keys = [b"k%d" % i for i in range(6)]
    requests = [[b"GET", b"x"], [b"MGET", *keys], [b"DEL", *keys], [b"GET", b"y"]]
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1")
    assert routed.stop == 4 and routed.requests_count() == 4
    # Parts keep what a resend needs: the split's parts as planned, the rest re-packed.
    mget = cluster().plan([b"MGET", *keys])
    assert isinstance(mget, Split)
    assert [routed.part(1 + i, cluster()) for i in range(6)] == list(
        zip(mget.requests, mget.slots, strict=True)
    )
    assert routed.part(13, cluster()) == (pack_command([b"GET", b"y"]), key_hash_slot(b"y"))
    store = {keys[1]: b"one", keys[4]: b"four", b"x": b"X"}
    raws = answer_parts(routed, store)
    assert replies_of(assemble(routed, raws, False)) == [
        b"X",
        [None, b"one", None, None, b"four", None],
        2,
        None,
    ]


# --- round trip: route, let fake nodes answer, assemble; compare with one plain store ---


def execute(args: list[bytes], store: dict[bytes, bytes]) -> bytes:
    """What one Redis node answers (the reference for GET/SET/MGET/MSET/DEL/EXISTS/PING)."""
    name, rest = args[0].upper(), args[1:]
    if name == b"GET":
        return encode_bulk(store.get(rest[0]))
    if name == b"SET":
        store[rest[0]] = rest[1]
        return b"+OK\r\n"
    if name == b"MGET":
        return encode_array([encode_bulk(store.get(k)) for k in rest])
    if name == b"MSET":
        store.update(zip(rest[::2], rest[1::2], strict=True))
        return b"+OK\r\n"
    if name == b"DEL":
        return encode_int(sum(store.pop(k, None) is not None for k in dict.fromkeys(rest)))
    if name == b"EXISTS":
        return encode_int(sum(k in store for k in rest))
    if name == b"PING":
        return b"+PONG\r\n"
    raise AssertionError(name)


def answer_parts(routed: Routed, store: dict[bytes, bytes]) -> list[bytes]:
    """Each node runs its requests in order, all against one store (nodes are disjoint)."""
    raws = [b""] * routed.count
    for index, raw in routed.filled or ():
        raws[index] = raw
    for node, requests in sent(routed).items():
        for index, args in zip(routed.by_node()[node], requests, strict=True):
            raws[index] = execute(args, store)
    return raws


keys = st.sampled_from([b"a", b"b", b"c", b"{t}1", b"{t}2", b"k1", b"k2", b"k3"])
values = st.sampled_from([b"1", b"22", b"v" * 300])
commands = st.one_of(
    st.tuples(st.just(b"GET"), keys).map(list),
    st.tuples(st.just(b"get"), keys).map(list),
    st.tuples(st.just(b"SET"), keys, values).map(list),
    st.lists(keys, min_size=1, max_size=5).map(lambda ks: [b"MGET", *ks]),
    st.lists(keys, min_size=1, max_size=5).map(lambda ks: [b"DEL", *ks]),
    st.lists(keys, min_size=1, max_size=5).map(lambda ks: [b"EXISTS", *ks]),
    st.lists(st.tuples(keys, values), min_size=1, max_size=4).map(
        lambda kvs: [b"MSET", *(x for kv in dict(kvs).items() for x in kv)]
    ),
    st.just([b"PING"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, min_size=1, max_size=12))
def test_round_trip_matches_one_plain_server(requests: list[list[bytes]]) -> None:
    """Each request routed, answered by the nodes and assembled, one after the other: the
    replies and the data equal a standalone server's, byte for byte."""
    expected_store: dict[bytes, bytes] = {}
    expected = b"".join(execute(args, expected_store) for args in requests)
    store: dict[bytes, bytes] = {}
    out = []
    for args in requests:
        routed = route_batch([args], 0, cluster(), OWNERS, lambda: "n1")
        assert routed.stop == 1
        out.append(assemble(routed, answer_parts(routed, store), False))
    assert b"".join(out) == expected
    assert store == expected_store


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, min_size=1, max_size=12))
def test_a_whole_pipeline_routes_every_request_once(requests: list[list[bytes]]) -> None:
    routed = route_batch(requests, 0, cluster(), OWNERS, lambda: "n1")
    assert routed.stop == len(requests)
    assert routed.requests_count() == len(requests)
    sent_parts = sorted(i for indices in routed.by_node().values() for i in indices)
    filled = sorted(i for i, _ in routed.filled or ())
    assert sorted(sent_parts + filled) == list(range(routed.count))  # each part once
    # Reads only: any order of nodes gives the standalone replies.
    reads = [r for r in requests if r[0].upper() in (b"GET", b"MGET", b"EXISTS", b"PING")]
    store = {b"a": b"A", b"{t}1": b"T1", b"k2": b"K2"}
    routed = route_batch(reads, 0, cluster(), OWNERS, lambda: "n1")
    if reads:
        expected = b"".join(execute(args, dict(store)) for args in reads)
        assert assemble(routed, answer_parts(routed, dict(store)), False) == expected
