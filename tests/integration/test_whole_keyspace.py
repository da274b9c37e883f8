"""Whole-keyspace commands through slotless on the 3x1 cluster, a standalone server as reference.

The same command sequence goes to slotless (cluster mode) and straight to a standalone
redis-server; the replies must match, ignoring order where Redis promises none.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from proxy.localcluster import Cluster, RedisProcess, command
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until


def wait_for_replicas(proxy: ProxyThread, cluster: Cluster, timeout: float = 15.0) -> None:
    """CLUSTER SLOTS lists a replica only once it has replicated something: write, refresh."""
    state = proxy.server.state
    assert state is not None
    expected = len(cluster.live_addrs())
    for primary in cluster.primaries():
        command(primary, "SET", key_on(cluster, primary), "1")

    def knows_all() -> bool:
        proxy.call(state.topology.refresh())
        slotmap = state.topology.slotmap
        return slotmap is not None and len(slotmap.nodes) == expected

    def describe() -> str:
        slotmap = state.topology.slotmap
        return f"slotless to know all {expected} nodes (knows {slotmap and slotmap.nodes})"

    wait_until(knows_all, timeout, describe, interval=0.1)


def key_on(cluster: Cluster, primary: str) -> bytes:
    """A key whose slot `primary` serves."""
    for i in range(100_000):
        key = b"on-node:%d" % i
        if cluster.owner_of_slot(key_hash_slot(key)) == primary:
            return key
    raise LookupError(primary)


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        wait_for_replicas(running, redis_cluster)
        yield running


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(
    request: pytest.FixtureRequest, proxy: ProxyThread, redis_standalone: RedisProcess
) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """(through slotless, straight to the standalone reference), both flushed."""
    protocol = request.param
    with (
        redis.Redis(port=proxy.port, protocol=protocol, socket_timeout=10) as ours,
        redis.Redis(port=redis_standalone.port, protocol=protocol, socket_timeout=10) as ref,
    ):
        ours.flushall()
        ref.flushall()
        yield ours, ref


def both(pair: tuple[redis.Redis, redis.Redis], call: Callable[[redis.Redis], Any]) -> Any:
    """call() on both; the results (or error texts) must be equal; returns slotless's."""
    results = []
    for client in pair:
        try:
            results.append(call(client))
        except redis.ResponseError as exc:
            results.append(("error", str(exc)))
    assert results[0] == results[1]
    return results[0]


