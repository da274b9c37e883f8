"""ClientSession through the real request path (route_batch, Dispatcher, UpstreamConnection)
with fake transports on both sides: ordering, splits, redirects, failures, closing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from conf import Config
from conf.schema import AuthConfig, LimitsConfig
from proxy.dispatch import Dispatcher
from proxy.session import ClientSession
from proxy.upstream import Failure, UpstreamConnection
from routing import replies
from routing.commands import CommandTable, parse_command_reply
from routing.plan import Router
from routing.resp import RequestLimits, pack_command, parse_reply, parse_requests
from routing.slotmap import SlotMap
from routing.slots import key_hash_slot

MAX_PENDING_REPLIES = LimitsConfig().max_pending_replies
DATA = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"
A, B, C = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"


@cache
def table() -> CommandTable:
    return parse_command_reply(parse_reply(DATA.read_bytes()))


def three_shards() -> SlotMap:
    owners = [A] * 5461 + [B] * 5461 + [C] * 5462
    return SlotMap(owners, [])


def key_on(node: str, n: int = 0) -> bytes:
    """The n-th key (k0, k1, ...) whose slot `node` owns in three_shards()."""
    owners = three_shards().owners
    found = (b"k%d" % i for i in range(100000) if owners[key_hash_slot(b"k%d" % i)] == node)
    for _ in range(n):
        next(found)
    return next(found)


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

    def abort(self) -> None:
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


class Node:
    """One upstream node: a real UpstreamConnection on a fake transport."""

    def __init__(self, addr: str, loop: asyncio.AbstractEventLoop) -> None:
        self.addr = addr
        self.conns: list[UpstreamConnection] = []
        self.loop = loop
        self.transports: list[FakeTransport] = []
        self.connect()

    def connect(self) -> UpstreamConnection:
        conn = UpstreamConnection(self.addr, self.loop)
        transport = FakeTransport()
        conn.connection_made(transport)
        self.conns.append(conn)
        self.transports.append(transport)
        return conn

    @property
    def conn(self) -> UpstreamConnection:
        return self.conns[-1]

    def requests(self) -> list[list[bytes]]:
        """Every request this node got, over all its connections, in order."""
        raw = b"".join(b"".join(t.writes) for t in self.transports)
        parsed = parse_requests(raw, RequestLimits())
        assert parsed.error is None and parsed.consumed == len(raw)
        return parsed.requests

    def answer(self, raw: bytes) -> None:
        self.conn.data_received(raw)


class FakePool:
    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.first: tuple[dict[str, UpstreamConnection], dict[str, UpstreamConnection]] = (
            {},
            {},
        )
        self.refresh()

    def refresh(self) -> None:
        for addr, node in self.nodes.items():
            self.first[0][addr] = self.first[1][addr] = node.conn

    def get(self, addr: str, resp3: bool = False) -> UpstreamConnection:
        node = self.nodes[addr]
        if node.conn.closed:  # a new connection replaces a lost one, as the real pool does
            node.connect()
            self.refresh()
        return node.conn

    def is_down(self, addr: str) -> bool:
        return False


class FakeTopology:
    def __init__(self) -> None:
        self.table = table()
        self.router = Router(self.table, "cluster")
        self.server_version = "7.0.15"
        self.slotmap: SlotMap | None = three_shards()
        self.read_targets = None
        self.read_node = None
        self.refreshes_requested = 0
        self.redirects = 0
        self.no_map = replies.NO_TOPOLOGY

    def any_primary(self) -> str:
        return A

    def remap(self, addr: str) -> str:
        return addr

    def request_refresh(self) -> None:
        self.refreshes_requested += 1

    def park(self, resend: Callable[[], None]) -> bool:
        return False  # no failover runs (sentinel mode's wait for a new primary)

    def on_moved(self, slot: int, addr: str) -> None:
        assert self.slotmap is not None
        self.slotmap = self.slotmap.with_moved(slot, addr)


class FakeState:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.config = Config()
        self.request_limits = RequestLimits()
        self.topology = FakeTopology()
        self.nodes = {addr: Node(addr, loop) for addr in (A, B, C)}
        self.pool = FakePool(self.nodes)
        self.dispatcher = Dispatcher(
            self.topology,  # type: ignore[arg-type]
            self.pool,  # type: ignore[arg-type]
            self.config.upstream,
            loop,
        )
        self.sessions: set[ClientSession] = set()
        self._ids = iter(range(1, 1000))

    def next_client_id(self) -> int:
        return next(self._ids)

    def on_session_open(self, session: ClientSession) -> bool:
        self.sessions.add(session)
        return True

    def on_session_closed(self, session: ClientSession) -> None:
        self.sessions.discard(session)


def connect(auth: AuthConfig | None = None) -> tuple[ClientSession, FakeTransport, FakeState]:
    state = FakeState(asyncio.get_running_loop())
    if auth is not None:
        state.config = dataclasses.replace(state.config, auth=auth)
    session = ClientSession(state)  # type: ignore[arg-type]
    transport = FakeTransport()
    session.connection_made(transport)
    return session, transport, state


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_pipelined_replies_keep_request_order() -> None:
    session, transport, state = connect()
    a, b, c = (state.nodes[n] for n in (A, B, C))
    keys = [key_on(A), key_on(B), key_on(C), key_on(A, 1), key_on(B, 1)]
    session.data_received(b"".join(pack_command([b"GET", k]) for k in keys) + b"PING\r\n")
    await settle()
    assert a.requests() == [[b"GET", keys[0]], [b"GET", keys[3]]]
    assert b.requests() == [[b"GET", keys[1]], [b"GET", keys[4]]]
    assert c.requests() == [[b"GET", keys[2]]]
    c.answer(b":2\r\n")  # upstreams answer out of order
    b.answer(b":1\r\n:4\r\n")
    await settle()
    assert transport.data == b""  # A still owes request 0: nothing may overtake it
    a.answer(b":0\r\n:3\r\n")
    await settle()
    assert transport.data == b":0\r\n:1\r\n:2\r\n:3\r\n:4\r\n+PONG\r\n"


async def test_one_write_per_batch_of_ready_replies() -> None:
    session, transport, state = connect()
    key = key_on(B)
    session.data_received(pack_command([b"GET", key]) * 16)
    await settle()
    state.nodes[B].answer(b"$1\r\nx\r\n" * 16)
    await settle()
    assert transport.writes == [b"$1\r\nx\r\n" * 16]


async def test_one_request_per_read_is_answered_as_it_comes() -> None:
    session, transport, state = connect()
    for n in range(3):
        session.data_received(pack_command([b"SET", key_on(C), b"%d" % n]))
        await settle()
        state.nodes[C].answer(b"+OK\r\n")
        assert transport.data == b"+OK\r\n" * (n + 1)


async def test_requests_split_across_reads() -> None:
    session, _transport, state = connect()
    key = key_on(A)
    raw = pack_command([b"SET", key, b"v" * 1000])
    for i in range(0, len(raw), 7):
        session.data_received(raw[i : i + 7])
    await settle()
    assert state.nodes[A].requests() == [[b"SET", key, b"v" * 1000]]


async def test_mget_split_over_nodes_is_merged_in_key_order() -> None:
    session, transport, state = connect()
    keys = [key_on(C), key_on(A), key_on(B), key_on(A, 1)]
    session.data_received(pack_command([b"MGET", *keys]) + pack_command([b"GET", key_on(B, 1)]))
    await settle()
    # Each key has a slot of its own: one GET each, the node's parts in one write.
    assert state.nodes[A].requests() == [[b"GET", keys[1]], [b"GET", keys[3]]]
    assert state.nodes[B].requests() == [[b"GET", keys[2]], [b"GET", key_on(B, 1)]]
    assert state.nodes[C].requests() == [[b"GET", keys[0]]]
    state.nodes[A].answer(b"$1\r\na\r\n$-1\r\n")
    state.nodes[C].answer(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n")
    state.nodes[B].answer(b"$1\r\nb\r\n$4\r\nnext\r\n")
    await settle()
    assert transport.data == b"*4\r\n$-1\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n$4\r\nnext\r\n"


async def test_del_split_sums_and_an_error_wins() -> None:
    session, transport, state = connect()
    session.data_received(pack_command([b"DEL", key_on(A), key_on(B)]) * 2)
    await settle()
    state.nodes[A].answer(b":1\r\n:1\r\n")
    state.nodes[B].answer(b":1\r\n-ERR boom\r\n")
    await settle()
    assert transport.data == b":2\r\n-ERR boom\r\n"


async def test_local_replies_between_forwarded_requests() -> None:
    session, transport, state = connect()
    key = key_on(A)
    session.data_received(
        b"PING\r\n" + pack_command([b"GET", key]) + b"GET\r\nECHO hi\r\n" + b"CLIENT ID\r\n"
    )
    await settle()
    state.nodes[A].answer(b"$1\r\nv\r\n")
    await settle()
    assert transport.data == (
        b"+PONG\r\n$1\r\nv\r\n-ERR wrong number of arguments for 'get' command\r\n"
        b"$2\r\nhi\r\n:1\r\n"
    )


async def test_moved_updates_the_map_and_resends_there() -> None:
    session, transport, state = connect()
    key = key_on(A)
    slot = key_hash_slot(key)
    session.data_received(pack_command([b"GET", key]) + pack_command([b"GET", key_on(B)]))
    await settle()
    state.nodes[B].answer(b"$1\r\nb\r\n")
    state.nodes[A].answer(b"-MOVED %d %s\r\n" % (slot, C.encode()))
    await settle()
    assert state.topology.slotmap is not None
    assert state.topology.slotmap.owners[slot] == C
    assert state.nodes[C].requests() == [[b"GET", key]]
    assert transport.data == b""
    state.nodes[C].answer(b"$1\r\nc\r\n")
    await settle()
    assert transport.data == b"$1\r\nc\r\n$1\r\nb\r\n"


async def test_ask_sends_asking_first_and_keeps_the_map() -> None:
    session, transport, state = connect()
    key = key_on(B)
    slot = key_hash_slot(key)
    session.data_received(pack_command([b"SET", key, b"v"]))
    await settle()
    state.nodes[B].answer(b"-ASK %d %s\r\n" % (slot, C.encode()))
    await settle()
    assert state.nodes[C].requests() == [[b"ASKING"], [b"SET", key, b"v"]]
    state.nodes[C].answer(b"+OK\r\n+OK\r\n")
    await settle()
    assert transport.data == b"+OK\r\n"
    assert state.topology.slotmap is not None
    assert state.topology.slotmap.owners[slot] == B


async def test_redirects_stop_at_the_budget_and_the_last_error_is_the_reply() -> None:
    session, transport, state = connect()
    key = key_on(A)
    slot = key_hash_slot(key)
    session.data_received(pack_command([b"GET", key]))
    budget = state.config.upstream.max_redirects
    nodes = [A, B]
    for hop in range(budget + 1):
        await settle()
        here, there = nodes[hop % 2], nodes[(hop + 1) % 2]
        state.nodes[here].answer(b"-MOVED %d %s\r\n" % (slot, there.encode()))
    await settle()
    last_target = nodes[(budget + 1) % 2].encode()
    assert transport.data == b"-MOVED %d %s\r\n" % (slot, last_target)


async def test_a_lost_write_is_not_sent_again() -> None:
    session, transport, state = connect()
    session.data_received(pack_command([b"SET", key_on(A), b"v"]))
    await settle()
    state.nodes[A].conn.connection_lost(None)
    await settle()
    assert transport.data == b"-ERR upstream %s connection lost\r\n" % A.encode()
    assert len(state.nodes[A].conns) == 1  # no new connection: nothing was resent


async def test_a_timed_out_read_is_not_sent_again() -> None:
    session, transport, state = connect()
    session.data_received(pack_command([b"GET", key_on(A)]))
    await settle()
    state.nodes[A].conn.abort("timed out after 5s", Failure.TIMEOUT)
    await settle()
    assert transport.data == b"-ERR upstream %s timed out after 5s\r\n" % A.encode()
    assert len(state.nodes[A].conns) == 1


async def test_a_lost_read_is_sent_again() -> None:
    session, transport, state = connect()
    key = key_on(A)
    session.data_received(pack_command([b"GET", key]))
    await settle()
    state.nodes[A].conn.connection_lost(None)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while len(state.nodes[A].requests()) < 2:
        assert loop.time() < deadline, "the read was not sent again"
        await asyncio.sleep(0.005)
    assert state.nodes[A].requests() == [[b"GET", key], [b"GET", key]]
    state.nodes[A].answer(b"$1\r\nv\r\n")
    await settle()
    assert transport.data == b"$1\r\nv\r\n"


async def test_no_slot_map_answers_clusterdown_and_asks_for_one() -> None:
    session, transport, state = connect()
    state.topology.slotmap = None
    session.data_received(pack_command([b"GET", b"a"]) + pack_command([b"GET", b"b"]))
    await settle()
    assert transport.data == (
        b"-CLUSTERDOWN slotless has no slot map yet (no seed node reachable)\r\n" * 2
    )
    assert state.topology.refreshes_requested >= 1


async def test_protocol_error_after_earlier_replies_then_close() -> None:
    session, transport, _state = connect()
    session.data_received(b"*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\n")
    await settle()
    assert transport.data == b"+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n"
    assert transport.closed


async def test_quit_waits_for_owed_replies() -> None:
    session, transport, state = connect()
    session.data_received(pack_command([b"GET", key_on(A)]) + b"QUIT\r\nPING\r\n")
    await settle()
    assert not transport.closed
    state.nodes[A].answer(b"$-1\r\n")
    await settle()
    assert transport.data == b"$-1\r\n+OK\r\n"
    assert transport.closed


async def test_a_client_that_never_reads_is_paused() -> None:
    """One read of 20,000 requests: at most MAX_PENDING_REPLIES are served at a time."""
    session, transport, state = connect()
    key = key_on(B)
    session.data_received(b"".join(pack_command([b"INCR", key]) for _ in range(20000)))
    assert transport.paused
    node = state.nodes[B]
    answered = 0
    while answered < 20000:
        await settle()
        assert session.pending_replies <= MAX_PENDING_REPLIES
        sent = len(node.requests())
        assert sent > answered, "no progress"
        node.answer(b"".join(b":%d\r\n" % (i + 1) for i in range(answered, sent)))
        answered = sent
    await settle()
    assert not transport.paused
    assert transport.data == b"".join(b":%d\r\n" % (i + 1) for i in range(20000))


async def test_local_connection_commands() -> None:
    session, transport, _ = connect()
    session.data_received(
        b"CLIENT SETNAME app\r\nCLIENT GETNAME\r\nCLIENT ID\r\nSELECT 0\r\nHELLO 2\r\n"
    )
    await settle()
    assert transport.data.startswith(b"+OK\r\n$3\r\napp\r\n:1\r\n+OK\r\n*14\r\n$6\r\nserver\r\n")


async def test_hello_syntax_error_echoes_the_option_as_written() -> None:
    """Drift fixed (issue 12): proxy/local.py echoed the option lowercased; Redis 7.0 as sent."""
    session, transport, _ = connect()
    session.data_received(pack_command([b"HELLO", b"2", b"FOO"]))
    await settle()
    assert transport.data == b"-ERR Syntax error in HELLO option 'FOO'\r\n"


async def test_hello_applies_its_options_in_order_like_redis_7_0() -> None:
    """Drift fixed (issue 12): proxy/auth.py checked only HELLO's last AUTH, after every
    option; Redis 7.0 (networking.c helloCommand) applies each option as it reads it, so a
    good AUTH stays in force when a later one fails, and SETNAME works before NOAUTH."""
    session, transport, _ = connect(AuthConfig(password="pw"))
    session.data_received(
        pack_command([b"HELLO", b"3", b"SETNAME", b"early"])
        + pack_command([b"HELLO", b"3", b"AUTH", b"default", b"pw", b"AUTH", b"default", b"x"])
        + pack_command([b"CLIENT", b"GETNAME"])
    )
    await settle()
    assert transport.data == (
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
        b"HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
        b"the RESP protocol version at the same time\r\n"
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        b"$5\r\nearly\r\n"
    )
    assert session.client.authenticated and not session.resp3


async def test_drain_writes_what_is_owed_then_closes_and_serves_nothing_new() -> None:
    session, transport, state = connect()
    key = key_on(B)
    session.data_received(pack_command([b"GET", key]))
    await settle()
    session.drain()
    session.data_received(pack_command([b"GET", key_on(A)]))  # arrives during the drain
    await settle()
    assert not transport.closed  # a reply is still owed
    state.nodes[B].answer(b"$1\r\nx\r\n")
    await settle()
    assert transport.data == b"$1\r\nx\r\n" and transport.closed
    assert state.nodes[A].requests() == []  # nothing new went upstream


async def test_drain_closes_a_client_owed_nothing_at_once() -> None:
    session, transport, _state = connect()
    session.data_received(b"PING\r\n")
    assert transport.data == b"+PONG\r\n"
    session.drain()
    assert transport.closed
