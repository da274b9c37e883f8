"""routing/pubsub.py gate_subscribed: what a RESP2 client with subscriptions may still run
(server.c processCommand), against Redis 7.0's own command table."""

from __future__ import annotations

import shlex

import pytest

from routing.pubsub import Kind, Subscriptions, gate_subscribed
from tests.unit.routing.test_txn import table

PONG_EMPTY = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
PONG_X = b"*2\r\n$4\r\npong\r\n$1\r\nx\r\n"


def refused(fullname: str) -> bytes:
    return (
        f"-ERR Can't execute '{fullname}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
        "QUIT / RESET are allowed in this context\r\n"
    ).encode()


def subscribed(kind: Kind = "channel") -> Subscriptions:
    subs = Subscriptions()
    subs.subscribe(kind, [b"news"])
    return subs


def gate(subs: Subscriptions, line: str, resp3: bool = False) -> bytes | None:
    return gate_subscribed(subs, resp3, [w.encode() for w in shlex.split(line)], table())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PING", PONG_EMPTY),
        ("ping x", PONG_X),
        ("PING a b", None),  # PING's own arity error comes from the router
        ("SUBSCRIBE a", None),
        ("psubscribe a*", None),
        ("SSUBSCRIBE s", None),
        ("UNSUBSCRIBE", None),
        ("PUNSUBSCRIBE", None),
        ("SUNSUBSCRIBE s", None),
        ("QUIT", None),
        ("RESET", None),
        ("GET x", refused("get")),
        ("GeT x", refused("get")),
        ("PUBLISH c m", refused("publish")),
        ("CLIENT ID", refused("client|id")),
        ("CONFIG GET maxmemory", refused("config|get")),
        # Redis looks the command up and checks its arity before the subscribed state.
        ("NOSUCH x", None),
        ("GET", None),
        ("SET onlykey", None),
        ("CLIENT", None),
        ("CLIENT NOSUCH", None),
    ],
)
def test_resp2_subscribed(line: str, expected: bytes | None) -> None:
    assert gate(subscribed(), line) == expected


@pytest.mark.parametrize("kind", ["channel", "pattern", "shard"])
def test_every_kind_of_subscription_counts(kind: Kind) -> None:
    assert gate(subscribed(kind), "GET x") == refused("get")
    assert gate(subscribed(kind), "PING") == PONG_EMPTY


@pytest.mark.parametrize("line", ["GET x", "PING", "PING x", "CLIENT ID"])
def test_resp3_passes(line: str) -> None:
    assert gate(subscribed(), line, resp3=True) is None


@pytest.mark.parametrize("line", ["GET x", "PING", "CLIENT ID"])
def test_no_subscriptions_pass(line: str) -> None:
    subs = subscribed()
    subs.unsubscribe("channel", [])
    assert gate(subs, line) is None
    assert gate(Subscriptions(), line) is None
