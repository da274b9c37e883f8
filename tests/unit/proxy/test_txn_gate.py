"""proxy/txn.py's gate: requests for a new binding wait for the replies owed before it,
and go out when the session's in-order flush reaches them (no polling)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from proxy.txn import _Upstream
from proxy.upstream import UpstreamConnection, Waiter
from routing.resp import pack_command
from tests.unit.proxy.test_session import A, B, connect, key_on, settle

GET_A = pack_command([b"GET", key_on(A)])
GET_B = pack_command([b"GET", key_on(B)])


class FakeConn:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, raw: bytes, waiter: Waiter) -> None:
        self.sent.append(raw)


class Sink:
    def on_reply(self, raw: bytes, conn: Any) -> None:
        pass


def upstream() -> tuple[_Upstream, FakeConn]:
    conn = FakeConn()
    return _Upstream(cast(UpstreamConnection, conn), asyncio.get_running_loop()), conn


async def test_held_until_the_earlier_replies_are_in() -> None:
    session, transport, state = connect()
    session.data_received(GET_A)
    up, conn = upstream()
    up.wait_for(session, list(session.queued_entries))
    up.send(b"MULTI", Sink())
    session.reply(b"+OK\r\n")
    await settle()
    assert conn.sent == [] and transport.data == b""
    state.nodes[A].answer(b"$1\r\nx\r\n")
    await settle()
    assert conn.sent == [b"MULTI"]
    assert transport.data == b"$1\r\nx\r\n+OK\r\n"
    assert session.pending_replies == 0
    up.send(b"SET", Sink())
    assert conn.sent == [b"MULTI", b"SET"]


async def test_nothing_owed_nothing_held() -> None:
    session, _transport, _state = connect()
    up, conn = upstream()
    session.reply(b"+OK\r\n")
    up.wait_for(session, list(session.queued_entries))
    up.send(b"MULTI", Sink())
    assert conn.sent == [b"MULTI"]


async def test_gates_open_in_order() -> None:
    session, _transport, state = connect()
    up, conn = upstream()
    session.data_received(GET_A)
    up.wait_for(session, list(session.queued_entries))
    up.send(b"first", Sink())
    session.data_received(GET_B)
    up.wait_for(session, list(session.queued_entries))
    up.send(b"second", Sink())
    await settle()
    state.nodes[B].answer(b":1\r\n")
    await settle()
    assert conn.sent == []  # the first gate still waits for the first GET
    state.nodes[A].answer(b":0\r\n")
    await settle()
    assert conn.sent == [b"first", b"second"]
