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
from proxy.stats import MAX_NAMES, Stats
from proxy.topology import Topology
from proxy.upstream import Batch, Failure, Parts, UpstreamConnection
from routing import replies
from routing.plan import ANY_NODE
from routing.redirect import CLUSTER_ERROR_PREFIXES, is_retryable, parse_redirect
from routing.resp import RequestLimits, pack_command, parse_requests
from routing.route import Routed, assemble

UPSTREAM_ERROR_PREFIX = replies.UPSTREAM_ERROR_PREFIX
# Errors after which a request may be sent again: cluster states, and failed connections.
# A replica's refusal of a write: sentinel mode retries it on the new primary (it never ran).
_READONLY = b"-READONLY "
_RETRY_CANDIDATES = (*CLUSTER_ERROR_PREFIXES, UPSTREAM_ERROR_PREFIX, _READONLY)
_LIMITS = RequestLimits()
_NOT_SERVED = replies.SLOT_NOT_SERVED.encode()
# topology.no_map, whatever reason it carries after this prefix.
_NO_SLOT_MAP = replies.NO_TOPOLOGY.encode().split(b" (", 1)[0]
# Replies that say slotless got no answer from a node (outcome "proxy_error", not "error").
_PROXY_ERRORS = (UPSTREAM_ERROR_PREFIX, _NO_SLOT_MAP, _NOT_SERVED, replies.NO_PRIMARY_PREFIX)
_RETRY_KINDS = {b"TRYAGAIN": "tryagain", b"CLUSTERDOWN": "clusterdown", b"LOADING": "loading"}


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
        if raw[0] == 45:  # '-': only errors pay for the prefix check
            if raw.startswith(_RETRY_CANDIDATES) and self.dispatcher.redirect(self, raw, conn):
                return
            self.dispatcher.on_error(self.raw, raw)
        # deliver(), inlined: this runs once per reply.
        self.reply = raw
        session = self.session
        if not session.flush_scheduled:
            session.on_ready()

    def deliver(self, raw: bytes) -> None:
        self.reply = raw
        self.session.on_ready()


class TimedRequest(Request):
    """A Request whose reply is timed (latency sampling, the slow log)."""

    __slots__ = ("t0",)
    t0: float

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        if raw[0] == 45:
            if raw.startswith(_RETRY_CANDIDATES) and self.dispatcher.redirect(self, raw, conn):
                return
            self.dispatcher.on_error(self.raw, raw)
        self.dispatcher.on_timed(self, conn.addr)
        self.deliver(raw)


