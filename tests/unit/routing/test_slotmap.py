import pytest

from routing.redirect import Redirect, is_retryable, parse_redirect
from routing.slotmap import Shard, SlotMap, format_addr, parse_addr

SLOTS_REPLY = [
    [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
    [5461, 10922, [b"", 7001, b"id2"]],  # empty host: the address we asked
    [10923, 16383, [b"10.0.0.3", 7002, b"id3", []]],
]


def test_from_cluster_slots() -> None:
    slotmap = SlotMap.from_cluster_slots(SLOTS_REPLY, "seed")
    assert slotmap is not None
    assert slotmap.node_for_slot(0) == "10.0.0.1:7000"
    assert slotmap.node_for_slot(5461) == "seed:7001"
    assert slotmap.node_for_slot(16383) == "10.0.0.3:7002"
    assert slotmap.covered() == 16384
    assert slotmap.shards[0] == Shard("10.0.0.1:7000", ("10.0.0.4:7003",), ((0, 5460),))
    assert slotmap.nodes[-1] == "10.0.0.4:7003"


def test_uncovered_slots_and_remap() -> None:
    slotmap = SlotMap.from_cluster_slots(SLOTS_REPLY[:1], "seed", remap=lambda a: "nat-" + a)
    assert slotmap is not None
    assert slotmap.node_for_slot(5461) is None
    assert slotmap.covered() == 5461
    assert slotmap.primaries == ("nat-10.0.0.1:7000",)


@pytest.mark.parametrize(
    "reply", [None, [[1]], [[0, 99999, [b"h", 1]]], [[5, 1, [b"h", 1]]], [["x", 1, [b"h", 1]]]]
)
def test_malformed_replies_give_none(reply: object) -> None:
    assert SlotMap.from_cluster_slots(reply, "seed") is None


def test_from_cluster_shards() -> None:
    reply = [
        [
            b"slots",
            [0, 16383],
            b"nodes",
            [
                [
                    b"id",
                    b"a",
                    b"port",
                    7000,
                    b"ip",
                    b"10.0.0.1",
                    b"endpoint",
                    b"10.0.0.1",
                    b"role",
                    b"master",
                    b"health",
                    b"online",
                ],
                [
                    b"id",
                    b"b",
                    b"port",
                    7001,
                    b"ip",
                    b"10.0.0.2",
                    b"endpoint",
                    b"10.0.0.2",
                    b"role",
                    b"replica",
                    b"health",
                    b"online",
                ],
            ],
        ],
    ]
    slotmap = SlotMap.from_cluster_shards(reply, "seed")
    assert slotmap is not None
    assert slotmap.node_for_slot(100) == "10.0.0.1:7000"
    assert slotmap.shards[0].replicas == ("10.0.0.2:7001",)


def test_with_moved_returns_a_new_map() -> None:
    slotmap = SlotMap.single("a:1")
    moved = slotmap.with_moved(42, "b:2")
    assert slotmap.node_for_slot(42) == "a:1"
    assert moved.node_for_slot(42) == "b:2"
    assert moved.node_for_slot(43) == "a:1"
    assert "b:2" in moved.primaries
    assert moved.with_moved(42, "b:2") is moved


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"-MOVED 3999 127.0.0.1:6381\r\n", Redirect("moved", 3999, "127.0.0.1:6381")),
        (b"-ASK 1 10.0.0.2:7000\r\n", Redirect("ask", 1, "10.0.0.2:7000")),
        (b"-MOVED 3999 :6381\r\n", Redirect("moved", 3999, "replier:6381")),
        (b"-MOVED 3999 [::1]:6381\r\n", Redirect("moved", 3999, "[::1]:6381")),
        (b"-MOVED x 1.2.3.4:5\r\n", None),
        (b"-MOVED 99999 1.2.3.4:5\r\n", None),
        (b"-ERR MOVED\r\n", None),
        (b"+OK\r\n", None),
    ],
)
def test_parse_redirect(raw: bytes, expected: Redirect | None) -> None:
    assert parse_redirect(raw, "replier") == expected


def test_retryable_errors() -> None:
    assert is_retryable(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n")
    assert is_retryable(b"-CLUSTERDOWN The cluster is down\r\n")
    assert is_retryable(b"-LOADING Redis is loading the dataset in memory\r\n")
    assert not is_retryable(b"-ERR no\r\n")


def test_addresses() -> None:
    assert format_addr("::1", 6379) == "[::1]:6379"
    assert parse_addr("[::1]:6379") == ("::1", 6379)
    assert parse_addr("h:1") == ("h", 1)
    with pytest.raises(ValueError):
        parse_addr("nope")
