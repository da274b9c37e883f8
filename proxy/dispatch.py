"""Dispatch: send planned requests upstream and absorb redirects before the client sees them.

Each forwarded request is a small object that sits in the client's reply queue and is also
the upstream waiter: no task or future per request. MOVED updates the map and resends,
ASK sends ASKING + the request to the target, TRYAGAIN/CLUSTERDOWN/LOADING retry with
backoff, each within a bounded budget; then the last error goes to the client as it came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from conf import UpstreamConfig
from proxy.pool import UpstreamPool
from proxy.topology import Topology
from proxy.upstream import Batch, Parts, UpstreamConnection
from routing import replies
from routing.merge import merge_keys, merge_replies
from routing.plan import ANY_NODE, Split, SplitKeys
from routing.redirect import CLUSTER_ERROR_PREFIXES, is_retryable, parse_redirect
from routing.resp import Args, RequestLimits, error_message, pack_command, parse_requests

_NO_SLOT_MAP = replies.NO_TOPOLOGY.encode()
UPSTREAM_ERROR_PREFIX = b"-ERR upstream "
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


class SplitRequest:
    """A request split by slot: it is ready when every part has answered."""

    __slots__ = ("plan", "raws", "remaining", "reply", "session")

    def __init__(self, session: ReplySink, plan: Split) -> None:
        self.session = session
        self.plan = plan
        self.raws: list[bytes] = [b""] * len(plan.parts)
        self.remaining = len(plan.parts)
        self.reply: bytes | None = None

    def part_done(self, index: int, raw: bytes) -> None:
        self.raws[index] = raw
        self.remaining -= 1
        if not self.remaining:
            self.finish()

    def finish(self) -> None:
        self.reply = merge_replies(self.plan, self.raws, self.session.resp3)
        self.session.on_ready()

    def part_request(self, index: int) -> tuple[bytes, int]:
        """Part `index` as sent (packed) and its slot: for a part that must go again."""
        part = self.plan.parts[index]
        return pack_command(part.args), part.slot


class KeysRequest(SplitRequest):
    """A SplitKeys request: part i is key i alone."""

    __slots__ = ("keys_plan",)

    def __init__(self, session: ReplySink, plan: SplitKeys) -> None:
        self.session = session
        self.keys_plan = plan
        self.raws = [b""] * len(plan.slots)
        self.remaining = len(plan.slots)
        self.reply = None

    def finish(self) -> None:
        self.reply = merge_keys(self.keys_plan, self.raws, self.session.resp3)
        self.session.on_ready()

    def part_request(self, index: int) -> tuple[bytes, int]:
        return self.keys_plan.requests[index], self.keys_plan.slots[index]


class ReadBatch(SplitRequest):
    """Consecutive single-key requests from one client read, as one entry in its reply
    queue: their replies, concatenated in request order, once all are in. Sent like a
    SplitKeys (a Batch per node); `count` is how many replies it holds."""

    __slots__ = ("count", "requests", "slots")

    def __init__(self, session: ReplySink, requests: list[Args], slots: list[int]) -> None:
        self.session = session
        self.requests = requests
        self.slots = slots
        self.count = len(slots)
        self.raws = [b""] * self.count
        self.remaining = self.count
        self.reply = None

    def finish(self) -> None:
        self.reply = b"".join(self.raws)
        session = self.session
        if not session.flush_scheduled:
            session.on_ready()

    def part_request(self, index: int) -> tuple[bytes, int]:
        return pack_command(self.requests[index]), self.slots[index]


class Part(Request):
    __slots__ = ("index", "parent")

    def __init__(
        self, dispatcher: Dispatcher, parent: SplitRequest, index: int, raw: bytes, slot: int
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
        assert isinstance(parent, SplitRequest)
        packed, slot = parent.part_request(index)
        return self.redirect(Part(self, parent, index, packed, slot), raw, conn)

    def _read_only(self, raw: bytes) -> bool:
        """Whether the packed request is a read-only command (rare path: failures only)."""
        parsed = parse_requests(raw, _LIMITS).requests
        spec = self.topology.table.resolve(parsed[0]) if parsed else None
        return spec is not None and b"readonly" in spec.flags

    def forward(self, session: ReplySink, args: list[bytes], slot: int) -> Request:
        request = Request(self, session, pack_command(args), slot)
        targets = self.topology.read_targets
        if targets is not None and slot != ANY_NODE and args[0] in self.topology.router.reads:
            addr = targets[slot].pick(self.pool)  # upstream.read_from
            if addr is not None:
                self.pool.get(addr, session.resp3).send(request.raw, request)
                return request
        self.send(request)
        return request

    def split(self, session: ReplySink, plan: Split) -> SplitRequest:
        parent = SplitRequest(session, plan)
        requests = [pack_command(part.args) for part in plan.parts]
        self._send_split(parent, requests, [part.slot for part in plan.parts], session.resp3)
        return parent

    def split_keys(self, session: ReplySink, plan: SplitKeys) -> KeysRequest:
        parent = KeysRequest(session, plan)
        self._send_split(parent, plan.requests, plan.slots, session.resp3)
        return parent

    def _send_split(
        self, parent: SplitRequest, requests: list[bytes], slots: list[int], resp3: bool
    ) -> None:
        slotmap = self.topology.slotmap
        owners = slotmap.owners if slotmap is not None else None
        by_node: dict[str | None, list[int]] = {}
        packed: dict[str | None, list[bytes]] = {}
        for index, slot in enumerate(slots):
            addr = owners[slot] if owners is not None else None
            indices = by_node.get(addr)
            if indices is None:
                by_node[addr] = [index]
                packed[addr] = [requests[index]]
            else:
                indices.append(index)
                packed[addr].append(requests[index])
        self.send_parts(parent, by_node, packed, resp3)

    def send_parts(
        self,
        parent: SplitRequest,
        by_node: Mapping[str | None, list[int]],
        packed: Mapping[str | None, list[bytes]],
        resp3: bool,
    ) -> None:
        """Send the parts of `parent` grouped by the node that owns them (`by_node`: the
        part indices; `packed`: their requests, in pieces that join into one write): one
        write and one Batch waiter per node."""
        first = self.pool.first[resp3]
        for addr, indices in by_node.items():
            conn = first.get(addr) if addr is not None else None
            if conn is None or conn.closed:  # no live connection (or owner) yet: one by one
                for index in indices:
                    self.send(Part(self, parent, index, *parent.part_request(index)))
                continue
            pieces = packed[addr]
            raw = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            conn.send_batch(raw, Batch(parent, indices, self._part_error))

    def send(self, request: Request) -> None:
        slotmap = self.topology.slotmap
        if slotmap is None:
            self.topology.request_refresh()
            request.deliver(_NO_SLOT_MAP)
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
            if "timed out after" in error_message(raw):
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
