"""Pipe: a client's own upstream connection, bytes passed through both ways.

Standalone mode uses it for per-connection state (MULTI, blocking commands, SUBSCRIBE,
SELECT n, CLIENT ...): the server then keeps that state exactly as it would for a direct
client. The pipe sits last in the session's reply queue and streams from there.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import cast

import structlog

from proxy.contracts import ServerContext, SessionLike
from proxy.pool import UpstreamPool
from proxy.upstream import tune_socket
from routing import replies
from routing.resp import Args, is_error, pack_command, reply_end

log = structlog.get_logger("slotless.pipe")

_HIGH_WATER = 1024 * 1024
_SUBSCRIBES = frozenset((b"subscribe", b"psubscribe", b"ssubscribe"))
_XREADS = frozenset((b"xread", b"xreadgroup"))


class Pipe(asyncio.Protocol):
    def __init__(self, session: SessionLike, state: ServerContext) -> None:
        self._session = session
        self.reply: bytes | None = b""  # always "ready": the session streams take()
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._buf = bytearray()
        self._skip_auth = False
        self._skip_replies = 1
        self._paused = False
        self._closed = False
        # inject(): (the server's error line to find, the reply that replaces it)
        self._swaps: deque[tuple[bytes, bytes]] = deque()
        self._nonce = os.urandom(8).hex().encode()
        self._injected = 0
        upstream = state.config.upstream
        handshake = state.pool.handshake(session.resp3)
        if handshake is not None:
            self._out.append(handshake)
            self._skip_auth = True
        if session.client.name is not None:
            # SETNAME's +OK is swallowed with the handshake reply below.
            self._out.append(pack_command([b"CLIENT", b"SETNAME", session.client.name]))
            self._skip_replies = 2 if self._skip_auth else 1
            self._skip_auth = True
        self._tcp = state.pool.tcp
        self._table = state.topology.table
        self.blocked = False  # a blocking command sent, nothing received since
        self.subscribed = False
        self._addr: str | None = None
        task = state.loop.create_task(self._open(state, upstream.connect_timeout, state.pool))
        state.track(task)

    @property
    def addr(self) -> str | None:
        """The node this pipe is connected (or connecting) to; None before it is known."""
        return self._addr

    async def _open(self, state: ServerContext, connect_timeout: float, pool: UpstreamPool) -> None:
        topology = state.topology
        addr = await topology.wait_primary()  # sentinel mode: a failover may be running
        if addr is None:
            self._buf += topology.no_map.encode()
            self._session.on_ready()
            self._session.close_after_replies()
            return
        self._addr = addr
        try:
            async with asyncio.timeout(connect_timeout):
                await pool.connect(lambda: self, addr)
        except (OSError, TimeoutError) as exc:
            why = pool.failure_reason(exc)
            log.warning("upstream_connect_failed", node=addr, reason=why)
            self._buf += replies.upstream_error(addr, why).encode()
            self._session.on_ready()
            self._session.close_after_replies()

    def send_args(self, args: Args) -> None:
        """Send one request, noting whether it leaves the client waiting on purpose (a
        blocking command, a subscription): such a client is not idle (client_idle_timeout)."""
        name = args[0].lower()
        if name in _SUBSCRIBES:
            self.subscribed = True
        else:
            spec = self._table.get(name)
            if (
                spec is not None
                and spec.is_blocking
                and (name not in _XREADS or any(a.lower() == b"block" for a in args))
            ):
                self.blocked = True
        self.send(pack_command(args))

    def send(self, raw: bytes) -> None:
        if self._closed:
            return
        if self._transport is None:
            self._out.append(raw)
        else:
            self._transport.write(raw)

    def inject(self, reply: bytes) -> None:
        """Answer one request here, in order with the server's replies (proxy/auth.py:
        NOAUTH, NOPERM): the server gets an unknown command, whose error line is swapped
        for `reply`. In MULTI that flags the transaction (EXECABORT) as a refusal does."""
        self._injected += 1
        marker = b"slotless-reply-%s-%d" % (self._nonce, self._injected)
        self._swaps.append((replies.unknown_command_start(marker), reply))
        self.send(pack_command([marker]))

    def _swap(self) -> None:
        swaps = self._swaps
        i = 0
        while i < len(swaps):
            line, reply = swaps[i]
            start = self._buf.find(line)
            end = self._buf.find(b"\r\n", start) if start >= 0 else -1
            if end < 0:
                i += 1
                continue
            self._buf[start : end + 2] = reply
            # Replies come in order: earlier ones not seen were muted (CLIENT REPLY OFF).
            for _ in range(i + 1):
                swaps.popleft()
            i = 0

    def take(self) -> bytes:
        if self._swaps:  # keep back a line that may be the start of a swapped one
            cut = self._buf.rfind(b"\n") + 1
            data = bytes(self._buf[:cut])
            del self._buf[:cut]
        else:
            data = bytes(self._buf)
            self._buf.clear()
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, *self._tcp)
        if self._closed:
            transport.close()
            return
        if self._out:
            self._transport.write(b"".join(self._out))
            self._out.clear()

    def data_received(self, data: bytes) -> None:
        self.blocked = False
        self._buf += data
        while self._skip_auth:
            end = reply_end(self._buf)
            if end < 0:
                return
            if is_error(bytes(self._buf[:end])):
                log.error("upstream_handshake_failed", node=self._addr)
            del self._buf[:end]
            self._skip_replies -= 1
            self._skip_auth = self._skip_replies > 0
        if self._swaps:
            self._swap()
        if len(self._buf) > _HIGH_WATER and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._session.on_ready()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._closed = True
            self._session.abort()

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def on_primary_changed(self, primary: str | None) -> None:
        """Sentinel mode: the primary this pipe's state lives on is no longer the primary.
        The client is disconnected, as Redis disconnects a demoted primary's clients
        (sentinel's CLIENT KILL): its transaction, blocked command or database choice
        cannot follow it to the new primary."""
        if self._addr is None or self._addr == primary or self._closed:
            return
        log.info("pipe_primary_changed", node=self._addr, primary=primary)
        self._closed = True
        self._session.abort()
        if self._transport is not None:
            self._transport.close()
