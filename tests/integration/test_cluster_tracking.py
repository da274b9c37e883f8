"""CLIENT TRACKING through slotless in cluster mode, against a standalone Redis (issue 17.4).

Each script runs twice, on a standalone redis-server and on slotless in front of the cluster,
and the frames every client sees are compared (client ids normalised). On the standalone
server a write's invalidation is queued before the writer's reply, so a PING from the
tracking client collects it; through slotless it comes from the node's feed a little later,
so the same number of frames is awaited (under the socket timeout) before comparing.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cache import CacheConfig, TrackingMode
from redis.connection import CacheProxyConnection
from redis.retry import Retry

from conf import LimitsConfig
from proxy.localcluster import Cluster, RedisProcess, command, start_standalone
from routing import replies
from routing.slots import key_hash_slot
from routing.tracking import encode_keys, invalidation
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.integration.test_cluster_pubsub import Raw
from tests.waiting import wait_until

PONGS = (b"+PONG\r\n", b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")

# A step: (client, *args). "sync:<client>" collects what that client was sent since (a
# PING, then everything up to its PONG). "$<client>" in an argument is that client's id.
Step = tuple[str, ...]


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


@pytest.fixture(scope="module")
def standalone() -> Iterator[RedisProcess]:
    server = start_standalone()  # its own: the scripts FLUSHALL
    try:
        yield server
    finally:
        server.close()


def keys_on_every_primary(cluster: Cluster, prefix: str, count: int = 6) -> list[str]:
    """`count` keys named prefix+n whose slots fall on all the primaries, in turn."""
    owners: dict[str, list[str]] = {}
    n = 0
    while sum(len(v) for v in owners.values()) < count * 4:
        key = f"{prefix}{n}"
        owners.setdefault(cluster.owner_of_slot(key_hash_slot(key.encode())), []).append(key)
        n += 1
    assert len(owners) == 3
    lists = list(owners.values())
    return [lists[i % 3][i // 3] for i in range(count)]


class Transcript:
    def __init__(self, port: int, names: str) -> None:
        self.clients = {name: Raw(port, timeout=5.0) for name in names}
        self.ids = {name: c.call(b"CLIENT", b"ID")[1:-2] for name, c in self.clients.items()}

    def normalise(self, frame: bytes, about_clients: bool) -> bytes:
        """Client ids as names, in the replies that carry them (CLIENT ..., the broken
        redirect push); small numbers elsewhere are not ids."""
        if not about_clients and not frame.startswith(b">2\r\n$21\r\ntracking-redir-broken"):
            return frame
        for name, cid in self.ids.items():
            frame = re.sub(rb":%s\r\n" % cid, b":<%s>\r\n" % name.encode(), frame)
        return frame

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def run_script(port: int, script: Sequence[Step], counts: list[int] | None) -> list[list[bytes]]:
    """Run `script`; with `counts` (from the standalone run), each sync waits for that many
    frames instead of stopping at the PONG. Returns each step's frames, normalised."""
    names = "".join(sorted({step[0].removeprefix("sync:") for step in script}))
    transcript = Transcript(port, names)
    out: list[list[bytes]] = []
    try:
        for step in script:
            name, *args = step
            if name.startswith("sync:"):
                client = transcript.clients[name[5:]]
                client.send(b"PING")
                if counts is None:
                    frames = [client.frame()]
                    while frames[-1] not in PONGS:
                        frames.append(client.frame())
                else:
                    try:
                        frames = client.frames(counts[len(out)])
                    except TimeoutError:
                        pytest.fail(f"step {len(out)} {step}: fewer frames than {counts}")
            else:
                client = transcript.clients[name]
                raw = [transcript.ids[a[1:]] if a.startswith("$") else a.encode() for a in args]
                frames = [client.call(*raw)]
                if args[0] == "HELLO":  # tested elsewhere
                    frames = [b"<hello>"]
            about_clients = not name.startswith("sync:") and args[0] == "CLIENT"
            out.append([transcript.normalise(f, about_clients) for f in frames])
    finally:
        transcript.close()
    return out


def compare(
    proxy: ProxyThread,
    standalone: RedisProcess,
    script: Sequence[Step],
    reset: Callable[[], object] = lambda: None,
) -> None:
    reset()
    expected = run_script(standalone.port, script, None)
    reset()
    got = run_script(proxy.port, script, [len(frames) for frames in expected])
    for step, want, have in zip(script, expected, got, strict=True):
        # Through slotless a push may come after the PONG instead of before it, and the
        # invalidations of keys on different nodes in either order.
        assert sorted(f for f in have if f not in PONGS) == sorted(
            f for f in want if f not in PONGS
        ), step
        assert len(have) == len(want), step


