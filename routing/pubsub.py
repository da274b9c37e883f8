"""Pub/Sub as a standalone server shows it: reply shapes, a client's subscriptions, the
subscribed-state gate, merges.

Pure: proxy/pubsub.py owns the upstream subscriber connections and delivery. Shapes follow
Redis 7.0 pubsub.c (addReplyPubsubSubscribed/Unsubscribed, addReplyPubsubMessage) and the
subscribed-state rule of server.c processCommand. Nothing here knows about nodes or sockets.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from routing import replies
from routing.commands import CommandTable
from routing.resp import (
    Args,
    ErrorReply,
    Reply,
    encode_array,
    encode_bulk,
    encode_int,
    parse_reply,
)

Kind = Literal["channel", "pattern", "shard"]

SUBSCRIBE_KIND: Final[dict[bytes, Kind]] = {
    b"subscribe": "channel",
    b"psubscribe": "pattern",
    b"ssubscribe": "shard",
}
UNSUBSCRIBE_KIND: Final[dict[bytes, Kind]] = {
    b"unsubscribe": "channel",
    b"punsubscribe": "pattern",
    b"sunsubscribe": "shard",
}
UNSUBSCRIBE_WORD: Final[dict[Kind, bytes]] = {kind: w for w, kind in UNSUBSCRIBE_KIND.items()}
# What the upstream sends for each kind: (subscribe ack, unsubscribe ack, message).
UPSTREAM_WORDS: Final[dict[Kind, tuple[bytes, bytes, bytes]]] = {
    "channel": (b"subscribe", b"unsubscribe", b"message"),
    "pattern": (b"psubscribe", b"punsubscribe", b"pmessage"),
    "shard": (b"ssubscribe", b"sunsubscribe", b"smessage"),
}
# server.c processCommand: all a RESP2 client may send while subscribed.
ALLOWED_WHILE_SUBSCRIBED: Final = frozenset(
    b"subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe ping quit reset".split()
)


def subscribed_state_error(fullname: bytes) -> bytes:
    """server.c processCommand: a RESP2 client in subscribed state ran `fullname`."""
    return replies.subscribed_state(fullname).encode()


def encode_confirmation(word: bytes, name: bytes | None, count: int, resp3: bool) -> bytes:
    """pubsub.c addReplyPubsub(Un)Subscribed: [word, name or null, count], a push in RESP3."""
    null = b"_\r\n" if resp3 else b"$-1\r\n"
    name_raw = null if name is None else encode_bulk(name)
    head = b">3\r\n" if resp3 else b"*3\r\n"
    return head + encode_bulk(word) + name_raw + encode_int(count)


def encode_subscribed_pong(args: Sequence[bytes]) -> bytes:
    """server.c pingCommand for a RESP2 subscribed client: ["pong", argument or ""]."""
    return encode_array([encode_bulk(b"pong"), encode_bulk(args[1] if len(args) > 1 else b"")])


def as_push(raw: bytes) -> bytes:
    """A RESP2 message frame from upstream as a RESP3 client sees it (a push, same body)."""
    return b">" + raw[1:]


@dataclass(slots=True)
class Subscriptions:
    """One client's channels, patterns and shard channels, in subscription order."""

    channel: dict[bytes, None] = field(default_factory=dict)
    pattern: dict[bytes, None] = field(default_factory=dict)
    shard: dict[bytes, None] = field(default_factory=dict)

    def of(self, kind: Kind) -> dict[bytes, None]:
        if kind == "channel":
            return self.channel
        return self.pattern if kind == "pattern" else self.shard

    def count(self, kind: Kind) -> int:
        """pubsub.c: shard subscriptions count apart from channels + patterns."""
        if kind == "shard":
            return len(self.shard)
        return len(self.channel) + len(self.pattern)

    def total(self) -> int:
        return len(self.channel) + len(self.pattern) + len(self.shard)

    def subscribe(self, kind: Kind, names: Iterable[bytes]) -> list[tuple[bytes, int, bool]]:
        """Add names in order: (name, the client's count after it, whether it was new)."""
        own = self.of(kind)
        out = []
        for name in names:
            new = name not in own
            own[name] = None
            out.append((name, self.count(kind), new))
        return out

    def unsubscribe(
        self, kind: Kind, names: Sequence[bytes]
    ) -> list[tuple[bytes | None, int, bool]]:
        """Remove names (none given: all of this kind); (name, count after, was subscribed).

        With nothing to remove and no names, Redis still answers once with a null name.
        """
        own = self.of(kind)
        targets = list(names) if names else list(own)
        if not targets:
            return [(None, self.count(kind), False)]
        out: list[tuple[bytes | None, int, bool]] = []
        for name in targets:
            was = own.pop(name, 0) is None
            out.append((name, self.count(kind), was))
        return out


