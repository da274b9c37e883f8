"""routing/sentinel.py: the majority vote over sentinel answers, and the reply parsers."""

from __future__ import annotations

import pytest

from routing.sentinel import (
    UNKNOWN,
    Answer,
    Event,
    parse_event,
    parse_master_addr,
    parse_replicas,
    parse_role_is_master,
    vote_primary,
)

A, B = "10.0.0.1:6379", "10.0.0.2:6379"


def same(addr: str) -> str:
    return addr


VOTES: list[tuple[list[Answer], str | None, str | None]] = [
    ([A, A, A], A, None),
    ([A, A, B], A, None),  # one lying sentinel: a minority answer is ignored
    ([A, None, None], A, None),  # only one answers: it is the majority of those that answer
    ([A, B, None], None, "the sentinels disagree: 10.0.0.1:6379 (1), 10.0.0.2:6379 (1)"),
    ([A, A, B, B], None, "the sentinels disagree: 10.0.0.1:6379 (2), 10.0.0.2:6379 (2)"),
    ([None, None, None], None, "no sentinel answered"),
    ([], None, "no sentinel answered"),
    ([UNKNOWN, UNKNOWN, A], None, "the sentinels know no master of that name"),
    ([UNKNOWN, A, A], A, None),
]


@pytest.mark.parametrize(("answers", "primary", "why"), VOTES)
def test_vote_primary(answers: list[Answer], primary: str | None, why: str | None) -> None:
    vote = vote_primary(answers)
    assert (vote.primary, vote.why) == (primary, why)
    assert vote.answered == sum(a is not None for a in answers)


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ([b"10.0.0.1", b"6379"], A),
        (None, UNKNOWN),
        ([b"10.0.0.1"], None),
        ([b"10.0.0.1", b"port"], None),
        (b"garbage", None),
    ],
)
def test_parse_master_addr(reply: object, answer: Answer) -> None:
    assert parse_master_addr(reply, same) == answer


def test_parse_master_addr_applies_the_address_map() -> None:
    remap = {A: "127.0.0.1:30001"}.get
    assert parse_master_addr([b"10.0.0.1", b"6379"], lambda a: remap(a) or a) == "127.0.0.1:30001"


@pytest.mark.parametrize(
    ("reply", "master"),
    [
        ([b"master", 10, []], True),
        ([b"slave", b"10.0.0.1", 6379, b"connected", 10], False),
        ([b"sentinel", [b"mymaster"]], False),
        (None, False),
        ([], False),
    ],
)
def test_parse_role(reply: object, master: bool) -> None:
    assert parse_role_is_master(reply) is master


def replica(ip: bytes, port: bytes, flags: bytes = b"slave", link: bytes = b"ok") -> list[bytes]:
    return [b"name", ip + b":" + port, b"ip", ip, b"port", port, b"flags", flags,
            b"master-link-status", link]  # fmt: skip


def test_parse_replicas_keeps_only_healthy_ones() -> None:
    reply = [
        replica(b"10.0.0.3", b"6379"),
        replica(b"10.0.0.2", b"6379"),
        replica(b"10.0.0.4", b"6379", flags=b"s_down,slave"),
        replica(b"10.0.0.5", b"6379", flags=b"slave,disconnected"),
        replica(b"10.0.0.6", b"6379", link=b"err"),
        [b"ip"],
    ]
    assert parse_replicas(reply, same) == (B, "10.0.0.3:6379")
    assert parse_replicas(b"nonsense", same) == ()


EVENTS: list[tuple[bytes, bytes, Event | None]] = [
    (
        b"+switch-master",
        b"mymaster 10.0.0.1 6379 10.0.0.2 6379",
        Event(b"+switch-master", b"mymaster", B, A),
    ),
    (
        b"+try-failover",
        b"master mymaster 10.0.0.1 6379",
        Event(b"+try-failover", b"mymaster", A, A),
    ),
    (
        b"+promoted-slave",
        b"slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379",
        Event(b"+promoted-slave", b"mymaster", B, A),
    ),
    (b"+switch-master", b"mymaster 10.0.0.1 6379", None),
    (b"+try-failover", b"sentinel 1a2b 10.0.0.9 26379", None),
    (b"+try-failover", b"", None),
]


@pytest.mark.parametrize(("channel", "payload", "event"), EVENTS)
def test_parse_event(channel: bytes, payload: bytes, event: Event | None) -> None:
    assert parse_event(channel, payload, same) == event
