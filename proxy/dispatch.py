"""Dispatch: send planned requests upstream and absorb redirects before the client sees them.

Each forwarded request is a small object that sits in the client's reply queue and is also
the upstream waiter: no task or future per request. MOVED updates the map and resends,
ASK sends ASKING + the request to the target, TRYAGAIN/CLUSTERDOWN/LOADING retry with
backoff, each within a bounded budget; then the last error goes to the client as it came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from conf import UpstreamConfig
from proxy.pool import UpstreamPool
from proxy.topology import Topology
from proxy.upstream import Batch, Failure, Parts, UpstreamConnection
from routing import replies
from routing.plan import ANY_NODE
from routing.redirect import CLUSTER_ERROR_PREFIXES, is_retryable, parse_redirect
from routing.resp import RequestLimits, pack_command, parse_requests
from routing.route import Routed, assemble

UPSTREAM_ERROR_PREFIX = replies.UPSTREAM_ERROR_PREFIX
# Errors after which a request may be sent again: cluster states, and failed connections.
_RETRY_CANDIDATES = (*CLUSTER_ERROR_PREFIXES, UPSTREAM_ERROR_PREFIX)
_LIMITS = RequestLimits()
_NOT_SERVED = replies.SLOT_NOT_SERVED.encode()


class ReplySink(Protocol):
    resp3: bool
    flush_scheduled: bool

    def on_ready(self) -> None: ...


class Request:
    """One request (or one part of a split request) on its way upstream."""

    __slots__ = ("dispatcher", "hops", "raw", "reply", "session", "slot", "started")

    def __init__(self, dispatcher: Dispatcher, session: ReplySink, raw: bytes, slot: int) -> None:
        self.dispatcher = dispatcher
        self.session = session
        self.raw = raw
        self.slot = slot
        self.hops = 0
        self.started = 0.0
        self.reply: bytes | None = None

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if (
            raw[0] == 45  # '-': only errors pay for the prefix check
            and raw.startswith(_RETRY_CANDIDATES)
            and self.dispatcher.redirect(self, raw, conn)
        ):
            return
        # deliver(), inlined: this runs once per reply.
        self.reply = raw
        session = self.session
        if not session.flush_scheduled:
            session.on_ready()

    def deliver(self, raw: bytes) -> None:
        self.reply = raw
        self.session.on_ready()


class Fragments:
    """The queue entry of a routed batch (routing/route.py): one reply slot per part,
    filled as the nodes answer (Batch waiters, or Parts after a redirect); ready when every
    part has answered, then assembled into the client's replies in request order."""

    __slots__ = ("count", "raws", "remaining", "reply", "routed", "session")

    def __init__(self, session: ReplySink, routed: Routed) -> None:
        self.session = session
        self.routed = routed
        self.count = routed.requests_count()  # client replies this entry holds
        raws: list[bytes] = [b""] * routed.count
        remaining = routed.count
        if routed.filled is not None:
            for index, raw in routed.filled:
                raws[index] = raw
            remaining -= len(routed.filled)
        self.raws = raws
        self.remaining = remaining
        self.reply: bytes | None = None

    def part_done(self, index: int, raw: bytes) -> None:
        self.raws[index] = raw
        self.remaining -= 1
        if not self.remaining:
            self.finish()

    def finish(self) -> None:
        self.reply = assemble(self.routed, self.raws, self.session.resp3)
        session = self.session
        if not session.flush_scheduled:
            session.on_ready()


class Part(Request):
    __slots__ = ("index", "parent")

    def __init__(
        self, dispatcher: Dispatcher, parent: Fragments, index: int, raw: bytes, slot: int
    ) -> None:
        # Request.__init__ written out: one call less per part.
        self.dispatcher = dispatcher
        self.session = parent.session
        self.raw = raw
        self.slot = slot
        self.hops = 0
        self.started = 0.0
        self.reply = None
        self.parent = parent
        self.index = index

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if (
            raw[0] == 45
            and raw.startswith(_RETRY_CANDIDATES)
            and self.dispatcher.redirect(self, raw, conn)
        ):
            return
        self.parent.part_done(self.index, raw)

    def deliver(self, raw: bytes) -> None:
        self.parent.part_done(self.index, raw)


