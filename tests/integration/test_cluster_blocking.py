"""Blocking commands through slotless in cluster mode: BLPOP & co., XREAD(GROUP) BLOCK.

Each blocked client holds a dedicated upstream connection, so other clients keep running;
a client that disconnects while blocked leaves neither a blocked node connection nor a
vanished element behind; a slot that moves or a node that dies ends the wait.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy import blocking
from proxy.localcluster import Cluster, Connection, LocalCluster, RedisProcess, command
from routing.resp import Args, pack_command
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FreshCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


def _client(port: int, protocol: int = 2, timeout: float = 15) -> redis.Redis:
    return redis.Redis(
        port=port, protocol=protocol, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
def r(proxy: ProxyThread) -> Iterator[redis.Redis]:
    with _client(proxy.port) as client:
        yield client


@pytest.fixture
def reference(redis_standalone: RedisProcess) -> Iterator[redis.Redis]:
    with redis.Redis(port=redis_standalone.port, protocol=2) as client:
        client.flushall()
        yield client


class Raw:
    """A plain socket client: sends requests, reads raw RESP replies one by one."""

    def __init__(self, port: int, timeout: float = 15) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = hiredis.Reader()

    def send(self, *args: bytes) -> None:
        self.sock.sendall(pack_command(list(args)))

    def read(self) -> Any:
        reply = self.reader.gets()
        while reply is False:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.reader.feed(data)
            reply = self.reader.gets()
        return reply

    def close(self) -> None:
        self.sock.close()


class Background(threading.Thread):
    """Runs one call in a thread; keeps its result or exception and how long it took."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc
        self.elapsed = time.monotonic() - started

    def outcome(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"still blocked after {timeout}s"
        return self.error if self.error is not None else self.result


def blocked_clients(addr: str, cmd: str | None = None) -> int:
    """Connections the node holds blocked (flags contain b), optionally by command."""
    listing = command(addr, "CLIENT", "LIST")
    assert isinstance(listing, bytes)
    count = 0
    for line in listing.decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "b" in fields.get("flags", "") and (cmd is None or fields.get("cmd") == cmd):
            count += 1
    return count


def owner(cluster: Cluster, key: bytes) -> str:
    return cluster.owner_of_slot(key_hash_slot(key))


# --- basics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_blpop_returns_at_once_when_data_exists(proxy: ProxyThread, protocol: int) -> None:
    with _client(proxy.port, protocol) as c:
        c.delete("{bl}now")
        c.rpush("{bl}now", "a", "b")
        assert list(c.blpop(["{bl}none", "{bl}now"], 0)) == [b"{bl}now", b"a"]
        assert list(c.brpop(["{bl}now"], 1)) == [b"{bl}now", b"b"]


def test_blpop_wakes_on_push_from_another_client(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis
) -> None:
    r.delete("bl:wake")
    node = owner(redis_cluster, b"bl:wake")
    before = blocked_clients(node, "blpop")
    with _client(proxy.port) as waiter:
        call = Background(lambda: waiter.blpop(["bl:wake"], 0))
        wait_until(lambda: blocked_clients(node, "blpop") > before, 10, "BLPOP to block")
        assert r.ping()  # the proxy serves others meanwhile
        r.lpush("bl:wake", "x")
        assert list(call.outcome(10)) == [b"bl:wake", b"x"]
    assert r.llen("bl:wake") == 0


@pytest.mark.parametrize("protocol", [2, 3])
def test_fractional_timeout_gives_null_like_redis(
    proxy: ProxyThread, protocol: int, redis_standalone: RedisProcess
) -> None:
    with _client(proxy.port, protocol) as c:
        started = time.monotonic()
        assert c.blpop(["bl:empty"], 0.2) is None
        elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 5
    with redis.Redis(port=redis_standalone.port, protocol=protocol) as ref:
        assert ref.blpop(["bl:empty"], 0.2) is None


def test_resp3_raw_null_on_timeout(proxy: ProxyThread) -> None:
    raw = Raw(proxy.port)
    try:
        raw.send(b"HELLO", b"3")
        raw.read()
        raw.sock.sendall(pack_command([b"BLPOP", b"bl:r3", b"0.1"]))
        data = b""
        while not data.endswith(b"\r\n"):
            data += raw.sock.recv(100)
        assert data == b"_\r\n"
    finally:
        raw.close()


def test_timeout_zero_waits_until_a_push(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis
) -> None:
    r.delete("bl:forever")
    node = owner(redis_cluster, b"bl:forever")
    before = blocked_clients(node, "brpop")
    with _client(proxy.port) as waiter:
        call = Background(lambda: waiter.brpop(["bl:forever"], 0))
        wait_until(lambda: blocked_clients(node, "brpop") > before, 10, "BRPOP to block")
        call.join(1.0)
        assert call.is_alive(), f"timeout 0 returned: {call.result!r} {call.error!r}"
        r.rpush("bl:forever", "late")
        assert list(call.outcome(10)) == [b"bl:forever", b"late"]


def test_crossslot(proxy: ProxyThread) -> None:
    assert key_hash_slot(b"a") != key_hash_slot(b"b")
    raw = Raw(proxy.port)
    try:
        for args in (
            (b"BLPOP", b"a", b"b", b"0"),
            (b"BLMOVE", b"a", b"b", b"LEFT", b"RIGHT", b"0"),
            (b"BRPOPLPUSH", b"a", b"b", b"0"),
            (b"BZMPOP", b"0", b"2", b"a", b"b", b"MIN"),
            (b"XREAD", b"BLOCK", b"0", b"STREAMS", b"a", b"b", b"$", b"$"),
        ):
            raw.sock.sendall(pack_command(list(args)))
            assert (
                raw.sock.recv(200) == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
            )
    finally:
        raw.close()


def test_node_errors_are_forwarded_as_is(r: redis.Redis, reference: redis.Redis) -> None:
    for args in (("BLPOP", "bl:e", "nope"), ("BLPOP", "bl:e", "-1"), ("BLMPOP", "0", "0")):
        with pytest.raises(redis.ResponseError) as ours:
            r.execute_command(*args)
        with pytest.raises(redis.ResponseError) as theirs:
            reference.execute_command(*args)
        assert str(ours.value) == str(theirs.value)


# --- every command, same as a standalone Redis --------------------------------------------


def _sequence(c: redis.Redis) -> list[Any]:
    """One run of each blocking command where data is there; keys share one hash tag."""
    out: list[Any] = []
    c.delete(*[f"{{bt}}{k}" for k in ("l1", "l2", "z", "s")])
    c.rpush("{bt}l1", "a", "b", "c", "d", "e")
    c.zadd("{bt}z", {"m1": 1, "m2": 2.5, "m3": 3})
    c.xadd("{bt}s", {"f": "v"}, id="1-1")
    c.xgroup_create("{bt}s", "g", id="0")
    out.append(c.execute_command("BRPOP", "{bt}l1", "1"))
    out.append(c.execute_command("BLMOVE", "{bt}l1", "{bt}l2", "LEFT", "RIGHT", "1"))
    out.append(c.execute_command("BRPOPLPUSH", "{bt}l1", "{bt}l2", "1"))
    out.append(c.execute_command("BLMPOP", "1", "2", "{bt}x", "{bt}l2", "RIGHT", "COUNT", "5"))
    out.append(c.execute_command("BZPOPMIN", "{bt}z", "1"))
    out.append(c.execute_command("BZPOPMAX", "{bt}z", "1"))
    out.append(c.execute_command("BZMPOP", "1", "1", "{bt}z", "MIN"))
    out.append(c.execute_command("XREAD", "BLOCK", "100", "STREAMS", "{bt}s", "0"))
    out.append(
        c.execute_command("XREADGROUP", "GROUP", "g", "c1", "BLOCK", "100", "STREAMS", "{bt}s", ">")
    )
    out.append(c.execute_command("XREAD", "BLOCK", "100", "STREAMS", "{bt}s", "$"))
    out.append(c.execute_command("BZMPOP", "0.1", "1", "{bt}z", "MAX"))
    out.append(c.lrange("{bt}l1", 0, -1))
    return out


def test_every_blocking_command_same_as_redis(r: redis.Redis, reference: redis.Redis) -> None:
    assert _sequence(r) == _sequence(reference)


def test_each_command_wakes_on_data(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis
) -> None:
    r.delete("{bw}l", "{bw}d", "{bw}z", "{bw}s", "{bw}g")
    r.xgroup_create("{bw}g", "g", id="$", mkstream=True)
    wakers: list[tuple[str, tuple[str, ...], Callable[[], object], Any]] = [
        (
            "blmove",
            ("BLMOVE", "{bw}l", "{bw}d", "LEFT", "LEFT", "0"),
            lambda: r.rpush("{bw}l", "x"),
            b"x",
        ),
        ("brpoplpush", ("BRPOPLPUSH", "{bw}l", "{bw}d", "0"), lambda: r.rpush("{bw}l", "y"), b"y"),
        (
            "blmpop",
            ("BLMPOP", "0", "1", "{bw}l", "LEFT"),
            lambda: r.rpush("{bw}l", "z"),
            [b"{bw}l", [b"z"]],
        ),
        (
            "bzpopmax",
            ("BZPOPMAX", "{bw}z", "0"),
            lambda: r.zadd("{bw}z", {"m": 2}),
            [b"{bw}z", b"m", 2.0],
        ),
        (
            "bzmpop",
            ("BZMPOP", "0", "1", "{bw}z", "MIN"),
            lambda: r.zadd("{bw}z", {"n": 1}),
            [b"{bw}z", [[b"n", b"1"]]],
        ),
        (
            "xread",
            ("XREAD", "BLOCK", "0", "STREAMS", "{bw}s", "$"),
            lambda: r.xadd("{bw}s", {"a": "1"}, id="5-1"),
            [[b"{bw}s", [[b"5-1", [[b"a", b"1"]]]]]],
        ),
        (
            "xreadgroup",
            ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "{bw}g", ">"),
            lambda: r.xadd("{bw}g", {"b": "2"}, id="6-1"),
            [[b"{bw}g", [[b"6-1", [[b"b", b"2"]]]]]],
        ),
    ]
    node = owner(redis_cluster, b"{bw}")
    with _client(proxy.port) as waiter:
        for cmd, args, push, expected in wakers:
            before = blocked_clients(node, cmd)
            call = Background(lambda args=args: waiter.execute_command(*args))  # type: ignore[misc]
            wait_until(
                lambda cmd=cmd, n=before: blocked_clients(node, cmd) > n,  # type: ignore[misc]
                10,
                f"{cmd} blocked",
            )
            push()
            got = call.outcome(10)
            if isinstance(got, dict):  # redis-py parses XREAD(GROUP) replies
                got = [[k, v] for k, v in got.items()]
            assert _plain(got) == expected, cmd


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return [_plain(list(item)) for item in value.items()]
    return value


