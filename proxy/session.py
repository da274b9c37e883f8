"""ClientSession: one downstream connection; requests in, replies out in request order.

Every request gets an entry in `_queue` at once; entries fill in whatever order upstreams
answer, and `_flush` writes the ready prefix with one write per loop iteration. A session
that needs per-connection state in standalone mode becomes a pipe to a dedicated upstream
connection (see proxy/pipe.py) after the replies already queued.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast

import structlog

from proxy.dispatch import Fragments
from proxy.flow import FlowControl
from proxy.framing import RequestReader
from proxy.local import LocalCommands
from proxy.pipe import Pipe
from proxy.stats import MAX_NAMES
from routing import replies
from routing.client import ClientState
from routing.fanout import Special
from routing.plan import Local, Plan
from routing.resp import Args
from routing.route import count_names, route_batch

if TYPE_CHECKING:
    from proxy.local import SessionContext

log = structlog.get_logger("slotless.session")


class Entry(Protocol):
    reply: bytes | None


class Interceptor(Protocol):
    """Per-client state that sees each request before the router (transaction, pub/sub,
    authentication). `intercept` returns True when it has queued the request's reply."""

    def intercept(self, args: Args) -> bool: ...


class Ready:
    __slots__ = ("reply",)

    def __init__(self, reply: bytes) -> None:
        self.reply: bytes | None = reply


