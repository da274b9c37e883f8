"""MULTI/EXEC/DISCARD/WATCH through slotless in cluster mode, checked against a standalone
Redis 7.0 where the two must agree byte for byte, and against the cluster's own state where a
cluster makes standalone behaviour impossible (cross-slot, migrations, lost connections)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localcluster import Cluster, LocalCluster, RedisProcess, command
from routing.resp import pack_command, reply_end
from routing.slots import key_hash_slot
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FreshCluster = Callable[..., LocalCluster]

# Keys of one slot ({t}), and keys of other slots.
A, B, N, L = b"{t}a", b"{t}b", b"{t}n", b"{t}l"
OTHER = b"{u}x"
assert key_hash_slot(OTHER) != key_hash_slot(A)


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


def exchange(port: int, *commands: tuple[bytes | str, ...]) -> list[bytes]:
    """Send every command in one write; return each raw reply."""
    payload = b"".join(
        pack_command([c.encode() if isinstance(c, str) else c for c in cmd]) for cmd in commands
    )
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        buf = b""
        while len(replies) < len(commands):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {replies!r}"
            buf += chunk
            while buf and len(replies) < len(commands):
                end = reply_end(buf, 0)
                if end < 0:
                    break
                replies.append(buf[:end])
                buf = buf[end:]
    return replies


def same_slot_other_key(cluster: Cluster, key: bytes) -> bytes:
    """A key in another slot served by the same primary as `key`."""
    owner = cluster.owner_of_slot(key_hash_slot(key))
    for i in range(10_000):
        candidate = b"{same-node-%d}k" % i
        slot = key_hash_slot(candidate)
        if slot != key_hash_slot(key) and cluster.owner_of_slot(slot) == owner:
            return candidate
    raise AssertionError("no other slot on this node")


def dedicated_count(proxy: ProxyThread) -> int:
    state = proxy.server.state
    assert state is not None
    return len(state.pool._dedicated)


def wait_no_dedicated(proxy: ProxyThread) -> None:
    wait_until(
        lambda: dedicated_count(proxy) == 0, 5, "slotless to close its dedicated connections"
    )


# --- same replies as a standalone Redis ----------------------------------------------------

SEQUENCES: dict[str, list[tuple[bytes | str, ...]]] = {
    "basic": [("DEL", A), ("MULTI",), ("INCR", A), ("INCR", A), ("GET", A), ("EXEC",)],
    "keyless_first": [
        ("DEL", A),
        ("MULTI",),
        ("PING",),
        ("ECHO", "hi"),
        ("PING", "x"),
        ("SET", A, "1"),
        ("GET", A),
        ("EXEC",),
        ("GET", A),
    ],
    "keyless_only": [("MULTI",), ("PING",), ("ECHO", "e"), ("EXEC",)],
    "empty": [("MULTI",), ("EXEC",)],
    "unknown_command": [
        ("DEL", A),
        ("MULTI",),
        ("SET", A, "1"),
        ("NOSUCHCOMMAND", "x"),
        ("EXEC",),
        ("GET", A),
    ],
    "unknown_command_first": [("DEL", A), ("MULTI",), ("FOO",), ("SET", A, "1"), ("EXEC",)],
    "arity": [("DEL", A), ("MULTI",), ("SET", A, "1"), ("GET",), ("EXEC",), ("GET", A)],
    "nesting_and_misplaced": [
        ("EXEC",),
        ("DISCARD",),
        ("DEL", A),
        ("MULTI",),
        ("MULTI",),
        ("WATCH", A),
        ("SET", A, "v"),
        ("EXEC",),
        ("EXEC",),
        ("GET", A),
    ],
    "discard": [
        ("DEL", A),
        ("MULTI",),
        ("SET", A, "1"),
        ("DISCARD",),
        ("GET", A),
        ("EXEC",),
        ("DISCARD",),
    ],
    "exec_wrong_arity": [("DEL", A), ("MULTI",), ("SET", A, "1"), ("EXEC", "x"), ("GET", A)],
    "blocking_runs_without_blocking": [
        ("DEL", L),
        ("MULTI",),
        ("BLPOP", L, "0"),
        ("RPUSH", L, "x"),
        ("BLPOP", L, "0"),
        ("UNWATCH",),
        ("EXEC",),
    ],
    "reset_ends_it": [("DEL", A), ("MULTI",), ("SET", A, "1"), ("RESET",), ("EXEC",), ("GET", A)],
    "watch_no_conflict": [
        ("SET", A, "1"),
        ("WATCH", A, B),
        ("GET", A),
        ("MULTI",),
        ("INCR", A),
        ("EXEC",),
        ("UNWATCH",),
    ],
    "watch_own_write": [("SET", A, "1"), ("WATCH", A), ("SET", A, "2"), ("MULTI",), ("EXEC",)],
    "unwatch_then_multi": [("WATCH", A), ("UNWATCH",), ("UNWATCH",), ("MULTI",), ("EXEC",)],
    "wrongtype_at_exec": [
        ("SET", A, "s"),
        ("MULTI",),
        ("LPUSH", A, "x"),
        ("INCR", B),
        ("DEL", B),
        ("EXEC",),
    ],
    "after_exec_back_to_normal": [
        ("MULTI",),
        ("SET", A, "1"),
        ("EXEC",),
        ("SET", OTHER, "2"),
        ("GET", OTHER),
        ("GET", A),
    ],
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_same_replies_as_standalone(
    name: str, proxy: ProxyThread, redis_standalone: RedisProcess
) -> None:
    sequence = SEQUENCES[name]
    expected = exchange(redis_standalone.port, *sequence)
    assert exchange(proxy.port, *sequence) == expected
    wait_no_dedicated(proxy)


# --- redis-py ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_transaction_pipeline(proxy: ProxyThread, protocol: int) -> None:
    with redis.Redis(port=proxy.port, protocol=protocol) as r:
        r.delete("{p}a", "{p}l", "{p}h")
        pipe = r.pipeline(transaction=True)
        pipe.set("{p}a", 1).incrby("{p}a", 5).get("{p}a").rpush("{p}l", "x", "y").lrange(
            "{p}l", 0, -1
        )
        pipe.hset("{p}h", mapping={"f": "v"}).hgetall("{p}h").ping()
        assert pipe.execute() == [True, 6, b"6", 2, [b"x", b"y"], 1, {b"f": b"v"}, True]
        assert r.get("{p}a") == b"6"


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_watch_conflict_and_helper(proxy: ProxyThread, protocol: int) -> None:
    with (
        redis.Redis(port=proxy.port, protocol=protocol) as r,
        redis.Redis(port=proxy.port, protocol=protocol) as other,
    ):
        r.set("{w}k", 10)
        with r.pipeline() as pipe:
            pipe.watch("{w}k")
            assert pipe.get("{w}k") == b"10"  # immediate mode while watching
            other.set("{w}k", 99)  # another client touches the watched key
            pipe.multi()
            pipe.set("{w}k", 11)
            with pytest.raises(redis.WatchError):
                pipe.execute()
        assert r.get("{w}k") == b"99"

        calls = 0

        def add_one(pipe: redis.client.Pipeline) -> None:
            nonlocal calls
            calls += 1
            value = int(pipe.get("{w}k") or 0)
            if calls == 1:
                other.set("{w}k", 1000)  # forces exactly one retry
            pipe.multi()
            pipe.set("{w}k", value + 1)

        assert r.transaction(add_one, "{w}k") == [True]
        assert calls == 2
        assert r.get("{w}k") == b"1001"
    wait_no_dedicated(proxy)


def test_resp3_exec_and_watch_nil(proxy: ProxyThread) -> None:
    """Replies keep the client's protocol: RESP3 maps and nulls come through as RESP3."""
    port = proxy.port
    hello = (b"HELLO", b"3")
    replies = exchange(
        port,
        hello,
        (b"DEL", b"{r3}h"),
        (b"HSET", b"{r3}h", b"f", b"v"),
        (b"MULTI",),
        (b"HGETALL", b"{r3}h"),
        (b"EXEC",),
    )
    assert replies[-1] == b"*1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    with redis.Redis(port=port, protocol=2) as other:
        payload = [hello, (b"WATCH", b"{r3}h"), (b"SET", b"{r3}h", b"x")]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(pack_command(list(c)) for c in payload))
            _read_replies(sock, 3)
            other.set("{r3}h", "from-other")
            sock.sendall(pack_command([b"MULTI"]) + pack_command([b"GET", b"{r3}h"]))
            sock.sendall(pack_command([b"EXEC"]))
            assert _read_replies(sock, 3) == [b"+OK\r\n", b"+QUEUED\r\n", b"_\r\n"]


