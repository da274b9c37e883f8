"""Request framing as Redis's networking.c does it, and reply boundaries."""

import itertools

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.resp import (
    ErrorReply,
    ReplyProtocolError,
    RequestLimits,
    RequestParser,
    array_elements,
    encode_error,
    encode_value,
    pack_command,
    parse_reply,
    parse_requests,
    reply_end,
    split_args,
    string2ll,
)

LIMITS = RequestLimits()

# (input, requests, consumed, error) — errors are Redis 7.0's texts (tests/unit/protocol.tcl).
REQUEST_CASES = [
    (b"*1\r\n$4\r\nPING\r\n", [[b"PING"]], 14, None),
    (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI", [[b"GET", b"k"]], 20, None),
    (b"PING\r\n", [[b"PING"]], 6, None),
    (b"PING\n", [[b"PING"]], 5, None),
    (b"set a 'b c'\r\n", [[b"set", b"a", b"b c"]], 13, None),
    (b"\r\n", [], 2, None),  # empty query: ignored
    (b"*-10\r\n*1\r\n$4\r\nPING\r\n", [[b"PING"]], 20, None),  # negative: empty request
    (b"*0\r\n", [], 4, None),
    (b"*3000000000\r\n", [], 0, "Protocol error: invalid multibulk length"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", [], 0, "Protocol error: expected '$', got 'f'"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", [], 0, "Protocol error: invalid bulk length"),
    (
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
        [],
        0,
        "Protocol error: invalid bulk length",
    ),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", [], 0, "Protocol error: invalid bulk length"),
    (b"*1\r\nfoo\r\n", [], 0, "Protocol error: expected '$', got 'f'"),
    (b"*1\r\n$03\r\nfoo\r\n", [], 0, "Protocol error: invalid bulk length"),  # no leading 0
    (b'set """test-key""" test-value\r\n', [], 0, "Protocol error: unbalanced quotes in request"),
    (b"*1\r\n$4\r\nPING\r\n*x\r\n", [[b"PING"]], 14, "Protocol error: invalid multibulk length"),
]


@pytest.mark.parametrize(("data", "requests", "consumed", "error"), REQUEST_CASES)
def test_parse_requests(
    data: bytes, requests: list[list[bytes]], consumed: int, error: str | None
) -> None:
    parsed = parse_requests(data, LIMITS)
    assert parsed.requests == requests
    assert parsed.consumed == consumed
    assert parsed.error == error


def test_inline_and_count_string_limits() -> None:
    limits = RequestLimits(max_inline_len=16)
    assert parse_requests(b"x" * 17, limits).error == "Protocol error: too big inline request"
    assert parse_requests(b"x" * 16, limits).error is None
    assert (
        parse_requests(b"*" + b"1" * 17, limits).error
        == "Protocol error: too big mbulk count string"
    )
    assert (
        parse_requests(b"*1\r\n$" + b"1" * 17, limits).error
        == "Protocol error: too big bulk count string"
    )


def test_configured_limits() -> None:
    limits = RequestLimits(proto_max_bulk_len=10, max_multibulk_len=2)
    assert parse_requests(b"*1\r\n$11\r\n", limits).error == "Protocol error: invalid bulk length"
    assert parse_requests(b"*3\r\n", limits).error == "Protocol error: invalid multibulk length"
    assert parse_requests(b"*2\r\n$10\r\n", limits).error is None


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"set a b", [b"set", b"a", b"b"]),
        (b"  set   a  ", [b"set", b"a"]),
        (b'set "a b" c', [b"set", b"a b", b"c"]),
        (b'set "\\x41\\n" c', [b"set", b"A\n", b"c"]),
        (b"set 'it\\'s'", [b"set", b"it's"]),
        (b'set ""', [b"set", b""]),
        (b'set "a"b', None),  # closing quote must be followed by a space
        (b'set "abc', None),
        (b"set 'abc", None),
        (b"", []),
    ],
)
def test_split_args(line: bytes, args: list[bytes] | None) -> None:
    assert split_args(line) == args


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"123", 123),
        (b"01", None),
        (b"+1", None),
        (b"", None),
        (b"-", None),
        (b"1 ", None),
        (b"9223372036854775807", 2**63 - 1),
        (b"9223372036854775808", None),
        (b"-0", None),
    ],
)
def test_string2ll(raw: bytes, value: int | None) -> None:
    assert string2ll(raw) == value