class ClientSession(asyncio.Protocol):
    def __init__(self, state: SessionContext[ClientSession]) -> None:
        self._state = state
        self._loop = state.loop
        self._reader = RequestReader(state.request_limits)
        self._flow = FlowControl(state.config.limits.max_pending_replies)
        self._queue: deque[Entry] = deque()
        self._transport: asyncio.Transport | None = None
        self.flush_scheduled = False
        self._closing = False  # close once the queue is written (QUIT, protocol error)
        self._closed = False
        self.pipe: Pipe | None = None
        # Cluster-mode per-client state; each sees requests before the router does.
        # Whoever sets or clears one calls update_detour().
        self.acl: Interceptor | None = None  # proxy/auth.py
        self.txn: Interceptor | None = None  # proxy/txn.py
        self.pubsub: Interceptor | None = None  # proxy/pubsub.py
        self.tracking: Interceptor | None = None  # proxy/tracking.py
        self.detour = False  # True: skip the hot path, every request goes through handle()
        self._closers: list[Callable[[], None]] | None = None
        self._batched = 0  # replies owed beyond one per queue entry (Fragments.count - 1)
        self.last_active = self._loop.time()  # last read, for limits.client_idle_timeout
        # RESP version, name, user ...: HELLO 3 switches this client (and its upstreams) to RESP3
        self.client = ClientState(
            state.next_client_id(), self._loop.time(), state.config.auth is not None
        )
        self.local = LocalCommands(self, state)
        self.peer = ""
        self._log = log
        # Stats (proxy/stats.py): bytes from and to this client, and the per-name counter
        # of requests read that the server shares.
        self.rx_bytes = 0
        self.tx_bytes = 0
        self._commands = state.dispatcher.stats.commands

    @property
    def id(self) -> int:
        return self.client.id

    @property
    def resp3(self) -> bool:
        return self.client.resp3

    @resp3.setter
    def resp3(self, value: bool) -> None:
        self.client.resp3 = value

    # --- asyncio callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._flow.attach(self._transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._log = log.bind(conn_id=self.id, peer=self.peer)
        if not self._state.on_session_open(self):
            self._transport.write(replies.MAX_CLIENTS.encode())
            self._closed = True
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._closed:
            return
        self.last_active = self._loop.time()
        self.rx_bytes += len(data)
        requests = self._reader.feed(data)
        if count_names(requests, self._commands) > MAX_NAMES:
            self._state.dispatcher.stats.fold(self._state.topology.table)
        if self._flow.holding:
            self._flow.hold(requests)
            return
        self._run(requests)

    def _run(self, requests: list[Args]) -> None:
        """Serve what one read delivered, at most up to the pending-replies bound; the
        rest waits (parsed, its size bounded by one read) until replies drain."""
        flow = self._flow
        owed = len(self._queue) + self._batched
        if len(requests) > flow.limit - owed:  # (the test admit() makes, without a call)
            requests = flow.admit(requests, owed)
        try:
            self._handle_all(requests)
        except Exception:
            self._log.exception("request_failed")
            self._queue.append(Ready(replies.INTERNAL.encode()))
            self.on_ready()
        if self._closing:
            flow.take_backlog()
        elif not flow.holding and self._reader.error is not None:
            self._queue.append(Ready(replies.protocol_error(self._reader.error).encode()))
            self._closing = True
            self.on_ready()
        if len(self._queue) + self._batched > flow.limit:
            flow.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._queue.clear()
        if self.pipe is not None:
            self.pipe.close()
        closers, self._closers = self._closers, None
        for closer in closers or ():
            try:
                closer()
            except Exception:
                self._log.exception("close_hook_failed")
        self._state.on_session_closed(self)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the client goes away (release upstream state it holds)."""
        if self._closers is None:
            self._closers = []
        self._closers.append(closer)

    def pause_writing(self) -> None:
        self._flow.writing_paused = True
        self._flow.pause_reading()

    def resume_writing(self) -> None:
        self._flow.writing_paused = False
        self._maybe_resume_reading()

    # --- requests -------------------------------------------------------------------------

    def _handle_all(self, requests: list[Args], features: bool = True) -> None:
        """Serve the requests of one read, in order: each run that route_batch routes goes
        out as one queue entry; a request that needs this session's state is served here.
        `features`: False when handle() has shown the request to the features already."""
        start = 0
        count = len(requests)
        while start < count:
            if features and self.detour:  # MULTI, SUBSCRIBE, AUTH ...: features see each
                self.handle(requests[start])
                start += 1
            else:
                topology = self._state.topology
                slotmap = topology.slotmap
                routed = route_batch(
                    requests,
                    start,
                    topology.router,
                    slotmap.owners if slotmap is not None else None,
                    topology.any_primary,
                    topology.read_node,
                )
                stop = routed.stop
                if stop > start:
                    self._batched += stop - start - 1
                    self._state.dispatcher.execute(
                        self, routed, self._queue.append, self.client.resp3
                    )
                start = stop
                if routed.plan is not None:
                    self._serve_plan(routed.plan, requests[stop])
                    start += 1
            if self._closing:
                return

    def _serve_plan(self, plan: Plan, args: Args) -> None:
        """What route_batch leaves to the session: fan-outs and per-connection state."""
        if isinstance(plan, Special):
            self._queue.append(self._state.fanout.start(self, args, plan))
        else:
            assert isinstance(plan, Local)
            self.local.handle(plan.name, args)

    def handle(self, args: Args) -> None:
        """Serve one request: the features first (when active), then the router."""
        if self.detour:
            # Authentication comes first, pipe or not (proxy/auth.py answers through it).
            if self.acl is not None and self.acl.intercept(args):
                return
            if self.pipe is not None:
                self.pipe.send_args(args)
                return
            if self.tracking is not None and self.tracking.intercept(args):
                return
            if self.txn is not None and self.txn.intercept(args):
                return
            if self.pubsub is not None and self.pubsub.intercept(args):
                return
        self._handle_all([args], features=False)

    def reply(self, raw: bytes) -> None:
        """Queue a reply produced here, after every reply already owed."""
        self._queue.append(Ready(raw))
        self.on_ready()

    def update_detour(self) -> None:
        """Recompute whether requests must leave the hot path (after a state change)."""
        self.detour = (
            self.pipe is not None
            or self.acl is not None
            or self.txn is not None
            or self.pubsub is not None
            or self.tracking is not None
        )

    def forward(self, args: Args, slot: int) -> None:
        self._queue.append(self._state.dispatcher.forward(self, args, slot))

    def close_after_replies(self) -> None:
        self._closing = True
        self.on_ready()

    def drain(self) -> None:
        """Shutdown: serve nothing new, close once the replies owed are written. A client
        owed none (idle, subscribed, or streaming through its own pipe) is closed now."""
        if self.pending_replies:
            self.close_after_replies()
        else:
            self.abort()

    def start_pipe(self, args: Args) -> None:
        """Give this client its own upstream connection from now on (standalone mode)."""
        pipe = Pipe(self, self._state)
        self.pipe = pipe
        self.detour = True
        self._queue.append(pipe)
        pipe.send_args(args)

    # --- replies --------------------------------------------------------------------------

    def on_ready(self) -> None:
        if self.flush_scheduled or self._closed:
            return
        queue = self._queue
        if len(queue) == 1 and not self._flow.reading_paused:
            # The only reply owed (no pipeline to batch): write it now, saving a loop
            # iteration per request for request/response clients.
            head = queue[0]
            reply = head.reply
            if reply is not None and self.pipe is None and not self._closing:
                queue.popleft()
                if type(head) is Fragments:
                    self._batched -= head.count - 1
                self.tx_bytes += len(reply)
                self._transport.write(reply)  # type: ignore[union-attr]
                return
            self._flush()
            return
        self.flush_scheduled = True
        self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        transport = self._transport
        if transport is None or self._closed:
            return
        queue = self._queue
        pipe = self.pipe
        out = []
        while queue:
            head = queue[0]
            reply = head.reply
            if reply is None:
                break
            if pipe is not None and head is pipe:
                out.append(pipe.take())
                break
            out.append(reply)
            queue.popleft()
            if type(head) is Fragments:
                self._batched -= head.count - 1
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.tx_bytes += len(data)
            transport.write(data)
        if self._closing and not queue:
            self._closed = True
            transport.close()
            return
        if self._flow.reading_paused:
            self._maybe_resume_reading()

    def _maybe_resume_reading(self) -> None:
        flow = self._flow
        if self._closed or not flow.resumable(len(self._queue) + self._batched):
            return
        backlog = flow.take_backlog()
        if backlog is not None:
            self._run(backlog)
            if flow.holding or self._closing:
                return
            if not flow.resumable(len(self._queue) + self._batched):
                return  # the next flush comes back here
        flow.resume_reading()

    def abort(self) -> None:
        """Close now (the dedicated upstream went away, as a Redis restart would do)."""
        if self._transport is not None and not self._closed:
            self._flush()
            self._closed = True
            self._transport.close()

    @property
    def pending_replies(self) -> int:
        """Replies owed; a pipe's stream is not one (it never ends by itself)."""
        queue = self._queue
        return len(queue) + self._batched - (self.pipe is not None and bool(queue))

    @property
    def waiting_on_purpose(self) -> bool:
        """Blocked in a command or subscribed: never idle (limits.client_idle_timeout)."""
        if self.pending_replies or self.pubsub is not None:
            return True
        pipe = self.pipe
        return pipe is not None and (pipe.blocked or pipe.subscribed)

    @property
    def reading_paused(self) -> bool:
        return self._flow.reading_paused

    @property
    def writing_paused(self) -> bool:
        """The client's socket buffer is full (the transport said pause_writing)."""
        return self._flow.writing_paused

    # --- for proxy/auth.py, blocking.py, pubsub.py, txn.py (contracts.SessionLike) ---------

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_entries(self) -> Sequence[Entry]:
        """The reply queue, oldest first, to read (queue_reply_entry adds to it)."""
        return self._queue

    def queue_reply_entry(self, entry: Entry) -> None:
        """Queue an entry that a feature fills in later, after every reply already owed."""
        self._queue.append(entry)

    def replace_entries(self, start: int, wrap: Callable[[Entry], Entry]) -> None:
        """Wrap the queued entries from index `start` on (proxy/auth.py mutes replies)."""
        queue = self._queue
        for i in range(start, len(queue)):
            queue[i] = wrap(queue[i])

    def serve(self, requests: list[Args]) -> None:
        """Serve requests a feature held back (a transaction's barrier) as if just read."""
        self._run(requests)
