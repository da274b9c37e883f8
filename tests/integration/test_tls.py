"""TLS both ways (issue 14): redis-py over TLS to slotless, slotless over TLS to a real
`tls-cluster yes` Redis Cluster (discovery, every kind of upstream connection, MOVED,
failover), and the failures: wrong CA, expired certificate, name mismatch, plain vs TLS."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conf import Config
from conf.schema import TLSConfig, UpstreamTLSConfig
from proxy.localcluster import LocalCluster, RedisProcess, TLSFiles, start_standalone
from routing.slots import key_hash_slot
from tests.integration.proxy_process import slotless_process
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.integration.test_failover import run_load
from tests.integration.tls_certs import Certs, make_certs
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_cluster(certs: Certs) -> Iterator[LocalCluster]:
    """3 primaries x 1 replica, TLS only (port 0, tls-cluster, tls-replication): one per module."""
    with LocalCluster(primaries=3, replicas=1, tls=certs.server) as cluster:
        yield cluster


def upstream_tls(certs: Certs, **overrides: object) -> UpstreamTLSConfig:
    return dataclasses.replace(UpstreamTLSConfig(ca=certs.ca), **overrides)  # type: ignore[arg-type]


def tls_proxy(mode: str, nodes: list[str], tls: UpstreamTLSConfig, **upstream: object) -> Config:
    return proxy_config(mode, nodes, tls=tls, **upstream)


def with_listener_tls(config: Config, certs: Certs, require: bool = False) -> Config:
    listener = TLSConfig(
        cert=certs.server.cert, key=certs.server.key, ca=certs.ca, require_client_cert=require
    )
    return dataclasses.replace(config, tls=listener)


def tls_client(port: int, certs: Certs, client_cert: bool = False) -> redis.Redis:
    extra = {"ssl_certfile": certs.client_cert, "ssl_keyfile": certs.client_key}
    return redis.Redis(
        port=port,
        ssl=True,
        ssl_ca_certs=certs.ca,
        ssl_check_hostname=True,
        socket_timeout=10,
        **(extra if client_cert else {}),  # type: ignore[arg-type]
    )


# --- downstream: the listener ---------------------------------------------------------------


def test_redis_py_over_tls_listener(tls_cluster: LocalCluster, certs: Certs) -> None:
    config = with_listener_tls(
        tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs)), certs
    )
    with ProxyThread(config) as proxy, tls_client(proxy.port, certs) as client:
        assert client.ping()
        assert client.set("tls:down", "1")
        assert client.get("tls:down") == b"1"
        # A client certificate is checked when sent, though not required.
        with tls_client(proxy.port, certs, client_cert=True) as with_cert:
            assert with_cert.get("tls:down") == b"1"


def test_listener_requires_client_cert(tls_cluster: LocalCluster, certs: Certs) -> None:
    config = tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs))
    with ProxyThread(with_listener_tls(config, certs, require=True)) as proxy:
        with tls_client(proxy.port, certs, client_cert=True) as client:
            assert client.set("tls:mutual", "yes")
            assert client.get("tls:mutual") == b"yes"
        with (
            tls_client(proxy.port, certs) as anonymous,
            pytest.raises(redis.ConnectionError),
        ):
            anonymous.ping()
        with tls_client(proxy.port, certs, client_cert=True) as client:
            assert client.get("tls:mutual") == b"yes"  # still serving


def test_plain_client_on_tls_listener_is_closed(tls_cluster: LocalCluster, certs: Certs) -> None:
    config = with_listener_tls(
        tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs)), certs
    )
    with ProxyThread(config) as proxy:
        with (
            redis.Redis(port=proxy.port, socket_timeout=10) as plain,
            pytest.raises(redis.ConnectionError),
        ):
            plain.ping()
        with tls_client(proxy.port, certs) as client:
            assert client.ping()


def test_tls_client_on_plain_listener_gets_an_answer(
    redis_standalone: RedisProcess, certs: Certs
) -> None:
    with ProxyThread(proxy_config("standalone", [redis_standalone.addr])) as proxy:
        context = ssl.create_default_context(cafile=certs.ca)
        with (
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(sock, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            reply = sock.recv(4096)
            assert reply.startswith(b"-ERR TLS handshake received")
            assert sock.recv(4096) == b""  # and closed
        with redis.Redis(port=proxy.port) as plain:
            assert plain.ping()


# --- upstream: a TLS cluster ------------------------------------------------------------------


def test_cluster_discovery_and_every_connection_kind(
    tls_cluster: LocalCluster, certs: Certs
) -> None:
    with (
        ProxyThread(tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs))) as proxy,
        redis.Redis(port=proxy.port, socket_timeout=10) as client,
    ):
        state = proxy.server.state
        assert state is not None and state.topology.slotmap is not None
        assert state.topology.slotmap.covered() == 16384
        assert set(state.topology.slotmap.primaries) == set(tls_cluster.primaries())
        assert state.topology.table_from_server
        keys = {f"tls:k{i}": str(i) for i in range(50)}
        assert client.mset(keys)  # split over every shard
        assert client.mget(list(keys)) == [v.encode() for v in keys.values()]
        assert sorted(client.scan_iter("tls:k*")) == sorted(k.encode() for k in keys)
        assert client.eval("return redis.call('GET', KEYS[1])", 1, "tls:k1") == b"1"
        sha = client.script_load("return 7")
        assert client.evalsha(sha, 1, "tls:k2") == 7  # the script cache loads it per node
        with client.pipeline(transaction=True) as txn:  # a dedicated connection
            txn.set("{tls}a", "x").get("{tls}a")
            assert txn.execute() == [True, b"x"]
        blocked = threading.Thread(target=lambda: client.blpop(["tls:list"], timeout=10))
        with redis.Redis(port=proxy.port, socket_timeout=10) as other:
            blocked.start()
            wait_until(lambda: state.blocked.links.active > 0, 10, "BLPOP to block")
            other.rpush("tls:list", "v")
            blocked.join(10)
            assert not blocked.is_alive()
            pubsub = other.pubsub()
            pubsub.subscribe("tls:chan")
            assert pubsub.get_message(timeout=10)["type"] == "subscribe"  # type: ignore[index]
            with redis.Redis(port=proxy.port) as publisher:
                wait_until(lambda: publisher.publish("tls:chan", "hi") > 0, 10, "a subscriber")
            message = wait_until(lambda: pubsub.get_message(timeout=1), 10, "the message")
            assert message["data"] == b"hi"
            pubsub.close()


def test_moved_after_slot_migration(tls_cluster: LocalCluster, certs: Certs) -> None:
    with (
        ProxyThread(tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs))) as proxy,
        redis.Redis(port=proxy.port, socket_timeout=10) as client,
    ):
        state = proxy.server.state
        assert state is not None
        slot = key_hash_slot(b"tlsmove")
        source = tls_cluster.owner_of_slot(slot)
        target = next(p for p in tls_cluster.primaries() if p != source)
        assert client.set("{tlsmove}a", "A")
        before = state.topology.redirects
        tls_cluster.migrate_slot(slot, target)  # MIGRATE runs over TLS (tls-cluster)
        try:
            assert client.get("{tlsmove}a") == b"A"  # MOVED to the TLS port, map updated
            assert state.topology.redirects > before
            assert state.topology.slotmap is not None
            assert state.topology.slotmap.node_for_slot(slot) == target
        finally:
            tls_cluster.migrate_slot(slot, source)


def test_failover_over_tls(tls_cluster: LocalCluster, certs: Certs) -> None:
    victim = tls_cluster.primaries()[0]
    replica = tls_cluster.replicas_of(victim)[0]
    with ProxyThread(tls_proxy("cluster", tls_cluster.seeds[:1], upstream_tls(certs))) as proxy:
        loads = run_load(proxy.port, lambda _: tls_cluster.failover(replica))
        assert replica in tls_cluster.primaries()
        errors = [e for load in loads for e in load.errors]
        assert errors == [], errors[:5]
        with redis.Redis(port=proxy.port) as check:
            for load in loads:
                for key, value in load.acked.items():
                    assert check.get(key) == value.encode()


def test_tls_both_ways_with_client_certs_required_upstream(certs: Certs) -> None:
    strict = dataclasses.replace(certs.server, auth_clients="yes")
    server = start_standalone(tls=strict)
    try:
        with_cert = upstream_tls(certs, cert=certs.client_cert, key=certs.client_key)
        config = with_listener_tls(tls_proxy("standalone", [server.addr], with_cert), certs)
        with ProxyThread(config) as proxy, tls_client(proxy.port, certs) as client:
            assert client.set("tls:pipe", "1") and client.get("tls:pipe") == b"1"
        # Without a certificate the node refuses us after the handshake (TLS 1.3): an error
        # reply naming the node, never a hang.
        with (
            ProxyThread(tls_proxy("standalone", [server.addr], upstream_tls(certs))) as proxy,
            redis.Redis(port=proxy.port, socket_timeout=10) as client,
            pytest.raises(redis.ResponseError, match=f"upstream {server.addr}"),
        ):
            client.get("tls:pipe")
    finally:
        server.close()


# --- failures: a clear error, never a hang ------------------------------------------------------


@pytest.fixture(scope="module")
def odd_servers(certs: Certs) -> Iterator[dict[str, RedisProcess]]:
    """Standalone TLS servers with the certificates a client must refuse."""
    servers: dict[str, RedisProcess] = {}
    try:
        for name in ("expired", "wrong_name", "other_server"):
            files: TLSFiles = getattr(certs, name)
            servers[name] = start_standalone(tls=files)
        yield servers
    finally:
        for server in servers.values():
            server.close()


@pytest.mark.parametrize(
    ("server", "verdict"),
    [
        ("expired", "certificate verify failed: certificate has expired"),
        ("wrong_name", "certificate verify failed: IP address mismatch"),
        ("other_server", "certificate verify failed: "),  # signed by a CA we do not trust
    ],
)
@pytest.mark.parametrize("mode", ["standalone", "cluster"])
def test_bad_certificate_is_a_clear_error(
    odd_servers: dict[str, RedisProcess], certs: Certs, server: str, verdict: str, mode: str
) -> None:
    """Standalone: the node's error reply; cluster: no slot map, the CLUSTERDOWN says why."""
    node = odd_servers[server]
    config = tls_proxy(mode, [node.addr], upstream_tls(certs), connect_timeout=5.0)
    with (
        ProxyThread(config) as proxy,
        redis.Redis(port=proxy.port, socket_timeout=10) as client,
        pytest.raises(redis.ResponseError) as error,
    ):
        client.get("k")
    assert f"{node.addr}" in str(error.value)
    assert f"TLS handshake failed ({verdict}" in str(error.value)


