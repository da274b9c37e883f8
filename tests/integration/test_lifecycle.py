"""Backpressure and shutdown: a client that never reads is bounded; SIGTERM drains."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from conf.schema import LimitsConfig
from proxy.localcluster import Cluster, RedisProcess, RedisReplyError, command
from proxy.session import ClientSession
from tests.integration.proxy_process import slotless_process
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until


def session_of(proxy: ProxyThread, sock: socket.socket) -> ClientSession | None:
    """slotless's session for the client socket `sock`, once it has accepted it."""
    state = proxy.server.state
    assert state is not None
    host, port = sock.getsockname()[:2]
    sessions = [s for s in list(state.sessions) if s.peer == f"{host}:{port}"]
    assert len(sessions) <= 1, sessions
    return sessions[0] if sessions else None


def reading_paused(proxy: ProxyThread, sock: socket.socket) -> bool:
    session = session_of(proxy, sock)
    return session is not None and session.reading_paused


def blocked_clients(addr: str) -> int:
    info = command(addr, "INFO", "clients")
    assert isinstance(info, bytes)
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


MAX_PENDING_REPLIES = LimitsConfig().max_pending_replies


@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_a_client_that_never_reads_is_bounded(
    mode: str, redis_standalone: RedisProcess, redis_cluster: Cluster
) -> None:
    seeds = [redis_standalone.addr] if mode == "standalone" else redis_cluster.seeds[:1]
    with ProxyThread(proxy_config(mode, seeds)) as proxy:
        with redis.Redis(port=proxy.port) as setup:
            setup.set("bp:big", b"x" * 100_000)
        # In cluster mode a pipelined read of GETs travels as batches (one queue entry
        # each): the bound still counts replies.
        request = b"*2\r\n$3\r\nGET\r\n$6\r\nbp:big\r\n"
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.setblocking(False)
            sent, total = 0, len(request) * 20_000  # 20,000 GETs = 2 GB of replies, never read

            def stuffed() -> bool:
                """Send until the socket is full (or all is sent); slotless stopped reading?"""
                nonlocal sent
                with contextlib.suppress(BlockingIOError):
                    while sent < total:
                        sent += sock.send(request * 100)
                session = session_of(proxy, sock)
                # Its replies stuck too, slotless can never resume reading: the steady state.
                return session is not None and session.reading_paused and session.writing_paused

            wait_until(
                stuffed, 10, "slotless to stop reading and writing the client that never reads"
            )
            session = session_of(proxy, sock)
            assert session is not None
            # The kernel's socket buffers may hold the rest of the requests; slotless itself
            # holds at most MAX_PENDING_REPLIES replies and has stopped reading.
            assert session.pending_replies <= MAX_PENDING_REPLIES
            assert session.reading_paused
            with redis.Redis(port=proxy.port) as other:  # and everybody else is fine
                assert other.ping()
                assert len(other.get("bp:big") or b"") == 100_000


def test_pipelined_requests_are_bounded_while_the_cluster_is_slow(redis_cluster: Cluster) -> None:
    """Replies owed, not queue entries, are what is bounded: while every node is paused a
    client can pipeline 20,000 GETs, and slotless holds at most MAX_PENDING_REPLIES of
    them (batched runs count once per reply); the rest wait in the socket buffers."""
    count = 20_000
    keys = [b"bp:%d" % (i % 97) for i in range(count)]
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as proxy:
        with redis.Redis(port=proxy.port) as setup:
            setup.mset({key: key for key in set(keys)})
        payload = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k) for k in keys)
        primaries = redis_cluster.primaries()
        for addr in primaries:
            command(addr, "CLIENT", "PAUSE", "1500", "ALL")
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            # In slices of 100 requests, so that slotless reads many small batches.
            sock.setblocking(False)
            step = len(payload) // 200
            sent, deadline = 0, time.monotonic() + 1.0
            while sent < len(payload) and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(payload[sent : sent + step])
                time.sleep(0.002)  # pacing, not a wait: slotless reads many small batches
            sock.setblocking(True)
            wait_until(lambda: reading_paused(proxy, sock), 5, "slotless to stop reading")
            session = session_of(proxy, sock)
            assert session is not None
            try:
                assert 0 < session.pending_replies <= MAX_PENDING_REPLIES
                assert session.reading_paused
            finally:
                for addr in primaries:
                    command(addr, "CLIENT", "UNPAUSE")
            expected = b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)
            received = bytearray()
            sock.settimeout(10)
            sock.sendall(payload[sent:])
            while len(received) < len(expected):
                chunk = sock.recv(1 << 20)
                assert chunk, "connection closed early"
                received += chunk
            assert bytes(received) == expected  # every reply, in request order


