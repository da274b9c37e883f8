"""Upstream failures: auth, a node that hangs, no node reachable at startup."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localcluster import Connection, RedisProcess, command, pick_ports, start_standalone
from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until


def strict(port: int) -> redis.Redis:
    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_timeout=20, protocol=2)


def in_flight(proxy: ProxyThread, addr: str) -> int:
    """Requests slotless has written to `addr`'s shared RESP2 connections, still unanswered."""
    state = proxy.server.state
    assert state is not None
    conns = list(state.pool._conns.get((addr, False), ()))
    return sum(len(conn.pending) for conn in conns if not conn._out)


def test_upstream_auth_with_password() -> None:
    server = start_standalone()
    try:
        command(server.addr, "CONFIG", "SET", "requirepass", "s3cret")
        with ProxyThread(proxy_config("standalone", [server.addr], password="s3cret")) as proxy:
            with strict(proxy.port) as client:
                assert client.set("auth:k", "v") and client.get("auth:k") == b"v"
                # a client with per-connection state gets its own authenticated connection
                pipe = client.pipeline(transaction=True)
                pipe.incr("auth:n").incr("auth:n")
                assert pipe.execute() == [1, 2]
            with redis.Redis(port=proxy.port, protocol=3) as client3:
                assert client3.get("auth:k") == b"v"
        wrong = proxy_config("standalone", [server.addr], password="wrong")
        with (
            ProxyThread(wrong) as proxy,
            strict(proxy.port) as client,
            pytest.raises(redis.ResponseError, match="upstream"),
        ):
            client.get("auth:k")
    finally:
        admin = Connection(server.addr)
        admin.call("AUTH", "s3cret")
        admin.call("CONFIG", "SET", "requirepass", "")
        admin.close()
        server.close()


def test_a_hung_node_times_out_with_an_error_then_recovers() -> None:
    server = start_standalone()
    try:
        config = proxy_config("standalone", [server.addr], command_timeout=1.0)
        with ProxyThread(config) as proxy, strict(proxy.port) as client:
            assert client.set("hang:k", "v")
            pid = server.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(redis.ResponseError, match=rf"upstream {server.addr} timed out"):
                    client.get("hang:k")
                assert time.monotonic() - started < 5
            finally:
                os.kill(pid, signal.SIGCONT)
            wait_until(
                lambda: client.get("hang:k") == b"v",
                10,
                "the resumed node to serve again",
                interval=0.1,
                ignoring=(redis.ResponseError,),
            )
    finally:
        server.close()


def test_proxy_starts_without_upstream_and_serves_once_it_appears(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = pick_ports(1)[0]
    server = RedisProcess(port, tmp_path / "late")
    config = proxy_config("standalone", [server.addr], connect_timeout=0.5)
    with ProxyThread(config) as proxy, strict(proxy.port) as client:
        with pytest.raises(redis.ResponseError, match=rf"upstream {server.addr} connect failed"):
            client.get("late:k")
        server.start()
        try:
            # The pool backs off reconnecting to a node that refused (at most 1 s),
            # so the first commands after the server appears may still fail fast.

            def served() -> bool:
                try:
                    return bool(client.set("late:k", "v"))
                except redis.ResponseError as exc:
                    assert "connect failed" in str(exc)
                    return False

            wait_until(served, 5, "slotless to reach the server that appeared", interval=0.05)
            assert client.get("late:k") == b"v"
        finally:
            server.close()


def test_a_lost_connection_retries_reads_but_never_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A read in flight when the node dies is sent again once it is back; a write that may
    have run gets an error instead of running twice."""
    server = RedisProcess(pick_ports(1)[0], tmp_path / "flaky")
    server.start()
    try:
        config = proxy_config("standalone", [server.addr], retry_timeout=8.0, command_timeout=20.0)
        with (
            ProxyThread(config) as proxy,
            strict(proxy.port) as reader,
            strict(proxy.port) as writer,
        ):
            assert reader.set("flaky:k", "v")
            assert writer.get("flaky:k") == b"v"
            pid = server.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)  # both requests reach the node and wait there
            results: dict[str, object] = {}

            def run(name: str, call: Callable[[], object]) -> None:
                try:
                    results[name] = call()
                except redis.RedisError as exc:
                    results[name] = exc

            threads = [
                threading.Thread(target=run, args=("read", lambda: reader.get("flaky:k"))),
                threading.Thread(target=run, args=("write", lambda: writer.incr("flaky:n"))),
            ]
            for thread in threads:
                thread.start()
            wait_until(lambda: in_flight(proxy, server.addr) >= 2, 10, "GET and INCR in flight")
            server.kill()
            server.start()
            for thread in threads:
                thread.join(20)
            assert results["read"] is None  # retried on the restarted (empty) node
            assert isinstance(results["write"], redis.ResponseError)
            assert "connection lost" in str(results["write"])
            assert command(server.addr, "GET", "flaky:n") is None  # not run behind our back
    finally:
        server.close()


def test_a_hung_node_does_not_stall_the_others(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    hung = cluster.primaries()[0]
    on_hung = next(
        f"h:{i}"
        for i in range(1000)
        if cluster.owner_of_slot(key_hash_slot(f"h:{i}".encode())) == hung
    )
    elsewhere = [
        f"e:{i}"
        for i in range(200)
        if cluster.owner_of_slot(key_hash_slot(f"e:{i}".encode())) != hung
    ][:20]
    config = proxy_config("cluster", cluster.seeds[:1], command_timeout=5.0, retry_timeout=0.0)
    with ProxyThread(config) as proxy, strict(proxy.port) as waiting, strict(proxy.port) as other:
        for key in [on_hung, *elsewhere]:
            assert other.set(key, key)
        pid = cluster.node(hung).pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            result: list[object] = []

            def read_hung() -> None:
                try:
                    result.append(waiting.get(on_hung))
                except redis.RedisError as exc:
                    result.append(exc)

            before = in_flight(proxy, hung)
            thread = threading.Thread(target=read_hung)
            thread.start()
            wait_until(lambda: in_flight(proxy, hung) > before, 10, "the GET on the hung node")
            # Every other shard answers while the hung node still owes its reply.
            assert [other.get(k) for k in elsewhere] == [k.encode() for k in elsewhere]
            assert thread.is_alive() and result == []
            thread.join(15)
            assert isinstance(result[0], redis.ResponseError)
            assert "timed out" in str(result[0])
        finally:
            os.kill(pid, signal.SIGCONT)
