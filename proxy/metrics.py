"""What the admin endpoint serves: /metrics made by prometheus-client collectors, and readiness.

The collector reads proxy/stats.py's figures at scrape time, so the hot path only ever bumps
integers. Label values are bounded: command names come from the command table (else
"unknown"), nodes from the slot map and the pool. With workers, each worker writes its
metrics and readiness to a file the parent reads (proxy/admin.py WorkersSource).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from proxy.stats import BUCKETS, Figures
from proxy.topology import Topology
from routing.slots import SLOT_COUNT

log = structlog.get_logger("slotless.admin")

PREFIX = "slotless_"
REPORT_INTERVAL = 1.0  # seconds between a worker's reports to the parent


class AdminState(Protocol):
    """The server as the admin endpoint sees it (proxy/server.py ServerState)."""

    @property
    def topology(self) -> Topology: ...

    @property
    def accepting(self) -> bool: ...

    def figures(self) -> Figures: ...


class SlotlessCollector(Collector):
    def __init__(self, state: AdminState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        return iter(metric_families(self._state.figures()))


def metric_families(f: Figures) -> list[Metric]:
    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(PREFIX + name, doc, value=value)

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(PREFIX + name, doc, value=value)

    hot = GaugeMetricFamily(
        PREFIX + "hot_path_info", "The per-request path running (1)", labels=["path"]
    )
    hot.add_metric([f.hot_path], 1)
    commands = CounterMetricFamily(
        PREFIX + "commands", "Client requests by command and outcome", labels=["command", "outcome"]
    )
    for name, counts in f.commands.items():
        for outcome, count in zip(("ok", "error", "proxy_error"), counts, strict=True):
            commands.add_metric([name, outcome], count)
    latency = HistogramMetricFamily(
        PREFIX + "command_duration_seconds",
        "Time from sending to the last reply, per command group (sampled; every "
        "request while the slow log is on)",
        labels=["group"],
    )
    for group, (per_bucket, total) in f.latency.items():
        running, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), per_bucket, strict=True):
            running += count
            buckets.append((bound, running))
        latency.add_metric([group], buckets, sum_value=total)
    redirects = CounterMetricFamily(
        PREFIX + "redirects", "Redirects and retries absorbed, by kind", labels=["kind"]
    )
    for kind, count in f.redirects.items():
        redirects.add_metric([kind], count)
    cx = GaugeMetricFamily(
        PREFIX + "upstream_cx_active", "Open connections per node", labels=["node"]
    )
    rq = CounterMetricFamily(PREFIX + "upstream_rq", "Requests sent per node", labels=["node"])
    errors = CounterMetricFamily(
        PREFIX + "upstream_errors", "Connections lost or never made per node", labels=["node"]
    )
    reconnects = CounterMetricFamily(
        PREFIX + "upstream_reconnects", "Connections opened again per node", labels=["node"]
    )
    for node, n in f.nodes.items():
        cx.add_metric([node], n.connections)
        rq.add_metric([node], n.requests)
        errors.add_metric([node], n.errors)
        reconnects.add_metric([node], n.reconnects)
    return [
        hot,
        gauge("downstream_cx_active", "Client connections open", f.downstream_cx_active),
        counter("downstream_cx", "Client connections accepted", f.downstream_cx_total),
        counter(
            "downstream_cx_rejected",
            "Client connections refused (limits)",
            f.downstream_cx_rejected,
        ),
        counter("downstream_rx_bytes", "Bytes read from clients", f.rx_bytes),
        counter("downstream_tx_bytes", "Bytes written to clients", f.tx_bytes),
        gauge("downstream_pending_replies", "Replies owed to clients", f.pending_replies),
        gauge("downstream_paused", "Clients not read from (flow control)", f.paused_clients),
        commands,
        latency,
        redirects,
        cx,
        rq,
        errors,
        reconnects,
        counter("slot_map_refreshes", "Slot map refreshes", f.slot_map_refreshes),
        gauge("slots_covered", f"Slots the slot map serves (of {SLOT_COUNT})", f.slots_covered),
    ]


class ProcessSource:
    """The admin endpoint of one serving process: its own metrics and readiness."""

    def __init__(self, state: AdminState, ping_timeout: float) -> None:
        self._state = state
        self._ping_timeout = ping_timeout
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SlotlessCollector(state))
        self.registry.register(ProcessCollector(registry=None))

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        return await readiness(self._state, self._ping_timeout)


async def readiness(state: AdminState, ping_timeout: float) -> tuple[bool, dict[str, Any]]:
    """Ready: the slot map covers every slot and every primary answers PING."""
    if not state.accepting:
        return False, {"reason": "shutting down"}
    topology = state.topology
    slotmap = topology.slotmap
    if slotmap is None:
        if topology.mode == "sentinel":  # no primary confirmed by ROLE
            return False, {"reason": topology.no_map.message, "slots_covered": 0}
        return False, {"reason": "no slot map yet", "slots_covered": 0}
    covered = slotmap.covered()
    if covered < SLOT_COUNT:
        reason = f"the slot map covers {covered} of {SLOT_COUNT} slots"
        return False, {"reason": reason, "slots_covered": covered}
    primaries = list(slotmap.primaries)
    answers = await asyncio.gather(*(_ping(topology, addr, ping_timeout) for addr in primaries))
    down = [addr for addr, ok in zip(primaries, answers, strict=True) if not ok]
    if down:
        return False, {"reason": "primaries do not answer PING", "down": down}
    return True, {"reason": "ok", "slots_covered": covered, "primaries": len(primaries)}


async def _ping(topology: Topology, addr: str, ping_timeout: float) -> bool:
    try:
        async with asyncio.timeout(ping_timeout):
            raw = await topology.ask(addr, [b"PING"])
    except TimeoutError:
        return False
    return raw is not None and raw.startswith(b"+PONG")


class WorkerReporter:
    """A worker's side of `workers: N`: writes its metrics and readiness to
    `<report_dir>/worker-<index>.json` every REPORT_INTERVAL (atomically, by rename)."""

    def __init__(self, source: ProcessSource, report_dir: str, index: int) -> None:
        self._source = source
        self._path = os.path.join(report_dir, f"worker-{index}.json")

    async def run(self) -> None:
        while True:
            await self.report()
            await asyncio.sleep(REPORT_INTERVAL)

    async def report(self) -> None:
        ready, why = await self._source.readiness()
        self._write(
            {
                "time": time.time(),
                "pid": os.getpid(),
                "ready": ready,
                "why": why,
                "metrics": self._source.metrics().decode(),
            }
        )

    def _write(self, body: dict[str, Any]) -> None:
        tmp = f"{self._path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(body, f)
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("worker_report_failed", path=self._path, reason=str(exc))
