"""`workers: N`: processes sharing the port, restarted when they die, drained on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from proxy.localcluster import RedisProcess, pick_ports
from tests.waiting import wait_until


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_workers_share_the_port_restart_and_drain(
    redis_standalone: RedisProcess, tmp_path: Path
) -> None:
    port = pick_ports(1)[0]
    config = tmp_path / "slotless.yaml"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'upstream: {{mode: standalone, nodes: ["{redis_standalone.addr}"]}}\n'
        "workers: 2\nlog: {level: warning}\n"
    )
    log = (tmp_path / "slotless.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--config", str(config)], stdout=log, stderr=log
    )
    try:
        workers = wait_until(
            lambda: (w := children_of(proc.pid)) and len(w) == 2 and w,
            15,
            "2 workers",
            interval=0.1,
        )
        r = wait_until(
            lambda: _connect(port), 15, f"a worker to answer on port {port}", interval=0.1
        )
        ids = set()
        for _ in range(20):
            with redis.Redis(port=port) as c:
                ids.add(c.client_id())
        assert len(ids) == 20  # unique across workers
        assert r.set("w:key", "v") and r.get("w:key") == b"v"
        r.close()
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: (w := children_of(proc.pid)) and len(w) == 2 and victim not in w and w,
            15,
            f"a worker to replace the killed {victim}",
            interval=0.1,
        )
        assert victim not in replaced
        for _ in range(20):  # whichever worker the kernel picks serves
            with redis.Redis(port=port) as c:
                assert c.get("w:key") == b"v"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not children_of(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _connect(port: int) -> redis.Redis | None:
    client = redis.Redis(port=port)
    try:
        client.ping()
        return client
    except redis.ConnectionError:
        client.close()
        return None
