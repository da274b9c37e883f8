"""routing/pubsub.py: reply shapes, a client's subscription counts, introspection merges."""

from __future__ import annotations

import pytest

from routing.pubsub import (
    Subscriptions,
    as_push,
    encode_confirmation,
    encode_subscribed_pong,
    merge_channel_lists,
    merge_numsub,
    parse_push,
    subscribed_state_error,
)
from routing.resp import encode_bulk_array


@pytest.mark.parametrize(
    ("word", "name", "count", "resp3", "expected"),
    [
        (b"subscribe", b"ch", 1, False, b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
        (b"subscribe", b"ch", 1, True, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
        (b"unsubscribe", None, 0, False, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"),
        (b"punsubscribe", None, 0, True, b">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n"),
    ],
)
def test_confirmation_shapes(
    word: bytes, name: bytes | None, count: int, resp3: bool, expected: bytes
) -> None:
    assert encode_confirmation(word, name, count, resp3) == expected


def test_subscribed_pong_and_error() -> None:
    assert encode_subscribed_pong([b"ping"]) == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert encode_subscribed_pong([b"PING", b"x"]) == b"*2\r\n$4\r\npong\r\n$1\r\nx\r\n"
    assert subscribed_state_error(b"client|id") == (
        b"-ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
        b"QUIT / RESET are allowed in this context\r\n"
    )


def test_counts_follow_redis() -> None:
    subs = Subscriptions()
    assert subs.subscribe("channel", [b"a", b"a", b"b"]) == [
        (b"a", 1, True),
        (b"a", 1, False),
        (b"b", 2, True),
    ]
    # Patterns share the channels' count; shard channels have their own.
    assert subs.subscribe("pattern", [b"p*"]) == [(b"p*", 3, True)]
    assert subs.subscribe("shard", [b"s"]) == [(b"s", 1, True)]
    assert subs.unsubscribe("channel", [b"zz", b"a"]) == [(b"zz", 3, False), (b"a", 2, True)]
    assert subs.unsubscribe("channel", []) == [(b"b", 1, True)]
    assert subs.unsubscribe("channel", []) == [(None, 1, False)]
    assert subs.unsubscribe("pattern", []) == [(b"p*", 0, True)]
    assert subs.total() == 1


def test_message_frames() -> None:
    raw = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"
    assert parse_push(raw) == [b"message", b"c", b"hi"]
    assert parse_push(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:4\r\n") == [b"subscribe", b"c", b"4"]
    assert parse_push(b"+OK\r\n") is None
    assert as_push(raw) == b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n"


def test_merge_channel_lists_is_a_union() -> None:
    raws = [encode_bulk_array([b"a", b"b"]), b"*0\r\n", encode_bulk_array([b"b", b"c"])]
    assert merge_channel_lists(raws) == encode_bulk_array([b"a", b"b", b"c"])
    assert merge_channel_lists([b"*0\r\n", b"-ERR down\r\n"]) == b"-ERR down\r\n"


def test_merge_numsub_counts_local_clients_not_the_shared_subscription() -> None:
    node = b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n"
    other = b"*4\r\n$1\r\na\r\n:0\r\n$1\r\nb\r\n:1\r\n"
    merged = merge_numsub([node, other], [b"a", b"b"], {b"a": 1}, {b"a": 1000})
    assert merged == b"*4\r\n$1\r\na\r\n:1000\r\n$1\r\nb\r\n:3\r\n"
    assert merge_numsub([b"*0\r\n"], [], {}, {}) == b"*0\r\n"
