"""Redirects driven step by step: SETSLOT MIGRATING/IMPORTING + MIGRATE force ASK, TRYAGAIN
and MOVED; the client sees none of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localcluster import LocalCluster, command, split_addr
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FreshCluster = Callable[..., LocalCluster]


def test_ask_tryagain_and_moved_are_absorbed(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    slot = key_hash_slot(b"r")
    source = cluster.owner_of_slot(slot)
    target = next(p for p in cluster.primaries() if p != source)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds, retry_timeout=5.0)) as proxy,
        redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0), protocol=2) as client,
    ):
        assert client.mset({"{r}a": "A", "{r}b": "B", "{r}c": "C"})
        cluster.begin_migration(slot, target)
        host, port = split_addr(target)
        assert command(source, "MIGRATE", host, port, "{r}a", 0, 5000) == b"OK"
        state = proxy.server.state
        assert state is not None
        before = state.topology.redirects

        assert client.get("{r}a") == b"A"  # source answers ASK: ASKING + GET on the target
        assert client.get("{r}b") == b"B"  # still on the source
        assert client.set("{r}new", "N")  # new key in a migrating slot: ASK to the target
        assert command(target, "ASKING") == b"OK"
        assert state.topology.redirects >= before + 2

        # Keys split between source and target: the source says TRYAGAIN until the
        # migration ends; slotless retries within retry_timeout.
        finisher = threading.Timer(0.5, lambda: cluster.migrate_slot(slot, target))
        finisher.start()
        started = time.monotonic()
        assert client.mget("{r}a", "{r}b", "{r}c") == [b"A", b"B", b"C"]
        assert time.monotonic() - started >= 0.3  # it really had to wait
        finisher.join()

        assert cluster.owner_of_slot(slot) == target
        moved_before = state.topology.redirects
        assert client.get("{r}new") == b"N"  # MOVED from the old owner, map updated
        assert client.get("{r}b") == b"B"

        def mapped() -> bool:
            slotmap = state.topology.slotmap
            return slotmap is not None and slotmap.node_for_slot(slot) == target

        wait_until(mapped, 5, f"slotless to map slot {slot} to {target}")
        assert state.topology.redirects >= moved_before


def test_redirect_budget_returns_the_last_error(fresh_cluster: FreshCluster) -> None:
    """A slot stuck migrating with split keys: TRYAGAIN goes back after the budget."""
    cluster = fresh_cluster(primaries=3, replicas=0)
    slot = key_hash_slot(b"s")
    source = cluster.owner_of_slot(slot)
    target = next(p for p in cluster.primaries() if p != source)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds, retry_timeout=0.5)) as proxy,
        redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0), protocol=2) as client,
    ):
        client.mset({"{s}a": "1", "{s}b": "2"})
        cluster.begin_migration(slot, target)
        host, port = split_addr(target)
        command(source, "MIGRATE", host, port, "{s}a", 0, 5000)
        started = time.monotonic()
        # redis-py turns "-TRYAGAIN ..." into TryAgainError: the error came back as Redis sent it.
        with pytest.raises(redis.exceptions.TryAgainError, match="during rehashing"):
            client.mget("{s}a", "{s}b")
        assert 0.4 <= time.monotonic() - started < 5
        cluster.migrate_slot(slot, target)
        assert client.mget("{s}a", "{s}b") == [b"1", b"2"]


def test_split_parts_follow_ask_and_moved(fresh_cluster: FreshCluster) -> None:
    """A cross-slot MGET/MSET sends its parts for one node as one batch; a part that meets
    ASK or MOVED continues on its own while the rest of the batch is answered in order."""
    cluster = fresh_cluster(primaries=3, replicas=0)
    slot = key_hash_slot(b"m")
    source = cluster.owner_of_slot(slot)
    target = next(p for p in cluster.primaries() if p != source)
    # Keys that live on the source node too, in other slots: they share the batch.
    candidates = (f"n{i}" for i in range(2000))
    neighbours = [
        k for k in candidates if cluster.owner_of_slot(key_hash_slot(k.encode())) == source
    ]
    neighbours = neighbours[:3]
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds, retry_timeout=5.0)) as proxy,
        redis.Redis(port=proxy.port, retry=Retry(NoBackoff(), 0), protocol=2) as client,
    ):
        assert client.mset({"{m}a": "A", "{m}b": "B", **{k: k.upper() for k in neighbours}})
        cluster.begin_migration(slot, target)
        host, port = split_addr(target)
        assert command(source, "MIGRATE", host, port, "{m}a", 0, 5000) == b"OK"
        state = proxy.server.state
        assert state is not None
        before = state.topology.redirects
        # {m}a answers ASK from the source, in the middle of the source's batch.
        keys = [neighbours[0], "{m}a", neighbours[1], neighbours[2]]
        expected = [neighbours[0].upper(), "A", neighbours[1].upper(), neighbours[2].upper()]
        assert client.mget(keys) == [v.encode() for v in expected]
        assert state.topology.redirects > before
        # The same keys as a pipeline of GETs: one batch per node, {m}a's part on its own.
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        pipe.set("{m}p", "P")  # a new key in the migrating slot: ASK to the target
        pipe.get("{m}p")
        assert pipe.execute() == [*(v.encode() for v in expected), True, b"P"]

        cluster.migrate_slot(slot, target)  # slotless's map still names the source: MOVED
        assert client.mset({neighbours[0]: "x", "{m}c": "C", neighbours[1]: "y"})
        assert client.mget([neighbours[0], "{m}c", "{m}a", neighbours[1]]) == [
            b"x",
            b"C",
            b"A",
            b"y",
        ]
        assert state.topology.slotmap is not None
        assert state.topology.slotmap.node_for_slot(slot) == target
        # And a pipeline meeting MOVED for a slot slotless still maps to the old owner.
        other = key_hash_slot(b"o")
        owner = cluster.owner_of_slot(other)
        cluster.migrate_slot(other, next(p for p in cluster.primaries() if p != owner))
        pipe = client.pipeline(transaction=False)
        pipe.set(neighbours[0], "1").set("{o}k", "2").get("{o}k").get(neighbours[0])
        assert pipe.execute() == [True, True, b"2", b"1"]
