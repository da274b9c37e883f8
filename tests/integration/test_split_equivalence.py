"""Property: a random sequence of multi-key commands gives, through slotless on a cluster
(split by slot, fanned out, merged), exactly the replies of one standalone Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.localcluster import Cluster, RedisProcess
from tests.integration.proxy_thread import ProxyThread, proxy_config

KEYS = [f"eq:{n}" for n in "abcdefgh"] + [f"eq:{{t}}{n}" for n in "xyz"]
VALUES = st.sampled_from([b"1", b"2", b"x", b"", b"long" * 20])
KEY = st.sampled_from(KEYS)
SOME_KEYS = st.lists(KEY, min_size=1, max_size=6)

COMMAND = st.one_of(
    st.tuples(st.just("MSET"), st.lists(st.tuples(KEY, VALUES), min_size=1, max_size=5)).map(
        lambda c: ("MSET", *[x for pair in c[1] for x in pair])
    ),
    SOME_KEYS.map(lambda keys: ("MGET", *keys)),
    SOME_KEYS.map(lambda keys: ("DEL", *keys)),
    SOME_KEYS.map(lambda keys: ("EXISTS", *keys)),
    SOME_KEYS.map(lambda keys: ("UNLINK", *keys)),
    SOME_KEYS.map(lambda keys: ("TOUCH", *keys)),
    st.tuples(st.just("SET"), KEY, VALUES),
    st.tuples(st.just("INCR"), KEY),
    st.tuples(st.just("GET"), KEY),
    # Keys of another type: MGET answers nil for them where GET says WRONGTYPE.
    st.tuples(st.just("RPUSH"), KEY, VALUES),
    st.tuples(st.just("SADD"), KEY, VALUES),
)


@pytest.fixture(scope="module")
def targets(
    redis_cluster: Cluster, redis_standalone: RedisProcess
) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    with (
        ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as proxy,
        redis.Redis(port=proxy.port, protocol=2) as through,
        redis.Redis(port=redis_standalone.port, protocol=2) as reference,
    ):
        yield through, reference


def run(client: redis.Redis, command: tuple[object, ...]) -> object:
    try:
        return client.execute_command(*command)
    except redis.ResponseError as exc:
        return f"error: {exc}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(COMMAND, min_size=1, max_size=15))
def test_split_and_merge_match_a_standalone_server(
    targets: tuple[redis.Redis, redis.Redis], commands: list[tuple[object, ...]]
) -> None:
    through, reference = targets
    through.delete(*KEYS)
    reference.delete(*KEYS)
    for command in commands:
        assert run(through, command) == run(reference, command), command
    for key in KEYS:
        assert run(through, ("GET", key)) == run(reference, ("GET", key)), key
        assert through.type(key) == reference.type(key), key


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(COMMAND, min_size=4, max_size=40))
def test_pipelines_match_a_standalone_server(
    targets: tuple[redis.Redis, redis.Redis], commands: list[tuple[object, ...]]
) -> None:
    """The same commands sent as one pipeline (one read at the proxy): runs of single-key
    commands travel as batches, and every reply still comes back in request order."""
    through, reference = targets
    through.delete(*KEYS)
    reference.delete(*KEYS)
    results = []
    for client in (through, reference):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = pipe.execute(raise_on_error=False)
        results.append([f"error: {r}" if isinstance(r, Exception) else r for r in replies])
    assert results[0] == results[1]
    for key in KEYS:
        assert run(through, ("GET", key)) == run(reference, ("GET", key)), key
