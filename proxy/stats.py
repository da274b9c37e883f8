"""Stats: the plain counters the hot path bumps, read by proxy/metrics.py at scrape time.

Nothing here imports prometheus-client or runs per request beyond an integer (or one
C-level Counter update per client read): the collectors turn these into metric families
when /metrics is asked. Latency is sampled (one routed batch in `SAMPLE_EVERY`), or
measured for every batch while the slow log is on.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypedDict

import structlog

from routing.accel import HOT_PATH
from routing.commands import CommandTable

if TYPE_CHECKING:
    from proxy.pool import UpstreamPool
    from proxy.topology import Topology

log = structlog.get_logger("slotless.slowlog")

# One routed batch in this many is timed for the latency histogram (slow log off).
SAMPLE_EVERY: Final = 64
# Upper bounds of the latency histogram's buckets, in seconds (+Inf is implied).
BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# The histogram's command groups, from the command's ACL categories (first match wins).
GROUPS: Final = (
    "string", "hash", "list", "set", "sortedset", "stream", "bitmap", "hyperloglog", "geo",
    "pubsub", "scripting", "transaction", "connection", "keyspace", "admin",
)  # fmt: skip
OTHER: Final = "other"
UNKNOWN: Final = "unknown"  # the label of a name the command table does not know
# Distinct raw command names (any case, typos) kept before they are folded into the table's
# names: a client sending random names cannot grow the counter without bound.
MAX_NAMES: Final = 1024
REDIRECT_KINDS: Final = ("moved", "ask", "tryagain", "clusterdown", "loading")


class Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class Stats:
    """Counters shared by one process's sessions and dispatcher (ServerState owns it)."""

    def __init__(self, slowlog_threshold_ms: float = 0.0) -> None:
        # Requests read, by raw command name (args[0], any case); see fold(). A plain dict:
        # routing.route.count_names counts into it once per client read.
        self.commands: dict[bytes, int] = {}
        # Error replies by command name: from the nodes or slotless's routing (error), or
        # because slotless got no answer from a node (proxy_error).
        self.errors: Counter[bytes] = Counter()
        self.proxy_errors: Counter[bytes] = Counter()
        self.redirects = dict.fromkeys(REDIRECT_KINDS, 0)
        self.downstream_cx_total = 0
        self.downstream_cx_rejected = 0
        # Bytes of clients that have gone; live sessions keep their own until they close.
        self.closed_rx_bytes = 0
        self.closed_tx_bytes = 0
        self.latency: dict[str, Histogram] = {}
        self._groups: dict[bytes, str] = {}
        self.sample_every = SAMPLE_EVERY
        self.slowlog_threshold = 0.0
        self.configure(slowlog_threshold_ms)

    def configure(self, slowlog_threshold_ms: float) -> None:
        """The slow log needs every batch timed; without it one in SAMPLE_EVERY is."""
        self.slowlog_threshold = slowlog_threshold_ms / 1000.0
        self.sample_every = 1 if slowlog_threshold_ms > 0 else SAMPLE_EVERY

    def fold(self, table: CommandTable) -> None:
        """Merge the raw names counted so far into the table's lowercase names."""
        for counter in (self.commands, self.errors, self.proxy_errors):
            folded: Counter[bytes] = Counter()
            for name, count in counter.items():
                folded[command_label(table, name).encode()] += count
            counter.clear()
            counter.update(folded)

    def timed(
        self,
        table: CommandTable,
        name: bytes,
        node: str,
        seconds: float,
        count: int = 1,
        client: str | None = None,
    ) -> None:
        """One timed request (or batch of `count` pipelined ones, `name` the first)."""
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = command_group(table, name)
            if len(self._groups) > MAX_NAMES:
                self._groups.clear()
        histogram = self.latency.get(group)
        if histogram is None:
            histogram = self.latency[group] = Histogram()
        histogram.observe(seconds)
        if self.slowlog_threshold and seconds >= self.slowlog_threshold:
            log.warning(
                "slow_request",
                command=command_label(table, name),
                node=node,
                client=client,
                duration_ms=round(seconds * 1000, 3),
                pipelined=count if count > 1 else None,
            )


def command_label(table: CommandTable, name: bytes) -> str:
    """The bounded label of a raw command name: the table's name, else "unknown"."""
    spec = table.get(name)
    return spec.name.decode("ascii", "replace").lower() if spec is not None else UNKNOWN


def command_group(table: CommandTable, name: bytes) -> str:
    spec = table.get(name)
    if spec is None:
        return OTHER
    categories = {c.lstrip(b"@").decode("ascii", "replace") for c in spec.acl_categories}
    return next((g for g in GROUPS if g in categories), OTHER)