def test_errors_match_standalone(proxy: ProxyThread, standalone: RedisProcess) -> None:
    t = ("a", "CLIENT", "TRACKING")
    script: list[Step] = [
        ("a", "HELLO", "3"),
        ("a", "CLIENT", "TRACKING"),
        (*t, "maybe"),
        (*t, "on", "prefix", "x"),
        (*t, "on", "redirect", "abc"),
        (*t, "on", "redirect", "999999", "foo"),
        (*t, "on", "foo", "redirect", "999999"),
        (*t, "on", "redirect"),
        (*t, "on", "bcast", "prefix", "ab", "prefix", "a"),
        (*t, "on", "bcast", "optin"),
        (*t, "on", "optin", "optout"),
        (*t, "on", "redirect", "$b", "redirect", "$b"),
        ("a", "CLIENT", "CACHING", "yes"),
        ("a", "CLIENT", "CACHING"),
        ("a", "CLIENT", "TRACKINGINFO", "x"),
        ("a", "CLIENT", "GETREDIR", "x"),
        ("a", "CLIENT", "TRACKINGINFO"),
        ("a", "CLIENT", "GETREDIR"),
        (*t, "on", "optin"),
        ("a", "CLIENT", "CACHING", "no"),
        ("a", "CLIENT", "CACHING", "maybe"),
        ("a", "CLIENT", "CACHING", "yes"),
        ("a", "CLIENT", "TRACKINGINFO"),
        (*t, "on", "optout"),
        (*t, "on", "bcast"),
        (*t, "off"),
        (*t, "on", "bcast", "prefix", "b", "prefix", "a"),
        ("a", "CLIENT", "TRACKINGINFO"),
        (*t, "on", "bcast", "prefix", "bc"),
        (*t, "on", "bcast", "prefix", "a"),
        (*t, "on"),
        (*t, "on", "bcast", "noloop", "redirect", "$b"),
        ("a", "CLIENT", "TRACKINGINFO"),
        ("a", "CLIENT", "GETREDIR"),
        ("a", "RESET"),
        ("a", "CLIENT", "TRACKINGINFO"),
        ("a", "CLIENT", "GETREDIR"),
        ("b", "CLIENT", "TRACKING", "on", "redirect", "$b"),
        ("b", "CLIENT", "TRACKINGINFO"),
        ("b", "CLIENT", "TRACKING", "on", "optout", "noloop"),
        ("b", "CLIENT", "TRACKINGINFO"),
        ("b", "SUBSCRIBE", "tracking-errors"),
        ("b", "SET", "k", "v"),  # RESP2 subscribed: refused, NOLOOP or not
        ("b", "RESET"),
    ]
    compare(proxy, standalone, script)


def default_mode_script(keys: list[str], resp3: bool) -> list[Step]:
    k = keys
    hello = [("a", "HELLO", "3")] if resp3 else []
    return [
        *hello,
        ("a", "CLIENT", "TRACKING", "on"),
        ("a", "GET", k[0]),
        ("a", "MGET", k[1], k[2]),  # keys on the three primaries
        ("a", "HGET", k[3], "f"),
        ("w", "SET", k[0], "1"),
        ("sync:a",),
        ("w", "SET", k[0], "2"),  # no longer tracked: nothing
        ("sync:a",),
        ("w", "MSET", k[1], "1", k[2], "2"),  # one message per key
        ("sync:a",),
        ("w", "HSET", k[3], "f", "v"),
        ("sync:a",),
        ("a", "GET", k[0]),
        ("a", "STRLEN", k[4]),
        ("w", "DEL", k[0], k[4]),
        ("sync:a",),
        ("a", "GET", k[5]),
        ("w", "FLUSHALL"),
        ("sync:a",),
        ("w", "SET", k[5], "x"),  # the flush forgot it
        ("sync:a",),
        ("a", "GET", k[1]),
        ("a", "SET", k[1], "own"),  # its own write: reported after the reply
        ("sync:a",),
        ("a", "MULTI"),  # inside a transaction
        ("a", "GET", k[2]),
        ("a", "SET", k[2], "in-multi"),
        ("a", "EXEC"),
        ("sync:a",),
        ("a", "CLIENT", "TRACKING", "off"),
        ("a", "GET", k[0]),
        ("w", "SET", k[0], "3"),
        ("sync:a",),
    ]