def gate_subscribed(
    subs: Subscriptions, resp3: bool, args: Args, table: CommandTable
) -> bytes | None:
    """server.c processCommand's subscribed-state rule: the reply that answers `args` now
    (RESP2 PING's ["pong", arg], or the error for any command outside
    ALLOWED_WHILE_SUBSCRIBED), or None to serve it as usual. RESP3 clients and clients with
    no subscription pass; so do unknown commands and wrong arities, whose own error Redis
    gives first (lookupCommand and the arity check run before the subscribed check)."""
    if resp3 or not subs.total():
        return None
    name = args[0].lower()
    if name == b"ping" and len(args) <= 2:
        return encode_subscribed_pong(args)
    if name in ALLOWED_WHILE_SUBSCRIBED:
        return None
    spec = table.resolve(args)
    if spec is None or spec.subcommands:
        return None  # unknown command, or a container without a known subcommand
    arity, argc = spec.arity, len(args)
    if argc != arity if arity >= 0 else argc < -arity:
        return None
    return subscribed_state_error(spec.name)


def parse_push(raw: bytes) -> list[bytes] | None:
    """An upstream subscriber connection's frame as its bulk strings; None if not an array."""
    value = parse_reply(raw)
    if not isinstance(value, list):
        return None
    return [v if isinstance(v, bytes) else b"%d" % v if isinstance(v, int) else b"" for v in value]


# --- PUBSUB introspection, merged over every node ------------------------------------------


def _values(raws: Sequence[bytes]) -> list[Reply] | bytes:
    """Parsed replies, or the first error as it came."""
    out: list[Reply] = []
    for raw in raws:
        value = parse_reply(raw)
        if isinstance(value, ErrorReply):
            return raw
        out.append(value)
    return out


def merge_channel_lists(raws: Sequence[bytes]) -> bytes:
    """PUBSUB CHANNELS / SHARDCHANNELS: the union of every node's list, first-seen order."""
    values = _values(raws)
    if isinstance(values, bytes):
        return values
    seen: dict[bytes, None] = {}
    for value in values:
        if isinstance(value, list):
            seen.update((v, None) for v in value if isinstance(v, bytes))
    return encode_array([encode_bulk(name) for name in seen])


def merge_numsub(
    raws: Sequence[bytes],
    names: Sequence[bytes],
    upstream: dict[bytes, int],
    local: dict[bytes, int],
) -> bytes:
    """PUBSUB NUMSUB / SHARDNUMSUB: per channel, the nodes' sum with slotless's own upstream
    subscriptions (`upstream`) replaced by the clients subscribed through slotless (`local`)."""
    values = _values(raws)
    if isinstance(values, bytes):
        return values
    totals = [0] * len(names)
    for value in values:
        if isinstance(value, list):
            for i in range(min(len(names), len(value) // 2)):
                count = value[2 * i + 1]
                totals[i] += count if isinstance(count, int) else 0
    items = []
    for name, total in zip(names, totals, strict=True):
        adjusted = total - upstream.get(name, 0) + local.get(name, 0)
        items += [encode_bulk(name), encode_int(max(adjusted, 0))]
    return encode_array(items)
