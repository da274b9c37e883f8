"""proxy/auth.py without sockets: rule evaluation, secrets, per-user decisions."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from conf.schema import AuthConfig, UserConfig
from proxy.auth import Authenticator, Muted, compile_rules, noperm, rules_allow
from routing.commands import CommandTable, parse_command_reply
from routing.resp import parse_reply

DATA = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


READ = frozenset({b"read", b"string", b"fast"})
WRITE = frozenset({b"write", b"string", b"slow"})


@pytest.mark.parametrize(
    ("rules", "name", "categories", "allowed"),
    [
        ((), b"get", READ, False),
        (("+@all",), b"flushall", WRITE, True),
        (("allcommands", "-@write"), b"set", WRITE, False),
        (("allcommands", "-@write"), b"get", READ, True),
        (("+@read",), b"get", READ, True),
        (("+@read",), b"set", WRITE, False),
        (("+@read", "-get"), b"get", READ, False),
        (("-get", "+@read"), b"get", READ, True),  # the last matching rule wins
        (("+config",), b"config|set", WRITE, True),
        (("+config", "-config|set"), b"config|set", WRITE, False),
        (("+config", "-config|set"), b"config|get", READ, True),
        (("-config|set", "+config"), b"config|set", WRITE, True),
        (("+config|get",), b"config|set", WRITE, False),
        (("+@all", "nocommands"), b"get", READ, False),
        (("+json.get",), b"json.get", frozenset(), True),  # a module command by name
        (("+@read",), b"json.get", frozenset(), False),
    ],
)
def test_rules_allow(
    rules: tuple[str, ...], name: bytes, categories: frozenset[bytes], allowed: bool
) -> None:
    assert rules_allow(compile_rules(rules), name, categories) is allowed


def auth() -> Authenticator:
    return Authenticator(
        AuthConfig(
            password="top",
            users=(
                UserConfig("app", "app-pw", ("+@all",)),
                UserConfig("reader", "read-pw", ("+@read", "+@connection")),
                UserConfig("almost", "x", ("+@all", "-flushall")),
            ),
        )
    )


def test_check_secrets() -> None:
    users = auth()
    assert users.check(b"default", b"top") is users.users[b"default"]
    assert users.check(b"app", b"app-pw") is users.users[b"app"]
    assert users.check(b"app", b"top") is None
    assert users.check(b"ghost", b"top") is None
    assert users.check(b"default", b"") is None


def test_unrestricted_users_leave_the_hot_path_alone() -> None:
    users = auth().users
    assert users[b"default"].unrestricted and users[b"app"].unrestricted
    assert not users[b"reader"].unrestricted and not users[b"almost"].unrestricted


def test_reader_decisions_use_the_command_table() -> None:
    reader = auth().users[b"reader"]
    assert reader.may_run(table(), [b"GET", b"k"]) is None
    assert reader.may_run(table(), [b"hgetall", b"h"]) is None
    assert reader.may_run(table(), [b"SET", b"k", b"v"]) == noperm(b"set")
    assert reader.may_run(table(), [b"config", b"GET", b"x"]) == noperm(b"config|get")
    assert reader.may_run(table(), [b"client", b"id"]) is None  # @connection
    assert reader.may_run(table(), [b"nosuch"]) == noperm(b"nosuch")
    # Errors the router answers (and nothing runs) pass through.
    assert reader.may_run(table(), [b"config"]) is None
    assert reader.may_run(table(), [b"config", b"nosuch"]) is None
    assert noperm(b"set") == (b"-NOPERM this user has no permissions to run the 'set' command\r\n")


def test_muted_entry_waits_then_drops() -> None:
    class Pending:
        reply: bytes | None = None

    inner = Pending()
    muted = Muted(inner)
    assert muted.reply is None
    inner.reply = b"+OK\r\n"
    assert muted.reply == b""
