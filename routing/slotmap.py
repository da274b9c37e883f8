"""SlotMap: an immutable snapshot of which primary serves each of the 16384 slots.

Built from CLUSTER SLOTS / CLUSTER SHARDS replies; `with_moved` returns a new map (Envoy's
SlotArray behind a shared_ptr<const>). Nothing mutates a SlotMap in place, so a request
planned against one snapshot never sees half an update.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from routing.slots import SLOT_COUNT


@dataclass(frozen=True, slots=True)
class Shard:
    primary: str
    replicas: tuple[str, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()


AddressMap = Callable[[str], str]


def _same(addr: str) -> str:
    return addr


class SlotMap:
    """Slot -> primary address ("host:port"), plus the shards with their replicas."""

    __slots__ = ("owners", "shards")

    def __init__(self, owners: Sequence[str | None], shards: Sequence[Shard]) -> None:
        if len(owners) != SLOT_COUNT:
            raise ValueError("a slot map has exactly 16384 entries")
        self.owners: tuple[str | None, ...] = tuple(owners)
        self.shards: tuple[Shard, ...] = tuple(shards)

    @classmethod
    def single(cls, addr: str, replicas: tuple[str, ...] = ()) -> "SlotMap":
        """Every slot on one node: standalone and sentinel mode use the same routing as a
        cluster (sentinel mode lists the primary's replicas, for upstream.read_from)."""
        return cls([addr] * SLOT_COUNT, [Shard(addr, replicas, ((0, SLOT_COUNT - 1),))])

    @classmethod
    def from_cluster_slots(
        cls, reply: object, seed_host: str, remap: AddressMap = _same
    ) -> "SlotMap | None":
        """Parse a CLUSTER SLOTS reply (cluster.c clusterReplyMultiBulkSlots); None if malformed.

        An empty or '?' host means "the address you asked", hence `seed_host`.
        """
        if not isinstance(reply, list):
            return None
        owners: list[str | None] = [None] * SLOT_COUNT
        shards: dict[str, tuple[list[str], list[tuple[int, int]]]] = {}
        for entry in reply:
            if not isinstance(entry, list) or len(entry) < 3:
                return None
            start, end = entry[0], entry[1]
            if not (isinstance(start, int) and isinstance(end, int)):
                return None
            if not 0 <= start <= end < SLOT_COUNT:
                return None
            nodes = [_node_addr(n, seed_host, remap) for n in entry[2:]]
            primary = nodes[0]
            if primary is None:
                return None
            replicas = [n for n in nodes[1:] if n is not None]
            known, ranges = shards.setdefault(primary, ([], []))
            known.extend(r for r in replicas if r not in known)
            ranges.append((start, end))
            owners[start : end + 1] = [primary] * (end - start + 1)
        return cls(
            owners,
            [Shard(p, tuple(r), tuple(sorted(rg))) for p, (r, rg) in shards.items()],
        )

    @classmethod
    def from_cluster_shards(
        cls, reply: object, seed_host: str, remap: AddressMap = _same
    ) -> "SlotMap | None":
        """Parse a RESP2 CLUSTER SHARDS reply (Redis 7.0+); None if malformed."""
        if not isinstance(reply, list):
            return None
        owners: list[str | None] = [None] * SLOT_COUNT
        shards = []
        for raw in reply:
            shard = _pairs(raw)
            slots, nodes = shard.get(b"slots"), shard.get(b"nodes")
            if not isinstance(slots, list) or not isinstance(nodes, list):
                return None
            primary, replicas = None, []
            for raw_node in nodes:
                node = _pairs(raw_node)
                addr = _shard_node_addr(node, seed_host, remap)
                if addr is None or node.get(b"health") == b"fail":
                    continue
                if node.get(b"role") == b"master":
                    primary = addr
                else:
                    replicas.append(addr)
            if not slots:
                continue
            if primary is None or len(slots) % 2:
                return None
            ranges = list(zip(slots[::2], slots[1::2], strict=True))
            for start, end in ranges:
                if not (isinstance(start, int) and isinstance(end, int)):
                    return None
                if not 0 <= start <= end < SLOT_COUNT:
                    return None
                owners[start : end + 1] = [primary] * (end - start + 1)
            shards.append(Shard(primary, tuple(replicas), tuple(ranges)))
        return cls(owners, shards)

    def node_for_slot(self, slot: int) -> str | None:
        return self.owners[slot]

    @property
    def primaries(self) -> tuple[str, ...]:
        return tuple(s.primary for s in self.shards)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every known address, primaries first."""
        return self.primaries + tuple(r for s in self.shards for r in s.replicas)

    def covered(self) -> int:
        """How many slots have an owner."""
        return SLOT_COUNT - self.owners.count(None)

    def with_moved(self, slot: int, addr: str) -> "SlotMap":
        """A new map where `slot` belongs to `addr` (what a MOVED reply says)."""
        if self.owners[slot] == addr:
            return self
        owners = list(self.owners)
        owners[slot] = addr
        shards = list(self.shards)
        if addr not in self.primaries:
            shards.append(Shard(addr))
        return SlotMap(owners, shards)

    def summary(self) -> list[str]:
        """One "host:port 0-5460,..." line per shard, for logs."""
        return [
            f"{s.primary} {','.join(f'{a}-{b}' for a, b in s.ranges)} replicas={len(s.replicas)}"
            for s in self.shards
        ]

    def same_layout(self, other: "SlotMap") -> bool:
        return self.owners == other.owners and self.shards == other.shards


def _node_addr(node: object, seed_host: str, remap: AddressMap) -> str | None:
    if not isinstance(node, list) or len(node) < 2:
        return None
    host, port = node[0], node[1]
    if not isinstance(port, int) or not isinstance(host, bytes):
        return None
    return remap(format_addr(_host(host, seed_host), port))


def _shard_node_addr(node: dict[bytes, object], seed_host: str, remap: AddressMap) -> str | None:
    port = node.get(b"port", node.get(b"tls-port"))
    host = node.get(b"endpoint", node.get(b"ip"))
    if not isinstance(port, int) or not isinstance(host, bytes):
        return None
    return remap(format_addr(_host(host, seed_host), port))


def _host(raw: bytes, seed_host: str) -> str:
    text = raw.decode("ascii", "replace")
    return seed_host if text in ("", "?") else text


def _pairs(raw: object) -> dict[bytes, object]:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, list):
        return {}
    return {k: v for k, v in zip(raw[::2], raw[1::2], strict=False) if isinstance(k, bytes)}


def format_addr(host: str, port: int) -> str:
    """ "host:port", with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_addr(addr: str) -> tuple[str, int]:
    """Inverse of format_addr; raises ValueError on a malformed address."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad address {addr!r}")
    return host.strip("[]"), int(port)


def distinct(addrs: Iterable[str]) -> list[str]:
    """Addresses in first-seen order without repeats."""
    return list(dict.fromkeys(addrs))
