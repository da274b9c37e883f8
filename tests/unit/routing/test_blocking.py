"""routing/blocking.py: slots, timeouts and put-back commands of blocking commands."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import hiredis
import pytest

from routing import replies
from routing.blocking import (
    ANY_NODE,
    Timeout,
    blocking_slot,
    parse_timeout,
    rearm,
    restore_command,
)
from routing.commands import CommandTable, parse_command_reply
from routing.plan import ANY_NODE as PLAN_ANY_NODE
from routing.resp import Args, encode_bulk_array
from routing.slots import key_hash_slot

CAPTURED: Final = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


def _table() -> CommandTable:
    reader = hiredis.Reader()
    reader.feed(CAPTURED.read_bytes())
    return CommandTable(parse_command_reply(reader.gets()))


TABLE: Final = _table()


def _slot(*args: bytes) -> object:
    spec = TABLE.get(args[0])
    assert spec is not None
    return blocking_slot(spec, list(args))


def test_any_node_matches_the_router() -> None:
    assert ANY_NODE == PLAN_ANY_NODE


@pytest.mark.parametrize(
    "args",
    [
        (b"BLPOP", b"{u}a", b"{u}b", b"0"),
        (b"BRPOP", b"{u}a", b"1.5"),
        (b"BLMOVE", b"{u}a", b"{u}b", b"LEFT", b"RIGHT", b"0"),
        (b"BRPOPLPUSH", b"{u}a", b"{u}b", b"0"),
        (b"BLMPOP", b"0", b"2", b"{u}a", b"{u}b", b"LEFT"),
        (b"BZPOPMIN", b"{u}a", b"{u}b", b"0"),
        (b"BZMPOP", b"0", b"1", b"{u}a", b"MIN", b"COUNT", b"2"),
        (b"XREAD", b"BLOCK", b"0", b"STREAMS", b"{u}a", b"{u}b", b"$", b"$"),
        (b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"10", b"STREAMS", b"{u}a", b">"),
    ],
)
def test_slot_of_keys_in_one_slot(args: tuple[bytes, ...]) -> None:
    assert _slot(*args) == key_hash_slot(b"u")


@pytest.mark.parametrize(
    "args",
    [
        (b"BLPOP", b"a", b"b", b"0"),
        (b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"0"),
        (b"BRPOPLPUSH", b"a", b"b", b"0"),
        (b"BLMPOP", b"0", b"2", b"a", b"b", b"LEFT"),
        (b"BZMPOP", b"0", b"2", b"a", b"b", b"MAX"),
        (b"XREAD", b"BLOCK", b"0", b"STREAMS", b"a", b"b", b"$", b"$"),
    ],
)
def test_crossslot(args: tuple[bytes, ...]) -> None:
    assert key_hash_slot(b"a") != key_hash_slot(b"b")
    assert _slot(*args) == replies.CROSSSLOT


def test_invalid_arguments_go_to_any_node() -> None:
    # numkeys past the end: the node answers its own error.
    assert _slot(b"BLMPOP", b"0", b"5", b"a", b"LEFT") == ANY_NODE


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((b"blpop", b"k", b"0"), Timeout(2, 0.0, False)),
        ((b"blpop", b"k", b"j", b"0.25"), Timeout(3, 0.25, False)),
        ((b"blmove", b"a", b"b", b"LEFT", b"LEFT", b"3"), Timeout(5, 3.0, False)),
        ((b"blmpop", b"1.5", b"1", b"k", b"LEFT"), Timeout(1, 1.5, False)),
        ((b"bzmpop", b"2", b"1", b"k", b"MIN"), Timeout(1, 2.0, False)),
        (
            (b"xread", b"COUNT", b"5", b"BLOCK", b"1500", b"STREAMS", b"s", b"$"),
            Timeout(4, 1.5, True),
        ),
        ((b"xread", b"STREAMS", b"block", b"0"), None),  # "block" here is a key
        (
            (b"xreadgroup", b"GROUP", b"block", b"c", b"BLOCK", b"0", b"STREAMS", b"s", b">"),
            Timeout(5, 0.0, True),
        ),
        ((b"blpop", b"k", b"nan"), None),
        ((b"blpop", b"k", b"-1"), None),
        ((b"blpop", b"k", b"soon"), None),
        ((b"xread", b"BLOCK", b"1.5", b"STREAMS", b"s", b"$"), None),
    ],
)
def test_parse_timeout(args: tuple[bytes, ...], expected: Timeout | None) -> None:
    assert parse_timeout(args[0], list(args)) == expected


def test_rearm_keeps_forever_and_never_turns_a_wait_into_forever() -> None:
    args: Args = [b"blpop", b"k", b"0"]
    assert rearm(args, Timeout(2, 0.0, False), 0.0) is args
    assert rearm([b"blpop", b"k", b"5"], Timeout(2, 5.0, False), 1.25) == [
        b"blpop",
        b"k",
        b"1.250",
    ]
    assert rearm([b"blpop", b"k", b"5"], Timeout(2, 5.0, False), -3.0)[2] == b"0.001"
    xread: Args = [b"xread", b"BLOCK", b"900", b"STREAMS", b"s", b"$"]
    assert rearm(xread, Timeout(2, 0.9, True), 0.1234)[2] == b"124"
    assert rearm(xread, Timeout(2, 0.9, True), -1.0)[2] == b"1"


def _arr(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


@pytest.mark.parametrize(
    ("args", "raw", "expected"),
    [
        ((b"blpop", b"k", b"0"), encode_bulk_array([b"k", b"x"]), [b"LPUSH", b"k", b"x"]),
        ((b"brpop", b"k", b"0"), encode_bulk_array([b"k", b"x"]), [b"RPUSH", b"k", b"x"]),
        ((b"blpop", b"k", b"0"), b"*-1\r\n", None),
        ((b"blpop", b"k", b"0"), b"_\r\n", None),
        ((b"blpop", b"k", b"0"), b"-MOVED 1 127.0.0.1:1\r\n", None),
        (
            (b"bzpopmin", b"z", b"0"),
            encode_bulk_array([b"z", b"m", b"1.5"]),
            [b"ZADD", b"z", b"1.5", b"m"],
        ),
        (  # RESP3: the score is a double
            (b"bzpopmax", b"z", b"0"),
            _arr(_bulk(b"z"), _bulk(b"m"), b",-inf\r\n"),
            [b"ZADD", b"z", b"-inf", b"m"],
        ),
        (
            (b"blmpop", b"0", b"1", b"k", b"LEFT", b"COUNT", b"2"),
            _arr(_bulk(b"k"), encode_bulk_array([b"a", b"b"])),
            [b"LPUSH", b"k", b"b", b"a"],
        ),
        (
            (b"blmpop", b"0", b"1", b"k", b"right", b"COUNT", b"2"),
            _arr(_bulk(b"k"), encode_bulk_array([b"c", b"b"])),
            [b"RPUSH", b"k", b"b", b"c"],
        ),
        (
            (b"bzmpop", b"0", b"1", b"z", b"MIN", b"COUNT", b"2"),
            _arr(
                _bulk(b"z"),
                _arr(encode_bulk_array([b"a", b"1"]), _arr(_bulk(b"b"), b",2.5\r\n")),
            ),
            [b"ZADD", b"z", b"1", b"a", b"2.5", b"b"],
        ),
        ((b"blmove", b"a", b"b", b"LEFT", b"LEFT", b"0"), _bulk(b"x"), None),
        ((b"brpoplpush", b"a", b"b", b"0"), _bulk(b"x"), None),
        (
            (b"xreadgroup", b"GROUP", b"g", b"c", b"BLOCK", b"0", b"STREAMS", b"s", b">"),
            _arr(_arr(_bulk(b"s"), b"*0\r\n")),
            None,
        ),
    ],
)
def test_restore_command(args: tuple[bytes, ...], raw: bytes, expected: Args | None) -> None:
    assert restore_command(args[0], list(args), raw) == expected