def test_pipelined_requests_keep_their_order(proxy: ProxyThread, r: redis.Redis) -> None:
    r.delete("{bp}l")
    r.rpush("{bp}l", "one", "two")
    raw = Raw(proxy.port)
    try:
        raw.sock.sendall(
            pack_command([b"BLPOP", b"{bp}l", b"0"])
            + pack_command([b"PING"])
            + pack_command([b"BLPOP", b"{bp}l", b"0"])
            + pack_command([b"BLPOP", b"{bp}l", b"0.1"])
            + pack_command([b"ECHO", b"end"])
        )
        assert [raw.read() for _ in range(5)] == [
            [b"{bp}l", b"one"],
            b"PONG",
            [b"{bp}l", b"two"],
            None,
            b"end",
        ]
    finally:
        raw.close()


# --- many clients, disconnects, limits ----------------------------------------------------


def test_50_blocked_clients_do_not_stall_50_others(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis
) -> None:
    keys = [f"bl:many:{i}" for i in range(50)]
    r.delete(*keys)
    waiters = [_client(proxy.port, timeout=60) for _ in keys]
    try:
        calls = [
            Background(lambda w=w, k=k: w.blpop([k], 0))  # type: ignore[misc]
            for w, k in zip(waiters, keys, strict=True)
        ]

        def all_blocked() -> bool:
            return sum(blocked_clients(a, "blpop") for a in redis_cluster.primaries()) >= 50

        wait_until(all_blocked, 10, "50 clients blocked in BLPOP")

        def work(n: int) -> int:
            with _client(proxy.port) as c:
                for i in range(100):
                    c.set(f"bl:work:{n}:{i}", i)
                    assert c.get(f"bl:work:{n}:{i}") == str(i).encode()
            return n

        workers = [Background(lambda n=n: work(n)) for n in range(50)]  # type: ignore[misc]
        assert [w.outcome(30) for w in workers] == list(range(50))
        assert all(call.is_alive() for call in calls)  # still blocked, not failed
        for key in keys:
            r.lpush(key, "v:" + key)
        for call, key in zip(calls, keys, strict=True):
            assert list(call.outcome(10)) == [key.encode(), b"v:" + key.encode()]
    finally:
        for w in waiters:
            w.close()


