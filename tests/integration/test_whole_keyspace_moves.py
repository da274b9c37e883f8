"""SCAN and scripts through slotless while the cluster changes: slots move, replicas take over.

One 3x1 cluster for the module (its topology changes, so not the shared one). A SCAN
iteration must end and return every key that existed throughout; EVALSHA must work for a
script given to slotless even on a node that never saw it or lost it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import LocalCluster, command
from routing.scan import ScanCursor
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

KEYS = 600


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(primaries=3, replicas=1) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(cluster: LocalCluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as running:
        yield running


@pytest.fixture
def client(proxy: ProxyThread) -> Iterator[redis.Redis]:
    # No retries: a client that retried would hide the errors these tests look for.
    with redis.Redis(port=proxy.port, socket_timeout=10, retry=None) as r:
        yield r


def fill(client: redis.Redis, extra: list[bytes]) -> set[bytes]:
    keys = {b"scan:%d" % i for i in range(KEYS)} | set(extra)
    client.flushall()
    client.mset(dict.fromkeys(keys, b"v"))
    return keys


def wait_until_proxy_sees(proxy: ProxyThread, primary: str, timeout: float = 10.0) -> None:
    state = proxy.server.state
    assert state is not None

    def sees() -> bool:
        slotmap = state.topology.slotmap
        if slotmap is not None and primary in slotmap.primaries:
            return True
        state.topology.request_refresh()
        return False

    wait_until(sees, timeout, f"slotless to see {primary} as a primary", interval=0.05)


def wait_until_proxy_agrees(proxy: ProxyThread, cluster: LocalCluster) -> None:
    """Until slotless's primaries are the cluster's."""
    state = proxy.server.state
    assert state is not None

    def agrees() -> bool:
        slotmap = state.topology.slotmap
        if slotmap is not None and set(slotmap.primaries) == set(cluster.primaries()):
            return True
        state.topology.request_refresh()
        return False

    wait_until(agrees, 10.0, "slotless to see the cluster's primaries", interval=0.05)


def tag_in_range(first: int, last: int) -> bytes:
    """A hash tag whose slot lies in first..last."""
    for i in range(100_000):
        tag = b"mv%d" % i
        if first <= key_hash_slot(tag) <= last:
            return tag
    raise LookupError


def test_scan_survives_slot_migration(
    client: redis.Redis, proxy: ProxyThread, cluster: LocalCluster
) -> None:
    primaries = cluster.primaries()  # in slot order: the first shard is walked first
    tag = tag_in_range(11000, 16383)  # a slot of the last shard, walked last
    moving = [b"{%s}:%d" % (tag, i) for i in range(40)]
    keys = fill(client, moving)
    seen: set[bytes] = set()
    cursor = 0
    while True:  # walk until the iteration is past the first shard
        cursor, page = client.scan(cursor, count=50)
        seen.update(page)
        assert cursor != 0
        if ScanCursor.decode(cursor).shard > 0:
            break
    # Keys move from a shard not walked yet into one already walked.
    cluster.migrate_slot(key_hash_slot(tag), primaries[0])
    assert client.get(moving[0]) == b"v"  # MOVED: slotless learns the new owner
    pages = 0
    while cursor != 0:
        cursor, page = client.scan(cursor, count=50)
        seen.update(page)
        pages += 1
        assert pages < 1000
    assert seen == keys


def test_scan_and_scripts_survive_a_failover(
    client: redis.Redis, proxy: ProxyThread, cluster: LocalCluster
) -> None:
    keys = fill(client, [])
    primary = cluster.primaries()[1]
    # SCRIPT LOAD goes to every primary that slotless knows: a slot map older than an earlier
    # test's failover would load the script on a node that is a replica now.
    wait_until_proxy_agrees(proxy, cluster)
    key = next(k for k in sorted(keys) if cluster.owner_of_slot(key_hash_slot(k)) == primary)
    loaded = client.script_load("return 'loaded ' .. KEYS[1]")
    evaluated = "return 'evaluated ' .. KEYS[1]"
    assert client.eval(evaluated, 1, key) == b"evaluated " + key
    evaluated_sha = client.script_load(evaluated)
    command(primary, "SCRIPT", "FLUSH")  # now only slotless knows it, plus the primary's EVAL
    assert client.eval(evaluated, 1, key) == b"evaluated " + key
    replica = cluster.replicas_of(primary)[0]
    assert command(replica, "SCRIPT", "EXISTS", evaluated_sha) == [0]  # EVAL does not replicate
    seen: set[bytes] = set()
    cursor = 0
    for _ in range(3):  # part way through the iteration
        cursor, page = client.scan(cursor, count=60)
        seen.update(page)
    assert cursor != 0
    cluster.failover(replica)
    assert client.evalsha(evaluated_sha, 1, key) == b"evaluated " + key  # NOSCRIPT absorbed
    assert client.evalsha(loaded, 1, key) == b"loaded " + key
    wait_until_proxy_sees(proxy, replica)
    while cursor != 0:
        cursor, page = client.scan(cursor, count=60)
        seen.update(page)
    assert seen == keys


def test_evalsha_on_a_node_that_lost_its_scripts(
    client: redis.Redis, cluster: LocalCluster
) -> None:
    sha = client.script_load("return redis.call('incr', KEYS[1])")
    for primary in cluster.primaries():
        command(primary, "SCRIPT", "FLUSH")  # behind slotless's back: NOSCRIPT, then reload
    for i in range(30):  # keys on every shard
        assert client.evalsha(sha, 1, f"lost:{i}") == 1
    assert client.script_exists(sha) == [True]  # loaded again where it was missing
    with pytest.raises(redis.exceptions.NoScriptError):
        client.evalsha("0" * 40, 1, "x")


def test_pipelined_evalsha_keeps_its_order_on_nodes_without_the_script(
    client: redis.Redis, cluster: LocalCluster
) -> None:
    body = "return redis.call('incr', KEYS[1])"
    assert client.eval(body, 1, "order:0") == 1  # only that key's primary has it
    sha = client.script_load(body)
    assert sum(command(p, "SCRIPT", "EXISTS", sha) == [1] for p in cluster.primaries()) == 3
    client.script_flush()  # forgotten by slotless too: EVAL teaches it again
    assert client.eval(body, 1, "order:0") == 2
    assert sum(command(p, "SCRIPT", "EXISTS", sha) == [1] for p in cluster.primaries()) == 1
    pipe = client.pipeline(transaction=False)
    for i in range(1, 30):  # every shard; the others get SCRIPT LOAD first, in line
        pipe.evalsha(sha, 1, f"order:{i}")
        pipe.get(f"order:{i}")
        pipe.incr(f"order:{i}")
    assert pipe.execute() == [v for _ in range(1, 30) for v in (1, b"1", 2)]
