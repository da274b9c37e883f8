"""upstream.read_from: read-only commands served by replicas (issue 6)."""

from __future__ import annotations

import redis

from proxy.localcluster import Connection, LocalCluster, command
from routing.slotmap import SlotMap
from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

KEYS = [f"rf:{i}" for i in range(40)]


def _get_calls(addr: str) -> int:
    info = command(addr, "INFO", "commandstats")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_get:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def _replicated(cluster: LocalCluster) -> None:
    """Every key readable on its shard's replica, so that replica reads are not stale."""
    for key in KEYS:
        replica = cluster.replicas_of(cluster.owner_of_slot(key_hash_slot(key.encode())))[0]
        _wait_readable(replica, key)


def _wait_readable(replica: str, key: str) -> None:
    conn = Connection(replica)
    try:
        conn.call("READONLY")
        wait_until(
            lambda: conn.call("GET", key) == key.encode(), 10, f"{key} to reach replica {replica}"
        )
    finally:
        conn.close()


def _replicas_known(proxy: ProxyThread) -> None:
    """Redis lists a replica in CLUSTER SLOTS once it has replicated something: wait for
    slotless's periodic refresh to see them."""

    def slotmap() -> SlotMap | None:
        state = proxy.server.state
        return state.topology.slotmap if state is not None else None

    def known() -> bool:
        current = slotmap()
        return current is not None and all(shard.replicas for shard in current.shards)

    def describe() -> str:
        current = slotmap()
        return f"slotless to know a replica of every shard ({current and current.summary()})"

    wait_until(known, 10, describe)


def _reset_stats(cluster: LocalCluster) -> None:
    for addr in cluster.seeds:
        command(addr, "CONFIG", "RESETSTAT")


def test_replica_reads_go_to_replicas_and_writes_to_primaries(
    fresh_cluster: FreshCluster,
) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    config = proxy_config("cluster", cluster.seeds[:1], read_from="replica", refresh_interval=0.2)
    with ProxyThread(config) as proxy, redis.Redis(port=proxy.port, protocol=2) as client:
        for key in KEYS:
            assert client.set(key, key)
        _replicated(cluster)
        _replicas_known(proxy)
        _reset_stats(cluster)
        assert [client.get(k) for k in KEYS] == [k.encode() for k in KEYS]
        primaries = cluster.primaries()
        replicas = [r for p in primaries for r in cluster.replicas_of(p)]
        assert sum(_get_calls(r) for r in replicas) == len(KEYS)
        assert sum(_get_calls(p) for p in primaries) == 0
        assert client.incr("rf:n") == 1  # a write still goes to the primary


def test_prefer_replica_falls_back_to_the_primary(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    config = proxy_config(
        "cluster", cluster.seeds[:1], read_from="prefer-replica", refresh_interval=0.2
    )
    with ProxyThread(config) as proxy, redis.Redis(port=proxy.port, protocol=2) as client:
        for key in KEYS:
            assert client.set(key, key)
        _replicated(cluster)
        _replicas_known(proxy)
        assert [client.get(k) for k in KEYS] == [k.encode() for k in KEYS]
        for primary in cluster.primaries():
            for replica in cluster.replicas_of(primary):
                cluster.node(replica).kill()
        for addr in cluster.primaries():
            command(addr, "CONFIG", "RESETSTAT")
        # No replica answers any more: every read is served by its primary, without errors.
        for _ in range(3):
            assert [client.get(k) for k in KEYS] == [k.encode() for k in KEYS]
        assert sum(_get_calls(p) for p in cluster.primaries()) == 3 * len(KEYS)