def fill(client: redis.Redis, n: int = 300) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.set(f"str:{i}", i, ex=1000 if i % 3 == 0 else None)
    for i in range(n // 10):
        pipe.hset(f"hash:{i}", "f", i)
        pipe.sadd(f"set:{i}", "m")
    pipe.execute()


def test_dbsize_keys_randomkey_flush(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, _ = pair
    assert both(pair, lambda r: r.dbsize()) == 0
    assert both(pair, lambda r: r.randomkey()) is None
    assert both(pair, lambda r: r.keys("*")) == []
    for client in pair:
        fill(client)
    assert both(pair, lambda r: r.dbsize()) == 360
    everything = both(pair, lambda r: sorted(r.keys("*")))
    assert len(everything) == 360
    assert both(pair, lambda r: sorted(r.keys("str:1?"))) == [b"str:%d" % i for i in range(10, 20)]
    assert both(pair, lambda r: r.keys("nothing*")) == []
    for _ in range(20):
        assert ours.randomkey() in everything
    assert both(pair, lambda r: r.flushall(asynchronous=True)) is True
    assert both(pair, lambda r: r.dbsize()) == 0
    for client in pair:
        fill(client, 30)
    assert both(pair, lambda r: r.execute_command("FLUSHDB", "SYNC")) is True
    assert both(pair, lambda r: (r.dbsize(), r.randomkey())) == (0, None)
    assert both(pair, lambda r: r.execute_command("FLUSHALL", "NOW"))[0] == "error"


def test_scan_full_iteration(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, _ = pair
    for client in pair:
        fill(client)
    cases: list[dict[str, Any]] = [
        {},
        {"count": 7},
        {"match": "str:1*", "count": 50},
        {"_type": "hash"},
        {"match": "set:*", "_type": "set", "count": 3},
        {"match": "nothing*"},
    ]
    for kwargs in cases:
        seen = both(pair, lambda r, kw=kwargs: sorted(set(r.scan_iter(**kw))))  # type: ignore[misc]
        assert len(seen) == len(pair[1].keys(kwargs.get("match", "*"))) or "_type" in kwargs
    # one page at a time: cursors are opaque, and 0 ends the iteration
    cursor, pages, keys = 0, 0, []
    while True:
        cursor, page = ours.scan(cursor, count=25)
        keys += page
        pages += 1
        if cursor == 0:
            break
    assert sorted(set(keys)) == sorted(pair[1].keys("*")) and pages > 3
    for bad in ("abc", " 1", "18446744073709551616", "1x"):
        assert both(pair, lambda r, c=bad: r.execute_command("SCAN", c))[0] == "error"
    assert both(pair, lambda r: r.execute_command("SCAN", "0", "COUNT", "0"))[0] == "error"
    assert both(pair, lambda r: r.execute_command("SCAN", "0", "MATCH"))[0] == "error"


def test_scripts(pair: tuple[redis.Redis, redis.Redis], redis_cluster: Cluster) -> None:
    body = "return {KEYS[1], redis.call('incr', KEYS[1])}"
    sha = both(pair, lambda r: r.script_load(body))
    for node in redis_cluster.live_addrs():  # primaries and replicas
        assert command(node, "SCRIPT", "EXISTS", sha) == [1], node
    for key in ("a", "b", "c", "{x}1"):
        assert both(pair, lambda r, k=key: r.evalsha(sha, 1, k)) == [key.encode(), 1]
    assert both(pair, lambda r: r.script_exists(sha, "0" * 40)) == [True, False]
    assert both(pair, lambda r: r.eval("return ARGV[1]", 0, "hi")) == b"hi"
    assert both(pair, lambda r: r.eval("return redis.call('get', KEYS[1])", 1, "a")) == b"1"
    assert both(pair, lambda r: r.script_kill())[0] == "error"  # NOTBUSY
    assert both(pair, lambda r: r.script_flush()) is True
    assert both(pair, lambda r: r.script_exists(sha)) == [False]
    # flushed through slotless: forgotten there too, so NOSCRIPT, as a standalone says
    assert both(pair, lambda r: r.evalsha(sha, 1, "a"))[0] == "error"


def test_script_kill_stops_a_busy_script(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    with redis.Redis(port=proxy.port, socket_timeout=10) as r:
        assert r.config_set("busy-reply-threshold", 100)
        try:
            outcome: list[object] = []

            def run_busy() -> None:
                with redis.Redis(port=proxy.port, socket_timeout=10) as busy:
                    try:
                        busy.eval("while true do end", 1, "busy-key")
                    except redis.ResponseError as exc:
                        outcome.append(str(exc))

            thread = threading.Thread(target=run_busy)
            thread.start()

            def killed() -> bool:
                try:
                    return bool(r.script_kill())
                except redis.ResponseError as exc:
                    assert "NOTBUSY" in str(exc)  # no script running yet: ask again
                    return False

            wait_until(killed, 5, "SCRIPT KILL to find the busy script")
            thread.join(5)
            assert outcome and "killed" in str(outcome[0]).lower()
            assert r.set("busy-key", 1)  # that node serves again
        finally:
            r.config_set("busy-reply-threshold", 5000)


def test_functions(pair: tuple[redis.Redis, redis.Redis]) -> None:
    code = (
        "#!lua name=kslib\n"
        "redis.register_function('kincr', function(keys, args) "
        "return redis.call('incrby', keys[1], args[1]) end)"
    )
    for client in pair:
        client.function_flush()
    assert both(pair, lambda r: r.function_load(code)) == b"kslib"
    for key in ("a", "b", "c"):
        assert both(pair, lambda r, k=key: r.fcall("kincr", 1, k, 5)) == 5
    assert both(pair, lambda r: r.function_load(code))[0] == "error"  # already exists
    listed = both(pair, lambda r: [lib[b"library_name"] for lib in _libs(r)])
    assert listed == [b"kslib"]
    dump = pair[0].function_dump()
    assert both(pair, lambda r: r.function_delete("kslib")) is True
    assert both(pair, lambda r: r.fcall("kincr", 1, "a", 1))[0] == "error"
    assert both(pair, lambda r: r.function_restore(dump)) is True
    assert both(pair, lambda r: r.fcall("kincr", 1, "b", 1)) == 6
    assert both(pair, lambda r: r.function_flush()) is True
    assert both(pair, lambda r: r.function_list()) == []


def _libs(client: redis.Redis) -> list[dict[bytes, Any]]:
    libs = client.function_list()
    return [lib if isinstance(lib, dict) else _pairs(lib) for lib in libs]


def _pairs(flat: list[Any]) -> dict[bytes, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_keyed_introspection_and_simple_keyless(pair: tuple[redis.Redis, redis.Redis]) -> None:
    for client in pair:
        client.set("intro", "x" * 100)
        client.rpush("intro-list", 1, 2, 3)
    assert both(pair, lambda r: r.object("encoding", "intro")) == b"raw"
    assert both(pair, lambda r: r.object("encoding", "intro-list")) == b"quicklist"
    assert both(pair, lambda r: r.object("refcount", "intro")) == 1
    assert both(pair, lambda r: r.object("encoding", "missing")) is None
    usage = both(pair, lambda r: r.memory_usage("intro") > 100)
    assert usage is True
    assert both(pair, lambda r: r.memory_usage("missing")) is None
    assert both(pair, lambda r: r.ping()) is True
    assert both(pair, lambda r: r.echo("hello")) == b"hello"
    assert both(pair, lambda r: len(r.time())) == 2
    assert both(pair, lambda r: r.lastsave().year > 2000) is True


def test_info_parses_as_a_standalone_server(
    pair: tuple[redis.Redis, redis.Redis], proxy: ProxyThread
) -> None:
    ours, ref = pair
    fill(ours, 90)
    fill(ref, 90)
    info = ours.info()
    reference = ref.info()
    assert info["redis_version"] == reference["redis_version"]
    assert info["redis_mode"] == "standalone" == reference["redis_mode"]
    assert info["slotless_version"]
    assert info["tcp_port"] == proxy.port
    assert info["cluster_enabled"] == 0
    assert info["db0"]["keys"] == ours.dbsize() == reference["db0"]["keys"]
    assert info["db0"]["expires"] == reference["db0"]["expires"] == 30
    state = proxy.server.state
    assert state is not None
    assert info["connected_clients"] == len(state.sessions)
    assert info["role"] == "master" and info["connected_slaves"] == 0
    assert info["used_memory"] > reference["used_memory"]  # three primaries
    assert info["mode"] == "cluster" and info["slots_covered"] == 16384
    assert info["upstream_primaries"] == 3 and info["upstream_replicas"] == 3
    missing = {k for k in set(reference) - set(info) if not k.startswith("errorstat_")}
    assert missing <= {"slave0"}  # errors counted depend on what ran before
    keyspace = ours.info("keyspace")
    assert set(keyspace) == {"db0"}  # avg_ttl is an estimate the nodes keep updating
    assert (keyspace["db0"]["keys"], keyspace["db0"]["expires"]) == (info["db0"]["keys"], 30)
    assert set(ours.info("proxy")) >= {"redirects_absorbed", "upstream_errors"}
    assert "cmdstat_set" in ours.info("commandstats")
    assert ours.info("server", "clients")["connected_clients"] == len(state.sessions)


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout


def test_redis_cli_info_and_scan(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port) as r:
        r.flushall()
        fill(r, 200)
    scanned = redis_cli(proxy.port, "--scan", "--pattern", "str:*").split()
    assert sorted(set(scanned)) == sorted(f"str:{i}" for i in range(200))
    out = redis_cli(proxy.port, "info")
    assert out.startswith("# Server\n")
    assert "redis_mode:standalone" in out and "slotless_version:" in out
    assert "\n# Keyspace\n" in out and "\n# Proxy\n" in out
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert fields["cluster_enabled"] == "0"
    assert int(fields["connected_clients"]) >= 1


def test_config_set_reaches_every_node(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    with redis.Redis(port=proxy.port) as r:
        before = r.config_get("slowlog-max-len")["slowlog-max-len"]
        try:
            assert r.config_set("slowlog-max-len", 321)
            for node in redis_cluster.live_addrs():
                assert command(node, "CONFIG", "GET", "slowlog-max-len") == [
                    b"slowlog-max-len",
                    b"321",
                ], node
            assert r.config_get("slowlog-max-len") == {"slowlog-max-len": "321"}
            with pytest.raises(redis.ResponseError, match="Unknown option or number of arg"):
                r.config_set("no-such-option", 1)
            assert r.config_resetstat()
        finally:
            r.config_set("slowlog-max-len", before)


def test_slowlog_merged(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port) as r:
        r.config_set("slowlog-log-slower-than", 0)
        try:
            assert r.slowlog_reset()
            for i in range(12):
                r.set(f"slow:{i}", i)
            length = r.slowlog_len()
            assert length >= 12
            newest = r.slowlog_get(5)
            assert len(newest) == 5
            stamps = [entry["start_time"] for entry in newest]
            assert stamps == sorted(stamps, reverse=True)
            assert len(r.slowlog_get(-1)) >= 12
            assert len(r.slowlog_get()) == 10
            with pytest.raises(redis.ResponseError, match="count should be greater"):
                r.slowlog_get(-5)
        finally:
            r.config_set("slowlog-log-slower-than", 10000)


def test_wait_counts_replicas_of_every_shard(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    with redis.Redis(port=proxy.port) as r:
        for i in range(30):
            r.set(f"wait:{i}", i)
        assert len({redis_cluster.owner_of_slot(key_hash_slot(b"wait:%d" % i)) for i in range(30)})
        assert r.wait(1, 2000) == 1
        assert r.wait(0, 0) in (0, 1)
        with pytest.raises(redis.ResponseError, match="timeout is negative"):
            r.wait(1, -1)


def test_cluster_commands_still_say_cluster_support_is_disabled(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port) as r:
        for args in (
            ("CLUSTER", "INFO"),
            ("CLUSTER", "SLOTS"),
            ("CLUSTER", "SHARDS"),
            ("CLUSTER", "NODES"),
            ("READONLY",),
            ("READWRITE",),
            ("ASKING",),
        ):
            with pytest.raises(redis.ResponseError, match="cluster support disabled"):
                r.execute_command(*args)


@pytest.mark.parametrize(
    "args",
    [
        ("SHUTDOWN",),
        ("DEBUG", "SLEEP", "0"),
        ("MONITOR",),
        ("REPLICAOF", "NO", "ONE"),
        ("SLAVEOF", "NO", "ONE"),
        ("FAILOVER",),
        ("CLUSTER", "MEET", "127.0.0.1", "1"),
        ("CLUSTER", "SETSLOT", "1", "STABLE"),
    ],
)
def test_default_deny_list(proxy: ProxyThread, args: tuple[str, ...]) -> None:
    shown = " ".join(args[:2]) if args[0] == "CLUSTER" else args[0]
    with (
        redis.Redis(port=proxy.port) as r,
        pytest.raises(redis.ResponseError) as info,
    ):
        r.execute_command(*args)
    assert str(info.value) == f"command '{shown}' is disabled by slotless configuration"


def test_deny_list_from_config_in_standalone_mode(redis_standalone: RedisProcess) -> None:
    config = dataclasses.replace(
        proxy_config("standalone", [redis_standalone.addr]),
        deny_commands=("flushall", "config|set"),
    )
    with ProxyThread(config) as running, redis.Redis(port=running.port) as r:
        with pytest.raises(redis.ResponseError, match="'FLUSHALL' is disabled by slotless"):
            r.flushall()
        with pytest.raises(redis.ResponseError, match="'CONFIG SET' is disabled by slotless"):
            r.config_set("maxmemory", 0)
        assert "maxmemory" in r.config_get("maxmemory")
        assert r.info()["redis_mode"] == "standalone"  # INFO passes through unchanged
        assert "slotless_version" not in r.info()
        r.set("denied-not", 1)
        assert r.get("denied-not") == b"1"