def test_sigterm_lets_in_flight_replies_arrive_then_exits_0(
    redis_standalone: RedisProcess, tmp_path: Path
) -> None:
    body = (
        f'upstream: {{mode: standalone, nodes: ["{redis_standalone.addr}"]}}\n'
        "log: {level: warning}\n"
    )
    # Past this, the node answers others -BUSY while a script runs: a sure sign that the
    # EVAL went through slotless and runs on the node, so SIGTERM finds it in flight.
    threshold = command(redis_standalone.addr, "CONFIG", "GET", "busy-reply-threshold")
    assert isinstance(threshold, list)
    command(redis_standalone.addr, "CONFIG", "SET", "busy-reply-threshold", "10")
    try:
        with slotless_process(tmp_path, body) as (proc, port):
            slow = "local i = 0 while i < 20000000 do i = i + 1 end return 'done'"
            result: list[object] = []
            with redis.Redis(port=port, socket_timeout=10) as client:
                worker = threading.Thread(target=lambda: result.append(client.eval(slow, 0)))
                worker.start()
                wait_until(lambda: _busy(redis_standalone.addr), 10, "the EVAL to run on the node")
                proc.send_signal(signal.SIGTERM)
                worker.join(10)
                assert result == [b"done"]  # the in-flight reply reached its client
                assert proc.wait(10) == 0
    finally:
        command(redis_standalone.addr, "CONFIG", "SET", "busy-reply-threshold", threshold[1])


def _busy(addr: str) -> bool:
    reply = command(addr, "PING")
    return isinstance(reply, RedisReplyError) and str(reply).startswith("BUSY")


def test_idle_clients_are_closed_after_client_idle_timeout(
    redis_standalone: RedisProcess,
) -> None:
    base = proxy_config("standalone", [redis_standalone.addr])
    config = replace(base, limits=replace(base.limits, client_idle_timeout=0.5))
    with (
        ProxyThread(config) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as idle,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as busy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as blocked,
    ):
        blocked.sendall(b"*3\r\n$5\r\nBLPOP\r\n$9\r\nidle:none\r\n$3\r\n1.5\r\n")
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            busy.sendall(b"PING\r\n")
            assert busy.recv(100) == b"+PONG\r\n"
            # Pacing, not a wait: a PING every 0.1 s for 4 idle timeouts keeps it active.
            time.sleep(0.1)
        busy.sendall(b"PING\r\n")
        assert busy.recv(100) == b"+PONG\r\n"
        assert idle.recv(100) == b""  # closed without a reply, as Redis does
        assert blocked.recv(100) == b"*-1\r\n"  # blocked for 1.5 s: not idle


def test_sigterm_deadline_bounds_the_drain(redis_standalone: RedisProcess, tmp_path: Path) -> None:
    body = (
        f'upstream: {{mode: standalone, nodes: ["{redis_standalone.addr}"]}}\n'
        "shutdown_timeout: 300ms\nlog: {level: warning}\n"
    )
    with (
        slotless_process(tmp_path, body) as (proc, port),
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        # blocks for 10 s upstream: the drain must not wait for it
        before = blocked_clients(redis_standalone.addr)
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$9\r\nterm:none\r\n$2\r\n10\r\n")
        wait_until(
            lambda: blocked_clients(redis_standalone.addr) > before, 10, "BLPOP to block upstream"
        )
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - started < 3.0


def test_sighup_reloads_the_config_and_keeps_clients(
    redis_standalone: RedisProcess, tmp_path: Path
) -> None:
    config, log_path = tmp_path / "slotless.yaml", tmp_path / "log"
    body = f'upstream: {{mode: standalone, nodes: ["{redis_standalone.addr}"]}}\n'
    events = ("reloaded", "reload_rejected")

    def reloaded(times: int) -> None:
        wait_until(
            lambda: sum(log_path.read_text().count(f" {e} ") for e in events) >= times,
            10,
            lambda: f"reload #{times} in the log:\n{log_path.read_text()}",
        )

    with (
        slotless_process(tmp_path, body + "log: {level: info}\n") as (proc, port),
        redis.Redis(port=port, protocol=2, single_connection_client=True) as client,
    ):
        head = config.read_text().split("log:")[0]
        assert client.set("hup:k", "v") and client.keys("hup:*") == [b"hup:k"]

        config.write_text(head + "deny_commands: [keys]\nlog: {level: info}\n")
        proc.send_signal(signal.SIGHUP)
        reloaded(1)
        with pytest.raises(redis.ResponseError, match="'KEYS' is disabled"):
            client.keys("hup:*")  # the same connection, now under the new rules
        assert client.get("hup:k") == b"v"

        config.write_text(head + "deny_commands: [keys\n")  # broken YAML: nothing changes
        proc.send_signal(signal.SIGHUP)
        reloaded(2)
        assert "reload_rejected" in log_path.read_text()
        with pytest.raises(redis.ResponseError, match="'KEYS' is disabled"):
            client.keys("hup:*")
        assert client.get("hup:k") == b"v" and proc.poll() is None