class SessionFigures(Protocol):
    """What the figures read from one client session."""

    rx_bytes: int
    tx_bytes: int

    @property
    def pending_replies(self) -> int: ...

    @property
    def reading_paused(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class NodeFigures:
    connections: int  # open now
    requests: int  # sent, over every connection so far
    errors: int  # connections lost or never made
    reconnects: int


@dataclass(frozen=True, slots=True)
class Figures:
    """One consistent read of every counter: /metrics and INFO's `# Proxy` show these."""

    hot_path: str
    downstream_cx_active: int
    downstream_cx_total: int
    downstream_cx_rejected: int
    rx_bytes: int
    tx_bytes: int
    pending_replies: int
    paused_clients: int
    commands: dict[str, tuple[int, int, int]]  # name -> (ok, error, proxy_error)
    redirects: dict[str, int]
    nodes: dict[str, NodeFigures]
    slot_map_refreshes: int
    slots_covered: int
    latency: dict[str, tuple[list[int], float]]  # group -> (per-bucket counts, sum)

    def command_totals(self) -> tuple[int, int, int]:
        ok = error = proxy_error = 0
        for a, b, c in self.commands.values():
            ok, error, proxy_error = ok + a, error + b, proxy_error + c
        return ok, error, proxy_error


def figures(
    stats: Stats,
    sessions: Iterable[SessionFigures],
    pool: UpstreamPool,
    topology: Topology,
) -> Figures:
    rx, tx = stats.closed_rx_bytes, stats.closed_tx_bytes
    active = pending = paused = 0
    for session in sessions:
        active += 1
        rx += session.rx_bytes
        tx += session.tx_bytes
        pending += session.pending_replies
        paused += session.reading_paused
    slotmap = topology.slotmap
    return Figures(
        hot_path=hot_path(),
        downstream_cx_active=active,
        downstream_cx_total=stats.downstream_cx_total,
        downstream_cx_rejected=stats.downstream_cx_rejected,
        rx_bytes=rx,
        tx_bytes=tx,
        pending_replies=pending,
        paused_clients=paused,
        commands=_commands(stats, topology.table),
        redirects=dict(stats.redirects),
        nodes={
            addr: NodeFigures(up, sent, pool.errors[addr], pool.reconnects[addr])
            for addr, (up, sent) in sorted(pool.node_stats().items())
        },
        slot_map_refreshes=topology.refreshes,
        slots_covered=slotmap.covered() if slotmap is not None else 0,
        latency={g: (list(h.counts), h.total) for g, h in sorted(stats.latency.items())},
    )


def _commands(stats: Stats, table: CommandTable) -> dict[str, tuple[int, int, int]]:
    def labelled(counter: Mapping[bytes, int]) -> Counter[str]:
        out: Counter[str] = Counter()
        for name, count in list(counter.items()):
            out[command_label(table, name)] += count
        return out

    total, errors, proxy = (labelled(c) for c in (stats.commands, stats.errors, stats.proxy_errors))
    return {
        name: (max(0, count - errors[name] - proxy[name]), errors[name], proxy[name])
        for name, count in sorted(total.items())
    }


def hot_path() -> str:
    """Which per-request path runs: "compiled" (routing/accel.py's extension) or "pure"."""
    return HOT_PATH


class ProxyFigures(TypedDict):
    hot_path: str
    total_connections_received: int
    rejected_connections: int
    total_commands_processed: int
    command_errors: int
    proxy_errors: int
    redirects_moved: int
    redirects_ask: int
    retries_tryagain: int
    retries_clusterdown: int
    total_net_input_bytes: int
    total_net_output_bytes: int
    pending_replies: int
    paused_clients: int
    upstream_connections: int
    upstream_requests: int
    upstream_reconnects: int


def proxy_figures(figures: Figures) -> ProxyFigures:
    """The figures as routing.info.ProxyInfo's issue-14 fields (INFO's `# Proxy`)."""
    ok, error, proxy_error = figures.command_totals()
    nodes = figures.nodes.values()
    return {
        "hot_path": figures.hot_path,
        "total_connections_received": figures.downstream_cx_total,
        "rejected_connections": figures.downstream_cx_rejected,
        "total_commands_processed": ok + error + proxy_error,
        "command_errors": error,
        "proxy_errors": proxy_error,
        "redirects_moved": figures.redirects["moved"],
        "redirects_ask": figures.redirects["ask"],
        "retries_tryagain": figures.redirects["tryagain"],
        "retries_clusterdown": figures.redirects["clusterdown"],
        "total_net_input_bytes": figures.rx_bytes,
        "total_net_output_bytes": figures.tx_bytes,
        "pending_replies": figures.pending_replies,
        "paused_clients": figures.paused_clients,
        "upstream_connections": sum(n.connections for n in nodes),
        "upstream_requests": sum(n.requests for n in nodes),
        "upstream_reconnects": sum(n.reconnects for n in nodes),
    }