@pytest.mark.parametrize("cmd", ["BLPOP", "BZPOPMIN"])
def test_killed_blocked_client_loses_no_element(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis, cmd: str
) -> None:
    key = f"bl:killed:{cmd}"
    r.delete(key)
    node = owner(redis_cluster, key.encode())
    name = cmd.lower()
    before = blocked_clients(node, name)
    raw = Raw(proxy.port)
    raw.send(cmd.encode(), key.encode(), b"0")
    wait_until(lambda: blocked_clients(node, name) > before, 10, f"{cmd} to block")
    raw.close()
    wait_until(lambda: blocked_clients(node, name) == before, 10, "the upstream to be unblocked")
    if cmd == "BLPOP":
        r.rpush(key, "kept")
        assert r.lrange(key, 0, -1) == [b"kept"]
    else:
        r.zadd(key, {"kept": 1})
        assert r.zrange(key, 0, -1, withscores=True) == [(b"kept", 1.0)]


def test_client_gone_while_an_element_arrives_loses_nothing(
    proxy: ProxyThread, redis_cluster: Cluster, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disconnect and a push race: whether CLIENT UNBLOCK or the pop wins on the node,
    the element ends up in the list exactly once (put back when the pop won). Which side
    wins is up to the race; every round checks the outcome, whichever it was."""
    state = proxy.server.state
    assert state is not None
    links = state.blocked.links
    put_back: list[Args] = []  # put-back commands sent, then acknowledged
    acknowledged: list[Args] = []
    original_init, original_on_ready = (
        blocking._RestoreSink.__init__,
        blocking._RestoreSink.on_ready,
    )

    def sent(sink: blocking._RestoreSink, args: Args) -> None:
        put_back.append(args)
        original_init(sink, args)

    def acked(sink: blocking._RestoreSink) -> None:
        acknowledged.append(sink.args)
        original_on_ready(sink)

    monkeypatch.setattr(blocking._RestoreSink, "__init__", sent)
    monkeypatch.setattr(blocking._RestoreSink, "on_ready", acked)
    for round_ in range(20):
        key = f"bl:race:{round_}"
        r.delete(key)
        node = owner(redis_cluster, key.encode())
        pusher = Connection(node)
        before, active = blocked_clients(node, "blpop"), links.active
        raw = Raw(proxy.port)
        raw.send(b"BLPOP", key.encode(), b"0")
        wait_until(lambda n=node, b=before: blocked_clients(n, "blpop") > b, 10, "BLPOP to block")  # type: ignore[misc]
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # a reset: slotless learns of it at once
        pusher.call("RPUSH", key, "x")  # straight to the node, racing CLIENT UNBLOCK
        pusher.close()

        def settled(n: str = node, b: int = before, a: int = active) -> bool:
            # The dedicated connection is released only after any put-back is sent.
            return (
                links.active == a
                and len(acknowledged) == len(put_back)
                and blocked_clients(n, "blpop") == b
            )

        wait_until(settled, 10, f"slotless to finish the orphaned BLPOP of {key}")
        # Its only client is gone, so "x" must be in the list: not lost, not put back twice.
        assert r.lrange(key, 0, -1) == [b"x"], (round_, put_back)


def test_too_many_blocked_clients(
    proxy: ProxyThread, redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = proxy.server.state
    assert state is not None
    active = state.blocked.links.active
    limits = dataclasses.replace(state.config.limits, max_blocked_clients=active + 1)
    monkeypatch.setattr(state, "config", dataclasses.replace(state.config, limits=limits))
    with _client(proxy.port) as first, _client(proxy.port) as second:
        call = Background(lambda: first.blpop(["bl:cap"], 2))
        node = owner(redis_cluster, b"bl:cap")
        wait_until(lambda: blocked_clients(node, "blpop") > 0, 10, "the first BLPOP to block")
        with pytest.raises(redis.ResponseError, match=r"^slotless: too many blocked clients"):
            second.blpop(["bl:cap2"], 1)
        assert second.ping()
        assert call.outcome(10) is None


# --- slots that move, nodes that fail -----------------------------------------------------


def _other_primary(cluster: LocalCluster, addr: str) -> str:
    return next(p for p in cluster.primaries() if p != addr)


def test_blocked_client_follows_a_migrated_slot(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    key = b"bl:moving"
    slot = key_hash_slot(key)
    source = cluster.owner_of_slot(slot)
    target = _other_primary(cluster, source)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy,
        _client(proxy.port, timeout=30) as waiter,
        _client(proxy.port) as pusher,
    ):
        call = Background(lambda: waiter.blpop([key], 0))
        wait_until(lambda: blocked_clients(source, "blpop") == 1, 10, "BLPOP to block")
        cluster.migrate_slot(slot, target)
        # The source redirects its blocked client (MOVED); slotless blocks it again on
        # the new owner, where the push now lands.
        wait_until(lambda: blocked_clients(target, "blpop") == 1, 10, "BLPOP on the new owner")
        pusher.rpush(key, "moved")
        assert list(call.outcome(15)) == [key, b"moved"]
        assert blocked_clients(source) == 0


def test_migrated_slot_keeps_the_time_left(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=2, replicas=0)
    key = b"bl:moving-timeout"
    slot = key_hash_slot(key)
    source = cluster.owner_of_slot(slot)
    target = _other_primary(cluster, source)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy,
        _client(proxy.port, timeout=30) as waiter,
    ):
        call = Background(lambda: waiter.blpop([key], 3))
        wait_until(lambda: blocked_clients(source, "blpop") == 1, 10, "BLPOP to block")
        # Part of the scenario, not a wait: half of BLPOP's 3 s are spent on the source.
        time.sleep(1.5)
        cluster.migrate_slot(slot, target)
        assert call.outcome(15) is None
        # Re-sent with the time left, not the full 3 s again (that would end past 4.5 s).
        assert 2.5 < call.elapsed < 4.2


def test_failover_while_blocked(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    key = b"bl:failover"
    old = owner(cluster, key)
    replica = cluster.replicas_of(old)[0]
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy,
        _client(proxy.port, timeout=40) as waiter,
        _client(proxy.port) as pusher,
    ):
        call = Background(lambda: waiter.blpop([key], 0))
        wait_until(lambda: blocked_clients(old, "blpop") == 1, 10, "BLPOP to block")
        cluster.failover(replica)
        # The demoted node unblocks its clients (UNBLOCKED, then MOVED); slotless
        # blocks the command again on the new primary.
        wait_until(lambda: blocked_clients(replica, "blpop") == 1, 10, "BLPOP on the new primary")
        pusher.rpush(key, "after")
        assert list(call.outcome(15)) == [key, b"after"]


def test_killed_node_ends_the_wait_with_an_error(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    key = b"bl:killed-node"
    node = owner(cluster, key)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy,
        _client(proxy.port, timeout=30) as waiter,
    ):
        call = Background(lambda: waiter.blpop([key], 0))
        wait_until(lambda: blocked_clients(node, "blpop") == 1, 10, "BLPOP to block")
        cluster.node(node).kill()
        got = call.outcome(15)
        assert isinstance(got, redis.ResponseError), got
        assert str(got).startswith("upstream ")
