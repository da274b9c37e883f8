"""The admin endpoint end to end (issue 14): /metrics moves with the traffic sent, /readyz
follows slot coverage and the primaries, /livez, bad HTTP, and INFO's `# Proxy` figures."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import redis

from conf import Address
from proxy.localcluster import (
    Cluster,
    LocalCluster,
    RedisProcess,
    command,
    split_addr,
    start_standalone,
)
from routing.slots import key_hash_slot
from tests.integration.admin_client import get, ready, scrape, value
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.waiting import wait_until

FreshCluster = Callable[..., LocalCluster]


def with_admin(mode: str, nodes: list[str], **upstream: object) -> ProxyThread:
    config = proxy_config(mode, nodes, **upstream)
    return ProxyThread(dataclasses.replace(config, admin=Address("127.0.0.1", 0)))


def admin_port(proxy: ProxyThread) -> int:
    address = proxy.server.admin_address
    assert address is not None
    return address[1]


def test_metrics_move_with_the_traffic(redis_cluster: Cluster) -> None:
    with (
        with_admin("cluster", redis_cluster.seeds) as proxy,
        redis.Redis(port=proxy.port, protocol=2) as client,
    ):
        port = admin_port(proxy)
        before = scrape(port)
        assert value(before, "slotless_hot_path_info") == 1
        for i in range(200):  # latency is sampled: one batch in 64
            client.set(f"admin:{i % 50}", "v")
        pipe = client.pipeline(transaction=False)
        for i in range(50):
            pipe.get(f"admin:{i}")
        assert pipe.execute() == [b"v"] * 50
        client.set("admin:text", "not a number")
        with contextlib.suppress(redis.ResponseError):
            client.incr("admin:text")
        after = wait_until(
            lambda: (
                (s := scrape(port))
                and value(s, "slotless_commands_total", command="get", outcome="ok") >= 50
                and s
            ),
            10,
            "GETs counted",
        )
        incr_errors = value(after, "slotless_commands_total", command="incrby", outcome="error")
        assert incr_errors - value(before, "slotless_commands_total", command="incrby") == 1
        assert value(after, "slotless_commands_total", command="set", outcome="ok") >= 201
        assert value(after, "slotless_commands_total", command="get", outcome="ok") >= 50
        for node in redis_cluster.primaries():  # the keys spread over every primary
            assert value(after, "slotless_upstream_rq_total", node=node) >= 1, node
            assert value(after, "slotless_upstream_cx_active", node=node) >= 1, node
        assert value(after, "slotless_upstream_rq_total") >= 102
        assert value(after, "slotless_downstream_rx_bytes_total") > 50 * 20
        assert value(after, "slotless_downstream_tx_bytes_total") > 50 * 5
        assert value(after, "slotless_downstream_cx_active") >= 1
        assert value(after, "slotless_slots_covered") == 16384
        assert value(after, "slotless_command_duration_seconds_count") >= 1
        # INFO's `# Proxy` section shows the same figures.
        proxy_info = client.info("proxy")
        assert proxy_info["total_commands_processed"] >= 102
        assert proxy_info["hot_path"] in ("compiled", "pure")
        assert proxy_info["total_net_input_bytes"] > 0


def test_unknown_command_names_stay_one_label(redis_standalone: RedisProcess) -> None:
    with (
        with_admin("standalone", [redis_standalone.addr]) as proxy,
        redis.Redis(port=proxy.port, protocol=2) as client,
    ):
        for i in range(20):
            with contextlib.suppress(redis.ResponseError):
                client.execute_command(f"NOSUCHCMD{i}")
        samples = scrape(admin_port(proxy))
        commands = {
            dict(labels)["command"] for name, labels in samples if name == "slotless_commands_total"
        }
        assert "unknown" in commands
        assert not any(c.startswith("nosuchcmd") for c in commands)


def test_livez_readyz_standalone_follow_the_server() -> None:
    server = start_standalone()
    try:
        with with_admin("standalone", [server.addr], connect_timeout=0.5) as proxy:
            port = admin_port(proxy)
            assert get(port, "/livez")[0] == 200
            wait_until(lambda: ready(port)[0] == 200, 10, "/readyz 200")
            server.stop()
            _, body = wait_until(
                lambda: (r := ready(port))[0] == 503 and r, 10, "/readyz 503 with the server down"
            )
            assert body["ready"] is False
            assert body["down"] == [server.addr]
            assert get(port, "/livez")[0] == 200
            server.start()
            wait_until(lambda: ready(port)[0] == 200, 15, "/readyz 200 again")
    finally:
        server.close()


def test_readyz_follows_slot_coverage_and_redirects_are_counted(
    fresh_cluster: FreshCluster,
) -> None:
    cluster = fresh_cluster(primaries=3, replicas=0)
    slot = key_hash_slot(b"adm")
    owner = cluster.owner_of_slot(slot)
    with (
        with_admin(
            "cluster", cluster.seeds, refresh_interval=0.2, min_refresh_gap=0.0, retry_timeout=3.0
        ) as proxy,
        redis.Redis(port=proxy.port, protocol=2) as client,
    ):
        port = admin_port(proxy)
        wait_until(lambda: ready(port)[0] == 200, 10, "/readyz 200")

        # A migrated slot: the proxy's map is stale, the old owner answers MOVED.
        assert client.set("{adm}k", "v")
        target = next(p for p in cluster.primaries() if p != owner)
        cluster.migrate_slot(slot, target)
        assert client.get("{adm}k") == b"v"
        samples = scrape(port)
        assert value(samples, "slotless_redirects_total", kind="moved") >= 1
        assert value(samples, "slotless_slot_map_refreshes_total") >= 1
        for node in (owner, target):
            assert value(samples, "slotless_upstream_cx_active", node=node) >= 1, node
            assert value(samples, "slotless_upstream_rq_total", node=node) >= 1, node

        # An ASK: the slot migrates back, a key already moved answers ASK at the source.
        assert client.set("{adm}a", "A")
        cluster.begin_migration(slot, owner)
        host, mport = split_addr(owner)
        assert command(target, "MIGRATE", host, mport, "{adm}a", 0, 5000) == b"OK"
        assert client.get("{adm}a") == b"A"
        assert value(scrape(port), "slotless_redirects_total", kind="ask") >= 1
        cluster.migrate_keys(slot, owner)
        cluster.finish_migration(slot, owner)

        # One slot unassigned: the map no longer covers everything.
        current = cluster.owner_of_slot(slot)
        for node in cluster.primaries():  # every node's view, or a refresh may still see it
            command(node, "CLUSTER", "DELSLOTS", slot)
        _, body = wait_until(
            lambda: (r := ready(port))[0] == 503 and r, 15, "/readyz 503 with a slot unserved"
        )
        assert "16383 of 16384" in body["reason"]
        assert body["slots_covered"] == 16383
        assert value(scrape(port), "slotless_slots_covered") == 16383
        command(current, "CLUSTER", "ADDSLOTS", slot)
        wait_until(lambda: ready(port)[0] == 200, 15, "/readyz 200 once the slot is back")

        # A primary down (no replica to take over): 503 naming it.
        victim = next(p for p in cluster.primaries() if p != current)
        cluster.node(victim).kill()
        _, body = wait_until(
            lambda: (r := ready(port))[0] == 503 and r, 15, "/readyz 503 with a primary down"
        )
        assert victim in body.get("down", []) or "slots" in body["reason"]


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bad_http_gets_4xx_and_the_endpoint_stays_up(redis_standalone: RedisProcess) -> None:
    with with_admin("standalone", [redis_standalone.addr]) as proxy:
        port = admin_port(proxy)
        cases = [
            (b"garbage\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET /metrics\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 "),
            (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 "),
            (b"GET /livez HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"HTTP/1.1 400 "),
            (b"GET /livez HTTP/1.1\r\n", b"HTTP/1.1 400 "),  # the head never ends
            (b"\xff\xfe /livez HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 "),
            (b"", b"HTTP/1.1 400 "),
        ]
        for request, expected in cases:
            assert raw_http(port, request).startswith(expected), request[:40]
        status, body, headers = get(port, "/livez?x=1", method="HEAD")
        assert status == 200 and body == b"" and headers["Content-Length"] == "3"
        assert b"Allow: GET, HEAD" in raw_http(port, b"DELETE /readyz HTTP/1.1\r\n\r\n")
        assert get(port, "/livez") == (200, b"ok\n", get(port, "/livez")[2])
        assert proxy.server.state is not None and proxy.server.state.loop.is_running()


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "slotless.json"


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    exprs += [
        var["query"]["query"]
        for var in dashboard["templating"]["list"]
        if isinstance(var.get("query"), dict)
    ]
    return {name for expr in exprs for name in re.findall(r"\bslotless_[a-z0-9_]+", expr)}


def test_the_dashboard_queries_only_exposed_metrics(redis_cluster: Cluster) -> None:
    with (
        with_admin("cluster", redis_cluster.seeds) as proxy,
        redis.Redis(port=proxy.port, protocol=2) as client,
    ):
        for i in range(130):  # two sampled batches at least: the histogram has series
            client.set(f"dash:{i}", "v")
        exposed = {name for name, _ in scrape(admin_port(proxy))}
    queried = dashboard_metric_names()
    panels = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"Requests per second by command", "Slot coverage (of 16384)"} <= panels
    assert len(queried) >= 10
    assert queried <= exposed, f"not in /metrics: {sorted(queried - exposed)}"
