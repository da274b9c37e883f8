"""Hostile clients get an error or a close as Redis would; a good client sees nothing."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import Cluster
from tests.integration.proxy_thread import ProxyThread, proxy_config


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


@pytest.fixture
def good(proxy: ProxyThread) -> Iterator[redis.Redis]:
    with redis.Redis(port=proxy.port, socket_timeout=5, protocol=2) as client:
        client.set("good:k", "v")
        yield client
        # whatever the hostile client did, the good one is still served correctly
        assert client.get("good:k") == b"v"
        assert client.ping()


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send payload; read until the proxy closes or goes quiet. (reply, closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        sock.settimeout(1.0)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return data, False
            if not chunk:
                return data, True
            data += chunk


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (b"*1\r\nfoo\r\n", b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        (b"*3000000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$-10\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$1099511627776\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),  # 2^40
        (b"*1\r\n$blabla\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*2\r\n:1\r\n+x\r\n", b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (b'set "a b\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"x" * 70_000, b"-ERR Protocol error: too big inline request\r\n"),
        (b"*1" + b"1" * 70_000, b"-ERR Protocol error: too big mbulk count string\r\n"),
    ],
)
def test_malformed_input_gets_redis_error_and_close(
    proxy: ProxyThread, good: redis.Redis, payload: bytes, reply: bytes
) -> None:
    assert exchange(proxy.port, b"PING\r\n" + payload) == (b"+PONG\r\n" + reply, True)


def test_huge_array_header_waits_like_redis_and_costs_nothing(
    proxy: ProxyThread, good: redis.Redis
) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"*1000000000\r\n")
        for _ in range(200):
            sock.sendall(b"$1\r\na\r\n" * 50)
        started = time.monotonic()
        assert good.ping()
        assert time.monotonic() - started < 5.0  # generous: CI machines are shared


def test_100mb_value_round_trips(proxy: ProxyThread, good: redis.Redis) -> None:
    value = b"0123456789" * 10_000_000
    with redis.Redis(port=proxy.port, socket_timeout=60) as big:
        assert big.set("big:value", value)
        assert big.strlen("big:value") == len(value)
        assert big.get("big:value") == value
        assert big.delete("big:value") == 1


def test_one_byte_every_100ms(proxy: ProxyThread, good: redis.Redis) -> None:
    request = b"*2\r\n$4\r\nECHO\r\n$5\r\nslow!\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        for byte in request:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)  # the scenario, not a wait: a client dribbling one byte at a time
            assert good.get("good:k") == b"v"  # others are served meanwhile
        assert sock.recv(100) == b"$5\r\nslow!\r\n"


def test_5000_idle_connections(proxy: ProxyThread, good: redis.Redis) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 12_000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} cannot hold 5,000 connections in-process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 12_000), hard))
    socks = []
    try:
        for _ in range(5000):
            socks.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        started = time.monotonic()
        assert good.set("good:idle", "x") and good.get("good:idle") == b"x"
        assert time.monotonic() - started < 1.0
        socks[-1].sendall(b"PING\r\n")
        assert socks[-1].recv(10) == b"+PONG\r\n"
        state = proxy.server.state
        assert state is not None and len(state.sessions) >= 5000
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
