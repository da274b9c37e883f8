"""A steady write load through slotless for the sentinel failover tests, and what it saw."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def client(port: int) -> redis.Redis:
    """No retries: every error the proxy returns is counted (REDIS-NOTES, test clients)."""
    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_timeout=10)


@dataclass
class WriteLoad:
    """`writers` clients each SET their own keys in turn, one at a time, until stop()."""

    port: int
    prefix: str
    writers: int = 4
    acked: list[list[int]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WriteLoad:
        for n in range(self.writers):
            self.acked.append([])
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, n: int) -> None:
        r = client(self.port)
        i = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r.set(f"{self.prefix}:{n}:{i}", i)
            except redis.RedisError as exc:
                with self._lock:
                    self.errors.append((t0, f"{type(exc).__name__}: {exc}"))
            else:
                self.acked[n].append(i)
                with self._lock:
                    self.latencies.append(time.monotonic() - t0)
            i += 1
        r.close()

    def reconnects(self) -> int:
        """Errors that mean the client's connection to slotless broke."""
        return sum("ConnectionError" in e or "TimeoutError" in e for _, e in self.errors)

    def total_acked(self) -> int:
        return sum(len(a) for a in self.acked)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def lost(self, r: redis.Redis) -> list[str]:
        """Acknowledged writes whose key is not there (read back through slotless)."""
        missing = []
        for n, acked in enumerate(self.acked):
            keys = [f"{self.prefix}:{n}:{i}" for i in acked]
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                values = r.mget(chunk)
                missing += [k for k, v in zip(chunk, values, strict=True) if v is None]
        return missing

    def error_window(self) -> float:
        """Seconds from the first error to the last one (0.0: none)."""
        if not self.errors:
            return 0.0
        times = [t for t, _ in self.errors]
        return max(times) - min(times)

    def report(self, what: str) -> str:
        worst = max(self.latencies, default=0.0)
        return (
            f"{what}: {self.total_acked()} writes acknowledged, {len(self.errors)} errors over"
            f" {self.error_window():.3f}s, slowest acknowledged write {worst:.3f}s"
        )