@pytest.mark.parametrize("resp3", [True, False], ids=["resp3", "resp2"])
def test_default_mode_matches_standalone(
    proxy: ProxyThread, standalone: RedisProcess, redis_cluster: Cluster, resp3: bool
) -> None:
    keys = keys_on_every_primary(redis_cluster, "dm")
    compare(proxy, standalone, default_mode_script(keys, resp3))


def test_redirect_to_a_resp2_subscriber_matches_standalone(
    proxy: ProxyThread, standalone: RedisProcess, redis_cluster: Cluster
) -> None:
    k = keys_on_every_primary(redis_cluster, "rd")
    script: list[Step] = [
        ("r", "SUBSCRIBE", "__redis__:invalidate"),
        ("a", "CLIENT", "TRACKING", "on", "redirect", "$r"),
        ("a", "CLIENT", "GETREDIR"),
        ("a", "CLIENT", "TRACKINGINFO"),
        ("a", "MGET", k[0], k[1], k[2]),
        ("w", "MSET", k[0], "1", k[1], "2", k[2], "3"),
        ("sync:r",),
        ("a", "GET", k[3]),
        ("w", "FLUSHALL"),
        ("sync:r",),
        ("a", "CLIENT", "TRACKING", "on", "bcast", "redirect", "$r"),
        ("a", "CLIENT", "TRACKING", "off"),
        ("a", "CLIENT", "TRACKING", "on", "bcast", "prefix", "rd", "redirect", "$r"),
        ("w", "SET", k[4], "x"),
        ("sync:r",),
        ("w", "SET", "other", "x"),  # no matching prefix
        ("sync:r",),
        # A target that is not subscribed (RESP2) gets nothing.
        ("r", "UNSUBSCRIBE"),
        ("w", "SET", k[4], "y"),
        ("sync:r",),
    ]
    compare(proxy, standalone, script)


def test_bcast_prefixes_and_noloop_match_standalone(
    proxy: ProxyThread, standalone: RedisProcess, redis_cluster: Cluster
) -> None:
    a = keys_on_every_primary(redis_cluster, "pa", 3)
    b = keys_on_every_primary(redis_cluster, "pb", 3)
    script: list[Step] = [
        ("a", "HELLO", "3"),
        ("a", "CLIENT", "TRACKING", "on", "bcast", "prefix", "pa", "prefix", "pb"),
        *[step for key in a + b for step in (("w", "SET", key, "1"), ("sync:a",))],
        ("w", "SET", "zz", "1"),
        ("sync:a",),
        ("a", "CLIENT", "TRACKING", "on", "bcast", "noloop", "prefix", "pc"),
        ("a", "SET", a[0], "own"),  # its own write: not reported
        ("sync:a",),
        ("w", "SET", a[0], "other"),
        ("sync:a",),
        ("a", "SET", a[1], "own", "NX"),  # changes nothing
        ("w", "SET", a[1], "other"),  # reported
        ("sync:a",),
        ("a", "DEL", b[0], b[1]),  # own, on two nodes
        ("sync:a",),
        ("a", "CLIENT", "TRACKINGINFO"),
        ("w", "FLUSHALL"),
        ("sync:a",),
    ]
    compare(proxy, standalone, script)


def test_optin_optout_and_noloop_match_standalone(
    proxy: ProxyThread, standalone: RedisProcess, redis_cluster: Cluster
) -> None:
    k = keys_on_every_primary(redis_cluster, "oi")
    script: list[Step] = [
        ("a", "HELLO", "3"),
        ("a", "CLIENT", "TRACKING", "on", "optin"),
        ("a", "GET", k[0]),  # not cached: no CACHING yes
        ("a", "CLIENT", "CACHING", "yes"),
        ("a", "GET", k[1]),
        ("a", "GET", k[2]),  # CACHING lasted one command
        ("w", "MSET", k[0], "1", k[1], "2", k[2], "3"),
        ("sync:a",),
        ("a", "CLIENT", "TRACKING", "off"),
        ("a", "CLIENT", "TRACKING", "on", "optout"),
        ("a", "GET", k[3]),
        ("a", "CLIENT", "CACHING", "no"),
        ("a", "GET", k[4]),
        ("w", "MSET", k[3], "1", k[4], "2"),
        ("sync:a",),
        ("a", "CLIENT", "TRACKING", "on", "optout", "noloop"),
        ("a", "GET", k[5]),
        ("a", "SET", k[5], "mine"),  # its own write: not reported, and no longer tracked
        ("sync:a",),
        ("w", "SET", k[5], "theirs"),
        ("sync:a",),
        ("a", "GET", k[5]),
        ("w", "SET", k[5], "again"),
        ("sync:a",),
        ("a", "GET", k[0]),
        ("a", "SET", k[0], "nx", "NX"),  # changes nothing: the key stays tracked
        ("sync:a",),
        ("w", "SET", k[0], "theirs"),
        ("sync:a",),
        ("a", "GET", k[1]),
        ("a", "MSET", k[1], "1", k[2], "2"),  # own, and over several nodes
        ("a", "GET", k[1]),
        ("a", "INCR", k[1]),
        ("sync:a",),
        ("w", "SET", k[1], "theirs"),
        ("sync:a",),
    ]
    compare(proxy, standalone, script)


