"""RESP3 through slotless on a cluster: every reply type byte for byte as a standalone
Redis sends it (maps, sets, doubles, booleans, nulls, big numbers, verbatim strings),
including replies slotless merges itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from proxy.localcluster import Cluster, RedisProcess
from routing.resp import pack_command, reply_end
from tests.integration.proxy_thread import ProxyThread, proxy_config

LUA = "redis.setresp(3); return "
COMMANDS: list[tuple[str, ...]] = [
    ("DEL", "r3:h", "r3:s", "r3:z", "r3:a", "r3:b", "r3:c"),
    ("HSET", "r3:h", "f", "v", "g", "w"),
    ("HGETALL", "r3:h"),  # map
    ("SADD", "r3:s", "m"),
    ("SMEMBERS", "r3:s"),  # set
    ("ZADD", "r3:z", "1.5", "m"),
    ("ZSCORE", "r3:z", "m"),  # double
    ("ZRANGE", "r3:z", "0", "-1", "WITHSCORES"),  # arrays of [member, double]
    ("ZPOPMIN", "r3:z"),
    ("GET", "r3:nothing"),  # null
    ("MSET", "r3:a", "1", "r3:c", "3"),  # split by slot
    ("MGET", "r3:a", "r3:b", "r3:c"),  # merged, with a null in the middle
    ("EXISTS", "r3:a", "r3:b", "r3:c"),  # merged integer
    ("EVAL", LUA + "true", "0"),  # boolean
    ("EVAL", LUA + "{big_number='123456789012345678901234567890'}", "0"),
    ("EVAL", LUA + "{verbatim_string={format='txt', string='hi there'}}", "0"),
    ("EVAL", LUA + "{double=3.25}", "0"),
    ("EVAL", LUA + "{map={a=1}}", "0"),
    ("EVAL", LUA + "{set={x=true}}", "0"),
    ("EVAL", LUA + "{err='MYERR custom'}", "0"),
    ("PING",),
    ("ECHO", "x"),
    ("CLIENT", "GETNAME"),  # null in RESP3
    ("HGET", "r3:h", "missing"),
]


def replies(port: int, commands: list[tuple[str, ...]]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(pack_command([b"HELLO", b"3"]))
        sock.sendall(b"".join(pack_command([a.encode() for a in c]) for c in commands))
        data, out, pos = b"", [], 0
        while len(out) < len(commands) + 1:
            end = reply_end(data, pos) if pos < len(data) else -1
            if end < 0:
                chunk = sock.recv(65536)
                assert chunk, out
                data += chunk
                continue
            out.append(data[pos:end])
            pos = end
        return out[1:]  # HELLO's reply names the server: not compared


@pytest.fixture(scope="module")
def proxy(redis_cluster: Cluster) -> Iterator[ProxyThread]:
    with ProxyThread(proxy_config("cluster", redis_cluster.seeds[:1])) as running:
        yield running


def test_resp3_replies_match_a_standalone_server(
    proxy: ProxyThread, redis_standalone: RedisProcess
) -> None:
    through = replies(proxy.port, COMMANDS)
    reference = replies(redis_standalone.port, COMMANDS)
    for command, got, want in zip(COMMANDS, through, reference, strict=True):
        assert got == want, command
    types = {r[:1] for r in reference}
    assert {b"%", b"~", b",", b"_", b"#", b"(", b"=", b"*", b":", b"-"} <= types
