"""The admin endpoint: a tiny HTTP/1.1 server for /metrics, /livez and /readyz.

One request per connection (`Connection: close`), GET or HEAD only, a bounded request head
read under a deadline; anything else gets 400, 404 or 405, never an exception out of the
handler. It runs in the serving process's event loop, or (workers: N) in a thread of the
parent, where WorkersSource answers from the workers' reports (proxy/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, Protocol

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from conf import Address
from proxy.metrics import REPORT_INTERVAL

log = structlog.get_logger("slotless.admin")

MAX_HEAD: Final = 8192  # bytes of request line and headers
READ_TIMEOUT: Final = 5.0
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_PATHS: Final = ("/metrics", "/livez", "/readyz")


class AdminSource(Protocol):
    def metrics(self) -> bytes: ...

    async def readiness(self) -> tuple[bool, dict[str, Any]]: ...


class AdminServer:
    def __init__(self, source: AdminSource) -> None:
        self._source = source
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, addr: Address) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._handle, addr.host, addr.port, limit=MAX_HEAD, reuse_address=True
        )
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("admin_listening", address=f"{sockname[0]}:{sockname[1]}")
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                await _respond(writer, 400, "bad request\n")
                return
            method, path = _request_line(head)
            if path is None:
                await _respond(writer, 400, "bad request\n")
            elif path not in _PATHS:
                await _respond(writer, 404, "not found\n")
            elif method not in ("GET", "HEAD"):
                await _respond(writer, 405, "method not allowed\n", {"Allow": "GET, HEAD"})
            else:
                status, body, content_type = await self._serve(path)
                await _respond(writer, status, body, {"Content-Type": content_type}, method)
        except ConnectionError:
            pass
        except Exception:  # a bug: the endpoint stays up, the proxy too
            log.exception("admin_request_failed")
            await _respond(writer, 500, "internal error\n")
        finally:
            writer.close()

    async def _serve(self, path: str) -> tuple[int, bytes | str, str]:
        if path == "/metrics":
            return 200, self._source.metrics(), CONTENT_TYPE_PLAIN_0_0_4
        if path == "/livez":
            return 200, "ok\n", "text/plain; charset=utf-8"
        ready, why = await self._source.readiness()
        body = json.dumps({"ready": ready, **why}) + "\n"
        return (200 if ready else 503), body, "application/json"


def _request_line(head: bytes) -> tuple[str, str | None]:
    """(method, path) of "METHOD /path HTTP/1.x"; path None when the line is malformed."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return "", None
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return "", None
    return method, target.split("?", 1)[0]


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> None:
    data = body.encode() if isinstance(body, str) else body
    fields = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
    fields["Content-Length"] = str(len(data))
    fields["Connection"] = "close"
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", *(f"{k}: {v}" for k, v in fields.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if method == "HEAD" else data))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


# --- workers: N: the parent's endpoint -------------------------------------------------------

STALE_AFTER: Final = 5 * REPORT_INTERVAL  # a report older than this: the worker is not ready


class WorkersSource(Collector):
    """The parent's /metrics (every worker's, with a `worker` label) and /readyz (every
    worker has reported ready lately), from the files the workers write."""

    def __init__(self, report_dir: str, workers: int) -> None:
        self._dir = report_dir
        self._workers = workers
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def _reports(self) -> dict[int, dict[str, Any]]:
        reports = {}
        for index in range(self._workers):
            try:
                with open(os.path.join(self._dir, f"worker-{index}.json")) as f:
                    reports[index] = json.load(f)
            except (OSError, ValueError):
                continue
        return reports

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, report in sorted(self._reports().items()):
            for family in text_string_to_metric_families(report.get("metrics", "")):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(index)}
                    into.add_sample(sample.name, labels, sample.value, sample.timestamp)
        return iter(merged.values())

    def metrics(self) -> bytes:
        return generate_latest(self._registry)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        reports = self._reports()
        now = time.time()
        not_ready = {}
        for index in range(self._workers):
            report = reports.get(index)
            if report is None:
                not_ready[str(index)] = "no report yet"
            elif now - float(report.get("time", 0)) > STALE_AFTER:
                not_ready[str(index)] = "no report lately"
            elif not report.get("ready"):
                not_ready[str(index)] = report.get("why", {}).get("reason", "not ready")
        if not_ready:
            return False, {"reason": "workers not ready", "workers": not_ready}
        return True, {"reason": "ok", "workers": self._workers}


class ParentAdmin:
    """The parent's admin endpoint on a thread of its own (the parent has no event loop:
    it waits for its children). Owns the directory the workers report into."""

    def __init__(self, addr: Address, workers: int) -> None:
        self._addr = addr
        self.report_dir = tempfile.mkdtemp(prefix="slotless-admin-")
        self._source = WorkersSource(self.report_dir, workers)
        self._loop = asyncio.new_event_loop()
        self._server = AdminServer(self._source)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def bind(self) -> None:
        """Listen now (a port in use fails before any worker starts)."""
        self._loop.run_until_complete(self._server.start(self._addr))

    def start_thread(self) -> None:
        """Serve from a thread: after the first fork, so that no child starts with it."""
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()
        shutil.rmtree(self.report_dir, ignore_errors=True)