REPLIES = [
    b"+OK\r\n",
    b"-ERR x\r\n",
    b":12\r\n",
    b"$3\r\nfoo\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
    b"$4\r\na\r\nb\r\n",  # CRLF inside a bulk
    b"%1\r\n+a\r\n:1\r\n",  # RESP3 map
    b"~2\r\n,1.5\r\n#t\r\n",
    b">2\r\n+message\r\n$1\r\nx\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",  # attribute, then the reply
    b"=7\r\ntxt:abc\r\n",
    b"_\r\n",
    b"(123\r\n",
    b"!3\r\nbad\r\n",
]


@pytest.mark.parametrize("raw", REPLIES)
def test_reply_end_finds_each_boundary(raw: bytes) -> None:
    assert reply_end(raw) == len(raw)
    for cut in range(len(raw)):
        assert reply_end(raw[:cut]) == -1
    stream = raw + b"+NEXT\r\n"
    assert reply_end(stream) == len(raw)
    assert reply_end(stream, len(raw)) == len(stream)


@pytest.mark.parametrize("raw", [b"?what\r\n", b"$x\r\n", b"*z\r\n"])
def test_reply_end_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ReplyProtocolError):
        reply_end(raw)


def test_array_elements_keeps_raw_bytes() -> None:
    raw = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:5\r\n"
    assert array_elements(raw) == [b"$1\r\na\r\n", b"$-1\r\n", b"*1\r\n:5\r\n"]
    assert array_elements(b"*-1\r\n") is None
    assert array_elements(b"+OK\r\n") is None


def test_values_round_trip() -> None:
    value = [b"a", 1, None, [b"x", ErrorReply("ERR nested")]]
    assert parse_reply(encode_value(value)) == value
    assert encode_error("ERR a\r\nb") == b"-ERR a  b\r\n"
    assert ErrorReply("MOVED 1 a:1").code == "MOVED"


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_parse_requests_agrees_with_hiredis_packing(args: list[bytes]) -> None:
    raw = pack_command(args)
    parsed = parse_requests(raw * 2, LIMITS)
    assert parsed.requests == [args, args]
    assert parsed.consumed == 2 * len(raw)


@given(st.binary(max_size=200))
def test_parse_requests_is_total(data: bytes) -> None:
    parsed = parse_requests(data, RequestLimits(proto_max_bulk_len=1000, max_inline_len=100))
    assert 0 <= parsed.consumed <= len(data)


@given(st.binary(max_size=200))
def test_reply_end_never_raises_anything_else(data: bytes) -> None:
    try:
        end = reply_end(data)
    except ReplyProtocolError:
        return
    assert end == -1 or 0 < end <= len(data)
    if end > 0:
        reader = hiredis.Reader()
        reader.feed(data[:end])


@settings(max_examples=300)
@given(st.binary(max_size=120), st.lists(st.integers(min_value=0), max_size=6))
def test_request_parser_in_any_chunks_agrees_with_the_whole_parse(
    data: bytes, cuts: list[int]
) -> None:
    limits = RequestLimits(proto_max_bulk_len=1000, max_inline_len=100)
    parser = RequestParser(limits)
    got: list[list[bytes]] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        got += parser.feed(data[start:end])
        if parser.error:
            break
    whole = parse_requests(data, limits)
    assert (got, parser.error) == (whole.requests, whole.error)
    if whole.error is None:
        assert parser.idle == (whole.consumed == len(data))


@given(
    st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([b"x" * 4095, b"y" * 4096])),
        min_size=1,
        max_size=4,
    )
)
def test_pack_command_matches_hiredis(args: list[bytes]) -> None:
    # The 2- and 3-argument shortcut (precomputed headers up to 4095 bytes) and the rest.
    assert pack_command(args) == hiredis.pack_command(tuple(args))
