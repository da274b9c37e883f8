"""Failovers of a real Sentinel group under a steady write load through slotless (issue 15).

Each test owns its group (a failover changes it for good). The load's clients never
reconnect: slotless has the same client sessions (id, peer) before and after. Measured figures are
printed (pytest -s shows them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from proxy.localsentinel import SentinelGroup, rename_group
from tests.integration.admin_client import ready
from tests.integration.sentinel_load import WriteLoad, client
from tests.integration.sentinel_proxy import admin_port, primary_of, sentinel_proxy, sessions
from tests.waiting import wait_until


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


def acked_on(load: WriteLoad, count: int) -> bool:
    return load.total_acked() >= count


def test_graceful_failover_loses_nothing(group: SentinelGroup) -> None:
    with sentinel_proxy(group.sentinel_addrs) as proxy, client(proxy.port) as r:
        pubsub = client(proxy.port).pubsub()
        pubsub.subscribe("f:news")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        load = WriteLoad(proxy.port, "graceful").start()
        wait_until(lambda: acked_on(load, 500), 20, "the load to run")
        clients = sessions(proxy)
        old = group.primary
        new = group.failover()
        wait_until(lambda: primary_of(proxy) == new, 20, "slotless to follow the failover")
        done = load.total_acked()
        wait_until(lambda: acked_on(load, done + 500), 20, "writes on the new primary")
        still = sessions(proxy)
        load.stop()
        print(load.report(f"graceful failover {old} -> {new}"))
        lost = load.lost(r)
        print(f"graceful failover: {len(lost)} acknowledged writes lost")
        assert lost == []
        assert load.errors == []
        assert clients - still == set() and load.reconnects() == 0
        # The subscription moved to the new primary with the shared connection.
        wait_until(lambda: r.publish("f:news", "after") == 1, 20, "resubscribed on the new primary")
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"after"
        pubsub.close()


def test_crash_failover(group: SentinelGroup) -> None:
    with sentinel_proxy(group.sentinel_addrs, admin=True) as proxy, client(proxy.port) as r:
        load = WriteLoad(proxy.port, "crash").start()
        wait_until(lambda: acked_on(load, 500), 20, "the load to run")
        clients = sessions(proxy)
        killed_at = time.monotonic()
        old = group.kill_primary()
        new = group.wait_new_primary(old)
        wait_until(lambda: primary_of(proxy) == new, 30, "slotless to follow the failover")
        done = load.total_acked()
        wait_until(lambda: acked_on(load, done + 500), 20, "writes on the new primary")
        still = sessions(proxy)
        load.stop()
        print(load.report(f"crash failover {old} -> {new}"))
        if load.errors:
            first = min(t for t, _ in load.errors) - killed_at
            print(f"crash failover: first error {first:.3f}s after SIGKILL; e.g. {load.errors[0]}")
        lost = load.lost(r)
        print(f"crash failover: {len(lost)} acknowledged writes lost")
        assert clients - still == set() and load.reconnects() == 0
        # Errors are the clear kind: a write that may have run on the dead primary, or none.
        for _, error in load.errors:
            assert "upstream" in error or "slotless has no primary" in error or "failover" in error
        status, body = ready(admin_port(proxy))
        assert status == 200, body


def test_sentinels_down_at_start_then_the_group_is_renamed() -> None:
    group = SentinelGroup()
    try:
        group.start(sentinels=False)
        with sentinel_proxy(group.sentinel_addrs, admin=True) as proxy, client(proxy.port) as r:
            with pytest.raises(redis.ResponseError, match="no sentinel answered"):
                r.set("d:k", 1)
            status, body = ready(admin_port(proxy))
            assert status == 503 and "no sentinel answered" in body["reason"], body
            group.start_sentinels()
            wait_until(lambda: primary_of(proxy) == group.primary, 20, "the retry to find it")
            assert r.set("d:k", 1)
            assert ready(admin_port(proxy))[0] == 200
            rename_group(group, "othername")
            wait_until(lambda: primary_of(proxy) is None, 20, "slotless to notice the rename")
            with pytest.raises(redis.ResponseError, match="know no master of that name"):
                r.set("d:k", 2)
            assert ready(admin_port(proxy))[0] == 503
    finally:
        group.stop()
