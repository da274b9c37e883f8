"""Pub/Sub through slotless in cluster mode, byte for byte against a standalone Redis."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from proxy.localcluster import Cluster, RedisProcess, command
from routing.resp import pack_command, reply_end
from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FORBIDDEN = (
    b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
    b"RESET are allowed in this context\r\n"
)


class Raw:
    """A client socket that sends requests and reads whole RESP frames, nothing more."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, *args: bytes) -> None:
        self.sock.sendall(pack_command(args))

    def frame(self) -> bytes:
        while True:
            end = reply_end(self.buf) if self.buf else -1
            if end > 0:
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data

    def frames(self, n: int) -> list[bytes]:
        return [self.frame() for _ in range(n)]

    def call(self, *args: bytes) -> bytes:
        self.send(*args)
        return self.frame()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


def node_numsub(cluster: Cluster, channel: bytes, sub: bytes = b"NUMSUB") -> int:
    total = 0
    for addr in cluster.live_addrs():
        reply = command(addr, "PUBSUB", sub, channel)
        assert isinstance(reply, list)
        total += int(reply[1])
    return total


def classic_session(port: int, resp3: bool, tag: bytes) -> list[bytes]:
    """What one subscriber sees for a fixed script of (P)SUBSCRIBE, PUBLISH, PING, ..."""
    sub = Raw(port)
    pub = Raw(port)
    chan, pattern = b"news." + tag, b"news.*" + tag
    try:
        seen = []
        if resp3:
            sub.call(b"HELLO", b"3")
        seen += [sub.call(b"UNSUBSCRIBE")]  # not subscribed: [unsubscribe, nil, 0]
        sub.send(b"SUBSCRIBE", chan, chan)
        seen += sub.frames(2)
        seen += [sub.call(b"PSUBSCRIBE", pattern)]
        seen += [sub.call(b"PING"), sub.call(b"PING", b"hi")]
        seen += [sub.call(b"GET", b"x")]  # forbidden in RESP2, fine in RESP3
        seen += [sub.call(b"GET")]  # arity error comes first
        seen += [sub.call(b"NOSUCHCMD")]
        assert pub.call(b"PUBLISH", chan, b"hello") in (b":0\r\n", b":1\r\n", b":2\r\n")
        seen += sub.frames(2)  # message, then pmessage
        seen += [sub.call(b"UNSUBSCRIBE", chan, b"other")]
        sub.send(b"PUNSUBSCRIBE")
        seen += sub.frames(1)
        seen += [sub.call(b"PUNSUBSCRIBE")]  # none left: [punsubscribe, nil, 0]
        seen += [sub.call(b"PING")]  # back to normal
        return seen
    finally:
        sub.close()
        pub.close()


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_classic_shapes_match_standalone(
    proxy: ProxyThread, redis_standalone: RedisProcess, resp3: bool
) -> None:
    expected = classic_session(redis_standalone.port, resp3, b"s")
    got = classic_session(proxy.port, resp3, b"s")
    assert got == expected
    first = b">3\r\n" if resp3 else b"*3\r\n"
    assert got[1] == first + b"$9\r\nsubscribe\r\n$6\r\nnews.s\r\n:1\r\n"
    if not resp3:
        assert got[6] == FORBIDDEN
        assert got[4] == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert got[9] == first + b"$7\r\nmessage\r\n$6\r\nnews.s\r\n$5\r\nhello\r\n"


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_sharded_shapes_match_standalone(
    proxy: ProxyThread, redis_standalone: RedisProcess, resp3: bool
) -> None:
    def run(port: int) -> list[bytes]:
        sub, pub = Raw(port), Raw(port)
        try:
            if resp3:
                sub.call(b"HELLO", b"3")
            # Channels in different slots: a standalone server takes them in one request.
            sub.send(b"SSUBSCRIBE", b"sa", b"sb", b"sc")
            seen = sub.frames(3)
            seen += [sub.call(b"SUBSCRIBE", b"plain")]  # counted apart from shard channels
            for channel in (b"sa", b"sb", b"sc"):
                assert pub.call(b"SPUBLISH", channel, b"m-" + channel) == b":1\r\n"
                seen += [sub.frame()]
            seen += [sub.call(b"SUNSUBSCRIBE", b"sb")]
            sub.send(b"SUNSUBSCRIBE")
            # Redis walks its dict (no defined order): compare the names, then the final count.
            last = sub.frames(2)
            seen += [*sorted(f.rpartition(b":")[0] for f in last), last[-1].rpartition(b":")[2]]
            seen += [sub.call(b"UNSUBSCRIBE")]
            return seen
        finally:
            sub.close()
            pub.close()

    assert len({key_hash_slot(c) for c in (b"sa", b"sb", b"sc")}) == 3
    got = run(proxy.port)
    assert got == run(redis_standalone.port)
    assert b"smessage" in got[4]


