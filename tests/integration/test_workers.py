"""`workers: N`: processes sharing the port, restarted when they die, drained on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from proxy.localcluster import RedisProcess, pick_ports


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def wait_for(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


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
        workers = wait_for(lambda: (w := children_of(proc.pid)) and len(w) == 2 and w)
        r = wait_for(lambda: _connect(port))
        ids = set()
        for _ in range(20):
            with redis.Redis(port=port) as c:
                ids.add(c.client_id())
        assert len(ids) == 20  # unique across workers
        assert r.set("w:key", "v") and r.get("w:key") == b"v"
        r.close()
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(
            lambda: (w := children_of(proc.pid)) and len(w) == 2 and victim not in w and w
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
