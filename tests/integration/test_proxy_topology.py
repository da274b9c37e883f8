"""Topology changes behind slotless: a live reshard, a node that stops and comes back."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localcluster import BUS_PORT_OFFSET, LocalCluster, RedisProcess, pick_ports
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FreshCluster = Callable[..., LocalCluster]
PROGRESS = 200  # rounds each worker does between two topology steps


def strict_client(port: int, protocol: int = 2) -> redis.Redis:
    """No retries in the client: every error slotless lets through is counted."""
    return redis.Redis(port=port, protocol=protocol, retry=Retry(NoBackoff(), 0), socket_timeout=15)


class Workload(threading.Thread):
    """Writes then reads back keys until stopped; records every error it sees."""

    def __init__(self, port: int, prefix: str) -> None:
        super().__init__(daemon=True)
        self.client = strict_client(port)
        self.prefix = prefix
        self.stop_flag = threading.Event()
        self.errors: list[str] = []
        self.written: dict[str, str] = {}
        self.rounds = 0  # completed, with or without an error

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            key, value = f"{self.prefix}:{i % 3000}", f"v{i}"
            try:
                self.client.set(key, value)
                self.written[key] = value
                got = self.client.get(key)
                if got != value.encode():
                    self.errors.append(f"read {key}: {got!r} != {value!r}")
                if i % 10 == 0:
                    batch = [f"{self.prefix}:{(i + j * 7) % 3000}" for j in range(10)]
                    expected = [self.written.get(k) for k in batch]
                    got_many = self.client.mget(batch)
                    if [g.decode() if g else None for g in got_many] != expected:
                        self.errors.append(f"mget mismatch at {i}")
            except redis.RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            i += 1
            self.rounds = i
        self.client.close()


def wait_for_progress(workers: list[Workload], what: str, rounds: int = PROGRESS) -> None:
    """Until every worker has done `rounds` more rounds: the load ran against this topology."""
    targets = [w.rounds + rounds for w in workers]

    def progressed() -> bool:
        return all(w.rounds >= t for w, t in zip(workers, targets, strict=True))

    def describe() -> str:
        return (
            f"{rounds} rounds of load {what} (done {[w.rounds for w in workers]}, want {targets})"
        )

    wait_until(progressed, 30, describe, interval=0.05)


def test_reshard_under_load_is_invisible(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
        workers = [Workload(proxy.port, f"rs{n}") for n in range(3)]
        for w in workers:
            w.start()
        wait_for_progress(workers, "before the reshard")
        source, target = cluster.primaries()[0], cluster.primaries()[1]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                source,
                "--cluster-from",
                cluster.node_id(source),
                "--cluster-to",
                cluster.node_id(target),
                "--cluster-slots",
                "600",
                "--cluster-yes",
                "--cluster-pipeline",
                "10",
            ],
            check=True,
            capture_output=True,
            timeout=240,
        )
        wait_for_progress(workers, "after the reshard")
        for w in workers:
            w.stop_flag.set()
        for w in workers:
            w.join(30)
        cluster.wait_stable()
        errors = [e for w in workers for e in w.errors]
        assert errors == [], errors[:10]
        moved_slots = {key_hash_slot(k.encode()) for w in workers for k in w.written}
        assert any(cluster.owner_of_slot(s) == target for s in moved_slots)
        with strict_client(proxy.port) as check:
            for w in workers:
                keys = list(w.written)
                assert [v.decode() for v in check.mget(keys)] == [w.written[k] for k in keys]
        assert proxy.server.state is not None
        assert proxy.server.state.topology.redirects > 0  # redirects happened, absorbed


def test_stopped_node_gives_errors_then_service_resumes(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    with (
        ProxyThread(
            proxy_config("cluster", cluster.seeds, command_timeout=2.0, retry_timeout=1.0)
        ) as proxy,
        strict_client(proxy.port) as client,
    ):
        victim = cluster.primaries()[0]
        key = next(
            f"k{i}"
            for i in range(10_000)
            if cluster.owner_of_slot(key_hash_slot(b"k%d" % i)) == victim
        )
        assert client.set(key, "before")
        cluster.node(victim).stop()
        started = time.monotonic()
        try:
            client.get(key)
            raise AssertionError("a stopped node cannot serve")
        except redis.ResponseError as exc:
            assert "upstream" in str(exc) or "CLUSTERDOWN" in str(exc)
        assert time.monotonic() - started < 10
        assert client.ping()  # the client connection itself survives
        cluster.node(victim).restart()
        wait_until(
            lambda: client.set(key, "after"),
            30,
            f"the restarted {victim} to serve {key} again",
            interval=0.1,
            ignoring=(redis.ResponseError,),
        )
        assert client.get(key) == b"after"


def _redis_cli_cluster(*args: str) -> None:
    subprocess.run(["redis-cli", "--cluster", *args], check=True, capture_output=True, timeout=240)


def test_adding_then_removing_a_node_under_load_is_invisible(
    fresh_cluster: FreshCluster,
) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    first = cluster.nodes[0]
    port = pick_ports(1)[0]
    new = RedisProcess(
        port,
        first.dir.parent / "node-added",
        bus_port=port + BUS_PORT_OFFSET,
        node_timeout_ms=cluster.node_timeout_ms,
    )
    new.dir.mkdir()
    cluster.nodes.append(new)  # stopped with the cluster, and not "foreign" to it
    new.start()
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
        workers = [Workload(proxy.port, f"an{n}") for n in range(3)]
        for w in workers:
            w.start()
        wait_for_progress(workers, "before the new node")
        _redis_cli_cluster("add-node", new.addr, first.addr)
        cluster.wait_stable()
        _redis_cli_cluster(
            "rebalance", first.addr, "--cluster-use-empty-masters", "--cluster-pipeline", "10"
        )
        cluster.wait_stable()
        assert any(cluster.owner_of_slot(s) == new.addr for s in range(0, 16384, 64))
        wait_for_progress(workers, "with the new node serving")
        # ... and take it away again: its slots go back, then the node leaves the cluster.
        _redis_cli_cluster(
            "rebalance",
            first.addr,
            "--cluster-weight",
            f"{cluster.node_id(new.addr)}=0",
            "--cluster-pipeline",
            "10",
        )
        cluster.wait_stable()
        _redis_cli_cluster("del-node", first.addr, cluster.node_id(new.addr))
        cluster.nodes.remove(new)
        new.close()
        cluster.wait_stable()
        wait_for_progress(workers, "after the node left")
        for w in workers:
            w.stop_flag.set()
        for w in workers:
            w.join(30)
        errors = [e for w in workers for e in w.errors]
        assert errors == [], errors[:10]
        with strict_client(proxy.port) as check:
            for w in workers:
                keys = list(w.written)
                assert [v.decode() for v in check.mget(keys)] == [w.written[k] for k in keys]
        state = proxy.server.state
        assert state is not None and state.topology.slotmap is not None
        assert new.addr not in state.topology.slotmap.nodes
