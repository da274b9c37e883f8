"""Upstream socket options and address remapping (issue 6)."""

from __future__ import annotations

import socket

import redis

from proxy.localcluster import RedisProcess, command, split_addr
from proxy.upstream import tune_socket
from routing.slots import key_hash_slot
from tests.integration.conftest import FreshCluster
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until


def test_tune_socket_sets_keepalive_and_user_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as sock:
            tune_socket(sock, keepalive=6, user_timeout=2.5)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 6
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 2
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2500
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with socket.create_connection(server.getsockname()) as sock:
            tune_socket(sock, keepalive=0, user_timeout=0)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


def test_upstream_connections_carry_the_configured_options(
    redis_standalone: RedisProcess,
) -> None:
    config = proxy_config(
        "standalone", [redis_standalone.addr], tcp_keepalive=4.0, tcp_user_timeout=3.0
    )
    with ProxyThread(config) as proxy, redis.Redis(port=proxy.port, protocol=2) as client:
        assert client.ping() and client.set("opt:k", "v")
        state = proxy.server.state
        assert state is not None
        conn = state.pool.first[False][redis_standalone.addr]
        sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 3000


def test_address_map_reaches_nodes_that_announce_unreachable_names(
    fresh_cluster: FreshCluster,
) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    names = {addr: f"node{split_addr(addr)[1]}.invalid" for addr in cluster.primaries()}
    for addr, name in names.items():
        command(addr, "CONFIG", "SET", "cluster-announce-hostname", name)
        command(addr, "CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname")

    def announced() -> set[str]:
        hosts = set()
        for addr in names:
            for entry in command(addr, "CLUSTER", "SLOTS"):  # type: ignore[union-attr]
                hosts.add(entry[2][0].decode())
        return hosts

    wanted = set(names.values())  # hostnames travel by gossip
    wait_until(
        lambda: announced() == wanted,
        10,
        lambda: f"every node to announce {wanted}, got {announced()}",
        interval=0.1,
    )

    address_map = tuple((f"{name}:{split_addr(addr)[1]}", addr) for addr, name in names.items())
    config = proxy_config("cluster", cluster.seeds[:1], address_map=address_map)
    with ProxyThread(config) as proxy, redis.Redis(port=proxy.port, protocol=2) as client:
        keys = [f"map:{i}" for i in range(60)]
        for key in keys:
            assert client.set(key, key)
        assert [v.decode() for v in client.mget(keys)] == keys
        # A MOVED names the new owner by its announced name too.
        slot = key_hash_slot(b"map:0")
        source = cluster.owner_of_slot(slot)
        target = next(a for a in names if a != source)
        cluster.migrate_slot(slot, target)
        assert client.get("map:0") == b"map:0"
        assert client.set("map:0", "again") and client.get("map:0") == b"again"
        state = proxy.server.state
        assert state is not None and state.topology.slotmap is not None
        assert set(state.topology.slotmap.nodes) <= set(names)
