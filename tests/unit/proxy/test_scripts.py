"""Script memory: bounded, LRU; NOSCRIPT answered by SCRIPT LOAD + the retry on that connection."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import cast

from proxy.dispatch import Dispatcher
from proxy.scripts import ScriptCache, ScriptRequest
from proxy.upstream import UpstreamConnection
from routing.resp import pack_command


def sha(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def test_remember_returns_redis_sha_and_stays_bounded() -> None:
    cache = ScriptCache()
    assert cache.remember(b"aaaa", 10) == sha(b"aaaa")
    cache.remember(b"bbbb", 10)
    assert cache.body(sha(b"aaaa")) == b"aaaa"  # now the most recently used
    cache.remember(b"cccc", 10)  # 12 bytes > 10: the least recently used goes
    assert cache.body(sha(b"bbbb")) is None
    assert cache.body(sha(b"cccc")) == b"cccc"
    cache.remember(b"x" * 11, 10)  # larger than the whole budget: not kept
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.body(sha(b"cccc")) is None


def test_which_node_has_which_script() -> None:
    cache = ScriptCache()
    digest = cache.remember(b"return 1", 1024)
    assert not cache.loaded_on("a:1", digest)
    cache.mark_loaded("a:1", digest)
    cache.mark_loaded("b:1", digest)
    assert cache.loaded_on("a:1", digest) and cache.loaded_on("b:1", digest)
    cache.mark_missing("a:1", digest)
    assert not cache.loaded_on("a:1", digest)
    cache.forget_node("b:1")  # its connection was lost: it may have restarted empty
    assert not cache.loaded_on("b:1", digest)
    cache.mark_loaded("c:1", digest)
    cache.clear()
    assert not cache.loaded_on("c:1", digest)


class FakeConn:
    addr = "n:1"

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def send(self, raw: bytes, waiter: object) -> None:
        self.sent.append((raw, waiter))


class Sink:
    resp3 = False
    flush_scheduled = False

    def __init__(self) -> None:
        self.ready = 0

    def on_ready(self) -> None:
        self.ready += 1


def test_noscript_loads_the_body_and_retries_once_on_the_same_connection() -> None:
    cache = ScriptCache()
    body = b"return 1"
    digest = cache.remember(body, 1024)
    raw = pack_command([b"EVALSHA", digest, b"0"])
    sink = Sink()
    dispatcher = cast(Dispatcher, SimpleNamespace(on_error=lambda packed, raw: None))
    request = ScriptRequest(dispatcher, sink, raw, -1, cache, digest)
    conn = FakeConn()
    upstream = cast(UpstreamConnection, conn)
    noscript = b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    request.on_reply(noscript, upstream)
    assert [r for r, _ in conn.sent] == [pack_command([b"SCRIPT", b"LOAD", body]), raw]
    assert conn.sent[1][1] is request and request.reply is None
    assert not cache.loaded_on("n:1", digest)
    request.on_reply(noscript, upstream)  # a second NOSCRIPT goes to the client
    assert request.reply == noscript and sink.ready == 1
    ran = ScriptRequest(dispatcher, sink, raw, -1, cache, digest)
    ran.on_reply(b":1\r\n", upstream)
    assert ran.reply == b":1\r\n" and cache.loaded_on("n:1", digest)
    unknown = ScriptRequest(dispatcher, sink, raw, -1, ScriptCache(), digest)
    unknown.on_reply(noscript, upstream)
    assert unknown.reply == noscript and len(conn.sent) == 2