def test_resp3_client_runs_commands_while_subscribed(proxy: ProxyThread) -> None:
    with redis.Redis(port=proxy.port, protocol=3, socket_timeout=10) as r:
        r.set("pubsub:k", "v")
        p = r.pubsub()
        p.subscribe("r3chan")
        assert p.get_message(timeout=5)["type"] == "subscribe"
        p.execute_command("GET", "pubsub:k")
        assert p.parse_response(timeout=5) == b"v"
        r.publish("r3chan", "payload")
        message = p.get_message(timeout=5)
        assert message is not None
        assert message["type"] == "message"
        assert message["data"] == b"payload"
        p.close()


def test_resp2_forbidden_command_keeps_subscription(proxy: ProxyThread) -> None:
    sub = Raw(proxy.port)
    try:
        assert sub.call(b"SSUBSCRIBE", b"only-shard").endswith(b":1\r\n")
        assert sub.call(b"GET", b"x") == FORBIDDEN
        assert sub.call(b"CLIENT", b"ID").startswith(b"-ERR Can't execute 'client|id'")
        assert sub.call(b"RESET") == b"+RESET\r\n"
        assert sub.call(b"GET", b"pubsub:none") == b"$-1\r\n"
    finally:
        sub.close()


def test_thousand_subscribers_share_one_upstream(
    proxy: ProxyThread, redis_cluster: Cluster
) -> None:
    channel = b"crowd"
    subs = [Raw(proxy.port) for _ in range(1000)]
    try:
        for s in subs:
            s.send(b"SUBSCRIBE", channel)
        for s in subs:
            assert s.frame() == b"*3\r\n$9\r\nsubscribe\r\n$5\r\ncrowd\r\n:1\r\n"
        connections = 0
        for addr in redis_cluster.live_addrs():
            listing = command(addr, "CLIENT", "LIST")
            assert isinstance(listing, bytes)
            connections += listing.count(b"\n")
        # The nodes see a handful of connections (shared, subscriber, the test's own), not 1000.
        assert connections < 40
        assert node_numsub(redis_cluster, channel) == 1
        with redis.Redis(port=proxy.port, protocol=2) as r:
            assert r.pubsub_numsub(channel) == [(channel, 1000)]
            assert channel in r.pubsub_channels()
            r.publish(channel, "to-all")
        expected = b"*3\r\n$7\r\nmessage\r\n$5\r\ncrowd\r\n$6\r\nto-all\r\n"
        selector = selectors.DefaultSelector()
        for s in subs:
            s.sock.setblocking(False)
            selector.register(s.sock, selectors.EVENT_READ, s)
        pending = {id(s) for s in subs}
        end = time.monotonic() + 20
        while pending and time.monotonic() < end:
            for key, _ in selector.select(timeout=1):
                s = key.data
                s.buf += s.sock.recv(65536)
                if s.buf == expected:
                    pending.discard(id(s))
        selector.close()
        assert not pending, f"{len(pending)} subscribers got nothing"
    finally:
        for s in subs:
            s.close()
    wait_until(lambda: node_numsub(redis_cluster, channel) == 0, 20, "the upstream UNSUBSCRIBE")


def test_last_subscriber_leaving_unsubscribes_upstream(
    proxy: ProxyThread, redis_cluster: Cluster
) -> None:
    a, b = Raw(proxy.port), Raw(proxy.port)
    try:
        a.call(b"SUBSCRIBE", b"leave")
        b.call(b"SUBSCRIBE", b"leave")
        a.call(b"SSUBSCRIBE", b"sleave")
        assert node_numsub(redis_cluster, b"leave") == 1
        assert node_numsub(redis_cluster, b"sleave", b"SHARDNUMSUB") == 1
        with redis.Redis(port=proxy.port, protocol=2) as r:
            assert r.execute_command("PUBSUB", "SHARDNUMSUB", "sleave") == [b"sleave", 1]
            assert r.execute_command("PUBSUB", "SHARDCHANNELS") == [b"sleave"]
        a.close()
        # slotless drops all of a's subscriptions in one step when it sees the disconnect:
        # once a's shard channel is gone upstream, b must still hold the classic one there.
        wait_until(
            lambda: node_numsub(redis_cluster, b"sleave", b"SHARDNUMSUB") == 0,
            20,
            "the upstream SUNSUBSCRIBE after a left",
        )
        assert node_numsub(redis_cluster, b"leave") == 1
    finally:
        b.close()
    wait_until(lambda: node_numsub(redis_cluster, b"leave") == 0, 20, "the upstream UNSUBSCRIBE")