class Fragments:
    """The queue entry of a routed batch (routing/route.py): one reply slot per part,
    filled as the nodes answer (Batch waiters, or Parts after a redirect); ready when every
    part has answered, then assembled into the client's replies in request order."""

    __slots__ = ("count", "raws", "remaining", "reply", "routed", "session", "t0", "timer")

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
        self.timer: Dispatcher | None = None  # set (with t0) when this batch is timed
        self.t0 = 0.0

    def part_done(self, index: int, raw: bytes) -> None:
        self.raws[index] = raw
        self.remaining -= 1
        if not self.remaining:
            self.finish()

    def finish(self) -> None:
        self.reply = assemble(self.routed, self.raws, self.session.resp3)
        if self.timer is not None:
            self.timer.on_batch_timed(self)
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
        if raw[0] == 45:
            if raw.startswith(_RETRY_CANDIDATES) and self.dispatcher.redirect(self, raw, conn):
                return
            self.dispatcher.on_error(self.raw, raw)
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
        stats: Stats | None = None,
    ) -> None:
        self.topology = topology
        self.pool = pool
        self._loop = loop
        self.stats = stats if stats is not None else Stats()
        self._countdown = self.stats.sample_every  # routed batches until the next timed one
        self._max_hops = config.max_redirects
        self._retry_budget = config.retry_timeout
        self._part_error = self.part_error  # one bound method for every Batch

    def part_error(self, parent: Parts, index: int, raw: bytes, conn: UpstreamConnection) -> bool:
        """An error reply to part `index` of a batch: True when a redirect or a retry took
        the part over (it then goes on as a `Part`)."""
        assert isinstance(parent, Fragments)
        packed, slot = parent.routed.part(index, self.topology.router)
        if raw.startswith(_RETRY_CANDIDATES) and self.redirect(
            Part(self, parent, index, packed, slot), raw, conn
        ):
            return True
        self.on_error(packed, raw)
        return False

    # --- stats (rare paths: errors, and one batch in Stats.sample_every) -----------------

    def on_error(self, packed: bytes, raw: bytes) -> None:
        """Count an error reply that goes to the client, by command name."""
        parsed = parse_requests(packed, _LIMITS).requests
        name = parsed[0][0] if parsed and parsed[0] else b""
        stats = self.stats
        counter = stats.proxy_errors if raw.startswith(_PROXY_ERRORS) else stats.errors
        counter[name] += 1
        if len(counter) > MAX_NAMES:
            stats.fold(self.topology.table)

    def on_timed(self, request: TimedRequest, node: str) -> None:
        parsed = parse_requests(request.raw, _LIMITS).requests
        name = parsed[0][0] if parsed and parsed[0] else b""
        seconds = self._loop.time() - request.t0
        self.stats.timed(self.topology.table, name, node, seconds, 1, _peer(request.session))

    def on_batch_timed(self, parent: Fragments) -> None:
        routed = parent.routed
        nodes = [node for node in routed.by_node() if node is not None]
        node = nodes[0] if len(nodes) == 1 else ",".join(sorted(nodes)) or "-"
        name = routed.requests[routed.start][0] if routed.requests_count() else b""
        seconds = self._loop.time() - parent.t0
        count = routed.requests_count()
        self.stats.timed(self.topology.table, name, node, seconds, count, _peer(parent.session))

    def _filled_errors(self, routed: Routed) -> None:
        """Errors that routing answered itself (arity, CROSSSLOT, unknown commands)."""
        assert routed.filled is not None
        for index, raw in routed.filled:
            if raw[:1] == b"-":
                self.on_error(routed.part(index, self.topology.router)[0], raw)

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
        self,
        session: ReplySink,
        routed: Routed,
        enqueue: Callable[[Request | Fragments], None],
        resp3: bool,
    ) -> None:
        """Send what route_batch decided. The entry that collects the replies is queued
        (`enqueue`) before anything is sent: a reply may come back at once (a closed
        connection, no slot map). `resp3`: the session's protocol (passed, not read
        through its property: this runs once per request)."""
        first = self.pool.first[resp3]
        countdown = self._countdown - 1  # the latency sample: one batch in sample_every
        self._countdown = countdown or self.stats.sample_every
        raw = routed.raw
        if raw is not None:
            # One request (request/response clients): a plain Request is its own waiter.
            if countdown:
                request = Request(self, session, raw, routed.slot)
            else:
                request = TimedRequest(self, session, raw, routed.slot)
                request.t0 = self._loop.time()
            enqueue(request)
            node = routed.node
            conn = first.get(node) if node is not None else None
            if conn is None or conn.closed:
                self.send_to(request, node)
            else:
                conn.send(raw, request)
            return
        nodes, pieces_of = routed.nodes, routed.pieces
        assert nodes is not None and pieces_of is not None  # (no `raw`: the dict shape)
        parent = Fragments(session, routed)
        if not countdown:
            parent.timer = self
            parent.t0 = self._loop.time()
        if routed.filled is not None:
            self._filled_errors(routed)
        enqueue(parent)
        for node, indices in nodes.items():
            conn = first.get(node) if node is not None else None
            if conn is None or conn.closed:  # no live connection (or owner) yet: one by one
                router = self.topology.router
                for index in indices:
                    packed, slot = routed.part(index, router)
                    self.send_to(Part(self, parent, index, packed, slot), node)
                continue
            pieces = pieces_of[node]
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
            if self.topology.park(lambda: self.send(request)):  # a failover runs (sentinel)
                return
            self.topology.request_refresh()
            no_map = self.topology.no_map.encode()
            self.on_error(request.raw, no_map)
            request.deliver(no_map)
            return
        addr = (
            slotmap.node_for_slot(request.slot)
            if request.slot != ANY_NODE
            else self.topology.any_primary()
        )
        if addr is None:
            self.topology.request_refresh()
            self.on_error(request.raw, _NOT_SERVED)
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
            self.stats.redirects[redirect.kind] += 1
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
        elif raw.startswith(_READONLY):
            # The primary became a replica (a failover): sentinel mode finds the new one.
            if self.topology.sentinel is None:
                return False
            self.topology.request_refresh()
        elif not is_retryable(raw):
            return False
        now = self._loop.time()
        if request.started == 0.0:
            request.started = now
        elif now - request.started >= self._retry_budget:
            return False
        kind = _RETRY_KINDS.get(raw[1:].split(b" ", 1)[0])
        if kind is not None:
            self.stats.redirects[kind] += 1
        if raw.startswith(b"-CLUSTERDOWN"):
            self.topology.request_refresh()
        # Back off as the wait grows: 10 ms at first, at most 250 ms between tries.
        delay = min(0.01 + (now - request.started) / 4, 0.25)
        self._loop.call_later(delay, self.send, request)
        return True


def _peer(session: ReplySink) -> str | None:
    """The client's address for the slow log (sessions have one; internal sinks do not)."""
    peer = getattr(session, "peer", None)
    return peer if isinstance(peer, str) else None
