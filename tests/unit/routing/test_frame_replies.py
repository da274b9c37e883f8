"""frame_replies (the hot path's reply framer) agrees with routing.resp.reply_end everywhere;
fill_parts hands the framed replies to a batch."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.resp import ReplyProtocolError, encode_value, reply_end
from routing.route import fill_parts, frame_replies

values = st.recursive(
    st.none() | st.binary(max_size=20) | st.integers(-(2**40), 2**40),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)

SAMPLES = [
    b"+OK\r\n",
    b":-3\r\n",
    b"$-1\r\n",
    b"$3\r\na\r\n\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n$-1\r\n",
    b"*2\r\n:1\r\n$1\r\nb\r\n",
    b"*1\r\n*1\r\n$1\r\nc\r\n",
    b"%1\r\n+k\r\n:1\r\n",
    b"_\r\n",
    b"-ERR x\r\n",
    b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
    b"=7\r\ntxt:abc\r\n",
]


def reference(data: bytes) -> tuple[list[int], bool]:
    """The ends reply_end finds one by one, and whether it stopped at garbage."""
    ends: list[int] = []
    pos = 0
    while pos < len(data):
        try:
            end = reply_end(data, pos)
        except (ReplyProtocolError, ValueError):
            return ends, True
        if end < 0:
            break
        ends.append(end)
        pos = end
    return ends, False


def frame(data: bytes) -> tuple[list[int], int, str | None]:
    ends: list[int] = []
    need, error = frame_replies(data, ends)
    return ends, need, error


@pytest.mark.parametrize("raw", SAMPLES)
def test_samples_and_every_truncation(raw: bytes) -> None:
    stream = raw + b"+NEXT\r\n"
    assert frame(stream) == ([len(raw), len(stream)], 0, None)
    for cut in range(1, len(raw)):
        ends, _need, error = frame(raw[:cut])
        assert ends == [] and error is None


def test_an_incomplete_bulk_says_how_much_it_needs() -> None:
    value = b"v" * 100_000
    raw = b":1\r\n$100000\r\n" + value + b"\r\n"
    assert frame(raw[:20]) == ([4], len(raw) - 4, None)
    assert frame(raw) == ([4, len(raw)], 0, None)


@given(st.lists(values, min_size=1, max_size=4), st.integers(min_value=0, max_value=400))
def test_agrees_with_reply_end(replies: list[object], cut: int) -> None:
    stream = b"".join(encode_value(v) for v in replies)  # type: ignore[arg-type]
    data = stream[: min(cut, len(stream))] if cut else stream
    ends, _need, error = frame(data)
    assert (ends, error is not None) == reference(data)


@given(st.binary(min_size=1, max_size=60))
def test_garbage_is_reported_never_raised(data: bytes) -> None:
    ends, _need, error = frame(data)
    expected, garbage = reference(data)
    assert ends == expected
    assert (error is not None) == garbage


def test_fill_parts_fills_a_batch_in_its_order_and_stops_at_an_error() -> None:
    stream = b"+a\r\n:1\r\n$1\r\nb\r\n-MOVED 1 h:1\r\n+c\r\n"
    ends: list[int] = []
    assert frame_replies(stream, ends) == (0, None)
    raws = [b""] * 4
    # Parts in reverse order, the first already answered: replies go to 2, 1, 0.
    assert fill_parts(stream, ends, 0, 0, raws, [3, 2, 1, 0], 1) == 3
    assert raws == [b"$1\r\nb\r\n", b":1\r\n", b"+a\r\n", b""]
    # The next reply is an error: nothing taken, the caller redirects it.
    assert fill_parts(stream, ends, 3, ends[2], raws, [3], 0) == 0
    # A batch larger than what arrived takes what there is.
    raws = [b""] * 3
    assert fill_parts(stream, ends, 4, ends[3], raws, [0, 1, 2], 0) == 1
    assert raws == [b"+c\r\n", b"", b""]