def test_resubscribed_client_leaves_on_disconnect(
    proxy: ProxyThread, redis_cluster: Cluster
) -> None:
    """Subscribed, unsubscribed from everything, subscribed again, gone: nothing stays."""
    a = Raw(proxy.port)
    a.call(b"SUBSCRIBE", b"again1")
    a.call(b"UNSUBSCRIBE")
    a.call(b"SUBSCRIBE", b"again2")
    assert node_numsub(redis_cluster, b"again2") == 1
    a.close()
    wait_until(lambda: node_numsub(redis_cluster, b"again2") == 0, 20, "the upstream UNSUBSCRIBE")
    with redis.Redis(port=proxy.port, protocol=2) as r:
        assert r.execute_command("PUBSUB", "NUMSUB", "again2") == [b"again2", 0]


def shard_delivered(pub: redis.Redis, sub: Raw, channel: bytes, timeout: float = 30.0) -> int:
    """SPUBLISH until the subscriber gets one; the number of attempts."""
    sub.sock.settimeout(0.2)
    attempts = 0

    def delivered() -> bool:
        nonlocal attempts
        attempts += 1
        pub.spublish(channel, b"p%d" % attempts)  # a RedisError (moving, failing over): again
        try:
            frame = sub.frame()
        except TimeoutError:
            return False
        assert frame.startswith(b"*3\r\n$8\r\nsmessage\r\n"), frame
        return True

    wait_until(
        delivered,
        timeout,
        f"the shard channel {channel!r} to deliver again",
        interval=0.1,
        ignoring=(redis.RedisError,),
    )
    return attempts


def test_ssubscribe_survives_migration_and_failover(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=1)
    channel = b"moving-channel"
    slot = key_hash_slot(channel)
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
        sub = Raw(proxy.port)
        pub = redis.Redis(port=proxy.port, protocol=2, retry=None, socket_timeout=5)
        try:
            assert sub.call(b"SSUBSCRIBE", channel).endswith(b":1\r\n")
            assert shard_delivered(pub, sub, channel) == 1
            source = cluster.owner_of_slot(slot)
            target = next(a for a in cluster.primaries() if a != source)
            cluster.migrate_slot(slot, target)
            shard_delivered(pub, sub, channel)
            assert node_numsub_on(target, channel) == 1
            replica = cluster.replicas_of(target)[0]
            cluster.failover(replica)
            shard_delivered(pub, sub, channel)
            wait_until(
                lambda: node_numsub_on(replica, channel) == 1, 20, "SSUBSCRIBE on the new owner"
            )
            # Nothing was ever reported to the client: the next frame is a message again.
            sub.sock.settimeout(10)
            pub.spublish(channel, b"last")
            assert sub.frame() == b"*3\r\n$8\r\nsmessage\r\n$14\r\nmoving-channel\r\n$4\r\nlast\r\n"
        finally:
            sub.close()
            pub.close()


def node_numsub_on(addr: str, channel: bytes) -> int:
    reply = command(addr, "PUBSUB", "SHARDNUMSUB", channel)
    assert isinstance(reply, list)
    return int(reply[1])


def test_classic_subscription_survives_node_loss(fresh_cluster: FreshCluster) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
        sub = Raw(proxy.port)
        try:
            assert sub.call(b"SUBSCRIBE", b"survivor").endswith(b":1\r\n")
            holder = next(a for a in cluster.live_addrs() if node_numsub_on_classic(a) == 1)
            cluster.node(holder).kill()
            others = [a for a in cluster.seeds if a != holder]
            wait_until(
                lambda: any(node_numsub_on_classic(a) == 1 for a in others),
                20,
                "a new upstream SUBSCRIBE",
            )
            # Any live node: the cluster bus carries PUBLISH to the node slotless is on.
            for publisher in others:
                command(publisher, "PUBLISH", "survivor", "again")
            expected = b"*3\r\n$7\r\nmessage\r\n$8\r\nsurvivor\r\n$5\r\nagain\r\n"
            assert sub.frames(2) == [expected, expected]
        finally:
            sub.close()


def node_numsub_on_classic(addr: str) -> int:
    try:
        reply = command(addr, "PUBSUB", "NUMSUB", "survivor", timeout=1.0)
    except OSError:
        return 0
    assert isinstance(reply, list)
    return int(reply[1])
