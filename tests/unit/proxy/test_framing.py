"""RequestReader: the scan and hiredis fast paths + Redis's rules, whatever the chunking."""

import itertools
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import framing
from proxy.framing import RequestReader
from routing.resp import RequestLimits, pack_command, parse_requests, scan_requests

LIMITS = RequestLimits(proto_max_bulk_len=10_000, max_inline_len=1000)


@pytest.fixture(autouse=True, scope="module", params=[True, False], ids=["scan", "hiredis"])
def read_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test runs with scan_requests first (the compiled build's way) and without it
    (the pure build's): the outcome must not depend on which path reads."""
    saved = framing._SCAN
    framing._SCAN = request.param
    yield
    framing._SCAN = saved


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


plain_or_odd = st.lists(
    st.one_of(
        st.lists(st.binary(max_size=12), min_size=1, max_size=4).map(pack_command),
        st.sampled_from(
            [
                b"*0\r\n",
                b"*-1\r\n",
                b"*01\r\n$1\r\na\r\n",
                b"*1\r\n$01\r\na\r\n",
                b"*1\r\n$+1\r\na\r\n",
                b"*1\r\n$1\r\nab\r\n",
                b"*1\r\n:1\r\n",
                b"*2\r\n$1\r\na\r\n",  # a count that the elements do not fill
                b"*1\r\n$20000\r\n",  # past LIMITS.proto_max_bulk_len
                b"*1\r\n$3\r\nabc\r\n",
                b"PING\r\n",
                b"*123456\r\n",
            ]
        ),
    ),
    min_size=1,
    max_size=8,
).map(b"".join)


@settings(max_examples=300)
@given(plain_or_odd, st.lists(st.integers(min_value=0), max_size=6))
def test_the_scan_and_the_exact_path_give_what_redis_would(data: bytes, cuts: list[int]) -> None:
    """Plain requests (taken by scan_requests) mixed with odd framing (left to hiredis and
    Redis's parser), in any chunks: the requests and the error of Redis's parser."""
    got, error = feed_in_chunks(data, cuts)
    whole = parse_requests(data, LIMITS)
    assert error == whole.error
    assert got == whole.requests


def test_scan_requests_takes_whole_plain_requests_only() -> None:
    plain = pack_command([b"SET", b"k", b"v" * 100]) + pack_command([b"GET", b"k"])
    out: list[list[bytes]] = []
    assert scan_requests(plain, out, 512, 10) == len(plain)
    assert out == [[b"SET", b"k", b"v" * 100], [b"GET", b"k"]]
    # It stops at the start of the first request it does not take, whatever the reason.
    for rest in (b"*1\r\n$1\r\n", b"*01\r\n$1\r\na\r\n", b"PING\r\n", b"*11\r\n"):
        out = []
        assert scan_requests(plain + rest, out, 512, 10) == len(plain), rest
        assert len(out) == 2
    out = []
    assert scan_requests(pack_command([b"SET", b"k", b"v" * 513]), out, 512, 10) == 0
    assert out == []


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


def _peak_bytes(feed: list[bytes]) -> tuple[list[list[bytes]], str | None, int]:
    tracemalloc.start()
    try:
        reader = RequestReader(LIMITS)
        out: list[list[bytes]] = []
        for chunk in feed:
            out += reader.feed(chunk)
        return out, reader.error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_count_never_reaches_hiredis() -> None:
    """hiredis would allocate the whole list up front (8 GB for this header)."""
    elements = [b"$1\r\na\r\n" * 50] * 20
    out, error, peak = _peak_bytes([b"*1000000000\r\n", *elements])
    assert (out, error) == ([], None)
    assert peak < 2_000_000


def test_large_count_after_a_partial_request_never_reaches_hiredis() -> None:
    big = b"*100000\r\n" + b"$1\r\na\r\n" * 100_000
    out, error, peak = _peak_bytes(
        [b"*3\r\n$3\r\nSET\r\n$1\r\nk", b"\r\n$1\r\nv\r\n" + big[:50], big[50:], b"PING\r\n"]
    )
    assert error is None
    assert out == [[b"SET", b"k", b"v"], [b"a"] * 100_000, [b"PING"]]
    assert peak < 30_000_000


def test_nested_large_array_is_a_protocol_error_without_the_allocation() -> None:
    out, error, peak = _peak_bytes([b"*2\r\n$3\r\nGET\r\n", b"*1000000000\r\n"])
    assert (out, error) == ([], "Protocol error: expected '$', got '*'")
    assert peak < 2_000_000


@pytest.mark.parametrize(
    "feed",
    [
        [b"*2\r\n$3\r\nGET\r\n*10", b"00000000\r\n"],  # a nested count split over reads
        [b"*10", b"00000000\r\n", b"$1\r\na\r\n"],  # a first header split over reads
        [b"*2\r\n$3\r\nGET\r\n*1", b"0", b"00000000\r\n"],
    ],
)
def test_large_count_split_over_reads_never_reaches_hiredis(feed: list[bytes]) -> None:
    out, error, peak = _peak_bytes(feed)
    assert out == []
    assert error in (None, "Protocol error: expected '$', got '*'")
    assert peak < 2_000_000


def test_large_count_after_a_long_request_in_the_same_read_never_reaches_hiredis() -> None:
    """A request longer than the exact-check window, finished in the same read as a huge
    count: the count must still not reach hiredis (800 MB for this header, before)."""
    value = b"x" * 10_000
    request = pack_command([b"SET", b"k", value])
    out, error, peak = _peak_bytes([request[:5000], request[5000:] + b"*100000000\r\n"])
    assert (out, error) == ([[b"SET", b"k", value]], None)
    assert peak < 2_000_000
    big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9000\r\n"
    out, error, peak = _peak_bytes([big, b"y" * 4500, b"y" * 4500 + b"\r\n*2000000000\r\n"])
    assert (out, error) == ([[b"SET", b"k", b"y" * 9000]], None)
    assert peak < 2_000_000


def test_a_trickled_large_request_completes() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"*200000\r\n") == []
    for _ in range(199_999):
        assert reader.feed(b"$1\r\nx\r\n") == []
    assert reader.feed(b"$1\r\nx\r\n" + pack_command([b"PING"])) == [[b"x"] * 200_000, [b"PING"]]
    assert reader.feed(pack_command([b"GET", b"k"])) == [[b"GET", b"k"]]
