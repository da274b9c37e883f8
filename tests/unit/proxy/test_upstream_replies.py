"""UpstreamConnection cuts the reply stream into replies, however the reads split it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.upstream import Batch, Parts, UpstreamConnection
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
    _receive_in_pieces(conn, b"".join(replies), cuts)
    return got


def _receive_in_pieces(conn: UpstreamConnection, stream: bytes, cuts: list[int]) -> None:
    """Feed `stream` cut at `cuts`; every reply must have found its waiter."""
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        conn.data_received(stream[start:end])
    assert not conn.closed
    assert not conn.pending


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


class Collected:
    """What a Batch fills (a split request's parts), recording when it finished."""

    def __init__(self, count: int) -> None:
        self.raws = [b""] * count
        self.remaining = count
        self.finished = 0

    def finish(self) -> None:
        self.finished += 1


def _no_takeover(parent: Parts, index: int, raw: bytes, conn: UpstreamConnection) -> bool:
    return False


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.sampled_from(REPLIES), min_size=1, max_size=4)),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(min_value=0, max_value=800_000), max_size=30),
)
def test_batches_and_single_waiters_get_their_replies_in_order(
    loop: asyncio.AbstractEventLoop, waiters: list[tuple[bool, list[bytes]]], cuts: list[int]
) -> None:
    """A Batch is one entry in `pending` for several replies; whatever the reads, each reply
    lands in its own part, in the order sent, and the parent finishes once."""
    conn = UpstreamConnection("127.0.0.1:1", loop)
    expected: list[tuple[object, list[bytes]]] = []
    stream: list[bytes] = []
    for is_batch, replies in waiters:
        if is_batch:
            parts = Collected(len(replies))
            # Parts in reverse order: reply i fills part indices[i], not part i.
            indices = list(reversed(range(len(replies))))
            conn.pending.append(Batch(parts, indices, _no_takeover))
            expected.append((parts, list(reversed(replies))))
        else:
            got: list[bytes] = []
            for _ in replies:
                conn.pending.append(Collect(got))
            expected.append((got, replies))
        stream += replies
    _receive_in_pieces(conn, b"".join(stream), cuts)
    for target, replies in expected:
        if isinstance(target, Collected):
            assert target.raws == replies
            assert target.remaining == 0
            assert target.finished == 1
        else:
            assert target == replies


def test_an_error_reply_in_a_batch_can_be_taken_over(loop: asyncio.AbstractEventLoop) -> None:
    """MOVED and the like go to on_error with the part's index; a part it takes over is
    left to it, the others are filled."""
    conn = UpstreamConnection("127.0.0.1:1", loop)
    parts = Collected(3)
    seen: list[tuple[int, bytes]] = []

    def take_moved(parent: Parts, index: int, raw: bytes, c: UpstreamConnection) -> bool:
        assert parent is parts and c is conn
        seen.append((index, raw))
        return raw.startswith(b"-MOVED")

    conn.pending.append(Batch(parts, [2, 0, 1], take_moved))
    conn.data_received(b"-MOVED 5 127.0.0.1:2\r\n-ERR wrong\r\n$1\r\nx\r\n")
    assert seen == [(2, b"-MOVED 5 127.0.0.1:2\r\n"), (0, b"-ERR wrong\r\n")]
    assert parts.raws == [b"-ERR wrong\r\n", b"$1\r\nx\r\n", b""]
    assert parts.remaining == 1  # part 2 is the taker's now
    assert not conn.pending


def test_a_lost_connection_answers_what_a_batch_still_owes(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = UpstreamConnection("127.0.0.1:1", loop)
    parts = Collected(3)
    conn.pending.append(Batch(parts, [0, 1, 2], _no_takeover))
    conn.data_received(b"$1\r\na\r\n$5\r\nhel")
    conn.connection_lost(None)
    assert parts.raws[0] == b"$1\r\na\r\n"
    assert parts.raws[1] == parts.raws[2] == b"-ERR upstream 127.0.0.1:1 connection lost\r\n"
    assert parts.remaining == 0
    assert parts.finished == 1
    # Sent on the closed connection: every part is answered at once.
    late = Collected(2)
    conn.send_batch(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n" * 2, Batch(late, [0, 1], _no_takeover))
    assert late.remaining == 0
    assert late.finished == 1
    assert all(raw.startswith(b"-ERR upstream 127.0.0.1:1") for raw in late.raws)