class Dispatcher:
    def __init__(
        self,
        topology: Topology,
        pool: UpstreamPool,
        config: UpstreamConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.topology = topology
        self.pool = pool
        self._loop = loop
        self._max_hops = config.max_redirects
        self._retry_budget = config.retry_timeout
        self._part_error = self.part_error  # one bound method for every Batch

    def part_error(self, parent: Parts, index: int, raw: bytes, conn: UpstreamConnection) -> bool:
        """An error reply to part `index` of a batch: True when a redirect or a retry took
        the part over (it then goes on as a `Part`)."""
        if not raw.startswith(_RETRY_CANDIDATES):
            return False
        assert isinstance(parent, Fragments)
        packed, slot = parent.routed.part(index, self.topology.router)
        return self.redirect(Part(self, parent, index, packed, slot), raw, conn)

    def _read_only(self, raw: bytes) -> bool:
        """Whether the packed request is a read-only command (rare path: failures only)."""
        parsed = parse_requests(raw, _LIMITS).requests
        spec = self.topology.table.resolve(parsed[0]) if parsed else None
        return spec is not None and b"readonly" in spec.flags

    def forward(self, session: ReplySink, args: list[bytes], slot: int) -> Request:
        """One request to the owner of `slot` (features that bypass route_batch)."""
        request = Request(self, session, pack_command(args), slot)
        self.send(request)
        return request

    def execute(
        self, session: ReplySink, routed: Routed, enqueue: Callable[[Request | Fragments], None]
    ) -> None:
        """Send what route_batch decided. The entry that collects the replies is queued
        (`enqueue`) before anything is sent: a reply may come back at once (a closed
        connection, no slot map)."""
        nodes = routed.nodes
        first = self.pool.first[session.resp3]
        if routed.count == 1 and routed.filled is None and routed.layout is None:
            # One request (request/response clients): a plain Request is its own waiter.
            for node, pieces in routed.pieces.items():
                raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                request = Request(self, session, raw, routed.slot)
                enqueue(request)
                conn = first.get(node) if node is not None else None
                if conn is None or conn.closed:
                    self.send_to(request, node)
                else:
                    conn.send(raw, request)
                return
        parent = Fragments(session, routed)
        enqueue(parent)
        for node, indices in nodes.items():
            conn = first.get(node) if node is not None else None
            if conn is None or conn.closed:  # no live connection (or owner) yet: one by one
                router = self.topology.router
                for index in indices:
                    packed, slot = routed.part(index, router)
                    self.send_to(Part(self, parent, index, packed, slot), node)
                continue
            pieces = routed.pieces[node]
            raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            conn.send_batch(raw, Batch(parent, indices, self._part_error))
        if not parent.remaining and parent.reply is None:  # every part answered here
            parent.finish()

    def send_to(self, request: Request, node: str | None) -> None:
        """Send to the node route_batch chose; a missing owner gets the dispatcher's error."""
        if node is None:
            self.send(request)
        else:
            self.pool.get(node, request.session.resp3).send(request.raw, request)

    def send(self, request: Request) -> None:
        slotmap = self.topology.slotmap
        if slotmap is None:
            self.topology.request_refresh()
            request.deliver(self.topology.no_map.encode())
            return
        addr = (
            slotmap.node_for_slot(request.slot)
            if request.slot != ANY_NODE
            else self.topology.any_primary()
        )
        if addr is None:
            self.topology.request_refresh()
            request.deliver(_NOT_SERVED)
            return
        self.pool.get(addr, request.session.resp3).send(request.raw, request)

    def redirect(self, request: Request, raw: bytes, conn: UpstreamConnection) -> bool:
        """Handle a cluster error for `request`; False when the budget is spent."""
        redirect = parse_redirect(raw, conn.host, self.topology.remap)
        if redirect is not None:
            if request.hops >= self._max_hops:
                return False
            request.hops += 1
            if redirect.kind == "moved":
                self.topology.on_moved(redirect.slot, redirect.node)
                self.pool.get(redirect.node, conn.resp3).send(request.raw, request)
            else:
                self.topology.redirects += 1
                self.pool.get(redirect.node, conn.resp3).send_asking(request.raw, request)
            return True
        if raw.startswith(UPSTREAM_ERROR_PREFIX):
            # The connection failed. Retry only what certainly did not run (the connection
            # never came up) or is harmless to run twice (a read-only command); a write
            # that may have been applied gets the error.
            if conn.established and not self._read_only(request.raw):
                return False
            if conn.failure is Failure.TIMEOUT:
                return False  # command_timeout already spent: do not pay it twice
        elif not is_retryable(raw):
            return False
        now = self._loop.time()
        if request.started == 0.0:
            request.started = now
        elif now - request.started >= self._retry_budget:
            return False
        if raw.startswith(b"-CLUSTERDOWN"):
            self.topology.request_refresh()
        # Back off as the wait grows: 10 ms at first, at most 250 ms between tries.
        delay = min(0.01 + (now - request.started) / 4, 0.25)
        self._loop.call_later(delay, self.send, request)
        return True
