"""Every fan-out merge kind (response_policy tips) on raw RESP2 and RESP3 replies."""

import pytest

from routing.fanout import FanoutMerge
from routing.merge import merge_fanout
from routing.resp import encode_array, encode_bulk, encode_int, parse_reply

OK = b"+OK\r\n"
ERR = b"-ERR upstream 10.0.0.1:7000 connection lost\r\n"
NOTBUSY = b"-NOTBUSY No scripts in execution right now.\r\n"
UNEXPECTED = b"-ERR upstream returned an unexpected reply to a fan-out command\r\n"


def ints(*values: int) -> bytes:
    return encode_array([encode_int(v) for v in values])


def bulks(*values: bytes) -> bytes:
    return encode_array([encode_bulk(v) for v in values])


@pytest.mark.parametrize(
    ("kind", "raws", "expected"),
    [
        ("agg_sum", [b":3\r\n", b":0\r\n", b":4\r\n"], b":7\r\n"),
        ("agg_min", [b":3\r\n", b":1\r\n", b":4\r\n"], b":1\r\n"),
        ("agg_max", [b":3\r\n", b":1\r\n", b":4\r\n"], b":4\r\n"),
        ("agg_logical_and", [b":1\r\n", b":0\r\n"], b":0\r\n"),
        ("agg_logical_and", [b":1\r\n", b":1\r\n"], b":1\r\n"),
        ("agg_logical_or", [b":0\r\n", b":1\r\n"], b":1\r\n"),
        ("agg_logical_or", [b":0\r\n", b":0\r\n"], b":0\r\n"),
        # elementwise over arrays of integers: SCRIPT EXISTS
        ("agg_logical_and", [ints(1, 1, 0), ints(1, 0, 0)], ints(1, 0, 0)),
        ("agg_logical_or", [ints(1, 0, 0), ints(0, 0, 1)], ints(1, 0, 1)),
        ("agg_sum", [ints(1, 2), ints(3, 4)], ints(4, 6)),
        ("agg_sum", [ints(1, 2), ints(3)], UNEXPECTED),
        ("agg_sum", [b":1\r\n", encode_bulk(b"x")], UNEXPECTED),
        ("all_succeeded", [OK, OK, OK], OK),
        ("all_succeeded", [OK, ERR, NOTBUSY], ERR),
        ("agg_sum", [b":3\r\n", ERR], ERR),
        ("one_succeeded", [NOTBUSY, OK, NOTBUSY], OK),
        ("one_succeeded", [NOTBUSY, NOTBUSY], NOTBUSY),
        ("one_succeeded", [ERR, NOTBUSY], ERR),
        ("random_key", [b"$-1\r\n", encode_bulk(b"k"), encode_bulk(b"j")], encode_bulk(b"k")),
        ("random_key", [b"_\r\n", b"_\r\n"], b"_\r\n"),  # RESP3 null
        ("random_key", [b"$-1\r\n", b"$-1\r\n"], b"$-1\r\n"),
        ("random_key", [ERR, encode_bulk(b"k")], encode_bulk(b"k")),
        ("random_key", [b"$-1\r\n", ERR], ERR),  # cannot say the keyspace is empty
        ("concat", [bulks(b"a"), b"*0\r\n"], bulks(b"a")),
        ("concat", [bulks(b"a", b"b"), bulks(b"a")], bulks(b"a", b"b")),  # each key once
        ("concat", [b"*0\r\n", ERR], ERR),
        ("concat", [b":1\r\n"], UNEXPECTED),
    ],
)
def test_merge_kinds(kind: FanoutMerge, raws: list[bytes], expected: bytes) -> None:
    assert merge_fanout(kind, raws) == expected


def slowlog_entry(entry_id: int, stamp: int, command: bytes) -> bytes:
    return encode_array(
        [
            encode_int(entry_id),
            encode_int(stamp),
            encode_int(10),
            encode_array([encode_bulk(command)]),
            encode_bulk(b"127.0.0.1:1"),
            encode_bulk(b""),
        ]
    )


def test_slowlog_newest_first_and_count() -> None:
    node_a = encode_array([slowlog_entry(1, 300, b"A1"), slowlog_entry(0, 100, b"A0")])
    node_b = encode_array([slowlog_entry(5, 200, b"B5")])
    merged = parse_reply(merge_fanout("slowlog", [node_a, node_b], count=2))
    assert isinstance(merged, list)
    assert [entry[3][0] for entry in merged] == [b"A1", b"B5"]  # type: ignore[index]
    everything = parse_reply(merge_fanout("slowlog", [node_a, node_b], count=-1))
    assert isinstance(everything, list) and len(everything) == 3
    assert merge_fanout("slowlog", [node_a, b"-ERR count\r\n"], count=1) == b"-ERR count\r\n"
    assert merge_fanout("slowlog", [b"*0\r\n", b"*0\r\n"], count=10) == b"*0\r\n"
