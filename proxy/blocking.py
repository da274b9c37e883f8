"""Blocking commands in cluster mode: BLPOP & co., XREAD(GROUP) BLOCK (issue 5).

Each runs on a dedicated upstream connection to its slot's primary (never a shared one:
a blocked connection serves nobody else), taken from a bounded set per (node, protocol)
and reused afterwards. A client's blocking commands run one after the other, as a blocked
Redis client runs nothing else; its other commands still go their usual way (shared
connections) and may execute before an earlier blocking command has returned.

A client that disconnects while blocked: the node's id for that connection gets
`CLIENT UNBLOCK` on a shared connection; if the pop happened first, the element is put
back (LPUSH/RPUSH/ZADD, routing/blocking.py), so nothing vanishes. MOVED/ASK follow the
slot (with the time left), UNBLOCKED/CLUSTERDOWN/TRYAGAIN retry within
upstream.retry_timeout, a lost connection is an error reply: never an eternal hang.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Final, Protocol

import structlog

from proxy.contracts import ServerContext, SessionLike
from proxy.dispatch import Request
from proxy.upstream import Failure, UpstreamConnection
from routing import replies
from routing.blocking import ANY_NODE, Timeout, blocking_slot, parse_timeout, rearm, restore_command
from routing.redirect import parse_redirect
from routing.resp import Args, ErrorReply, error_message, is_error, pack_command

log = structlog.get_logger("slotless.blocking")

TOO_MANY: Final = replies.TOO_MANY_BLOCKED.encode()
_CLIENT_ID: Final = pack_command([b"CLIENT", b"ID"])
# Errors after which the blocking command certainly did not pop: send it again.
_RETRY: Final = (b"-UNBLOCKED", b"-CLUSTERDOWN", b"-TRYAGAIN", b"-LOADING", b"-MASTERDOWN")
_UPSTREAM: Final = replies.UPSTREAM_ERROR_PREFIX
_UNBLOCK_RETRY: Final = 0.01  # CLIENT UNBLOCK raced ahead of the command: ask again
_UNBLOCK_TRIES: Final = 300  # then close the connection: the node drops what it blocked


class _Link:
    """A dedicated connection and the id the node gave it (CLIENT ID), for CLIENT UNBLOCK."""

    __slots__ = ("conn", "id", "op")

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.id: int | None = None
        self.op: _Op | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        """CLIENT ID's reply."""
        if raw[:1] == b":":
            self.id = int(raw[1:-2])
        op = self.op
        if op is not None and op.orphaned:
            op.unblock()


class Links:
    """The dedicated connections of one server: checked out, and idle per (node, resp3)."""

    def __init__(self, state: ServerContext) -> None:
        self._state = state
        self._idle: dict[tuple[str, bool], list[_Link]] = {}
        self.active = 0
        # Kept open for reuse, per (node, protocol); upstream.* applies on a restart.
        self._max_idle = state.config.upstream.max_idle_dedicated

    def acquire(self, addr: str, resp3: bool) -> _Link | None:
        # Past limits.max_blocked_clients (read now: a reload applies) a blocking command
        # gets TOO_MANY at once rather than waiting for a free connection.
        if self.active >= self._state.config.limits.max_blocked_clients:
            return None
        self.active += 1
        idle = self._idle.get((addr, resp3))
        while idle:
            link = idle.pop()
            if not link.conn.closed and link.id is not None:
                return link
        link = _Link(self._state.pool.dedicated(addr, resp3))
        link.conn.send(_CLIENT_ID, link)
        return link

    def release(self, link: _Link) -> None:
        self.active -= 1
        link.op = None
        conn = link.conn
        if conn.closed:
            return
        idle = self._idle.setdefault((conn.addr, conn.resp3), [])
        if conn.pending or link.id is None or len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(link)

    def idle_count(self) -> int:
        return sum(len(links) for links in self._idle.values())


class BlockedClients:
    """One server's blocking commands (its ServerState owns this): the dedicated
    connections, and per client its blocking commands in order, only the first running."""

    def __init__(self, state: ServerContext) -> None:
        self.links = Links(state)
        self.chains: dict[SessionLike, deque[_Op]] = {}


class BlockingContext(ServerContext, Protocol):
    """The server as blocking commands see it."""

    @property
    def blocked(self) -> BlockedClients: ...


