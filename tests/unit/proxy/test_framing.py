"""RequestReader: hiredis fast path + Redis's rules, whatever the chunking."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.framing import RequestReader
from routing.resp import RequestLimits, pack_command, parse_requests

LIMITS = RequestLimits(proto_max_bulk_len=10_000, max_inline_len=1000)


def feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[list[list[bytes]], str | None]:
    reader = RequestReader(LIMITS)
    out: list[list[bytes]] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        out += reader.feed(data[start:end])
        if reader.error:
            break
    return out, reader.error


requests_st = st.lists(st.lists(st.binary(max_size=30), min_size=1, max_size=5), max_size=8)


@given(requests_st, st.lists(st.integers(min_value=0), max_size=10))
def test_valid_streams_parse_the_same_in_any_chunks(
    requests: list[list[bytes]], cuts: list[int]
) -> None:
    data = b"".join(pack_command(r) for r in requests)
    assert feed_in_chunks(data, cuts) == (requests, None)


@settings(max_examples=300)
@given(st.binary(max_size=120), st.lists(st.integers(min_value=0), max_size=6))
def test_any_bytes_give_what_redis_would(data: bytes, cuts: list[int]) -> None:
    """Same requests and error as Redis's parser on the whole input, never an exception."""
    got, error = feed_in_chunks(data, cuts)
    whole = parse_requests(data, LIMITS)
    if error is not None or whole.error is not None:
        assert error == whole.error
        assert got == whole.requests
    else:
        assert got == whole.requests


def test_inline_then_resp_then_inline() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"PING\r\n") == [[b"PING"]]
    assert reader.feed(pack_command([b"GET", b"k"])) == [[b"GET", b"k"]]
    assert reader.feed(b"set a 'b c'\r\n") == [[b"set", b"a", b"b c"]]


def test_huge_bulk_length_is_refused_before_the_data() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"*2\r\n$3\r\nSET\r\n$2000000000\r\n") == []
    assert reader.error == "Protocol error: invalid bulk length"


def test_huge_array_header_is_refused() -> None:
    reader = RequestReader(LIMITS)
    reader.feed(b"*3000000000\r\n")
    assert reader.error == "Protocol error: invalid multibulk length"


def test_negative_multibulk_is_an_empty_request() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"*-10\r\n") == []
    assert reader.error is None
    assert reader.feed(pack_command([b"PING"])) == [[b"PING"]]


def test_non_bulk_elements_are_refused_like_redis() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"*2\r\n:1\r\n+OK\r\n") == []
    assert reader.error == "Protocol error: expected '$', got ':'"
