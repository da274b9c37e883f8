"""CLIENT TRACKING through slotless while the cluster changes (issue 17.4): a slot move, a
failover, a lost invalidation feed. Each one flushes the clients that read something (the
null message of FLUSHALL), and invalidations keep coming from the key's new owner."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localcluster import Cluster, command
from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.integration.test_cluster_pubsub import Raw
from tests.waiting import wait_until

FLUSH = b">2\r\n$10\r\ninvalidate\r\n_\r\n"


def push_of(key: bytes) -> bytes:
    return b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%s\r\n" % (len(key), key)


class Tracked(Raw):
    """A RESP3 client with CLIENT TRACKING ON; replies and pushes told apart."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=15.0)
        self.pushes: list[bytes] = []
        self.call(b"HELLO", b"3")
        assert self.reply(b"CLIENT", b"TRACKING", b"on") == b"+OK\r\n"

    def reply(self, *args: bytes) -> bytes:
        self.send(*args)
        while True:
            frame = self.frame()
            if not frame.startswith(b">"):
                return frame
            self.pushes.append(frame)

    def wait_push(self, *wanted: bytes) -> bytes:
        """The first push among `wanted`, reading (and keeping) any other on the way; the
        socket timeout bounds the wait."""
        while True:
            for i, frame in enumerate(self.pushes):
                if frame in wanted:
                    del self.pushes[: i + 1]
                    return frame
            self.pushes.append(self.frame())


def key_pushes_again(a: Tracked, w: redis.Redis, key: bytes) -> bool:
    """Read, write, and wait for the invalidation: the key's own push, or a flush while a
    new feed is being confirmed (then once more). True once a key push came."""
    for i in range(5):
        a.reply(b"GET", key)
        w.set(key, f"again-{i}")
        if a.wait_push(push_of(key), FLUSH) == push_of(key):
            return True
    return False


def writer(port: int) -> redis.Redis:
    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_timeout=10)


def test_slot_move_and_failover_flush_and_tracking_goes_on(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    key = b"tracked-moving-key"
    slot = key_hash_slot(key)
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
        a = Tracked(proxy.port)
        w = writer(proxy.port)
        try:
            w.set(key, "1")
            assert a.reply(b"GET", key) == b"$1\r\n1\r\n"
            # Resharding: the slot moves to another primary.
            target = next(p for p in cluster.primaries() if p != cluster.owner_of_slot(slot))
            cluster.migrate_slot(slot, target)
            w.set(key, "2")  # MOVED: slotless's slot map changes
            assert a.wait_push(FLUSH) == FLUSH
            assert a.reply(b"GET", key) == b"$1\r\n2\r\n"
            w.set(key, "3")  # written on the new owner: its feed reports it
            assert a.wait_push(push_of(key)) == push_of(key)
            # Failover: the new owner's replica takes over.
            assert a.reply(b"GET", key) == b"$1\r\n3\r\n"
            cluster.failover(cluster.replicas_of(target)[0])
            w.set(key, "4")
            assert a.wait_push(FLUSH) == FLUSH
            assert a.reply(b"GET", key) == b"$1\r\n4\r\n"
            assert key_pushes_again(a, w, key)  # from the promoted primary's feed
        finally:
            a.close()
            w.close()


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


def feed_ids(addr: str) -> list[bytes]:
    """The node's clients in CLIENT TRACKING BCAST mode (slotless's feed)."""
    listing = command(addr, "CLIENT", "LIST")
    assert isinstance(listing, bytes)
    return re.findall(rb"id=(\d+) .*flags=tB ", listing)


def test_lost_feed_flushes_and_comes_back(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    key = b"tracked-feed-key"
    node = redis_cluster.owner_of_slot(key_hash_slot(key))
    a = Tracked(proxy.port)
    w = writer(proxy.port)
    try:
        assert a.reply(b"GET", key) == b"_\r\n"
        [old] = wait_until(lambda: feed_ids(node), what="slotless's feed on the node")
        command(node, "CLIENT", "KILL", "ID", old)
        assert a.wait_push(FLUSH) == FLUSH  # what it read is no longer guarded
        new = wait_until(lambda: [i for i in feed_ids(node) if i != old], what="a new feed")
        assert len(new) == 1
        assert key_pushes_again(a, w, key)
    finally:
        a.close()
        w.close()
