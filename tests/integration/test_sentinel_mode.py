"""Sentinel mode against a real group: a primary, two replicas, three sentinels (issue 15).

The group here is shared by the module and never failed over; failovers have their own
groups (test_sentinel_failover.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import command, pick_ports, start_standalone
from proxy.localsentinel import SentinelGroup, SentinelProcess
from tests.integration.admin_client import ready
from tests.integration.proxy_thread import ProxyThread
from tests.integration.sentinel_load import client
from tests.integration.sentinel_proxy import admin_port, primary_of, sentinel_proxy
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.fixture(scope="module")
def proxy(group: SentinelGroup) -> Iterator[ProxyThread]:
    with sentinel_proxy(group.sentinel_addrs, admin=True) as running:
        yield running


def test_discovers_the_primary(group: SentinelGroup, proxy: ProxyThread) -> None:
    assert primary_of(proxy) == group.primary
    r = client(proxy.port)
    assert r.set("s:a", "1") and r.get("s:a") == b"1"
    assert command(group.primary, "GET", "s:a") == b"1"
    status, body = ready(admin_port(proxy))
    assert status == 200, body


@pytest.mark.parametrize("protocol", [2, 3])
def test_standalone_features_work(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(port=proxy.port, protocol=protocol) as r:
        pipe = r.pipeline(transaction=True)
        pipe.set("s:tx", 1).incr("s:tx")
        assert pipe.execute() == [True, 2]
        assert r.eval("return redis.call('incr', KEYS[1])", 1, "s:tx") == 3
        r.execute_command("SELECT", 1)
        r.set("s:db1", "x")
        assert r.get("s:db1") == b"x"
    with redis.Redis(port=proxy.port) as r:
        assert r.get("s:db1") is None  # database 0 again


def test_blocking_command(proxy: ProxyThread) -> None:
    with client(proxy.port) as blocked, client(proxy.port) as pusher:
        pusher.delete("s:bq")
        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(blocked.blpop(["s:bq"], 10)))
        thread.start()
        wait_until(lambda: pusher.rpush("s:bq", "item") and not thread.is_alive(), 10, "BLPOP")
        thread.join(10)
        assert result == [(b"s:bq", b"item")]


def test_pubsub(proxy: ProxyThread) -> None:
    with client(proxy.port) as sub, client(proxy.port) as pub:
        pubsub = sub.pubsub()
        pubsub.subscribe("s:news")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        wait_until(lambda: pub.publish("s:news", "hi") == 1, 10, "the subscription upstream")
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"hi"
        pubsub.close()


def test_read_from_replica(group: SentinelGroup) -> None:
    replicas = [n.addr for n in group.nodes if n.addr != group.primary]

    def gets() -> int:
        total = 0
        for addr in replicas:
            stats = command(addr, "INFO", "commandstats")
            assert isinstance(stats, bytes)
            line = next((x for x in stats.split(b"\r\n") if x.startswith(b"cmdstat_get:")), b"")
            total += int(line.split(b"calls=")[1].split(b",")[0]) if line else 0
        return total

    with sentinel_proxy(group.sentinel_addrs, read_from="replica") as proxy:
        state = proxy.server.state
        assert state is not None
        slotmap = state.topology.slotmap
        assert slotmap is not None and set(slotmap.shards[0].replicas) == set(replicas)
        r = client(proxy.port)
        r.set("s:rf", "v")
        before = gets()
        wait_until(lambda: r.get("s:rf") == b"v", 10, "the write to reach the replicas")
        for _ in range(20):
            r.get("s:rf")
        assert gets() >= before + 20
        assert r.set("s:rf", "w")  # writes still go to the primary


def test_a_lying_sentinel_is_outvoted(group: SentinelGroup) -> None:
    """A fourth sentinel that monitors another server under the same name."""
    other = start_standalone()
    liar = SentinelProcess(
        pick_ports(1)[0], other.dir.parent / "liar", group.master_name, other.addr, 1, 1000, 5000
    )
    try:
        liar.start()
        wait_until(lambda: group.primary_of(liar.addr) == other.addr, 10, "the liar to answer")
        with sentinel_proxy([liar.addr, *group.sentinel_addrs]) as proxy:
            assert primary_of(proxy) == group.primary
            assert client(proxy.port).set("s:liar", 1)
        with sentinel_proxy([liar.addr, group.sentinel_addrs[0]]) as proxy:  # a tie
            assert primary_of(proxy) is None
            with pytest.raises(redis.ResponseError, match="the sentinels disagree"):
                client(proxy.port).set("s:liar", 1)
    finally:
        liar.close()
        other.close()


def test_unknown_master_name(group: SentinelGroup) -> None:
    with sentinel_proxy(group.sentinel_addrs, admin=True, master_name="renamed") as proxy:
        with pytest.raises(redis.ResponseError) as info:
            client(proxy.port).set("s:x", 1)
        # redis-py drops the MASTERDOWN code (its MasterDownError).
        assert str(info.value) == (
            'slotless has no primary for "renamed": the sentinels know no master of that name'
        )
        status, body = ready(admin_port(proxy))
        assert status == 503 and "know no master" in body["reason"]