def test_broken_redirect_matches_standalone(
    proxy: ProxyThread, standalone: RedisProcess, redis_cluster: Cluster
) -> None:
    k = keys_on_every_primary(redis_cluster, "br")

    def run(port: int) -> list[bytes]:
        a, w, r = Raw(port), Raw(port), Raw(port)
        try:
            rid = r.call(b"CLIENT", b"ID")[1:-2]
            a.call(b"HELLO", b"3")
            seen = [a.call(b"CLIENT", b"TRACKING", b"on", b"redirect", rid)]
            seen.append(a.call(b"GET", k[0].encode()))
            r.close()
            wait_until(
                lambda: w.call(b"CLIENT", b"LIST", b"ID", rid) == b"$0\r\n\r\n",
                what="the redirect client to be gone",
            )
            w.call(b"SET", k[0].encode(), b"1")
            seen += a.frames(1)  # tracking-redir-broken
            seen.append(a.call(b"CLIENT", b"TRACKINGINFO"))
            seen.append(a.call(b"CLIENT", b"LIST", b"ID", a.call(b"CLIENT", b"ID")[1:-2]))
            return [re.sub(rb":%s\r\n" % rid, b":<r>\r\n", f) for f in seen]
        finally:
            a.close()
            w.close()

    def fields(frames: list[bytes]) -> list[bytes]:
        # CLIENT LIST: compare the flags and redirect fields only.
        *head, listing = frames
        found = re.search(rb"flags=(\S+) .* redir=(\d+)", listing)
        assert found is not None
        return [*head, found.group(1), found.group(2) != b"0"]  # type: ignore[list-item]

    assert fields(run(proxy.port)) == fields(run(standalone.port))


# --- redis-py's client-side cache under writes from other clients ---------------------------


def cached_keys(client: redis.Redis) -> set[bytes | str]:
    cache = client.get_cache()
    assert cache is not None
    return {key for entry in list(cache.collection) for key in entry.redis_keys}


@pytest.mark.parametrize("mode", list(TrackingMode), ids=lambda m: m.name.lower())
def test_redis_py_cache_reads_no_stale_value(
    proxy: ProxyThread,
    redis_cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    mode: TrackingMode,
) -> None:
    """Each write (through slotless or straight to the node, on every primary) is followed,
    once acknowledged, by its invalidation; the next cached read then sees the new value."""
    # redis-py turns its cache on only for servers that say 7.4+ ("to maximize compatibility
    # with all Redis products"); what it uses (CLIENT TRACKING ON [OPTIN|OPTOUT], CLIENT
    # CACHING, invalidate pushes) is all in Redis 7.0, which slotless reports.
    monkeypatch.setattr(CacheProxyConnection, "MIN_ALLOWED_VERSION", "7.0.0")
    keys = keys_on_every_primary(redis_cluster, f"csc-{mode.name}-", 12)
    no_retry = Retry(NoBackoff(), 0)
    cached = redis.Redis(
        port=proxy.port,
        protocol=3,
        cache_config=CacheConfig(
            tracking_mode=mode,
            cache_predicate=None if mode is TrackingMode.PLAIN else lambda command, keys: True,
        ),
        retry=no_retry,
    )
    via_proxy = redis.Redis(port=proxy.port, retry=no_retry)
    direct = {
        key: redis.Redis(
            port=int(redis_cluster.owner_of_slot(key_hash_slot(key.encode())).split(":")[1]),
            retry=no_retry,
        )
        for key in keys
    }
    noise = Noise(proxy.port, keys_on_every_primary(redis_cluster, f"noise-{mode.name}-", 30))
    stale = hits = 0
    rounds = 240
    try:
        noise.start()
        for key in keys:
            via_proxy.set(key, "start")
        for i in range(rounds):
            key = keys[i % len(keys)]
            cached.get(key)
            assert key in cached_keys(cached), "the read was not cached"
            value = f"v{i}"
            writer = via_proxy if i % 2 else direct[key]
            assert writer.set(key, value)  # acknowledged

            def invalidated(key: str = key) -> bool:
                cached.ping()  # reads the pushes waiting on the socket
                return key not in cached_keys(cached)

            wait_until(invalidated, timeout=5.0, what=f"the invalidation of {key}")
            stale += cached.get(key) != value.encode()  # fetched again, then cached
            hits += cached.get(key) == value.encode() and key in cached_keys(cached)
    finally:
        noise.stop()
        for client in (cached, via_proxy, *direct.values()):
            client.close()
    assert noise.writes > 0
    assert stale == 0
    assert hits == rounds


