"""Real redis-server fixtures: a shared cluster, fresh clusters for disruptive tests, a standalone.

Everything here is marked `integration`. A missing redis-server fails loudly (CI must never skip
these silently). SLOTLESS_TEST_CLUSTER=host:port,... points `redis_cluster` at a running cluster.
Servers are stopped by the fixtures, on SIGTERM (turned into KeyboardInterrupt), and at exit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

import pytest

from proxy.localcluster import (
    Cluster,
    LocalCluster,
    RedisProcess,
    RunningCluster,
    find_redis_server,
    start_standalone,
)

HERE = Path(__file__).parent
FreshCluster = Callable[..., LocalCluster]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _interrupt_on_sigterm() -> Iterator[None]:
    """A SIGTERM'd run (CI timeout, kill) still tears down its fixtures and servers."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


def _require_redis_server() -> None:
    try:
        find_redis_server()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """3 primaries x 1 replica, shared by the session: do not change its topology."""
    seeds = os.environ.get("SLOTLESS_TEST_CLUSTER", "")
    if seeds:
        running = RunningCluster([s.strip() for s in seeds.split(",") if s.strip()])
        running.wait_stable()
        yield running
        return
    _require_redis_server()
    with LocalCluster(primaries=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def fresh_cluster() -> Iterator[FreshCluster]:
    """Factory: fresh_cluster(primaries=3, replicas=1, ...) starts a cluster of the test's own."""
    _require_redis_server()
    started: list[LocalCluster] = []

    def make(
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
    ) -> LocalCluster:
        cluster = LocalCluster(
            primaries, replicas, node_timeout_ms=node_timeout_ms, extra_args=extra_args
        )
        started.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture(scope="session")
def redis_standalone() -> Iterator[RedisProcess]:
    """A plain (non-cluster) redis-server with .host, .port and .addr."""
    _require_redis_server()
    server = start_standalone()
    try:
        yield server
    finally:
        server.close()
