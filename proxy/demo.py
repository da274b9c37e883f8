"""`slotless demo`: a local Redis Cluster (or, with --mode sentinel, a Sentinel group: a
primary, two replicas, three sentinels) from the installed redis-server, and slotless in
front of it, until Ctrl-C. Everything it starts lives in a temporary directory and is
stopped on the way out, even on errors.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
import uvloop

from conf import Address, Config, LogConfig, UpstreamConfig
from proxy.localcluster import LocalCluster
from proxy.localsentinel import SentinelGroup
from proxy.server import Server

log = structlog.get_logger("slotless.demo")


def run_demo(
    port: int = 6380,
    primaries: int = 3,
    replicas: int = 1,
    log_format: str | None = None,
    mode: str = "cluster",
) -> int:
    if mode == "sentinel":
        return _sentinel_demo(port, log_format)
    cluster = LocalCluster(primaries=primaries, replicas=replicas)
    _say(f"starting a Redis Cluster: {primaries} primaries, {replicas} replica(s) each ...")
    try:
        cluster.start()
    except Exception as exc:  # the launcher's errors are already worded for people
        cluster.stop()
        _say(f"slotless demo: could not start the cluster: {exc}")
        return 1
    config = Config(
        listen=Address("127.0.0.1", port),
        upstream=UpstreamConfig(
            mode="cluster", nodes=tuple(Address(*_split(a)) for a in cluster.seeds)
        ),
        log=LogConfig(format="json" if log_format == "json" else "console"),
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(config, cluster.seeds))
    finally:
        cluster.stop()
        _say("demo stopped; the cluster is gone")


def _sentinel_demo(port: int, log_format: str | None) -> int:
    group = SentinelGroup()
    _say("starting a Sentinel group: a primary, 2 replicas, 3 sentinels ...")
    try:
        group.start()
    except Exception as exc:  # the launcher's errors are already worded for people
        group.stop()
        _say(f"slotless demo: could not start the sentinel group: {exc}")
        return 1
    config = Config(
        listen=Address("127.0.0.1", port),
        upstream=UpstreamConfig(
            mode="sentinel",
            sentinels=tuple(Address(*_split(a)) for a in group.sentinel_addrs),
            master_name=group.master_name,
        ),
        log=LogConfig(format="json" if log_format == "json" else "console"),
    )
    _say(
        f"sentinels: {', '.join(group.sentinel_addrs)} (master {group.master_name});"
        f" fail over with:  redis-cli -p {_split(group.sentinel_addrs[0])[1]}"
        f" sentinel failover {group.master_name}"
    )
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(config, [f"primary {group.primary}"], "sentinel group"))
    finally:
        group.stop()
        _say("demo stopped; the sentinel group is gone")


async def _serve(config: Config, seeds: list[str], what: str = "cluster") -> int:
    server = Server(config)
    try:
        host, port = await server.start()
    except OSError as exc:
        _say(f"slotless demo: cannot listen on {config.listen}: {exc}")
        return 1
    _say(
        f"\nslotless is serving the {what} ({', '.join(seeds)}) on {host}:{port}\n"
        f"try:  redis-cli -p {port} set foo bar\n"
        f"Ctrl-C stops the proxy and the {what}.\n"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(deadline=2.0)
    return 0


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
