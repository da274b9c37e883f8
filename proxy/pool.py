"""UpstreamPool: the shared connection(s) to every node, created lazily and replaced on loss.

`get(addr)` always returns a usable connection object at once: a new one buffers its
requests until the TCP connect (and AUTH) completes, or fails them with an error naming
the node. A sweeper fails connections whose oldest request exceeds command_timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable

import structlog

from conf import UpstreamConfig
from proxy.tls import failure_reason, upstream_tls
from proxy.upstream import DISCARD, Failure, UpstreamConnection
from routing.resp import is_error, pack_command
from routing.slotmap import parse_addr

log = structlog.get_logger("slotless.pool")

_READONLY = pack_command([b"READONLY"])


class _AuthCheck:
    __slots__ = ("addr",)

    def __init__(self, addr: str) -> None:
        self.addr = addr

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if is_error(raw) and not conn.closed:  # not our own "connect failed" reply
            log.error(
                "upstream_handshake_failed",
                node=self.addr,
                reply=raw[1:-2].decode(errors="replace"),
            )
            conn.abort("authentication failed", Failure.AUTH)


class UpstreamPool:
    def __init__(
        self,
        config: UpstreamConfig,
        loop: asyncio.AbstractEventLoop,
        on_node_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        self._config = config
        self._loop = loop
        self._on_node_lost = on_node_lost
        self._per_node = max(1, config.connections_per_node)
        # Shared connections per (node, protocol): RESP3 clients get RESP3 upstreams, so
        # replies are still forwarded byte for byte in the client's protocol.
        self._conns: dict[tuple[str, bool], list[UpstreamConnection]] = {}
        # The hot path's view: the first shared connection per node, RESP2 and RESP3.
        self.first: tuple[dict[str, UpstreamConnection], dict[str, UpstreamConnection]] = ({}, {})
        self._rr = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        # A node that refused a connect is not asked again before this moment: requests
        # for it fail at once instead of each paying (and logging) a connect attempt.
        self._down: dict[str, tuple[float, float, str]] = {}  # addr -> (until, backoff, why)
        self._dedicated: set[UpstreamConnection] = set()
        self.tcp = (config.tcp_keepalive, config.tcp_user_timeout)
        self._tls = upstream_tls(config.tls)
        self._readonly = config.mode == "cluster" and config.read_from != "primary"
        # Per node, for /metrics and INFO: requests of connections now gone, connections
        # lost or never made, and shared connections opened again after the first.
        self.retired_sent: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reconnects: Counter[str] = Counter()
        self._opened: set[tuple[str, bool]] = set()
        self._auth: list[bytes] = []
        if config.password is not None:
            self._auth = [(config.username or "default").encode(), config.password.encode()]

    def start(self) -> None:
        self._schedule_sweep()

    def get(self, addr: str, resp3: bool = False) -> UpstreamConnection:
        """A connection to `addr` (connecting if needed); spreads over connections_per_node."""
        if self._per_node == 1:
            conn = self.first[resp3].get(addr)
            if conn is not None and not conn.closed:
                return conn
        key = (addr, resp3)
        conns = self._conns.get(key)
        if conns is None:
            conns = self._conns[key] = []
        if len(conns) < self._per_node:
            if key in self._opened and len(conns) == 0:
                self.reconnects[addr] += 1
            self._opened.add(key)
            conn = self._connect(addr, resp3)
            conns.append(conn)
            self.first[resp3][addr] = conns[0]
            return conn
        conn = conns[next(self._rr) % self._per_node] if self._per_node > 1 else conns[0]
        if conn.closed:
            conns.remove(conn)
            self.reconnects[addr] += 1
            conn = self._connect(addr, resp3)
            conns.append(conn)
            self.first[resp3][addr] = conns[0]
        return conn

    def dedicated(self, addr: str, resp3: bool = False) -> UpstreamConnection:
        """A connection of `addr`'s own for one client's state (a transaction, a blocking
        command): never shared, not failed by the command_timeout sweeper; the caller
        closes it. Handshake and connect backoff as for shared connections."""
        conn = self._connect(addr, resp3, readonly=False)  # state and writes: primaries only
        self._dedicated.add(conn)
        return conn

    def down_reason(self, addr: str) -> str | None:
        """Why the last connect to `addr` failed, while it is marked down."""
        down = self._down.get(addr)
        return None if down is None else down[2]

    def is_down(self, addr: str) -> bool:
        """`addr` refused a connect and its backoff has not expired yet."""
        down = self._down.get(addr)
        return down is not None and self._loop.time() < down[0]

    def handshake(self, resp3: bool) -> bytes | None:
        """What a new upstream connection sends first: AUTH and/or HELLO 3, or nothing."""
        if resp3:
            return pack_command([b"HELLO", b"3", *([b"AUTH", *self._auth] if self._auth else [])])
        if self._auth:
            return pack_command([b"AUTH", *self._auth])
        return None

    def _connect(self, addr: str, resp3: bool, readonly: bool = True) -> UpstreamConnection:
        conn = UpstreamConnection(addr, self._loop, self._lost, resp3, self.tcp)
        down = self._down.get(addr)
        if down is not None and self._loop.time() < down[0]:
            conn.connect_failed(down[2])
            return conn
        handshake = self.handshake(resp3)
        if handshake is not None:
            conn.send(handshake, _AuthCheck(addr))
        if readonly and self._readonly:
            conn.send(_READONLY, DISCARD)  # replicas serve reads (harmless on a primary)
        task = self._loop.create_task(self._open(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def connect(self, factory: Callable[[], asyncio.Protocol], addr: str) -> None:
        """Open one connection to `addr` for `factory`'s protocol, over TLS when
        upstream.tls says so: every upstream connection, shared or not, is made here."""
        host, port = parse_addr(addr)
        if self._tls is None:
            await self._loop.create_connection(factory, host, port)
        else:
            await self._loop.create_connection(factory, host, port, **self._tls.connect_args(host))

    def failure_reason(self, exc: BaseException) -> str:
        """Why connect() raised `exc`, in words for logs and error replies."""
        return failure_reason(exc, tls=self._tls is not None)

    async def _open(self, conn: UpstreamConnection) -> None:
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                await self.connect(lambda: conn, conn.addr)
        except (OSError, TimeoutError) as exc:
            why = self.failure_reason(exc)
            self._mark_down(conn.addr, why)
            conn.connect_failed(why)
            return
        if self._down.pop(conn.addr, None) is not None:
            log.info("upstream_reachable", node=conn.addr)

    def _mark_down(self, addr: str, why: str) -> None:
        previous = self._down.get(addr)
        config = self._config
        backoff = (
            min(previous[1] * 2, config.reconnect_backoff_max)
            if previous
            else config.reconnect_backoff
        )
        self._down[addr] = (self._loop.time() + backoff, backoff, why)
        if previous is None:
            log.warning("upstream_connect_failed", node=addr, reason=why)

    def _lost(self, conn: UpstreamConnection, why: str) -> None:
        self.retired_sent[conn.addr] += conn.sent
        conn.sent = 0
        if conn in self._dedicated:
            self._dedicated.discard(conn)
            if why == "connection closed":
                return  # closed by its owner when done (conn.close()): not a node failure
        conns = self._conns.get((conn.addr, conn.resp3))
        if conns is not None and conn in conns:
            conns.remove(conn)
        if self.first[conn.resp3].get(conn.addr) is conn:
            del self.first[conn.resp3][conn.addr]
        if not self._closed:
            self.errors[conn.addr] += 1
            if conn.established:
                log.warning("upstream_connection_lost", node=conn.addr, reason=why)
            if self._on_node_lost is not None:
                self._on_node_lost(conn.addr, why)

    def _schedule_sweep(self) -> None:
        interval = min(1.0, max(0.05, self._config.command_timeout / 4))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self._loop.time()
        limit = self._config.command_timeout
        for conns in list(self._conns.values()):
            for conn in list(conns):
                if conn.pending and now - conn.last_progress > limit:
                    conn.abort(f"timed out after {limit:g}s", Failure.TIMEOUT)
        if not self._closed:
            self._schedule_sweep()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conns in self._conns.values():
            for conn in conns:
                conn.close()
        self._conns.clear()
        for conn in list(self._dedicated):
            conn.close()
        self.first[0].clear()
        self.first[1].clear()
        for task in self._tasks:
            task.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def node_stats(self) -> dict[str, tuple[int, int]]:
        """Per node: (open connections, requests sent over all its connections so far)."""
        stats = {addr: (0, sent) for addr, sent in self.retired_sent.items()}
        for conn in [c for conns in self._conns.values() for c in conns] + list(self._dedicated):
            active, sent = stats.get(conn.addr, (0, 0))
            up = conn.established and not conn.closed
            stats[conn.addr] = (active + up, sent + conn.sent)
        return stats

    def addresses(self) -> list[str]:
        return list(dict.fromkeys(addr for addr, _ in self._conns))