def test_verify_hostname_off_and_server_name(
    odd_servers: dict[str, RedisProcess], certs: Certs
) -> None:
    node = odd_servers["wrong_name"]
    for tls in (
        upstream_tls(certs, verify_hostname=False),
        upstream_tls(certs, server_name="redis.example"),
    ):
        with (
            ProxyThread(tls_proxy("standalone", [node.addr], tls)) as proxy,
            redis.Redis(port=proxy.port, socket_timeout=10) as client,
        ):
            assert client.set("tls:name", "ok") and client.get("tls:name") == b"ok"


def test_tls_to_a_plain_node_is_a_clear_error(redis_standalone: RedisProcess, certs: Certs) -> None:
    config = tls_proxy("standalone", [redis_standalone.addr], upstream_tls(certs))
    with (
        ProxyThread(config) as proxy,
        redis.Redis(port=proxy.port, socket_timeout=10) as client,
        pytest.raises(redis.ResponseError, match=r"is the node's port plain TCP"),
    ):
        client.get("k")


def test_wrong_ca_is_logged_from_yaml(
    tls_cluster: LocalCluster, certs: Certs, tmp_path: Path
) -> None:
    body = f"upstream:\n  nodes: [{tls_cluster.seeds[0]!r}]\n  tls: {{ca: {certs.other_ca!r}}}\n"
    with slotless_process(tmp_path, body) as (_, port), redis.Redis(port=port) as client:
        with pytest.raises(redis.ResponseError):
            client.get("k")
        log = tmp_path / "log"
        wait_until(
            lambda: "certificate verify failed" in log.read_text(), 10, "the TLS failure logged"
        )
        line = next(x for x in log.read_text().splitlines() if "certificate verify" in x)
        assert "upstream_connect_failed" in line and tls_cluster.seeds[0] in line
