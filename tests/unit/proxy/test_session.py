"""ClientSession with a fake transport and a fake dispatcher: ordering, errors, closing."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

from conf import Config
from proxy.session import MAX_PENDING_REPLIES, ClientSession
from routing.commands import CommandTable, parse_command_reply
from routing.plan import Router, Split, SplitKeys
from routing.resp import RequestLimits, pack_command, parse_reply

DATA = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


class Pending:
    def __init__(self, session: ClientSession, args: list[bytes]) -> None:
        self.session, self.args, self.reply = session, args, None

    def complete(self, raw: bytes) -> None:
        self.reply = raw  # type: ignore[assignment]
        self.session.on_ready()


class FakeDispatcher:
    """Keeps every forwarded request so the test decides when (and in which order) it ends."""

    def __init__(self) -> None:
        self.sent: list[Pending] = []

    def forward(self, session: ClientSession, args: list[bytes], slot: int) -> Pending:
        self.sent.append(Pending(session, args))
        return self.sent[-1]

    def split(self, session: ClientSession, plan: Split) -> Pending:
        return self.forward(session, [b"split"], 0)

    def split_keys(self, session: ClientSession, plan: SplitKeys) -> Pending:
        return self.forward(session, [b"split"], 0)


class FakeTopology:
    def __init__(self) -> None:
        self.router = Router(table(), "cluster")
        self.router.direct.clear()  # every request through plan() and the fake dispatcher
        self.server_version = "7.0.15"
        self.slotmap = None
        self.read_targets = None


class FakePool:
    first: tuple[dict[str, object], dict[str, object]] = ({}, {})


class FakeState:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.config = Config()
        self.request_limits = RequestLimits()
        self.topology = FakeTopology()
        self.dispatcher = FakeDispatcher()
        self.pool = FakePool()
        self.sessions: set[ClientSession] = set()
        self._ids = iter(range(1, 1000))

    def next_client_id(self) -> int:
        return next(self._ids)

    def on_session_open(self, session: ClientSession) -> bool:
        self.sessions.add(session)
        return True

    def on_session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)


def connect() -> tuple[ClientSession, FakeTransport, FakeDispatcher]:
    state = FakeState(asyncio.get_running_loop())
    session = ClientSession(state)  # type: ignore[arg-type]
    transport = FakeTransport()
    session.connection_made(transport)
    return session, transport, state.dispatcher


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_pipelined_replies_keep_request_order() -> None:
    session, transport, dispatcher = connect()
    session.data_received(
        b"".join(pack_command([b"GET", b"k%d" % i]) for i in range(5)) + b"PING\r\n"
    )
    assert len(dispatcher.sent) == 5
    for i in (4, 2, 3):  # upstreams answer out of order
        dispatcher.sent[i].complete(b":%d\r\n" % i)
    await settle()
    assert transport.data == b""  # request 0 still owed: nothing may overtake it
    dispatcher.sent[0].complete(b":0\r\n")
    await settle()
    assert transport.data == b":0\r\n"
    dispatcher.sent[1].complete(b":1\r\n")
    await settle()
    assert transport.data == b":0\r\n:1\r\n:2\r\n:3\r\n:4\r\n+PONG\r\n"


async def test_one_write_per_batch_of_ready_replies() -> None:
    session, transport, dispatcher = connect()
    session.data_received(pack_command([b"GET", b"a"]) * 16)
    for pending in dispatcher.sent:
        pending.complete(b"$1\r\nx\r\n")
    await settle()
    assert transport.writes == [b"$1\r\nx\r\n" * 16]


async def test_requests_split_across_reads() -> None:
    session, _transport, dispatcher = connect()
    raw = pack_command([b"SET", b"key", b"v" * 1000])
    for i in range(0, len(raw), 7):
        session.data_received(raw[i : i + 7])
    assert [p.args for p in dispatcher.sent] == [[b"SET", b"key", b"v" * 1000]]


async def test_protocol_error_after_earlier_replies_then_close() -> None:
    session, transport, _dispatcher = connect()
    session.data_received(b"*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\n")
    await settle()
    assert transport.data == b"+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n"
    assert transport.closed


async def test_quit_waits_for_owed_replies() -> None:
    session, transport, dispatcher = connect()
    session.data_received(pack_command([b"GET", b"a"]) + b"QUIT\r\nPING\r\n")
    await settle()
    assert not transport.closed
    dispatcher.sent[0].complete(b"$-1\r\n")
    await settle()
    assert transport.data == b"$-1\r\n+OK\r\n"
    assert transport.closed


async def test_a_client_that_never_reads_is_paused() -> None:
    """One read of 20,000 requests: at most MAX_PENDING_REPLIES are served at a time."""
    session, transport, dispatcher = connect()
    session.data_received(b"".join(pack_command([b"GET", b"%d" % i]) for i in range(20000)))
    assert transport.paused
    done = 0
    while done < len(dispatcher.sent):
        assert session.pending_replies <= MAX_PENDING_REPLIES
        assert transport.paused
        for pending in dispatcher.sent[done:]:
            pending.complete(b":%s\r\n" % pending.args[1])
        done = len(dispatcher.sent)
        await settle()
    assert done == 20000
    assert not transport.paused
    assert transport.data == b"".join(b":%d\r\n" % i for i in range(20000))


async def test_local_connection_commands() -> None:
    session, transport, _ = connect()
    session.data_received(
        b"CLIENT SETNAME app\r\nCLIENT GETNAME\r\nCLIENT ID\r\nSELECT 0\r\nHELLO 2\r\n"
    )
    await settle()
    assert transport.data.startswith(b"+OK\r\n$3\r\napp\r\n:1\r\n+OK\r\n*14\r\n$6\r\nserver\r\n")
