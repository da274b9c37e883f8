"""Multi-core: N worker processes share the listening port with SO_REUSEPORT.

The parent only supervises: it forks the workers (each with its own event loop, upstream
connections and slot map), restarts one that dies, and forwards SIGTERM/SIGINT/SIGHUP. On
SIGTERM every worker drains its clients; the parent exits 0 when all of them are gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from conf import Config
from proxy.admin import ParentAdmin

log = structlog.get_logger("slotless.workers")

_RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def resolve_port(config: Config) -> Config:
    """Port 0 means "any free port": pick it once so every worker binds the same one."""
    if config.listen.port != 0:
        return config
    with socket.socket(socket.AF_INET6 if ":" in config.listen.host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.listen.host, 0))
        port = sock.getsockname()[1]
    return replace(config, listen=replace(config.listen, port=port))


class Supervisor:
    def __init__(self, config: Config, serve: Callable[[Config, int, str | None], int]) -> None:
        self._config = resolve_port(config)
        self._serve = serve
        # One admin endpoint for all workers, served here from what they report.
        self._admin = ParentAdmin(config.admin, config.workers) if config.admin else None
        self._children: dict[int, int] = {}  # pid -> worker index
        self._failures = [0] * config.workers
        self._stopping = False

    def run(self) -> int:
        if self._admin is not None:
            try:
                self._admin.bind()
            except OSError as exc:
                log.error("listen_failed", address=str(self._config.admin), reason=str(exc))
                self._admin.stop()
                return 1
        try:
            return self._supervise()
        finally:
            if self._admin is not None:
                self._admin.stop()

    def _supervise(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._forward)
        for index in range(self._config.workers):
            self._spawn(index)
        if self._admin is not None:
            self._admin.start_thread()
        log.info("workers_started", workers=self._config.workers, listen=str(self._config.listen))
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = self._children.pop(pid, -1)
            if index < 0 or self._stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            delay = _RESTART_BACKOFF[min(self._failures[index], len(_RESTART_BACKOFF) - 1)]
            self._failures[index] += 1
            log.error("worker_died", worker=index, pid=pid, exit_code=code, restart_in=delay)
            time.sleep(delay)
            if not self._stopping:
                self._spawn(index)
        log.info("workers_stopped")
        return 0

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                report_dir = self._admin.report_dir if self._admin is not None else None
                code = self._serve(self._config, index, report_dir)
            finally:
                os._exit(code)
        self._children[pid] = index

    def _forward(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stopping = True
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
