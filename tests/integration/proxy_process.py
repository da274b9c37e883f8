"""slotless as a child process (`python -m proxy`), for signals and memory measurements."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from proxy.localcluster import pick_ports
from tests.waiting import wait_until


@contextmanager
def slotless_process(
    tmp_path: Path, body: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start slotless with `body` (YAML without `listen`) on a free port, with `env` added to
    the environment; wait until it answers PING; yield (process, port). Its output goes to
    tmp_path/"log". On exit the process gets SIGTERM if still running, then SIGKILL after 10 s."""
    port = pick_ports(1)[0]
    config = tmp_path / "slotless.yaml"
    config.write_text(f'listen: "127.0.0.1:{port}"\n{body}')
    with (tmp_path / "log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--config", str(config)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    try:

        def answers() -> bool:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            with redis.Redis(port=port) as probe:
                return bool(probe.ping())

        wait_until(
            answers,
            15,
            f"slotless on port {port} to answer PING",
            interval=0.1,
            ignoring=(redis.ConnectionError,),
        )
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
