"""UpstreamConnection cuts the reply stream into replies, however the reads split it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.upstream import UpstreamConnection
from routing.resp import encode_value

REPLIES = [
    b"+OK\r\n",
    b":42\r\n",
    b"$-1\r\n",
    b"$5\r\nhello\r\n",
    b"-ERR nope\r\n",
    b"*2\r\n$1\r\na\r\n:1\r\n",
    b"_\r\n",
    b"$100000\r\n" + b"v" * 100_000 + b"\r\n",  # collected in pieces (over 64 KB)
    b"$70000\r\n" + b"\r\n" * 35_000 + b"\r\n",  # CRLFs inside the value
    b"%1\r\n+k\r\n$0\r\n\r\n",
]


class Collect:
    def __init__(self, got: list[bytes]) -> None:
        self.got = got

    def on_reply(self, raw: bytes, conn: UpstreamConnection) -> None:
        self.got.append(raw)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _deliver(loop: asyncio.AbstractEventLoop, replies: list[bytes], cuts: list[int]) -> list[bytes]:
    conn = UpstreamConnection("127.0.0.1:1", loop)
    got: list[bytes] = []
    for _ in replies:
        conn.pending.append(Collect(got))
    stream = b"".join(replies)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        conn.data_received(stream[start:end])
    assert not conn.closed
    assert not conn.pending
    return got


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(REPLIES), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=400_000), max_size=30),
)
def test_any_split_of_the_stream_gives_the_same_replies(
    loop: asyncio.AbstractEventLoop, replies: list[bytes], cuts: list[int]
) -> None:
    assert _deliver(loop, replies, cuts) == replies


def test_a_large_bulk_in_many_small_reads(loop: asyncio.AbstractEventLoop) -> None:
    big = encode_value(b"x" * 1_000_000)
    replies = [b"+OK\r\n", big, b":1\r\n"]
    stream_length = sum(map(len, replies))
    assert _deliver(loop, replies, list(range(0, stream_length, 1000))) == replies


@pytest.mark.parametrize("garbage", [b"$abc\r\n", b"!x\r\n", b"*x\r\n", b"$-5x\r\n"])
def test_an_invalid_reply_fails_the_connection(
    loop: asyncio.AbstractEventLoop, garbage: bytes
) -> None:
    conn = UpstreamConnection("127.0.0.1:1", loop)
    got: list[bytes] = []
    conn.pending.append(Collect(got))
    conn.data_received(garbage)
    assert conn.closed
    assert len(got) == 1
    assert got[0].startswith(b"-ERR upstream 127.0.0.1:1 sent an invalid reply")


def test_a_reply_nobody_asked_for_fails_the_connection(loop: asyncio.AbstractEventLoop) -> None:
    conn = UpstreamConnection("127.0.0.1:1", loop)
    got: list[bytes] = []
    conn.pending.append(Collect(got))
    conn.data_received(b"+OK\r\n:1\r\n")
    assert got == [b"+OK\r\n"]
    assert conn.closed
