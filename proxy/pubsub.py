"""Pub/Sub in cluster mode: (P|S)SUBSCRIBE and their UNSUBSCRIBEs (issue 5).

One `Hub` per server multiplexes every client's subscriptions onto few upstream connections:
one for channels and patterns (PUBLISH reaches every node of a cluster, so any node will do)
and one per primary that owns a subscribed shard channel. A name is subscribed upstream when
its first local subscriber arrives and unsubscribed when its last one leaves. Lost
connections, slot moves and failovers are repaired in the background: messages published in
the gap are lost, as with Redis itself. Confirmations and shapes come from routing/pubsub.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Protocol, cast

import structlog

from proxy.contracts import ServerContext, SessionLike
from routing.merge import merge_fanout
from routing.pubsub import (
    SUBSCRIBE_KIND,
    UNSUBSCRIBE_KIND,
    UNSUBSCRIBE_WORD,
    UPSTREAM_WORDS,
    Kind,
    Subscriptions,
    as_push,
    encode_confirmation,
    gate_subscribed,
    merge_channel_lists,
    merge_numsub,
    parse_push,
)
from routing.redirect import parse_redirect
from routing.resp import Args, ReplyProtocolError, is_error, pack_command, reply_end
from routing.slotmap import parse_addr
from routing.slots import key_hash_slot

log = structlog.get_logger("slotless.pubsub")

_BATCH = 512  # names per upstream (re)subscribe request
_KIND_OF_WORD: dict[bytes, tuple[Kind, int]] = {
    word: (kind, i) for kind, words in UPSTREAM_WORDS.items() for i, word in enumerate(words)
}


class PubSubContext(ServerContext, Protocol):
    """The server as pub/sub sees it: it owns the Hub, made at the first (UN)SUBSCRIBE."""

    def pubsub_hub(self) -> Hub: ...


def command(session: SessionLike, state: PubSubContext, name: bytes, args: Args) -> None:
    """Serve one request the router planned as Local(name) for this module."""
    client = session.pubsub
    if not isinstance(client, ClientPubSub):
        client = ClientPubSub(session, state.pubsub_hub())
    client.run(name, args)


def merge_introspection(hub: Hub | None, args: Args, raws: list[bytes]) -> bytes:
    """PUBSUB CHANNELS/NUMSUB/NUMPAT/SHARDCHANNELS/SHARDNUMSUB over every node's reply,
    counting the clients subscribed through slotless instead of its shared subscriptions."""
    sub = args[1].lower()
    if sub in (b"channels", b"shardchannels"):
        return merge_channel_lists(raws)
    if sub in (b"numsub", b"shardnumsub"):
        kind: Kind = "channel" if sub == b"numsub" else "shard"
        names = args[2:]
        if hub is None:
            return merge_numsub(raws, names, {}, {})
        return merge_numsub(raws, names, hub.upstream_counts(kind, names), hub.local_counts(kind))
    return merge_fanout("agg_sum", raws)


class Pending:
    """A confirmation held back until the upstream has the subscription (or gave up)."""

    __slots__ = ("_raw", "_session", "reply")

    def __init__(self, session: SessionLike, raw: bytes) -> None:
        self._session = session
        self._raw = raw
        self.reply: bytes | None = None

    def release(self) -> None:
        if self.reply is None:
            self.reply = self._raw
            self._session.on_ready()


class ClientPubSub:
    """One client in the hub: sees its requests while it has subscriptions (session.pubsub),
    which are `session.client.subs` (routing/pubsub.py has the rules)."""

    __slots__ = ("_hooked", "hub", "session")

    def __init__(self, session: SessionLike, hub: Hub) -> None:
        self.session = session
        self.hub = hub
        self._hooked = False

    @property
    def subs(self) -> Subscriptions:
        return self.session.client.subs

    def intercept(self, args: Args) -> bool:
        if args[0].lower() == b"reset":
            self.drop_all()
            return False
        session = self.session
        client = session.client
        raw = gate_subscribed(client.subs, client.resp3, args, self.hub.state.topology.table)
        if raw is None:
            return False
        session.reply(raw)
        return True

    def run(self, name: bytes, args: Args) -> None:
        session = self.session
        resp3 = session.resp3
        kind = SUBSCRIBE_KIND.get(name)
        if kind is not None:
            for channel, count, new in self.subs.subscribe(kind, args[1:]):
                if new:
                    self.hub.add(kind, channel, self)
                raw = encode_confirmation(name, channel, count, resp3)
                session.queue_reply_entry(self.hub.confirmation(kind, channel, session, raw))
            session.on_ready()
            self._attach()
            return
        kind = UNSUBSCRIBE_KIND[name]
        for gone, count, was in self.subs.unsubscribe(kind, args[1:]):
            if was and gone is not None:
                self.hub.remove(kind, gone, self)
            session.reply(encode_confirmation(name, gone, count, resp3))
        if self.subs.total() == 0:
            self._detach()

    def _attach(self) -> None:
        session = self.session
        if session.pubsub is not self:
            session.pubsub = self
            session.update_detour()
        if not self._hooked:
            self._hooked = True
            session.on_close(self.drop_all)

    def _detach(self) -> None:
        if self.session.pubsub is self:
            self.session.pubsub = None
            self.session.update_detour()

    def drop_all(self) -> None:
        """RESET or disconnect: leave everything without telling the client."""
        if self.session.pubsub is not self:
            # An earlier one of this session (subscribed, then unsubscribed from all): it is
            # in no hub set, and the client's subscriptions, if any, are the current one's.
            return
        for kind in UNSUBSCRIBE_WORD:
            for channel, _, was in self.subs.unsubscribe(kind, ()):
                if was and channel is not None:
                    self.hub.remove(kind, channel, self)
        self._detach()

    def deliver(self, raw2: bytes, raw3: bytes) -> None:
        session = self.session
        # Too far behind (limits.max_pubsub_backlog): dropped, as Redis drops a subscriber past
        # client-output-buffer-limit pubsub; messages must not pile up without bound.
        if len(session.queued_entries) >= self.hub.state.config.limits.max_pubsub_backlog:
            if session.closed:
                return
            log.warning("pubsub_client_too_slow", conn_id=session.id)
            session.abort()
            return
        session.reply(raw3 if session.resp3 else raw2)


class Link(asyncio.Protocol):
    """One upstream subscriber connection (RESP2): requests out, acks and messages in."""

    def __init__(self, hub: Hub, addr: str) -> None:
        self.hub = hub
        self.addr = addr
        self.host = parse_addr(addr)[0]
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._buf = bytearray()
        self._skip = 0
        self.closed = False
        self.intentional = False
        # Requests sent and not fully acknowledged: [kind, unsubscribe?, names, acks left].
        self.sent: deque[tuple[Kind, bool, list[bytes], list[int]]] = deque()
        self.confirmed: set[tuple[Kind, bytes]] = set()
        handshake = hub.state.pool.handshake(False)
        if handshake is not None:
            self._out.append(handshake)
            self._skip = 1

    def request(self, kind: Kind, unsubscribe: bool, names: list[bytes]) -> None:
        """(UN)SUBSCRIBE names, in batches; per-slot batches are the caller's business."""
        if self.closed or not names:
            return
        words = UPSTREAM_WORDS[kind]
        word = words[1] if unsubscribe else words[0]
        for i in range(0, len(names), _BATCH):
            batch = names[i : i + _BATCH]
            if unsubscribe:
                for name in batch:
                    self.confirmed.discard((kind, name))
            self.sent.append((kind, unsubscribe, batch, [len(batch)]))
            raw = pack_command([word, *batch])
            if self._transport is None:
                self._out.append(raw)
            else:
                self._transport.write(raw)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.closed:
            transport.close()
        elif self._out:
            self._transport.write(b"".join(self._out))
            self._out.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        try:
            while True:
                end = reply_end(buf, pos)
                if end < 0:
                    break
                frame = bytes(buf[pos:end])
                pos = end
                if self._skip:
                    self._skip -= 1
                    if is_error(frame):
                        log.error("upstream_handshake_failed", node=self.addr)
                    continue
                self.hub.on_frame(self, frame)
                if self.closed:
                    return
        except ReplyProtocolError:
            log.error("upstream_protocol_error", node=self.addr)
            self.abort()
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed:
            self.closed = True
            self.hub.on_link_lost(self)

    def connect_failed(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.on_link_lost(self)

    def abort(self) -> None:
        """Drop the connection as if the node had; the hub repairs."""
        transport = self._transport
        self.connect_failed()
        if transport is not None:
            transport.close()

    def close(self) -> None:
        if not self.closed:
            self.intentional = True
            self.closed = True
            self.hub.on_link_lost(self)
        if self._transport is not None:
            self._transport.close()


class Hub:
    """Which local clients want which names, and the upstream connections that carry them."""

    def __init__(self, state: ServerContext) -> None:
        self.state = state
        self.subscribers: dict[Kind, dict[bytes, set[ClientPubSub]]] = {
            "channel": {},
            "pattern": {},
            "shard": {},
        }
        self._classic: Link | None = None
        self._shard_links: dict[str, Link] = {}
        self._home: dict[bytes, str] = {}  # shard channel -> node it is subscribed on
        self._waiting: dict[tuple[Kind, bytes], list[Pending]] = {}
        self._wake = asyncio.Event()
        self._need_refresh = False
        self._seen_map: object = None
        # A new slot map may have moved a shard channel's slot: look then, not on a timer.
        state.topology.on_map_changed(self._wake.set)
        state.spawn(self._maintain())

    # --- local subscribers -------------------------------------------------------------

    def add(self, kind: Kind, name: bytes, client: ClientPubSub) -> None:
        clients = self.subscribers[kind].get(name)
        if clients is not None:
            clients.add(client)
            return
        self.subscribers[kind][name] = {client}
        if kind == "shard":
            self._subscribe_shard([name])
            return
        link = self._classic
        if link is None:
            self._connect_classic()
        else:
            link.request(kind, False, [name])

    def remove(self, kind: Kind, name: bytes, client: ClientPubSub) -> None:
        clients = self.subscribers[kind].get(name)
        if clients is None:
            return
        clients.discard(client)
        if clients:
            return
        del self.subscribers[kind][name]
        if kind != "shard":
            if self._classic is not None:
                self._classic.request(kind, True, [name])
            return
        addr = self._home.pop(name, None)
        link = self._shard_links.get(addr) if addr is not None else None
        if link is not None:
            link.request("shard", True, [name])
            if not any(home == addr for home in self._home.values()):
                del self._shard_links[link.addr]
                link.close()

    def confirmation(self, kind: Kind, name: bytes, session: SessionLike, raw: bytes) -> Pending:
        """The client's confirmation, ready once the upstream has `name` subscribed."""
        entry = Pending(session, raw)
        link = self._link_of(kind, name)
        if link is None or link.closed or (kind, name) in link.confirmed:
            entry.release()
        else:
            self._waiting.setdefault((kind, name), []).append(entry)
            # A node that never answers must not hold the client's replies forever.
            self.state.loop.call_later(self.state.config.upstream.command_timeout, entry.release)
        return entry

    def _link_of(self, kind: Kind, name: bytes) -> Link | None:
        if kind != "shard":
            return self._classic
        addr = self._home.get(name)
        return self._shard_links.get(addr) if addr is not None else None

    def _release(self, kind: Kind, names: list[bytes]) -> None:
        for name in names:
            for entry in self._waiting.pop((kind, name), ()):
                entry.release()

    def local_counts(self, kind: Kind) -> dict[bytes, int]:
        return {name: len(clients) for name, clients in self.subscribers[kind].items()}

    def upstream_counts(self, kind: Kind, names: Args) -> dict[bytes, int]:
        """1 for each name slotless itself holds subscribed upstream."""
        out = {}
        for name in names:
            link = self._link_of(kind, name)
            if link is not None and (kind, name) in link.confirmed:
                out[name] = 1
        return out

    # --- upstream connections ----------------------------------------------------------

    def _open(self, addr: str) -> Link:
        link = Link(self, addr)
        self.state.spawn(self._connect(link))
        return link

    async def _connect(self, link: Link) -> None:
        try:
            async with asyncio.timeout(self.state.config.upstream.connect_timeout):
                await self.state.pool.connect(lambda: link, link.addr)
        except (OSError, TimeoutError) as exc:
            why = self.state.pool.failure_reason(exc)
            log.warning("pubsub_connect_failed", node=link.addr, reason=why)
            link.connect_failed()

    def _connect_classic(self) -> None:
        topology = self.state.topology
        addr = topology.any_primary() or topology.seeds[0]
        link = self._classic = self._open(addr)
        for kind in ("channel", "pattern"):
            link.request(kind, False, list(self.subscribers[kind]))

    def _subscribe_shard(self, names: list[bytes]) -> None:
        """SSUBSCRIBE each name on its slot's owner, one request per slot (CROSSSLOT)."""
        slotmap = self.state.topology.slotmap
        if slotmap is None:
            self._need_refresh = True
            self._wake.set()
            return
        by_slot: dict[int, list[bytes]] = {}
        for name in names:
            by_slot.setdefault(key_hash_slot(name), []).append(name)
        for slot, group in by_slot.items():
            addr = slotmap.node_for_slot(slot)
            if addr is None:
                self._need_refresh = True
                self._wake.set()
                continue
            link = self._shard_links.get(addr)
            if link is None or link.closed:
                link = self._shard_links[addr] = self._open(addr)
            for name in group:
                self._home[name] = addr
            link.request("shard", False, group)

    def on_link_lost(self, link: Link) -> None:
        for kind, unsubscribe, names, _ in link.sent:
            if not unsubscribe:
                self._release(kind, names)
        link.sent.clear()
        link.confirmed.clear()
        if link.intentional:
            return
        log.warning("pubsub_upstream_lost", node=link.addr)
        if link is self._classic:
            self._classic = None
        if self._shard_links.get(link.addr) is link:
            del self._shard_links[link.addr]
            for name in [n for n, home in self._home.items() if home == link.addr]:
                del self._home[name]
        self._need_refresh = True
        self._wake.set()
        self.state.topology.request_refresh()

    def on_frame(self, link: Link, raw: bytes) -> None:
        if is_error(raw):
            self._on_error(link, raw)
            return
        items = parse_push(raw)
        if not items or len(items) < 3:
            return
        word = items[0]
        if word == b"message" or word == b"smessage":
            kind: Kind = "channel" if word == b"message" else "shard"
            if kind == "shard" and self._home.get(items[1]) != link.addr:
                return  # a leftover subscription on a node that no longer owns the slot
            self._deliver(self.subscribers[kind].get(items[1]), raw)
        elif word == b"pmessage":
            self._deliver(self.subscribers["pattern"].get(items[1]), raw)
        else:
            known = _KIND_OF_WORD.get(word)
            if known is not None:
                self._on_ack(link, known[0], known[1] == 1, items[1])

    def _deliver(self, clients: set[ClientPubSub] | None, raw: bytes) -> None:
        if not clients:
            return
        raw3 = as_push(raw)
        for client in clients:
            client.deliver(raw, raw3)

    def _on_ack(self, link: Link, kind: Kind, unsubscribe: bool, name: bytes) -> None:
        sent = link.sent
        head = sent[0] if sent else None
        solicited = (
            head is not None
            and head[0] == kind
            and head[1] == unsubscribe
            and (name in head[2] or not unsubscribe)
        )
        if solicited:
            assert head is not None
            head[3][0] -= 1
            if head[3][0] <= 0:
                sent.popleft()
            if not unsubscribe:
                link.confirmed.add((kind, name))
                self._release(kind, [name])
            return
        if kind == "shard" and unsubscribe:
            # The node gave the slot away (resharding, failover): subscribe on the new owner.
            link.confirmed.discard((kind, name))
            if self._home.get(name) == link.addr:
                del self._home[name]
                log.info("pubsub_shard_channel_moved", node=link.addr)
                self._need_refresh = True
                self._wake.set()

    def _on_error(self, link: Link, raw: bytes) -> None:
        failed = link.sent.popleft() if link.sent else None
        if failed is None:
            return
        kind, unsubscribe, names, _ = failed
        self._release(kind, names)
        if unsubscribe:
            return
        redirect = parse_redirect(raw, link.host, self.state.topology.remap)
        if redirect is not None and redirect.kind == "moved":
            self.state.topology.on_moved(redirect.slot, redirect.node)
        else:
            log.warning("pubsub_subscribe_failed", node=link.addr, error=raw[:200])
            self._need_refresh = True
        for name in names:
            if kind == "shard" and self._home.get(name) == link.addr:
                del self._home[name]
        if kind != "shard":
            # Not subscribed where we thought: start that connection over.
            link.abort()
        self._wake.set()

    # --- repair --------------------------------------------------------------------------

    async def _maintain(self) -> None:
        upstream = self.state.config.upstream
        backoff = upstream.reconnect_backoff
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if await self._repair():
                    backoff = upstream.reconnect_backoff
                    continue
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, upstream.resubscribe_backoff_max)
                self._wake.set()
        finally:
            self._close_all()

    async def _repair(self) -> bool:
        """Put every subscription back where it belongs; False when something is missing."""
        topology = self.state.topology
        classic = self._classic
        primary = topology.primary if topology.mode == "sentinel" else None
        if classic is not None and primary is not None and classic.addr != primary:
            # A failover: subscribe everything again on the new primary.
            log.info("pubsub_primary_changed", node=classic.addr, primary=primary)
            classic.abort()
        if self._need_refresh:
            self._need_refresh = False
            await topology.refresh()
        wanted = self.subscribers
        if self._classic is None and (wanted["channel"] or wanted["pattern"]):
            self._connect_classic()
        slotmap = topology.slotmap
        if slotmap is not self._seen_map and slotmap is not None:
            self._seen_map = slotmap
            for name, addr in list(self._home.items()):
                owner = slotmap.node_for_slot(key_hash_slot(name))
                if owner != addr:
                    del self._home[name]
                    old = self._shard_links.get(addr)
                    if old is not None:
                        old.request("shard", True, [name])
        homeless = [name for name in wanted["shard"] if name not in self._home]
        if homeless:
            self._subscribe_shard(homeless)
        self._close_idle_links()
        return not self._need_refresh and all(name in self._home for name in wanted["shard"])

    def _close_idle_links(self) -> None:
        used = set(self._home.values())
        for addr in [a for a in self._shard_links if a not in used]:
            self._shard_links.pop(addr).close()

    def _close_all(self) -> None:
        if self._classic is not None:
            self._classic.close()
        for link in self._shard_links.values():
            link.close()
        self._shard_links.clear()
