"""slotless in front of a real 3x1 Redis Cluster, used by unmodified clients."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import Cluster, command
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


@pytest.fixture
def client(proxy: ProxyThread) -> Iterator[redis.Redis]:
    with redis.Redis(port=proxy.port, socket_timeout=10) as r:
        yield r


@pytest.fixture
def client2(proxy: ProxyThread) -> Iterator[redis.Redis]:
    """RESP2, as older clients speak it."""
    with redis.Redis(port=proxy.port, socket_timeout=10, protocol=2) as r:
        yield r


def keys_on_every_shard(cluster: Cluster) -> list[bytes]:
    """One key per primary, found by asking the cluster who owns its slot."""
    found: dict[str, bytes] = {}
    i = 0
    while len(found) < len(cluster.primaries()):
        key = b"shard-key-%d" % i
        found.setdefault(cluster.owner_of_slot(key_hash_slot(key)), key)
        i += 1
    return list(found.values())


def redis_cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return out.stdout.strip()


def test_redis_cli_without_c_on_every_shard(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    for key in keys_on_every_shard(redis_cluster):
        assert redis_cli(proxy.port, "set", key.decode(), "v-" + key.decode()) == "OK"
        assert redis_cli(proxy.port, "get", key.decode()) == "v-" + key.decode()
        # and the value really is on the owning primary
        owner = redis_cluster.owner_of_slot(key_hash_slot(key))
        assert command(owner, "GET", key) == b"v-" + key


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_2000_keys_across_all_slots(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(port=proxy.port, protocol=protocol) as r:
        keys = [f"many:{protocol}:{i}" for i in range(2000)]
        assert len({key_hash_slot(k.encode()) for k in keys}) > 1800
        for i, key in enumerate(keys):
            assert r.set(key, i)
        for i, key in enumerate(keys):
            assert r.get(key) == str(i).encode()
        assert r.delete(*keys) == 2000


@pytest.mark.parametrize("protocol", [2, 3])
def test_mset_mget_200_keys_across_slots(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(port=proxy.port, protocol=protocol) as r:
        mapping = {f"mk:{protocol}:{i}": f"value-{i}" for i in range(200)}
        assert r.mset(mapping) is True
        keys = list(mapping)
        asked = [*keys[::-1], "mk:missing", keys[0]]
        got = r.mget(asked)
        assert got == [*(mapping[k].encode() for k in keys[::-1]), None, b"value-0"]


def test_multi_key_counts_as_redis_counts(client: redis.Redis) -> None:
    keys = [f"cnt:{i}" for i in range(50)]
    client.mset(dict.fromkeys(keys, 1))
    assert client.exists(*keys, keys[0], "cnt:none") == 51  # repeats count, like Redis
    assert client.touch(*keys) == 50
    assert client.unlink(*keys[:10]) == 10
    assert client.delete(*keys, keys[20]) == 40
    assert client.exists(*keys) == 0


def test_same_slot_multi_key_is_forwarded_whole(client: redis.Redis) -> None:
    assert client.mset({"{tag}a": 1, "{tag}b": 2}) is True
    assert client.rename("{tag}a", "{tag}c") is True
    assert client.mget("{tag}c", "{tag}b") == [b"1", b"2"]
    client.sadd("{tag}s1", "a", "b")
    client.sadd("{tag}s2", "b", "c")
    assert client.sunionstore("{tag}u", ["{tag}s1", "{tag}s2"]) == 3


@pytest.mark.parametrize(
    "args",
    [
        ("RENAME", "a-key", "b-key"),
        ("SMOVE", "a-key", "b-key", "m"),
        ("SUNIONSTORE", "a-key", "b-key", "c-key"),
        ("MSETNX", "a-key", "1", "b-key", "2"),
        ("EVAL", "return 1", "2", "a-key", "b-key"),
        ("LMOVE", "a-key", "b-key", "LEFT", "RIGHT"),
    ],
)
def test_crossslot_like_redis(client2: redis.Redis, args: tuple[str, ...]) -> None:
    assert key_hash_slot(b"a-key") != key_hash_slot(b"b-key")
    with pytest.raises(redis.ResponseError, match=r"^Keys in request don't hash to the same slot$"):
        client2.execute_command(*args)


def test_pipeline_of_10000_commands_in_order(client2: redis.Redis) -> None:
    pipe = client2.pipeline(transaction=False)
    for i in range(10_000):
        pipe.set(f"pl:{i}", i) if i % 2 == 0 else pipe.get(f"pl:{i - 1}")
    results = pipe.execute()
    assert len(results) == 10_000
    for i in range(1, 10_000, 2):
        assert results[i] == str(i - 1).encode()


def raw_session(port: int, payload: bytes, expect: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"\r\n") < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_keyless_basics(proxy: ProxyThread) -> None:
    reply = raw_session(
        proxy.port,
        b"PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*1\r\n$4\r\nTIME\r\n",
        expect=9,
    )
    lines = reply.split(b"\r\n")
    assert lines[:5] == [
        b"+PONG",
        b"$2",
        b"hi",
        b"+OK",
        b"-ERR SELECT is not allowed in cluster mode",
    ]
    assert lines[5] == b"*2"


def test_quit_replies_then_closes(proxy: ProxyThread) -> None:
    reply = raw_session(proxy.port, b"*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n", expect=5)
    assert reply == b"+OK\r\n"


def test_monitor_fails_fast_with_a_clear_error(client2: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match=r"MONITOR.*slotless"):
        client2.execute_command("MONITOR")


def test_cluster_commands_look_like_a_standalone_server(client2: redis.Redis) -> None:
    for args in (("CLUSTER", "INFO"), ("READONLY",), ("ASKING",)):
        with pytest.raises(redis.ResponseError, match="cluster support disabled"):
            client2.execute_command(*args)


def test_unknown_command_and_arity_errors_as_redis(client2: redis.Redis) -> None:
    with pytest.raises(
        redis.ResponseError, match=r"unknown command 'NOPE', with args beginning with: 'x' "
    ):
        client2.execute_command("NOPE", "x")
    with pytest.raises(redis.ResponseError, match=r"wrong number of arguments for 'get' command"):
        client2.execute_command("GET")
    with pytest.raises(redis.ResponseError, match=r"wrong number of arguments for 'mset' command"):
        client2.execute_command("MSET", "a", "1", "b")


def test_unknown_client_subcommand_as_redis(client2: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match=r"^unknown subcommand 'NOPE'. Try CLIENT HELP.$"):
        client2.execute_command("CLIENT", "NOPE")


def test_command_and_hello(client2: redis.Redis, proxy: ProxyThread) -> None:
    assert client2.command_count() > 200
    with redis.Redis(port=proxy.port, protocol=3) as r3:
        hello = r3.execute_command("HELLO", "3")
        assert hello[b"proto"] == 3 and hello[b"mode"] == b"standalone"
        assert r3.client_setname("me") and r3.client_getname() == b"me"


def test_protocol_error_replies_then_closes(proxy: ProxyThread) -> None:
    reply = raw_session(proxy.port, b"*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\n", expect=3)
    assert reply == b"+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n"
