"""Planning and merging against Redis 7.0's own command table (routing/data)."""

from functools import cache

import pytest

from routing.commands import CommandTable, parse_command_reply
from routing.fanout import Script
from routing.merge import merge_split
from routing.plan import ANY_NODE, Local, Reply, Router, Split
from routing.resp import (
    RequestLimits,
    encode_array,
    encode_bulk,
    encode_int,
    parse_reply,
    parse_requests,
)
from routing.slots import key_hash_slot

DATA = __import__("pathlib").Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


def cluster() -> Router:
    return Router(table(), "cluster")


def plan(*args: bytes) -> object:
    return cluster().plan(list(args))


A, B = b"a-key", b"b-key"
assert key_hash_slot(A) != key_hash_slot(B)

CROSSSLOT = Reply(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((b"GET", A), key_hash_slot(A)),
        ((b"get", A), key_hash_slot(A)),
        ((b"gEt", A), key_hash_slot(A)),
        ((b"SET", A, b"v", b"EX", b"10"), key_hash_slot(A)),
        ((b"RENAME", b"{t}1", b"{t}2"), key_hash_slot(b"t")),
        ((b"RENAME", A, B), CROSSSLOT),
        ((b"SMOVE", A, B, b"m"), CROSSSLOT),
        ((b"MSETNX", A, b"1", B, b"2"), CROSSSLOT),
        ((b"EVAL", b"return 1", b"2", A, B), CROSSSLOT),
        ((b"EVAL", b"return 1", b"0"), Script(ANY_NODE)),
        ((b"EVAL", b"return 1", b"1", A), Script(key_hash_slot(A))),
        ((b"MGET", A, A), key_hash_slot(A)),  # one slot: forwarded unchanged
        ((b"OBJECT", b"ENCODING", A), key_hash_slot(A)),
        ((b"TIME",), ANY_NODE),
        ((b"NOSUCHCMD", A), ANY_NODE),  # the node answers with its own error
        ((b"PING",), Reply(b"+PONG\r\n")),
        ((b"PING", b"x"), Reply(b"$1\r\nx\r\n")),
        ((b"ECHO", b"x"), Reply(b"$1\r\nx\r\n")),
        ((b"GET",), Reply(b"-ERR wrong number of arguments for 'get' command\r\n")),
        ((b"OBJECT", b"NOPE", A), Reply(b"-ERR unknown subcommand 'NOPE'. Try OBJECT HELP.\r\n")),
        (
            (b"OBJECT", b"ENCODING"),
            Reply(b"-ERR wrong number of arguments for 'object|encoding' command\r\n"),
        ),
        ((b"QUIT",), Local(b"quit")),
        ((b"SELECT", b"0"), Local(b"select")),
        ((b"CLUSTER", b"INFO"), Reply(b"-ERR This instance has cluster support disabled\r\n")),
    ],
)
def test_cluster_plans(args: tuple[bytes, ...], expected: object) -> None:
    assert plan(*args) == expected


@pytest.mark.parametrize(
    "args",
    [
        (b"MULTI",),
        (b"BLPOP", A, b"0"),
        (b"SUBSCRIBE", b"c"),
        (b"XREAD", b"BLOCK", b"0", b"STREAMS", A, b"$"),
    ],
)
def test_per_client_state_is_the_sessions_in_cluster_mode(args: tuple[bytes, ...]) -> None:
    assert plan(*args) == Local(args[0].lower())


def test_replication_commands_are_refused_in_cluster_mode() -> None:
    result = plan(b"MONITOR")
    assert isinstance(result, Reply)
    assert b"not supported by slotless" in result.raw


def test_xread_without_block_routes_by_key() -> None:
    assert plan(b"XREAD", b"COUNT", b"2", b"STREAMS", A, b"0") == key_hash_slot(A)


def test_standalone_forwards_everything_and_pipes_state() -> None:
    router = Router(table(), "standalone")
    assert router.plan([b"RENAME", A, B]) == ANY_NODE
    assert router.plan([b"DBSIZE"]) == ANY_NODE
    assert router.plan([b"MULTI"]) == Local(b"multi")
    assert router.plan([b"BLPOP", A, b"0"]) == Local(b"blpop")
    assert router.plan([b"SUBSCRIBE", b"c"]) == Local(b"subscribe")


def keys_in_distinct_slots(n: int) -> list[bytes]:
    keys, slots = [], set()
    i = 0
    while len(keys) < n:
        key = b"k%d" % i
        if key_hash_slot(key) not in slots:
            slots.add(key_hash_slot(key))
            keys.append(key)
        i += 1
    return keys


def answer(
    sub_args: tuple[bytes, ...], store: dict[bytes, bytes], lists: frozenset[bytes] = frozenset()
) -> bytes:
    """What one Redis node answers to a sub-request (the reference behaviour)."""
    name, rest = sub_args[0].upper(), sub_args[1:]
    if name == b"MGET":
        return encode_array([encode_bulk(store.get(k)) for k in rest])
    if name == b"GET":
        (key,) = rest
        if key in lists:
            return b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        return encode_bulk(store.get(key))
    if name == b"MSET":
        store.update(zip(rest[::2], rest[1::2], strict=True))
        return b"+OK\r\n"
    if name == b"EXISTS":
        return encode_int(sum(k in store for k in rest))
    if name == b"DEL":
        return encode_int(sum(store.pop(k, None) is not None for k in dict.fromkeys(rest)))
    raise AssertionError(name)


