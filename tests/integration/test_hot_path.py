"""The pure-Python fallback serves like the compiled hot path, and slotless says which runs.

slotless runs as a child process (`python -m proxy`) so that SLOTLESS_PURE=1 acts on a fresh
import, as it would for an install without the extension (issue 13).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from proxy.localcluster import Cluster
from routing import accel
from tests.integration.proxy_process import slotless_process


@pytest.mark.parametrize(
    ("env", "hot_path"),
    [({"SLOTLESS_PURE": "1"}, "pure"), ({"SLOTLESS_PURE": ""}, accel.HOT_PATH)],
    ids=["SLOTLESS_PURE=1", "default"],
)
def test_commands_work_and_info_names_the_hot_path(
    env: dict[str, str], hot_path: str, redis_cluster: Cluster, tmp_path: Path
) -> None:
    seeds = ", ".join(f'"{s}"' for s in redis_cluster.seeds[:2])
    body = f"upstream: {{mode: cluster, nodes: [{seeds}]}}\nlog: {{level: info}}\n"
    keys = [f"hot:{hot_path}:{i}" for i in range(20)]  # across the three primaries
    with (
        slotless_process(tmp_path, body, env) as (_proc, port),
        redis.Redis(port=port) as client,
    ):
        assert client.ping()
        assert client.set(keys[0], "v0") and client.get(keys[0]) == b"v0"
        assert client.mset({key: f"v{i}" for i, key in enumerate(keys)})
        assert client.mget(keys) == [f"v{i}".encode() for i in range(20)]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.incr(f"{key}:n")
            pipe.get(key)
        pipe.execute_command("GET")  # wrong arity, answered by slotless in its place
        results = pipe.execute(raise_on_error=False)
        assert results[:4] == [1, b"v0", 1, b"v1"] and isinstance(results[-1], redis.ResponseError)
        assert client.delete(*keys, *(f"{key}:n" for key in keys)) == 40
        assert client.info("proxy")["hot_path"] == hot_path
    log = (tmp_path / "log").read_text()
    # The start-up warning is for a missing build only: never for SLOTLESS_PURE=1.
    assert ("hot_path_not_compiled" in log) == (hot_path == "pure" and not env["SLOTLESS_PURE"])
