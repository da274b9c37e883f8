"""The test harness itself (proxy/localcluster.py) against real redis-server processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from proxy.localcluster import (
    BUS_PORT_OFFSET,
    SLOT_COUNT,
    Cluster,
    Connection,
    LocalCluster,
    RedisProcess,
    RedisReplyError,
    command,
    pick_ports,
)

FreshCluster = Callable[..., LocalCluster]


def keyslot(cluster: Cluster, key: bytes) -> int:
    slot = command(cluster.seeds[0], "CLUSTER", "KEYSLOT", key)
    assert isinstance(slot, int)
    return slot


def test_pick_ports_stay_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = pick_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        assert port not in (6379, 6380)
        assert port + BUS_PORT_OFFSET < low


def test_cluster_covers_every_slot(redis_cluster: Cluster) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    for primary in primaries:
        assert len(redis_cluster.replicas_of(primary)) == 1
    assert redis_cluster.instability() is None
    ranges = command(primaries[0], "CLUSTER", "SLOTS")
    assert isinstance(ranges, list)
    assert sum(r[1] - r[0] + 1 for r in ranges) == SLOT_COUNT
    assert {redis_cluster.owner_of_slot(s) for s in (0, 8000, SLOT_COUNT - 1)} == set(primaries)


def test_key_set_on_its_owner_reads_back(redis_cluster: Cluster) -> None:
    key = b"harness:\xffkey"
    slot = keyslot(redis_cluster, key)
    owner = redis_cluster.owner_of_slot(slot)
    assert command(owner, "SET", key, b"v\x00") == b"OK"
    assert command(owner, "GET", key) == b"v\x00"
    other = next(p for p in redis_cluster.primaries() if p != owner)
    moved = command(other, "GET", key)
    assert isinstance(moved, RedisReplyError)
    assert str(moved) == f"MOVED {slot} {owner}"


def test_error_replies_are_values(redis_standalone: RedisProcess) -> None:
    reply = command(redis_standalone.addr, "NOSUCHCOMMAND")
    assert isinstance(reply, RedisReplyError)
    assert str(reply).startswith("ERR unknown command")


def test_standalone_answers(redis_standalone: RedisProcess) -> None:
    assert redis_standalone.addr == f"127.0.0.1:{redis_standalone.port}"
    assert command(redis_standalone.addr, "PING") == b"PONG"
    info = command(redis_standalone.addr, "INFO", "cluster")
    assert isinstance(info, bytes)
    assert b"cluster_enabled:0" in info


def test_migrate_slot_in_steps(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster()
    keys = [b"{mig}k%d" % i for i in range(150)]  # more than one GETKEYSINSLOT batch
    slot = keyslot(cluster, keys[0])
    source = cluster.owner_of_slot(slot)
    target = next(p for p in cluster.primaries() if p != source)
    for key in keys:
        command(source, "SET", key, key)

    cluster.begin_migration(slot, target)
    assert cluster.migrate_keys(slot, target, batch=100) == len(keys)
    ask = command(source, "GET", keys[0])
    assert isinstance(ask, RedisReplyError)
    assert str(ask) == f"ASK {slot} {target}"
    asking = Connection(target)
    try:
        assert asking.call("ASKING") == b"OK"
        assert asking.call("GET", keys[0]) == keys[0]
    finally:
        asking.close()

    cluster.finish_migration(slot, target)
    assert cluster.owner_of_slot(slot) == target
    assert command(target, "CLUSTER", "COUNTKEYSINSLOT", slot) == len(keys)
    assert command(target, "GET", keys[-1]) == keys[-1]
    assert str(command(source, "GET", keys[-1])) == f"MOVED {slot} {target}"
    cluster.migrate_slot(slot, source)  # the one-call form
    assert cluster.owner_of_slot(slot) == source
    assert command(source, "MGET", keys[0], keys[-1]) == [keys[0], keys[-1]]


def test_failover_swaps_roles(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster()
    old_primary = cluster.primaries()[0]
    (replica,) = cluster.replicas_of(old_primary)
    key = b"fo:key"
    slot = keyslot(cluster, key)
    owner = cluster.owner_of_slot(slot)
    assert command(owner, "SET", key, b"kept") == b"OK"
    assert command(owner, "WAIT", 1, 2000) == 1

    cluster.failover(replica)
    assert replica in cluster.primaries()
    assert old_primary not in cluster.primaries()
    assert cluster.replicas_of(replica) == [old_primary]
    assert cluster.node(replica).is_running()
    assert command(cluster.owner_of_slot(slot), "GET", key) == b"kept"

    cluster.node(old_primary).kill()
    assert not cluster.node(old_primary).is_running()
    cluster.node(old_primary).restart()  # keeps its nodes.conf identity: rejoins as a replica
    cluster.wait_stable()
    assert cluster.replicas_of(replica) == [old_primary]
