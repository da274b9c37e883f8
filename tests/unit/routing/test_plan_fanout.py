"""Whole-keyspace plans derived from Redis 7.0's command tips, and the deny list."""

from functools import cache

import pytest

from routing.commands import CommandTable, parse_command_reply
from routing.fanout import Fanout, Scan, Script, wait_args
from routing.plan import ANY_NODE, Plan, Reply, Router
from routing.resp import parse_reply
from routing.slots import key_hash_slot

DATA = __import__("pathlib").Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


def plan(*args: bytes, deny: tuple[str, ...] = (), mode: str = "cluster") -> Plan:
    return Router(table(), mode, deny).plan(list(args))  # type: ignore[arg-type]


K = b"some-key"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # derived from request_policy / response_policy
        ((b"DBSIZE",), Fanout("primaries", "agg_sum")),
        ((b"KEYS", b"*"), Fanout("primaries", "concat")),
        ((b"FLUSHALL", b"ASYNC"), Fanout("primaries", "all_succeeded")),
        ((b"flushdb", b"sync"), Fanout("primaries", "all_succeeded")),
        ((b"WAIT", b"1", b"0"), Fanout("primaries", "agg_min")),
        ((b"SCRIPT", b"LOAD", b"return 1"), Fanout("nodes", "all_succeeded")),
        ((b"SCRIPT", b"EXISTS", b"a", b"b"), Fanout("primaries", "agg_logical_and")),
        ((b"SCRIPT", b"FLUSH"), Fanout("nodes", "all_succeeded")),
        ((b"SCRIPT", b"KILL"), Fanout("primaries", "one_succeeded", fresh_connection=True)),
        ((b"FUNCTION", b"KILL"), Fanout("primaries", "one_succeeded", fresh_connection=True)),
        ((b"FUNCTION", b"LOAD", b"x"), Fanout("primaries", "all_succeeded")),
        ((b"FUNCTION", b"DELETE", b"x"), Fanout("primaries", "all_succeeded")),
        ((b"FUNCTION", b"FLUSH"), Fanout("primaries", "all_succeeded")),
        ((b"FUNCTION", b"RESTORE", b"x"), Fanout("primaries", "all_succeeded")),
        ((b"CONFIG", b"SET", b"a", b"b"), Fanout("nodes", "all_succeeded")),
        ((b"SLOWLOG", b"LEN"), Fanout("nodes", "agg_sum")),
        ((b"SLOWLOG", b"RESET"), Fanout("nodes", "all_succeeded")),
        # hand-written: `special` or no tips
        ((b"INFO",), Fanout("primaries", "info")),
        ((b"INFO", b"keyspace", b"memory"), Fanout("primaries", "info")),
        ((b"RANDOMKEY",), Fanout("primaries", "random_key")),
        ((b"SLOWLOG", b"GET"), Fanout("nodes", "slowlog", count=10)),
        ((b"SLOWLOG", b"GET", b"3"), Fanout("nodes", "slowlog", count=3)),
        ((b"SLOWLOG", b"GET", b"-1"), Fanout("nodes", "slowlog", count=-1)),
        ((b"SLOWLOG", b"GET", b"x"), Fanout("nodes", "slowlog", count=-1)),
        ((b"CONFIG", b"RESETSTAT"), Fanout("nodes", "all_succeeded")),
        ((b"SCAN", b"0", b"MATCH", b"*"), Scan()),
        ((b"EVALSHA", b"ab" * 20, b"1", K), Script(key_hash_slot(K))),
        ((b"EVALSHA_RO", b"ab" * 20, b"0"), Script(ANY_NODE)),
        ((b"EVAL_RO", b"return 1", b"1", K), Script(key_hash_slot(K))),
        # one primary
        ((b"CONFIG", b"GET", b"maxmemory"), ANY_NODE),
        ((b"FUNCTION", b"LIST"), ANY_NODE),
        ((b"FUNCTION", b"DUMP"), ANY_NODE),
        ((b"FUNCTION", b"STATS"), ANY_NODE),  # response_policy:special: one primary's report
        ((b"MEMORY", b"STATS"), ANY_NODE),
        ((b"TIME",), ANY_NODE),
        ((b"LASTSAVE",), ANY_NODE),
        # by key
        ((b"MEMORY", b"USAGE", K), key_hash_slot(K)),
        ((b"OBJECT", b"FREQ", K), key_hash_slot(K)),
        # arity first, as Redis
        ((b"DBSIZE", b"x"), Reply(b"-ERR wrong number of arguments for 'dbsize' command\r\n")),
        ((b"SCAN",), Reply(b"-ERR wrong number of arguments for 'scan' command\r\n")),
        ((b"WAIT", b"1"), Reply(b"-ERR wrong number of arguments for 'wait' command\r\n")),
        (
            (b"SCRIPT", b"LOAD"),
            Reply(b"-ERR wrong number of arguments for 'script|load' command\r\n"),
        ),
    ],
)
def test_whole_keyspace_plans(args: tuple[bytes, ...], expected: Plan) -> None:
    assert plan(*args) == expected


def test_standalone_passes_them_through() -> None:
    for args in ((b"INFO",), (b"SCAN", b"0"), (b"KEYS", b"*"), (b"EVALSHA", b"x", b"0")):
        assert plan(*args, mode="standalone") == ANY_NODE


DENY = ("shutdown", "config|set", "cluster|meet", "json.set")


@pytest.mark.parametrize("mode", ["cluster", "standalone"])
@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ((b"SHUTDOWN", b"NOSAVE"), b"SHUTDOWN"),
        ((b"shutdown",), b"SHUTDOWN"),
        ((b"CONFIG", b"set", b"a", b"b"), b"CONFIG SET"),
        ((b"cluster", b"MEET", b"h", b"1"), b"CLUSTER MEET"),
        ((b"JSON.SET", b"k", b"$", b"1"), b"JSON.SET"),  # not in the table: a module command
    ],
)
def test_deny_list(mode: str, args: tuple[bytes, ...], shown: bytes) -> None:
    expected = b"-ERR command '%s' is disabled by slotless configuration\r\n" % shown
    assert plan(*args, deny=DENY, mode=mode) == Reply(expected)


def test_deny_list_leaves_the_rest_alone() -> None:
    assert plan(b"CONFIG", b"GET", b"x", deny=DENY) == ANY_NODE
    assert plan(b"CLUSTER", b"INFO", deny=DENY) == Reply(
        b"-ERR This instance has cluster support disabled\r\n"
    )
    router = Router(table(), "standalone", ("get", "config|set"))
    assert b"get" not in router.direct and b"GET" not in router.direct
    assert b"config" not in router.direct  # one subcommand denied: the container is checked
    assert b"set" in router.direct
    cluster = Router(table(), "cluster", ("get",))
    assert b"get" not in cluster.direct and b"set" in cluster.direct


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([b"WAIT", b"1", b"100"], [b"WAIT", b"1", b"100"]),
        ([b"WAIT", b"1", b"0"], [b"WAIT", b"1", b"4000"]),  # forever: capped
        ([b"WAIT", b"2", b"90000"], [b"WAIT", b"2", b"4000"]),
        ([b"WAIT", b"x", b"0"], [b"WAIT", b"x", b"0"]),  # the node's own error
        ([b"WAIT", b"1", b"-1"], [b"WAIT", b"1", b"-1"]),
    ],
)
def test_wait_args(args: list[bytes], expected: list[bytes]) -> None:
    assert wait_args(args, 4000) == expected
