"""The admin endpoint of a real `slotless` process: workers: 2 aggregated by the parent, and
the slow log as JSON lines (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from proxy.localcluster import Cluster, Connection, RedisProcess, pick_ports
from tests.integration.admin_client import get, ready, scrape, value
from tests.integration.proxy_process import slotless_process
from tests.waiting import wait_until


def test_workers_share_one_metrics_endpoint(tmp_path: Path, redis_cluster: Cluster) -> None:
    (admin,) = pick_ports(1)
    nodes = ", ".join(f'"{n}"' for n in redis_cluster.seeds)
    body = f'admin: "127.0.0.1:{admin}"\nworkers: 2\nupstream:\n  nodes: [{nodes}]\n'
    with slotless_process(tmp_path, body) as (_, port):

        def workers_seen() -> set[str]:
            return {
                dict(labels).get("worker", "")
                for name, labels in scrape(admin)
                if name == "slotless_slots_covered"
            }

        wait_until(lambda: workers_seen() == {"0", "1"}, 15, "both workers in /metrics")
        wait_until(lambda: ready(admin)[0] == 200, 15, "/readyz 200 for both workers")
        clients = [redis.Redis(port=port, protocol=2) for _ in range(8)]
        try:
            for i, client in enumerate(clients):
                for j in range(10):
                    client.set(f"w:{i}:{j}", "v")
        finally:
            for client in clients:
                client.close()
        wait_until(
            lambda: value(scrape(admin), "slotless_commands_total", command="set") >= 80,
            15,
            "the SETs of every worker summed",
        )
        samples = scrape(admin)
        per_worker = {
            w: value(samples, "slotless_downstream_cx_total", worker=w) for w in ("0", "1")
        }
        assert sum(per_worker.values()) >= 8, per_worker
        assert value(samples, "slotless_slots_covered", worker="0") == 16384
        assert get(admin, "/livez")[0] == 200


def test_slow_requests_are_logged_as_json(tmp_path: Path, redis_standalone: RedisProcess) -> None:
    body = (
        f'upstream:\n  mode: standalone\n  nodes: ["{redis_standalone.addr}"]\n'
        "deny_commands: []\nslowlog_threshold_ms: 10\nlog:\n  format: json\n"
    )
    with slotless_process(tmp_path, body) as (_, port):
        # A bare RESP client: redis-py's CLIENT SETINFO would give it a pipe of its own.
        client = Connection(f"127.0.0.1:{port}")
        assert client.call("DEBUG", "SLEEP", "0.05") == b"OK"
        client.call("GET", "fast")

        def slow_lines() -> list[dict[str, object]]:
            lines = (tmp_path / "log").read_text().splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            return [r for r in records if r["event"] == "slow_request"]

        (record,) = wait_until(slow_lines, 10, "a slow_request line")
        assert record["command"] == "debug"
        assert record["node"] == redis_standalone.addr
        assert str(record["client"]).startswith("127.0.0.1:")
        assert float(str(record["duration_ms"])) >= 50
        assert "SLEEP" not in json.dumps(record) and "0.05" not in json.dumps(record)
        assert record["level"] == "warning"
        # The nodes' own slow log is still what SLOWLOG GET shows.
        entries = client.call("SLOWLOG", "GET", "10")
        assert isinstance(entries, list)
        assert any(b"DEBUG" in [a.upper() for a in e[3]] for e in entries), entries
        client.close()