def command(session: SessionLike, state: BlockingContext, name: bytes, args: Args) -> None:
    """Serve one request the router planned as Local(name) for this module."""
    spec = state.topology.table.get(name)
    slot = blocking_slot(spec, args) if spec is not None else ANY_NODE
    if isinstance(slot, ErrorReply):
        session.reply(slot.encode())
        return
    op = _Op(session, state, name, args, slot)
    session.queue_reply_entry(op)
    chains = state.blocked.chains
    chain = chains.get(session)
    if chain is None:
        chain = chains[session] = deque()
        session.on_close(lambda: _on_client_closed(chains, session))
    chain.append(op)
    if len(chain) == 1:
        op.start()


def _on_client_closed(chains: dict[SessionLike, deque[_Op]], session: SessionLike) -> None:
    session.client.blocked = None
    chain = chains.pop(session, None)
    if chain:
        chain[0].orphan()  # the others were never sent


class _Op:
    """One blocking command: the client's queue entry and its connection's waiter."""

    __slots__ = (
        "_timer",
        "_unblock_tries",
        "args",
        "deadline",
        "hops",
        "link",
        "name",
        "orphaned",
        "reply",
        "retry_started",
        "session",
        "slot",
        "state",
        "timeout",
        "unblocking",
        "upstream_replied",
    )

    def __init__(
        self, session: SessionLike, state: BlockingContext, name: bytes, args: Args, slot: int
    ) -> None:
        self.session = session
        self.state = state
        self.name = name
        self.args = args
        self.slot = slot
        self.reply: bytes | None = None
        self.link: _Link | None = None
        self.hops = 0
        self.retry_started = 0.0
        self.timeout: Timeout | None = parse_timeout(name, args)
        self.deadline = 0.0
        self.orphaned = False
        self.unblocking = False
        self.upstream_replied = False
        self._timer: asyncio.TimerHandle | None = None
        self._unblock_tries = 0

    # --- sending ---------------------------------------------------------------------------

    def start(self) -> None:
        self.session.client.blocked = self.name  # CLIENT LIST flags=b until it is answered
        loop = self.state.loop
        timeout = self.timeout
        if timeout is not None and timeout.seconds > 0:
            self.deadline = loop.time() + timeout.seconds
            # A safety net only: the node times the command out itself.
            limit = timeout.seconds + self.state.config.upstream.command_timeout
            self._timer = loop.call_later(limit, self._expire, limit)
        self._send_to_owner()

    def _send_to_owner(self) -> None:
        if self.orphaned:
            return
        topology = self.state.topology
        if topology.slotmap is None:
            topology.request_refresh()
            self._finish(topology.no_map.encode())
            return
        addr = (
            topology.slotmap.node_for_slot(self.slot)
            if self.slot != ANY_NODE
            else topology.any_primary()
        )
        if addr is None:
            topology.request_refresh()
            self._finish(replies.SLOT_NOT_SERVED.encode())
            return
        self._send(addr, asking=False)

    def _send(self, addr: str, asking: bool) -> None:
        link = self.state.blocked.links.acquire(addr, self.session.resp3)
        if link is None:
            self._finish(TOO_MANY)
            return
        self.link = link
        link.op = self
        self.upstream_replied = False
        args = self.args
        if self.deadline and self.timeout is not None and (self.hops or self.retry_started):
            args = rearm(args, self.timeout, self.deadline - self.state.loop.time())
        raw = pack_command(args)
        if asking:
            link.conn.send_asking(raw, self)
        else:
            link.conn.send(raw, self)

    # --- replies ---------------------------------------------------------------------------

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        link = self.link
        if link is None or link.conn is not conn:
            return
        self.upstream_replied = True
        if self.orphaned:
            self._restore(raw)
            if not self.unblocking:
                self._release()
            return
        if raw[:1] == b"-":
            if self._retry(raw, conn):
                return
        elif _client_gone(self.session) and restore_command(self.name, self.args, raw):
            # Popped for a client that has already hung up (its reset is not processed
            # yet): the reply would go nowhere, so the element goes back instead.
            self.orphaned = True
            self._cancel_timer()
            self._restore(raw)
            self._release()
            return
        self._finish(raw)

    def _retry(self, raw: bytes, conn: UpstreamConnection) -> bool:
        """Follow a redirect or retry a refusal; False when the client gets `raw`."""
        topology = self.state.topology
        redirect = parse_redirect(raw, conn.host, topology.remap)
        if redirect is not None:
            if self.hops >= self.state.config.upstream.max_redirects:
                return False
            self.hops += 1
            self._release()
            if redirect.kind == "moved":
                topology.on_moved(redirect.slot, redirect.node)
            self._send(redirect.node, asking=redirect.kind == "ask")
            return True
        if raw.startswith(_UPSTREAM):
            if conn.established:
                return False  # it may have popped before the node went away
        elif not raw.startswith(_RETRY):
            return False
        loop = self.state.loop
        now = loop.time()
        if self.retry_started == 0.0:
            self.retry_started = now
        elif now - self.retry_started >= self.state.config.upstream.retry_timeout:
            return False
        topology.request_refresh()
        self._release()
        delay = min(0.01 + (now - self.retry_started) / 4, 0.25)
        loop.call_later(delay, self._send_to_owner)
        return True

    def _finish(self, raw: bytes) -> None:
        self._cancel_timer()
        self._release()
        self.reply = raw
        session = self.session
        session.on_ready()
        chain = self.state.blocked.chains.get(session)
        if chain and chain[0] is self:
            chain.popleft()
            session.client.blocked = None
            if chain:
                chain[0].start()

    def _release(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            self.state.blocked.links.release(link)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, limit: float) -> None:
        self._timer = None
        link = self.link
        if link is not None and not self.upstream_replied:
            link.conn.abort(f"blocking command timed out after {limit:g}s", Failure.TIMEOUT)

    # --- the client went away --------------------------------------------------------------

    def orphan(self) -> None:
        """The client disconnected: wake the blocked connection, keep what it popped."""
        self.orphaned = True
        self._cancel_timer()
        link = self.link
        if link is None:
            return  # between two tries: nothing is blocked upstream
        if link.id is not None:
            self.unblock()
        elif not link.conn.pending:
            self._release()
        # else CLIENT ID's reply calls unblock() (or the command's reply arrives first)

    def unblock(self) -> None:
        link = self.link
        if link is None or self.upstream_replied or self.unblocking:
            return
        if link.id is None:  # CLIENT ID failed: closing is all that is left
            link.conn.abort("client disconnected while blocked")
            return
        self.unblocking = True
        raw = pack_command([b"CLIENT", b"UNBLOCK", b"%d" % link.id])
        self.state.pool.get(link.conn.addr).send(raw, _Unblocked(self))

    def on_unblocked(self, raw: bytes) -> None:
        self.unblocking = False
        link = self.link
        if link is None:
            return
        if self.upstream_replied:
            self._release()
        elif raw == b":0\r\n" and self._unblock_tries < _UNBLOCK_TRIES:
            # Not blocked (yet): the command is still on its way to the node.
            self._unblock_tries += 1
            self.state.loop.call_later(_UNBLOCK_RETRY, self.unblock)
        elif raw != b":1\r\n":
            link.conn.abort("client disconnected while blocked")
        # ":1": the command's (null) reply is on its way on the dedicated connection

    def _restore(self, raw: bytes) -> None:
        restore = restore_command(self.name, self.args, raw)
        if restore is None:
            return
        dispatcher = self.state.dispatcher
        sink = _RestoreSink(restore)
        request = Request(dispatcher, sink, pack_command(restore), self.slot)
        sink.request = request
        dispatcher.send(request)


def _client_gone(session: SessionLike) -> bool:
    """Whether the client has hung up, even if its event loop has not noticed yet: a
    non-consuming read of its socket sees the FIN (b"") or the reset (an error)."""
    transport = session.transport
    if transport is None or transport.is_closing():
        return True
    fd = transport.get_extra_info("socket").fileno()
    if fd < 0:
        return True
    sock = socket.socket(fileno=fd)
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.detach()  # the transport still owns the descriptor


class _Unblocked:
    __slots__ = ("op",)

    def __init__(self, op: _Op) -> None:
        self.op = op

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.op.on_unblocked(raw)


class _RestoreSink:
    """Where the reply to a put-back command goes: only a failure is worth a log line."""

    __slots__ = ("args", "flush_scheduled", "request", "resp3")

    def __init__(self, args: Args) -> None:
        self.args = args
        self.resp3 = False
        self.flush_scheduled = False
        self.request: Request | None = None

    def on_ready(self) -> None:
        reply = self.request.reply if self.request is not None else None
        if reply is not None and is_error(reply):
            log.error(
                "blocking_restore_failed",
                command=self.args[0].decode(),
                reason=error_message(reply),
            )