class Noise:
    """Writes from other clients on every primary, all the while (keys nobody caches)."""

    def __init__(self, port: int, keys: list[str]) -> None:
        self.client = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
        self.keys = keys
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pipe = self.client.pipeline(transaction=False)
            for key in self.keys:
                pipe.incr(key)
            pipe.execute()
            self.writes += len(self.keys)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def test_standalone_mode_passes_tracking_through(standalone: RedisProcess) -> None:
    """In standalone mode each tracking client gets its own upstream connection (as for
    every CLIENT subcommand that keeps state), so the server itself tracks and redirects."""
    keys = [f"sm{i}" for i in range(6)]
    with ProxyThread(proxy_config("standalone", [standalone.addr])) as proxy:
        flush = lambda: command(standalone.addr, "FLUSHALL")  # noqa: E731 (both runs, one server)
        compare(proxy, standalone, default_mode_script(keys, True), flush)
        compare(proxy, standalone, default_mode_script(keys, False), flush)


def test_table_bound_invalidates_the_oldest_keys(redis_cluster: Cluster) -> None:
    """limits.tracking_table_max_keys: past it the oldest keys are invalidated (and no
    longer tracked), as Redis does past tracking-table-max-keys."""
    base = proxy_config("cluster", redis_cluster.seeds[:1])
    config = dataclasses.replace(base, limits=LimitsConfig(tracking_table_max_keys=2))
    keys = [k.encode() for k in keys_on_every_primary(redis_cluster, "bound", 3)]
    with ProxyThread(config) as proxy:
        a, w = Raw(proxy.port), Raw(proxy.port)
        try:
            a.call(b"HELLO", b"3")
            assert a.call(b"CLIENT", b"TRACKING", b"on") == b"+OK\r\n"
            assert a.call(b"GET", keys[0]) == b"_\r\n"
            assert a.call(b"GET", keys[1]) == b"_\r\n"
            a.send(b"GET", keys[2])
            assert a.frames(2) == [invalidation(encode_keys([keys[0]], True), True), b"_\r\n"]
            assert w.call(b"SET", keys[0], b"x") == b"+OK\r\n"  # forgotten: no message
            assert w.call(b"SET", keys[1], b"x") == b"+OK\r\n"
            assert a.frame() == invalidation(encode_keys([keys[1]], True), True)
            assert a.call(b"PING") == b"+PONG\r\n"
        finally:
            a.close()
            w.close()


def test_replica_reads_refuse_tracking(redis_cluster: Cluster) -> None:
    config = proxy_config("cluster", redis_cluster.seeds[:1], read_from="prefer-replica")
    with ProxyThread(config) as proxy:
        a = Raw(proxy.port)
        try:
            reply = a.call(b"CLIENT", b"TRACKING", b"on")
            assert reply == replies.TRACKING_REPLICA_READS.encode()
            assert a.call(b"CLIENT", b"TRACKINGINFO").startswith(
                b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff"
            )
        finally:
            a.close()


def test_info_counts_tracking_clients(proxy: ProxyThread, standalone: RedisProcess) -> None:
    def count(port: int) -> list[bytes]:
        a, b = Raw(port), Raw(port)
        try:
            seen = [a.call(b"CLIENT", b"TRACKING", b"on")]
            for client in (a, b):
                info = client.call(b"INFO", b"clients")
                found = re.search(rb"tracking_clients:(\d+)", info)
                assert found is not None
                seen.append(found.group(1))
            return seen
        finally:
            a.close()
            b.close()

    assert count(proxy.port) == count(standalone.port) == [b"+OK\r\n", b"1", b"1"]