def parts_of(result: object) -> list[tuple[int, list[bytes]]]:
    """(slot, args) of every part of a Split."""
    assert isinstance(result, Split)
    assert len(result.slots) == len(result.requests)
    parsed = [parse_requests(raw, RequestLimits()) for raw in result.requests]
    assert all(len(p.requests) == 1 and p.error is None for p in parsed)
    return [(slot, p.requests[0]) for slot, p in zip(result.slots, parsed, strict=True)]


def merge(result: object, raws: list[bytes], resp3: bool = False) -> bytes:
    assert isinstance(result, Split)
    return merge_split(result, raws, resp3)


def run_split(
    args: list[bytes], store: dict[bytes, bytes], lists: frozenset[bytes] = frozenset()
) -> bytes:
    result = cluster().plan(args)
    parts = parts_of(result)
    assert len({slot for slot, _ in parts}) == len(parts)
    step = 2 if args[0].upper() == b"MSET" else 1
    for slot, part_args in parts:
        assert all(key_hash_slot(key) == slot for key in part_args[1::step])
    return merge(result, [answer(tuple(a), store, lists) for _, a in parts])


def test_split_round_trip_matches_one_redis() -> None:
    keys = keys_in_distinct_slots(6)
    store: dict[bytes, bytes] = {}
    mset = [b"MSET"]
    for i, key in enumerate(keys):
        mset += [key, b"v%d" % i]
    assert run_split(mset, store) == b"+OK\r\n"
    asked = [keys[3], b"missing", keys[0], keys[3]]
    assert parse_reply(run_split([b"MGET", *asked], store)) == [b"v3", None, b"v0", b"v3"]
    assert run_split([b"EXISTS", *keys, keys[0]], store) == b":7\r\n"
    assert run_split([b"DEL", *keys[:3], keys[0]], store) == b":3\r\n"


def test_mget_one_key_parts_go_as_get_and_keep_mget_semantics() -> None:
    keys = keys_in_distinct_slots(3)
    result = cluster().plan([b"MGET", *keys])
    assert isinstance(result, Split)
    assert result.ordinals is None  # every key in a slot of its own: part i is key i
    assert [a[0] for _, a in parts_of(result)] == [b"GET"] * 3
    # MGET answers nil for a key of another type, where GET answers WRONGTYPE.
    store = {keys[0]: b"a"}
    lists = frozenset({keys[1]})
    assert parse_reply(run_split([b"MGET", *keys], store, lists)) == [b"a", None, None]
    raws = [answer(tuple(a), store, lists) for _, a in parts_of(result)]
    assert merge(result, raws, resp3=True) == b"*3\r\n$1\r\na\r\n_\r\n$-1\r\n"
    # Two keys of one slot stay one MGET part (a Split); the lone key goes as GET.
    tagged = [b"{t}1", b"{t}2", keys[0]]
    result = cluster().plan([b"MGET", *tagged])
    assert isinstance(result, Split)
    assert sorted(a[0] for _, a in parts_of(result)) == [b"GET", b"MGET"]
    store[b"{t}2"] = b"two"
    assert parse_reply(run_split([b"MGET", *tagged], store)) == [None, b"two", b"a"]
    lists = frozenset({keys[0]})
    assert parse_reply(run_split([b"MGET", *tagged], store, lists)) == [None, b"two", None]


def test_split_error_wins() -> None:
    keys = keys_in_distinct_slots(3)
    err = b"-ERR upstream 1.2.3.4:5 connection lost\r\n"
    wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    result = cluster().plan([b"MGET", *keys])
    assert merge(result, [wrongtype, err, encode_bulk(b"x")]) == err
    result = cluster().plan([b"MGET", b"{t}1", b"{t}2", keys[0]])
    assert merge(result, [err, encode_bulk(b"x")]) == err
    assert merge(result, [encode_array([encode_bulk(b"x")] * 2), err]) == err
    result = cluster().plan([b"DEL", *keys])
    assert merge(result, [b":1\r\n", err, b":1\r\n"]) == err


def test_mset_odd_arguments_is_an_arity_error() -> None:
    keys = keys_in_distinct_slots(2)
    assert plan(b"MSET", keys[0], b"1", keys[1]) == Reply(
        b"-ERR wrong number of arguments for 'mset' command\r\n"
    )


def test_split_parts_are_valid_requests() -> None:
    keys = keys_in_distinct_slots(3)
    result = plan(b"MSET", *(x for k in keys for x in (k, b"v")))
    assert isinstance(result, Split)
    assert result.ordinals is None
    for request in result.requests:
        assert request.startswith(b"*3\r\n$4\r\nMSET\r\n")
    result = plan(b"MSET", b"{t}1", b"v", b"{t}2", b"w", keys[0], b"x")
    assert isinstance(result, Split)
    assert sorted(len(args) for _, args in parts_of(result)) == [3, 5]
    assert sorted(map(sorted, result.ordinals or ())) == [[0, 1], [2]]
