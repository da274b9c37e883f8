"""Soak: random reads and writes through slotless while slots migrate back and forth and a
primary fails over. Every acknowledged write reads back; the proxy's memory settles."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_process import slotless_process
from tests.waiting import wait_until

SOAK_SECONDS = 25
WARM_UP_OPS = 1000  # per client, before the memory baseline (about 2 s here)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client(threading.Thread):
    """Random SET/GET/INCR/MSET/MGET on its own keys; remembers what was acknowledged."""

    def __init__(self, port: int, name: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.redis = redis.Redis(
            port=port, protocol=2, retry=Retry(NoBackoff(), 0), socket_timeout=20
        )
        self.name = name
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.acked: dict[str, bytes] = {}
        self.errors: list[str] = []
        self.ops = 0

    def key(self) -> str:
        return f"soak:{self.name}:{self.rng.randrange(300)}"

    def run(self) -> None:
        r = self.redis
        while not self.stop.is_set():
            op = self.rng.random()
            try:
                if op < 0.35:
                    key, value = self.key(), f"v{self.ops}".encode()
                    assert r.set(key, value)
                    self.acked[key] = value
                elif op < 0.45:
                    key = f"soak:{self.name}:n"
                    self.acked[key] = str(r.incr(key)).encode()
                elif op < 0.55:
                    pairs = {self.key(): f"m{self.ops}".encode() for _ in range(5)}
                    assert r.mset(pairs)
                    self.acked.update(pairs)
                elif op < 0.8:
                    key = self.key()
                    got = r.get(key)
                    if got != self.acked.get(key):
                        self.errors.append(f"GET {key}: {got!r} != {self.acked.get(key)!r}")
                else:
                    keys = [self.key() for _ in range(8)]
                    got_many = r.mget(keys)
                    want = [self.acked.get(k) for k in keys]
                    if got_many != want:
                        self.errors.append(f"MGET {keys}: {got_many} != {want}")
                self.ops += 1
            except redis.RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        self.redis.close()


def wait_for_ops(clients: list[Client], ops: int, what: str) -> None:
    """Until every client has done `ops` more operations (errors are counted apart)."""
    targets = [c.ops + ops for c in clients]

    def describe() -> str:
        return f"{ops} ops per client {what} (done {[c.ops for c in clients]}, want {targets})"

    wait_until(
        lambda: all(c.ops >= t for c, t in zip(clients, targets, strict=True)),
        30,
        describe,
        interval=0.05,
    )


def test_soak_with_migrations_and_failover(fresh_cluster: FreshCluster, tmp_path: Path) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    seeds = ", ".join(f'"{s}"' for s in cluster.seeds[:2])
    body = f"upstream: {{mode: cluster, nodes: [{seeds}]}}\nlog: {{level: warning}}\n"
    with slotless_process(tmp_path, body) as (proc, port):
        clients = [Client(port, f"c{i}", seed=i) for i in range(8)]
        for client in clients:
            client.start()
        wait_for_ops(clients, WARM_UP_OPS, "before the memory baseline")
        baseline = _rss_kb(proc.pid)
        # Move the slots of a few keys back and forth, then fail a primary over.
        slots = sorted(
            {key_hash_slot(f"soak:c{i}:{j}".encode()) for i in range(2) for j in range(3)}
        )
        end = time.monotonic() + SOAK_SECONDS
        rounds = 0
        while time.monotonic() < end - 8:
            for slot in slots[:4]:
                owner = cluster.owner_of_slot(slot)
                target = next(p for p in cluster.primaries() if p != owner)
                cluster.migrate_slot(slot, target)
            rounds += 1
        primary = cluster.owner_of_slot(slots[0])
        cluster.failover(cluster.replicas_of(primary)[0])
        wait_for_ops(clients, 250, "after the failover")
        # The soak's own length, not a wait for something: keep the load on until its end.
        time.sleep(max(0.0, end - time.monotonic()))
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(30)
        errors = [e for c in clients for e in c.errors]
        assert errors == [], errors[:10]
        assert rounds >= 1 and sum(c.ops for c in clients) > 2000
        with redis.Redis(port=port, protocol=2) as check:
            for client in clients:
                keys = list(client.acked)
                assert check.mget(keys) == [client.acked[k] for k in keys]
        after = _rss_kb(proc.pid)
        # Leaks would grow with the work done (tens of thousands of requests).
        assert after < baseline * 1.3 + 8 * 1024, (baseline, after)
