"""Property: a random sequence of multi-key commands gives, through slotless on a cluster
(split by slot, fanned out, merged), exactly the replies of one standalone Redis."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.localcluster import Cluster, RedisProcess
from routing.resp import pack_command, reply_end
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


def _exchange(port: int, payload: bytes, replies: int) -> bytes:
    """Send one pipeline in one write; read until `replies` complete replies arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            pos, count = 0, 0
            while count < replies and (end := reply_end(data, pos)) >= 0:
                pos, count = end, count + 1
            if count == replies:
                return data
            chunk = sock.recv(65536)
            assert chunk, "closed early"
            data += chunk


@pytest.mark.parametrize(
    "commands",
    [
        # Session state in the middle of a pipeline: a batch ends before it, a new one
        # starts after it, and the replies keep their order.
        [
            ["SET", "eq:a", "1"],
            ["GET", "eq:a"],
            ["MULTI"],
            ["INCR", "eq:a"],
            ["GET", "eq:a"],
            ["EXEC"],
            ["GET", "eq:a"],
            ["SET", "eq:b", "2"],
            ["MGET", "eq:a", "eq:b"],
            ["GET", "eq:b"],
        ],
        [
            ["SET", "eq:c", "x"],
            ["PING"],
            ["GET", "eq:c"],
            ["ECHO", "e"],
            ["GET", "eq:nope"],
            ["CLIENT", "REPLY", "SKIP"],
            ["GET", "eq:c"],
            ["GET", "eq:c"],
            ["DEL", "eq:c"],
            ["GET", "eq:c"],
        ],
        [
            ["GET", "eq:d"],
            ["LPUSH", "eq:d", "v"],
            ["GET", "eq:d"],
            ["SET", "eq:e", "1"],
            ["INCR", "eq:e"],
            ["INCRBY", "eq:e", "x"],
            ["GET", "eq:e"],
            ["MGET", "eq:d", "eq:e"],
        ],
    ],
)
def test_pipelines_with_session_commands_match_byte_for_byte(
    targets: tuple[redis.Redis, redis.Redis], commands: list[list[str]]
) -> None:
    through, reference = targets
    for client in targets:
        client.delete(*KEYS, "eq:nope")
    payload = b"".join(pack_command([c.encode() for c in command]) for command in commands)
    skipped = sum(1 for c in commands if c[:3] == ["CLIENT", "REPLY", "SKIP"]) * 2
    count = len(commands) - skipped
    port = through.connection_pool.connection_kwargs["port"]
    reference_port = reference.connection_pool.connection_kwargs["port"]
    assert _exchange(port, payload, count) == _exchange(reference_port, payload, count)
