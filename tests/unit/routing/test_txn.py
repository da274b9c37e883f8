"""Where commands queued inside MULTI run, against Redis 7.0's own command table."""

from functools import cache

import pytest

from routing.commands import CommandTable, parse_command_reply
from routing.plan import ANY_NODE, Router
from routing.resp import parse_reply
from routing.slots import key_hash_slot
from routing.txn import (
    Refuse,
    exec_abort,
    keys_slot,
    lost_in_exec,
    plan_queued,
    slot_moving,
    watch_slot,
)

DATA = __import__("pathlib").Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"
A, B, OTHER = b"{t}a", b"{t}b", b"{u}x"
SLOT = key_hash_slot(A)
CROSSSLOT = Refuse(b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


def router(deny: tuple[str, ...] = ()) -> Router:
    return Router(table(), "cluster", deny)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((b"SET", A, b"1"), SLOT),
        ((b"incr", A), SLOT),
        ((b"MSET", A, b"1", B, b"2"), SLOT),  # a multi_shard command within one slot
        ((b"MGET", A, B), SLOT),
        ((b"EVAL", b"return 1", b"2", A, B), SLOT),
        ((b"BLPOP", A, B, b"0"), SLOT),  # blocking: runs without blocking inside MULTI
        ((b"XREAD", b"BLOCK", b"0", b"STREAMS", A, b"$"), SLOT),
        ((b"PING",), ANY_NODE),  # answered locally outside MULTI, queued inside
        ((b"ECHO", b"x"), ANY_NODE),
        ((b"UNWATCH",), ANY_NODE),
        ((b"TIME",), ANY_NODE),
        ((b"MSET", A, b"1", OTHER, b"2"), CROSSSLOT),
        ((b"DEL", A, OTHER), CROSSSLOT),
        ((b"BLPOP", A, OTHER, b"0"), CROSSSLOT),
        ((b"RENAME", A, OTHER), CROSSSLOT),
    ],
)
def test_plan_queued(args: tuple[bytes, ...], expected: object) -> None:
    assert plan_queued(router(), list(args)) == expected


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"NOSUCH", b"x"), b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"),
        ((b"GET",), b"-ERR wrong number of arguments for 'get' command\r\n"),
        ((b"DBSIZE",), b"-ERR 'DBSIZE' is not supported by slotless inside MULTI"),
        ((b"KEYS", b"*"), b"-ERR 'KEYS' is not supported by slotless inside MULTI"),
        ((b"SCAN", b"0"), b"-ERR 'SCAN' is not supported by slotless inside MULTI"),
        ((b"SUBSCRIBE", b"c"), b"-ERR 'SUBSCRIBE' is not supported by slotless inside MULTI"),
        ((b"CLIENT", b"ID"), b"-ERR 'CLIENT' is not supported by slotless inside MULTI"),
        ((b"SELECT", b"0"), b"-ERR 'SELECT' is not supported by slotless inside MULTI"),
    ],
)
def test_plan_queued_refusals(args: tuple[bytes, ...], error: bytes) -> None:
    planned = plan_queued(router(), list(args))
    assert isinstance(planned, Refuse)
    assert planned.raw.startswith(error)


def test_denied_commands_keep_their_text() -> None:
    planned = plan_queued(router(("flushdb", "nosuchmodulecmd")), [b"FLUSHDB"])
    assert planned == Refuse(b"-ERR command 'FLUSHDB' is disabled by slotless configuration\r\n")
    planned = plan_queued(router(("nosuchmodulecmd",)), [b"nosuchmodulecmd"])
    assert planned == Refuse(
        b"-ERR command 'NOSUCHMODULECMD' is disabled by slotless configuration\r\n"
    )


def test_watch_slot_and_keys_slot() -> None:
    assert watch_slot([b"WATCH", A, B]) == SLOT
    assert watch_slot([b"WATCH", A, OTHER]) == CROSSSLOT
    assert keys_slot([b"X"], ()) == ANY_NODE


def test_error_texts() -> None:
    assert exec_abort(b"-ERR wrong number of arguments for 'exec' command\r\n") == (
        b"-EXECABORT Transaction discarded because of: "
        b"wrong number of arguments for 'exec' command\r\n"
    )
    assert b"nothing was applied" in lost_in_exec("h:1", established=False)
    assert b"may or may not" in lost_in_exec("h:1", established=True)
    assert slot_moving(7, b"-MOVED 7 h:1\r\n", "aborted") == (
        b"-ERR slotless: slot 7 is moving between nodes (MOVED); aborted\r\n"
    )
