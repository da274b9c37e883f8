"""The upstream's inline reply scanner agrees with routing.resp.reply_end everywhere."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.upstream import _reply_end
from routing.resp import ReplyProtocolError, encode_value, reply_end

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
]


@pytest.mark.parametrize("raw", SAMPLES)
def test_samples_and_every_truncation(raw: bytes) -> None:
    stream = raw + b"+NEXT\r\n"
    assert _reply_end(stream, 0, len(stream)) == len(raw)
    for cut in range(1, len(raw)):
        assert _reply_end(raw[:cut], 0, cut) == -1


@given(st.lists(values, min_size=1, max_size=4), st.integers(min_value=0, max_value=400))
def test_agrees_with_reply_end(replies: list[object], cut: int) -> None:
    stream = b"".join(encode_value(v) for v in replies)  # type: ignore[arg-type]
    data = stream[: min(cut, len(stream))] if cut else stream
    if not data:
        return
    assert _reply_end(data, 0, len(data)) == reply_end(data, 0)


@given(st.binary(min_size=1, max_size=60))
def test_garbage_raises_only_protocol_errors(data: bytes) -> None:
    try:
        end = _reply_end(data, 0, len(data))
    except (ReplyProtocolError, ValueError):
        return
    assert end == -1 or 0 < end <= len(data)
