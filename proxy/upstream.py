"""One pipelined connection to a Redis node, shared by many client requests.

Requests are queued with a waiter and written once per loop iteration; replies are cut
from the byte stream by `routing.route.frame_replies` and handed to the waiters in FIFO
order, as raw bytes. On loss, every waiter gets an error reply naming the node. No retries here.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

from proxy.tls import failure_reason
from routing import replies
from routing.resp import pack_command
from routing.route import fill_parts, frame_replies
from routing.slotmap import parse_addr


class Waiter(Protocol):
    """Receives exactly one raw reply (or an error reply) for one request."""

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None: ...


class Failure(enum.Enum):
    """Why a connection failed, as a value (dispatch decides on it, never on the text)."""

    CLOSED = "closed"
    CONNECT = "connect"  # never came up
    LOST = "lost"
    TIMEOUT = "timeout"  # a request waited longer than upstream.command_timeout
    INVALID_REPLY = "invalid_reply"
    AUTH = "auth"


class Discard:
    """Waiter for replies nobody reads (ASKING's +OK)."""

    __slots__ = ()

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        pass


DISCARD = Discard()


class Parts(Protocol):
    """What a Batch fills: a split request or a pipelined read (proxy/dispatch.py)."""

    raws: list[bytes]
    remaining: int

    def finish(self) -> None: ...


class Batch:
    """The waiter of several requests written back to back on one connection, one entry in
    `pending` for all of them: reply i is part `indices[i]` of `parent`. Replies that are
    errors go through `on_error(parent, index, raw, conn)` first, which returns True when
    it took over the part (a redirect or a retry)."""

    __slots__ = ("indices", "next", "on_error", "parent")

    def __init__(
        self,
        parent: Parts,
        indices: list[int],
        on_error: Callable[[Parts, int, bytes, UpstreamConnection], bool],
    ) -> None:
        self.parent = parent
        self.indices = indices
        self.on_error = on_error
        self.next = 0

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        """The next reply, whatever it is (data_received inlines this for the common case)."""
        index = self.indices[self.next]
        self.next += 1
        if raw[0] == 45 and self.on_error(self.parent, index, raw, conn):  # '-'
            return
        parent = self.parent
        parent.raws[index] = raw
        parent.remaining -= 1
        if not parent.remaining:
            parent.finish()


# A bulk reply larger than this that is still incomplete is collected in pieces: adding each
# read to one growing buffer would copy a 100 MB value thousands of times over.
_COLLECT_MIN = 64 * 1024

ASKING = b"*1\r\n$6\r\nASKING\r\n"


def tune_socket(sock: socket.socket, keepalive: float, user_timeout: float) -> None:
    """TCP_NODELAY, and keepalive probes plus TCP_USER_TIMEOUT so that a node that vanished
    without a FIN or RST (dead VM, cut network) fails this socket in seconds."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS has only SO_KEEPALIVE's default
            idle = max(1, round(keepalive))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    if user_timeout > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(user_timeout * 1000))


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_buf",
        "_chunks",
        "_flush_handle",
        "_have",
        "_loop",
        "_need",
        "_on_lost",
        "_out",
        "_tcp",
        "_transport",
        "_why",
        "addr",
        "closed",
        "established",
        "failure",
        "host",
        "last_progress",
        "pending",
        "resp3",
        "sent",
    )

    def __init__(
        self,
        addr: str,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[UpstreamConnection, str], None] | None = None,
        resp3: bool = False,
        tcp: tuple[float, float] = (0.0, 0.0),  # (keepalive, user_timeout) seconds
    ) -> None:
        self.addr = addr
        self._tcp = tcp
        self.resp3 = resp3
        self.host = parse_addr(addr)[0]
        self._loop = loop
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._buf = b""
        # A large bulk reply arriving over many reads: its pieces, joined once complete.
        self._chunks: list[bytes] = []
        self._need = 0  # bytes the reply at the head of _chunks needs in all (0: none)
        self._have = 0
        self._flush_handle: asyncio.Handle | None = None
        self.pending: deque[Waiter] = deque()
        self.closed = False
        self.established = False
        self._why = "connection closed"
        self.failure: Failure | None = None  # set once, when the connection fails
        self.last_progress = loop.time()
        self.sent = 0  # requests written, for the per-node stats

    # --- sending -------------------------------------------------------------------------

    def send(self, raw: bytes, waiter: Waiter) -> None:
        """Queue one request; its reply goes to `waiter`."""
        if self.closed:
            waiter.on_reply(self._lost_reply(self._why), self)
            return
        if not self.pending:
            self.last_progress = self._loop.time()
        self.sent += 1
        self.pending.append(waiter)
        self._out.append(raw)
        if self._flush_handle is None and self._transport is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def send_batch(self, raw: bytes, batch: Batch) -> None:
        """Queue the requests packed back to back in `raw`; their replies go to `batch`."""
        if self.closed:
            reply = self._lost_reply(self._why)
            for _ in batch.indices:
                batch.on_reply(reply, self)
            return
        if not self.pending:
            self.last_progress = self._loop.time()
        self.sent += len(batch.indices)
        self.pending.append(batch)
        self._out.append(raw)
        if self._flush_handle is None and self._transport is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def send_asking(self, raw: bytes, waiter: Waiter) -> None:
        """ASKING and the request back to back on this connection (cluster spec, ASK)."""
        self.send(ASKING, DISCARD)
        self.send(raw, waiter)

    def send_args(self, args: list[bytes] | tuple[bytes, ...], waiter: Waiter) -> None:
        self.send(pack_command(args), waiter)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._transport is None or not self._out:
            return
        out = self._out
        self._out = []
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    # --- protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            tune_socket(sock, *self._tcp)
        self._transport = cast(asyncio.Transport, transport)
        self.established = True
        if self.closed:
            transport.close()
        elif self._out:
            self._flush()

    def data_received(self, data: bytes) -> None:
        if self._need:
            self._chunks.append(data)
            self._have += len(data)
            self.last_progress = self._loop.time()
            if self._have < self._need:
                return
            buf = b"".join(self._chunks)
            self._chunks = []
            self._need = 0
        else:
            buf = self._buf + data if self._buf else data
        ends: list[int] = []
        need, error = frame_replies(buf, ends)
        pending = self.pending
        pos = 0
        first = 0
        count = len(ends)
        while first < count:
            if not pending:
                self.abort("sent a reply nobody asked for")
                return
            waiter = pending[0]
            if type(waiter) is Batch:
                # Batch.on_reply for a run of replies at once (compiled): the parts of
                # pipelined and split requests. An error reply stops the run.
                done = waiter.next
                parent = waiter.parent
                taken = fill_parts(buf, ends, first, pos, parent.raws, waiter.indices, done)
                if taken:
                    first += taken
                    pos = ends[first - 1]
                    waiter.next = done + taken
                    if done + taken == len(waiter.indices):
                        pending.popleft()
                    parent.remaining -= taken
                    if not parent.remaining:
                        parent.finish()
                    continue
                if done + 1 == len(waiter.indices):
                    pending.popleft()
            else:
                pending.popleft()
            end = ends[first]
            first += 1
            waiter.on_reply(buf[pos:end], self)
            pos = end
            if self.closed:  # a waiter gave up on this connection (failed handshake)
                return
        if error is not None:
            self.abort(f"sent an invalid reply ({error})", Failure.INVALID_REPLY)
            return
        size = len(buf)
        if need > _COLLECT_MIN:  # a large bulk reply is still arriving: collect its pieces
            self._chunks = [buf[pos:] if pos else buf]
            self._need = need
            self._have = size - pos
            self._buf = b""
        else:
            self._buf = buf[pos:] if pos < size else b""
        self.last_progress = self._loop.time()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ssl.SSLError):  # a node refused us after the handshake (TLS 1.3)
            self._fail(failure_reason(exc), Failure.LOST)
            return
        self._fail("connection lost" if exc is None else f"connection lost ({exc})", Failure.LOST)

    # --- failure -------------------------------------------------------------------------

    def abort(self, why: str, failure: Failure = Failure.LOST) -> None:
        """Give up on this connection: waiters get an error, the socket is dropped."""
        if self._transport is not None:
            self._transport.abort()
        self._fail(why, failure)

    def connect_failed(self, why: str) -> None:
        self._fail(why, Failure.CONNECT)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail("connection closed", Failure.CLOSED)

    def _fail(self, why: str, failure: Failure) -> None:
        first = not self.closed
        self.closed = True
        if first:
            self._why = why
            self.failure = failure
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._out.clear()
        if self.pending:
            reply = self._lost_reply(why)
            pending, self.pending = self.pending, deque()
            while pending:
                waiter = pending.popleft()
                if type(waiter) is Batch:
                    for _ in range(waiter.next, len(waiter.indices)):
                        waiter.on_reply(reply, self)
                else:
                    waiter.on_reply(reply, self)
        if first and self._on_lost is not None:
            self._on_lost(self, why)

    def _lost_reply(self, why: str) -> bytes:
        return replies.upstream_error(self.addr, why).encode()

    @property
    def idle(self) -> bool:
        return not self.pending


class FutureWaiter:
    """Bridges a pipelined reply to a coroutine (topology, fan-outs, sentinel queries)."""

    __slots__ = ("future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[bytes] = loop.create_future()

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if not self.future.done():
            self.future.set_result(raw)