def _read_replies(sock: socket.socket, count: int) -> list[bytes]:
    out: list[bytes] = []
    buf = b""
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk
        buf += chunk
        while buf and len(out) < count:
            end = reply_end(buf, 0)
            if end < 0:
                break
            out.append(buf[:end])
            buf = buf[end:]
    return out


# --- what a cluster cannot do: refused the way Redis refuses it ---------------------------

CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"


def test_cross_slot_command_refused_then_execabort(
    proxy: ProxyThread, redis_cluster: Cluster
) -> None:
    near = same_slot_other_key(redis_cluster, A)
    for other in (OTHER, near):
        replies = exchange(
            proxy.port,
            ("DEL", A, B),
            ("DEL", other),
            ("MULTI",),
            ("SET", A, "1"),
            ("SET", other, "1"),
            ("INCR", B),
            ("EXEC",),
            ("GET", A),
            ("EXISTS", other),
        )
        assert replies == [
            replies[0],
            replies[1],
            b"+OK\r\n",
            b"+QUEUED\r\n",
            CROSSSLOT,
            b"+QUEUED\r\n",
            EXECABORT,
            b"$-1\r\n",
            b":0\r\n",
        ]
    wait_no_dedicated(proxy)


@pytest.mark.parametrize(
    "refused",
    [
        ("MSET", "a-key", "1", "b-key", "2"),
        ("DEL", A, OTHER),
        ("DBSIZE",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("SUBSCRIBE", "ch"),
        ("CLIENT", "ID"),
    ],
)
def test_commands_a_slot_bound_transaction_cannot_hold(
    proxy: ProxyThread, refused: tuple[str, ...]
) -> None:
    replies = exchange(
        proxy.port, ("DEL", A), ("MULTI",), ("SET", A, "1"), refused, ("EXEC",), ("GET", A)
    )
    assert replies[:3] == [replies[0], b"+OK\r\n", b"+QUEUED\r\n"]
    assert replies[3].startswith(b"-")
    if refused[0] in ("MSET", "DEL"):
        assert replies[3] == CROSSSLOT
    assert replies[4:] == [EXECABORT, b"$-1\r\n"]


def test_same_slot_multi_key_commands_are_fine(proxy: ProxyThread) -> None:
    replies = exchange(
        proxy.port,
        ("MULTI",),
        ("MSET", A, "1", B, "2"),
        ("MGET", A, B),
        ("DEL", A, B),
        ("EVAL", "return redis.call('exists', KEYS[1])", "1", A),
        ("EXEC",),
    )
    assert replies[-1] == b"*4\r\n+OK\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n:2\r\n:0\r\n"


def test_watch_across_slots(proxy: ProxyThread) -> None:
    assert exchange(proxy.port, ("WATCH", A, OTHER), ("WATCH", A), ("WATCH", OTHER)) == [
        CROSSSLOT,
        b"+OK\r\n",
        CROSSSLOT,
    ]
    # WATCH binds the slot: a MULTI after it refuses other slots too.
    replies = exchange(
        proxy.port, ("WATCH", A), ("MULTI",), ("SET", OTHER, "1"), ("SET", A, "1"), ("EXEC",)
    )
    assert replies == [b"+OK\r\n", b"+OK\r\n", CROSSSLOT, b"+QUEUED\r\n", EXECABORT]
    wait_no_dedicated(proxy)


def test_keyless_transaction_runs_on_a_primary(proxy: ProxyThread) -> None:
    replies = exchange(proxy.port, ("MULTI",), ("PING",), ("ECHO", "x"), ("EXEC",))
    assert replies == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n+PONG\r\n$1\r\nx\r\n"]


# --- disconnects and lost connections -------------------------------------------------------


def test_client_disconnect_discards_and_releases(
    proxy: ProxyThread, redis_cluster: Cluster
) -> None:
    owner = redis_cluster.owner_of_slot(key_hash_slot(A))
    command(owner, "DEL", A)
    in_multi_before = _clients_in_multi(owner)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(pack_command([b"MULTI"]) + pack_command([b"SET", A, b"1"]))
        assert _read_replies(sock, 2) == [b"+OK\r\n", b"+QUEUED\r\n"]
        assert dedicated_count(proxy) == 1
        assert _clients_in_multi(owner) == in_multi_before + 1
    wait_no_dedicated(proxy)
    wait_until(
        lambda: _clients_in_multi(owner) <= in_multi_before, 5, "the node to leave the MULTI"
    )
    assert _clients_in_multi(owner) == in_multi_before
    assert command(owner, "EXISTS", A) == 0


def _clients_in_multi(addr: str) -> int:
    listing = command(addr, "CLIENT", "LIST")
    assert isinstance(listing, bytes)
    return sum(
        1
        for line in listing.decode().splitlines()
        if "x" in line.split(" flags=", 1)[1].split(" ", 1)[0]
    )


def test_upstream_connection_lost_before_exec(proxy: ProxyThread, redis_cluster: Cluster) -> None:
    owner = redis_cluster.owner_of_slot(key_hash_slot(A))
    command(owner, "DEL", A)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(pack_command([b"MULTI"]) + pack_command([b"SET", A, b"1"]))
        assert _read_replies(sock, 2) == [b"+OK\r\n", b"+QUEUED\r\n"]
        listing = command(owner, "CLIENT", "LIST")
        assert isinstance(listing, bytes)
        ids = [
            line.split(" ", 1)[0].removeprefix("id=")
            for line in listing.decode().splitlines()
            if "x" in line.split(" flags=", 1)[1].split(" ", 1)[0]
        ]
        assert len(ids) == 1
        assert dedicated_count(proxy) == 1
        command(owner, "CLIENT", "KILL", "ID", ids[0])
        wait_no_dedicated(proxy)  # the kill is seen before EXEC is sent
        sock.sendall(pack_command([b"EXEC"]) + pack_command([b"GET", A]))
        reply, after = _read_replies(sock, 2)
    assert reply.startswith(b"-ERR slotless: the connection to node ")
    assert b"nothing was applied" in reply
    assert after == b"$-1\r\n"
    wait_no_dedicated(proxy)


def test_no_connection_leak_over_many_transactions(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port, protocol=2) as r:
        for i in range(50):
            with r.pipeline(transaction=True) as pipe:
                pipe.set(f"{{leak}}{i}", i).get(f"{{leak}}{i}")
                assert pipe.execute() == [True, str(i).encode()]
            if i % 10 == 0:
                with r.pipeline() as pipe:
                    pipe.watch("{leak}w")
                    pipe.multi()
                    pipe.discard()
    wait_no_dedicated(proxy)


# --- slot migrations in the middle of a transaction ---------------------------------------


def test_slot_migrated_mid_transaction_applies_nothing(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    with (
        ProxyThread(proxy_config("cluster", cluster.seeds)) as proxy,
        redis.Redis(port=proxy.port, protocol=2, retry=Retry(NoBackoff(), 0)) as r,
    ):
        # 1. The slot moves for good between the queued commands and EXEC: the node
        # refuses EXEC (MOVED) and discards the whole transaction.
        slot = key_hash_slot(b"{m1}")
        r.set("{m1}a", "old")
        source = cluster.owner_of_slot(slot)
        target = next(p for p in cluster.primaries() if p != source)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(
                b"".join(
                    pack_command(c)
                    for c in ([b"MULTI"], [b"SET", b"{m1}a", b"new"], [b"INCR", b"{m1}n"])
                )
            )
            assert _read_replies(sock, 3) == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
            cluster.begin_migration(slot, target)
            cluster.migrate_keys(slot, target)
            cluster.finish_migration(slot, target)
            sock.sendall(pack_command([b"EXEC"]))
            (reply,) = _read_replies(sock, 1)
        assert reply.startswith(b"-ERR slotless: slot %d is moving" % slot)
        assert b"nothing was applied" in reply
        assert command(target, "GET", "{m1}a") == b"old"
        assert command(target, "EXISTS", "{m1}n") == 0
        assert r.get("{m1}a") == b"old"  # slotless follows the slot to its new owner

        # 2. The migration starts (keys already moved) while commands are being queued: the
        # node answers ASK for the moved key, the transaction is flagged and EXEC aborts.
        slot = key_hash_slot(b"{m2}")
        r.set("{m2}a", "old")
        source = cluster.owner_of_slot(slot)
        target = next(p for p in cluster.primaries() if p != source)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(pack_command([b"MULTI"]) + pack_command([b"SET", b"{m2}b", b"1"]))
            assert _read_replies(sock, 2) == [b"+OK\r\n", b"+QUEUED\r\n"]
            cluster.begin_migration(slot, target)
            cluster.migrate_keys(slot, target)
            sock.sendall(
                pack_command([b"SET", b"{m2}a", b"new"])
                + pack_command([b"EXEC"])
                + pack_command([b"GET", b"{m2}a"])
            )
            refused, aborted, after = _read_replies(sock, 3)
        assert refused.startswith(b"-ERR slotless: slot %d is moving" % slot)
        assert aborted == EXECABORT
        assert after == b"$3\r\nold\r\n"
        cluster.finish_migration(slot, target)
        assert command(target, "MGET", "{m2}a", "{m2}b") == [b"old", None]
        wait_no_dedicated(proxy)
