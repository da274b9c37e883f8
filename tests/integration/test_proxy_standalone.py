"""Standalone mode: full pass-through to one Redis, per-connection state included."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import RedisProcess, command
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def proxy(redis_standalone: RedisProcess) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("standalone", [redis_standalone.addr])) as running:
        yield running


@pytest.mark.parametrize("protocol", [2, 3])
def test_multi_exec_passes_through(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(port=proxy.port, protocol=protocol) as r:
        r.delete("tx:a", "tx:b")
        pipe = r.pipeline(transaction=True)
        pipe.set("tx:a", 1).incr("tx:a").rpush("tx:b", "x").lrange("tx:b", 0, -1)
        assert pipe.execute() == [True, 2, 1, [b"x"]]


def test_watch_conflict_aborts(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port) as r, redis.Redis(port=proxy.port) as other:
        r.set("w:k", 1)
        pipe = r.pipeline(transaction=True)
        pipe.watch("w:k")
        other.set("w:k", 2)
        pipe.multi()
        pipe.set("w:k", 3)
        with pytest.raises(redis.WatchError):
            pipe.execute()
        assert r.get("w:k") == b"2"


def blocked_clients(addr: str) -> int:
    info = command(addr, "INFO", "clients")
    assert isinstance(info, bytes)
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


def test_blpop_does_not_block_others(proxy: ProxyThread, redis_standalone: RedisProcess) -> None:
    with redis.Redis(port=proxy.port) as blocked, redis.Redis(port=proxy.port) as pusher:
        pusher.delete("bq")
        result: list[object] = []
        before = blocked_clients(redis_standalone.addr)
        thread = threading.Thread(target=lambda: result.append(blocked.blpop(["bq"], timeout=10)))
        thread.start()
        wait_until(
            lambda: blocked_clients(redis_standalone.addr) > before, 10, "BLPOP to block upstream"
        )
        for i in range(100):  # others keep working while one client is blocked
            assert pusher.set(f"nb:{i}", i)
        pusher.rpush("bq", "item")
        thread.join(10)
        assert result == [(b"bq", b"item")]


@pytest.mark.parametrize("protocol", [2, 3])
def test_subscribe_receives_messages(proxy: ProxyThread, protocol: int) -> None:
    with (
        redis.Redis(port=proxy.port, protocol=protocol) as sub,
        redis.Redis(port=proxy.port) as pub,
    ):
        pubsub = sub.pubsub()
        pubsub.subscribe("news")
        first = pubsub.get_message(timeout=5)
        assert first is not None and first["type"] == "subscribe"
        assert pub.publish("news", "hello") == 1
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] == b"hello"
        pubsub.close()


def test_select_is_per_client(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port, db=1) as db1, redis.Redis(port=proxy.port) as db0:
        db1.set("sel:k", "one")
        db0.delete("sel:k")
        assert db1.get("sel:k") == b"one"
        assert db0.get("sel:k") is None
        db1.delete("sel:k")


def test_plain_commands_and_keys(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port) as r:
        assert r.mset({"s:a": 1, "s:b": 2})
        assert r.mget("s:a", "s:b", "s:none") == [b"1", b"2", None]
        assert r.rename("s:a", "s:c")  # any keys: one server, no CROSSSLOT
        assert r.dbsize() >= 2
        assert "s:c" in {k.decode() for k in r.keys("s:*")}


def test_resp3_clients_share_upstream_connections(proxy: ProxyThread) -> None:
    """redis-py 8 sends HELLO 3 and CLIENT MAINT_NOTIFICATIONS: neither needs its own pipe."""
    with redis.Redis(port=proxy.port, protocol=3) as r:
        assert r.set("share:k", "v") and r.get("share:k") == b"v"
        state = proxy.server.state
        assert state is not None
        assert all(session.pipe is None for session in state.sessions)
