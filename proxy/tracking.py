"""CLIENT TRACKING in cluster mode (issue 17): slotless's own invalidation feed per primary.

One `Tracker` per server, made at the first CLIENT TRACKING ON. It keeps a RESP3 connection
to every primary with `CLIENT TRACKING ON BCAST`, so each node reports every key it
modifies; the tracker fans those out to its clients by its key table (default mode) or their
prefixes (BCAST), as pushes or as __redis__:invalidate messages to a redirect target. While a
node's feed is not confirmed, what clients read from it is unguarded: a lost or new feed, and
every slot map change (failover, resharding), flush the clients that read since their last
flush, as Redis does on FLUSHALL. The rules and the wire shapes are in routing/tracking.py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Set
from typing import Protocol, cast

import hiredis
import structlog

from proxy.contracts import ServerContext, SessionLike
from proxy.upstream import tune_socket
from routing import replies
from routing.resp import OK, Args, ErrorReply, encode_int, pack_command
from routing.route import route_batch
from routing.slots import key_hash_slot
from routing.tracking import (
    TrackingState,
    TrackingTable,
    encode_keys,
    group_by_prefix,
    invalidation,
    parse_caching,
    parse_invalidation,
    parse_tracking,
    read_keys,
    redirect_broken,
    trackinginfo_reply,
    written_keys,
)

log = structlog.get_logger("slotless.tracking")

_TRACKING_ON = pack_command([b"CLIENT", b"TRACKING", b"ON", b"BCAST"])
_PING = pack_command([b"PING"])


class TrackingContext(ServerContext, Protocol):
    """The server as tracking sees it: every client (redirect targets), and the Tracker."""

    @property
    def sessions(self) -> Set[SessionLike]: ...

    def tracker(self) -> Tracker: ...


def command(session: SessionLike, state: TrackingContext, args: Args) -> None:
    """CLIENT TRACKING / CACHING / TRACKINGINFO / GETREDIR for one cluster-mode client."""
    sub = args[1].lower()
    spec = state.topology.table.resolve(args)
    if spec is not None and not _arity_ok(spec.arity, len(args)):
        session.reply(replies.wrong_arity(spec.name).encode())
        return
    tracking = session.client.tracking
    if sub == b"tracking":
        state.tracker().run(session, args)
    elif sub == b"caching":
        session.reply(parse_caching(tracking, args[2]))
    elif sub == b"trackinginfo":
        session.reply(trackinginfo_reply(tracking, session.resp3))
    else:
        session.reply(encode_int(tracking.redir()))


def _arity_ok(arity: int, argc: int) -> bool:
    return argc == arity if arity >= 0 else argc >= -arity


class Held:
    """CLIENT TRACKING ON's +OK, held until every primary's feed is confirmed."""

    __slots__ = ("_session", "reply")

    def __init__(self, session: SessionLike) -> None:
        self._session = session
        self.reply: bytes | None = None

    def release(self) -> None:
        if self.reply is None:
            self.reply = OK
            self._session.on_ready()


class TrackedClient:
    """A client with tracking on: sees each of its requests (session.tracking) to remember
    what it reads, and receives the invalidations meant for it."""

    __slots__ = ("dirty", "generation", "nulled", "own", "session", "target", "tracker")

    def __init__(self, session: SessionLike, tracker: Tracker) -> None:
        self.session = session
        self.tracker = tracker
        self.generation = 0  # grows with each flush: older table entries lapse
        self.dirty = False  # read something since the last flush (or since ON)
        self.nulled = False  # flushed, and read nothing since
        self.target: SessionLike | None = None  # the REDIRECT client, found at ON
        self.own: dict[bytes, int] = {}  # NOLOOP: keys of own writes the feed has not passed

    @property
    def state(self) -> TrackingState:
        return self.session.client.tracking

    def intercept(self, args: Args) -> bool:
        name = args[0].lower()
        state = self.state
        if name == b"reset":
            self.tracker.detach(self)
            return False
        table = self.tracker.state.topology.table
        keys = read_keys(table, args)
        if keys and (state.bcast or state.tracks_reads()):
            self.dirty = True
            self.nulled = False
            if not state.bcast:
                self.tracker.remember(self, keys)
        multi = self.session.client.multi
        state.after_command(name, multi is not None and multi.in_multi)
        session = self.session
        # Not inside MULTI, nor subscribed (RESP2 refuses writes there): the router's turn.
        if state.noloop and session.txn is None and session.pubsub is None:
            written = written_keys(table, args)
            if written:
                return self.tracker.send_own_write(self, args, written)
        return False

    def send(self, keys: list[bytes] | None) -> None:
        """tracking.c sendTrackingMessage: to the redirect target, or to the client itself
        in RESP3; RESP2 without a subscribed target gets nothing."""
        session = self.session
        state = self.state
        target = session
        if state.redirect:
            target = self.target  # type: ignore[assignment]
            if target is None or target.closed:
                state.broken_redirect = True
                if session.resp3:
                    self._write(session, redirect_broken(state.redirect))
                return
            if not target.resp3 and not target.client.subs.total():
                return
        elif not session.resp3:
            return
        # A flush's null is written in the protocol of the tracking client (as Redis does).
        null_resp3 = session.resp3 if keys is None else target.resp3
        self._write(target, invalidation(encode_keys(keys, null_resp3), target.resp3))

    def _write(self, target: SessionLike, raw: bytes) -> None:
        if target.closed:
            return
        # A client that does not read is dropped, as a subscriber is (limits.max_pubsub_backlog).
        if len(target.queued_entries) >= self.tracker.state.config.limits.max_pubsub_backlog:
            log.warning("tracking_client_too_slow", conn_id=target.id)
            target.abort()
            return
        target.reply(raw)

    def flush(self) -> None:
        """Invalidate everything this client may hold (a null message)."""
        self.send(None)
        self.generation += 1
        self.dirty = False
        self.nulled = True


class Link(asyncio.Protocol):
    """The RESP3 connection to one primary with CLIENT TRACKING ON BCAST."""

    def __init__(self, tracker: Tracker, addr: str) -> None:
        self.tracker = tracker
        self.addr = addr
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=ErrorReply)  # type: ignore[arg-type]
        handshake = tracker.state.pool.handshake(True)
        assert handshake is not None  # HELLO 3
        self._out = handshake + _TRACKING_ON
        self._acks = 2  # HELLO's map, then +OK
        self.ready = False
        self.closed = False
        self.intentional = False
        self._pings: deque[Callable[[], None]] = deque()  # barriers, answered in order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a node that vanished silently must fail this feed in seconds
            tune_socket(sock, *self.tracker.state.pool.tcp)
        if self.closed:
            transport.close()
            return
        self._transport.write(self._out)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while not self.closed:
            try:
                value = reader.gets()
            except hiredis.ProtocolError:
                log.error("upstream_protocol_error", node=self.addr)
                self.abort()
                return
            if value is False:
                return
            if self._acks:
                self._acks -= 1
                if isinstance(value, ErrorReply):
                    log.error("tracking_handshake_failed", node=self.addr, reply=str(value))
                    self.abort()
                    return
                if not self._acks:
                    self.ready = True
                    self.tracker.on_link_ready(self)
                continue
            keys = parse_invalidation(value)
            if keys is not False:
                self.tracker.on_invalidate(keys)  # type: ignore[arg-type]
            elif not isinstance(value, list) and self._pings:  # PONG
                self._pings.popleft()()

    def ping(self, done: Callable[[], None]) -> None:
        """`done` runs once the node has answered a PING sent now (or the feed is gone):
        every invalidation of what the node did before is in by then."""
        if self.closed or self._transport is None:
            done()
            return
        self._pings.append(done)
        self._transport.write(_PING)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lost()

    def connect_failed(self, why: str) -> None:
        log.warning("tracking_connect_failed", node=self.addr, reason=why)
        self._lost()

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.tracker.on_link_lost(self)
        pings, self._pings = self._pings, deque()
        for done in pings:
            done()

    def abort(self) -> None:
        transport = self._transport
        self._lost()
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        self.intentional = True
        self._lost()
        if self._transport is not None:
            self._transport.close()


class Tracker:
    """The tracking clients, the key table, and the per-primary invalidation feeds."""

    def __init__(self, state: TrackingContext) -> None:
        self.state = state
        self.clients: dict[int, TrackedClient] = {}
        self.table = TrackingTable(state.config.limits.tracking_table_max_keys)
        self.links: dict[str, Link] = {}
        self._held: list[Held] = []
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = state.config.upstream.reconnect_backoff
        self._seen_map = state.topology.slotmap
        state.topology.on_map_changed(self._on_map_changed)

    # --- clients -------------------------------------------------------------------------

    def run(self, session: SessionLike, args: Args) -> None:
        """CLIENT TRACKING ON|OFF ..."""
        state = session.client.tracking
        request = parse_tracking(args, state, self._client_exists)
        if isinstance(request, ErrorReply):
            session.reply(request.encode())
            return
        if not request.on:
            state.disable()
            client = self.clients.get(session.id)
            if client is not None:
                self.detach(client)
            session.reply(OK)
            return
        if self.state.config.upstream.read_from != "primary":
            session.reply(replies.TRACKING_REPLICA_READS.encode())
            return
        state.enable(request)
        client = self.clients.get(session.id)
        if client is None:
            client = self.clients[session.id] = TrackedClient(session, self)
            session.tracking = client
            session.update_detour()
            session.on_close(lambda: self.detach(client))
        client.target = self._session(request.redirect) if request.redirect else None
        if self._covered():
            session.reply(OK)
            return
        held = Held(session)
        session.queue_reply_entry(held)
        self._held.append(held)
        self.ensure_links()
        # A node that never confirms must not hold the client's replies forever; what it
        # serves meanwhile is flushed when its feed comes up.
        self.state.loop.call_later(self.state.config.upstream.connect_timeout, held.release)

    def detach(self, client: TrackedClient) -> None:
        """Tracking off, RESET or disconnect."""
        session = client.session
        session.client.tracking.disable()
        if self.clients.get(session.id) is client:
            del self.clients[session.id]
        client.generation += 1
        if session.tracking is client:
            session.tracking = None
            session.update_detour()
        if not self.clients:
            self._close_links()

    def _client_exists(self, cid: int) -> bool:
        return self._session(cid) is not None

    def _session(self, cid: int) -> SessionLike | None:
        return next((s for s in self.state.sessions if s.id == cid and not s.closed), None)

    def remember(self, client: TrackedClient, keys: tuple[bytes, ...]) -> None:
        evicted = self.table.remember(client.session.id, client.generation, keys)
        for key, readers in evicted:  # past tracking_table_max_keys: as if modified
            self._notify(key, readers)

    def send_own_write(self, client: TrackedClient, args: Args, keys: tuple[bytes, ...]) -> bool:
        """NOLOOP: route the client's write here, and hold its keys as the client's own
        until every feed has passed it (a PING after the reply): the invalidations that
        arrive meanwhile are this write's, and do not go to the client. False: a request
        the session must serve itself (left to it; the client then hears of its write)."""
        topology = self.state.topology
        slotmap = topology.slotmap
        routed = route_batch(
            [args],
            0,
            topology.router,
            slotmap.owners if slotmap is not None else None,
            topology.any_primary,
            topology.read_node,
        )
        if routed.stop != 1:
            return False
        own = client.own
        for key in keys:
            own[key] = own.get(key, 0) + 1
        sink = OwnWrite(self, client, keys)
        self.state.dispatcher.execute(sink, routed, client.session.queue_reply_entry, sink.resp3)
        return True

    def after_own_write(self, client: TrackedClient, keys: tuple[bytes, ...]) -> None:
        """The write was answered: once the feed of a key's node answers a PING sent now,
        whatever invalidation the write caused there has arrived (a node answers in order),
        and the key is the client's own no more."""
        slotmap = self.state.topology.slotmap
        by_node: dict[str | None, list[bytes]] = {}
        for key in keys:
            node = slotmap.node_for_slot(key_hash_slot(key)) if slotmap is not None else None
            by_node.setdefault(node, []).append(key)
        for node, group in by_node.items():
            link = self.links.get(node) if node is not None else None
            if link is None or not link.ready:
                _release(client.own, group)  # no feed there: nothing from it to tell apart
            else:
                link.ping(lambda group=group: _release(client.own, group))  # type: ignore[misc]

    # --- invalidations -------------------------------------------------------------------

    def on_invalidate(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHALL / FLUSHDB on a node
            for client in list(self.clients.values()):
                if not client.nulled:
                    client.flush()
            self.table.clear()
            return
        for key in keys:
            readers = self.table.pop(key)
            if readers:
                self._notify(key, readers)
        for client in list(self.clients.values()):
            state = client.state
            if not state.bcast:
                continue
            own = client.own
            mine = [key for key in keys if key not in own] if own else keys
            for group in group_by_prefix(state, mine):
                client.send(group)

    def _notify(self, key: bytes, readers: dict[int, int]) -> None:
        """Tell the readers of `key` (the key is already out of the table, as in Redis,
        where a NOLOOP writer does not hear of its own write but stops tracking the key)."""
        clients = self.clients
        for cid, generation in readers.items():
            client = clients.get(cid)
            if client is None or client.generation != generation or client.state.bcast:
                continue
            if key not in client.own:
                client.send([key])

    def flush_dirty(self) -> None:
        """Some reads were not covered by a confirmed feed: flush whoever read since."""
        for client in list(self.clients.values()):
            if client.dirty:
                client.flush()
        self.table.clear()

    # --- feeds ---------------------------------------------------------------------------

    def _primaries(self) -> tuple[str, ...]:
        slotmap = self.state.topology.slotmap
        return slotmap.primaries if slotmap is not None else ()

    def _covered(self) -> bool:
        primaries = self._primaries()
        links = self.links
        return bool(primaries) and all(
            (link := links.get(addr)) is not None and link.ready for addr in primaries
        )

    def ensure_links(self) -> None:
        """A feed on every primary; none on nodes that are no longer primaries."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self.clients:
            return
        primaries = self._primaries()
        if not primaries:
            self.state.topology.request_refresh()
            self._schedule_retry()
            return
        for addr in [a for a in self.links if a not in primaries]:
            self.links.pop(addr).close()
        for addr in primaries:
            if addr not in self.links:
                link = self.links[addr] = Link(self, addr)
                self.state.spawn(self._connect(link))

    async def _connect(self, link: Link) -> None:
        pool = self.state.pool
        try:
            async with asyncio.timeout(self.state.config.upstream.connect_timeout):
                await pool.connect(lambda: link, link.addr)
        except (OSError, TimeoutError) as exc:
            link.connect_failed(pool.failure_reason(exc))

    def on_link_ready(self, link: Link) -> None:
        self._backoff = self.state.config.upstream.reconnect_backoff
        # Reads served by this node before its feed came up went unguarded.
        self.flush_dirty()
        if self._covered():
            held, self._held = self._held, []
            for entry in held:
                entry.release()

    def on_link_lost(self, link: Link) -> None:
        if self.links.get(link.addr) is link:
            del self.links[link.addr]
        if link.intentional:
            return
        if link.ready:  # from now on this node's writes go unreported: what was read goes
            log.warning("tracking_upstream_lost", node=link.addr)
            self.flush_dirty()
        self.state.topology.request_refresh()
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry is not None or not self.clients:
            return
        delay = self._backoff
        upstream = self.state.config.upstream
        self._backoff = min(self._backoff * 2, upstream.resubscribe_backoff_max)
        self._retry = self.state.loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.ensure_links()

    def _on_map_changed(self) -> None:
        slotmap = self.state.topology.slotmap
        if slotmap is self._seen_map:
            return
        self._seen_map = slotmap
        if not self.clients:
            return
        # A failover or a slot move: values read before may come from a node that no
        # longer owns them (unreplicated writes, a moved slot). Redis's answer to "the data
        # may have changed under you" is FLUSHALL's null message.
        self.flush_dirty()
        self.ensure_links()

    def _close_links(self) -> None:
        for link in list(self.links.values()):
            link.close()
        self.links.clear()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None


def _release(own: dict[bytes, int], keys: list[bytes]) -> None:
    for key in keys:
        count = own.get(key, 0)
        if count <= 1:
            own.pop(key, None)
        else:
            own[key] = count - 1


class OwnWrite:
    """The reply sink of a NOLOOP client's own write: passes the reply on to the session,
    and tells the tracker when it came (proxy/dispatch.py ReplySink)."""

    __slots__ = ("_client", "_done", "_keys", "_tracker", "resp3")

    # Always False: the session's own flag must not keep on_ready from telling us.
    flush_scheduled = False

    def __init__(self, tracker: Tracker, client: TrackedClient, keys: tuple[bytes, ...]) -> None:
        self._tracker = tracker
        self._client = client
        self._keys = keys
        self._done = False
        self.resp3 = client.session.resp3  # the protocol of the upstream connection to use

    def on_ready(self) -> None:
        if not self._done:
            self._done = True
            self._tracker.after_own_write(self._client, self._keys)
        self._client.session.on_ready()
