"""Sentinel replies as values: the majority vote over the sentinels' answers, and parsers.

proxy/sentinel.py asks every sentinel SENTINEL GET-MASTER-ADDR-BY-NAME and ROLE of the
winner; this module only decides. Pure: no I/O, no clocks (STYLE.md); addresses are
"host:port" strings after upstream.address_map, which the caller applies (`remap`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from routing.slotmap import format_addr

# What one sentinel said about the master: an address, "unknown" (a nil reply: it monitors no
# master of that name) or None (it did not answer, or answered an error).
Answer = str | Literal["unknown"] | None
UNKNOWN: Final = "unknown"

# Sentinel pub/sub events (sentinel.c sentinelEvent) that start a failover of a master, and
# those that end one. The payload's master name says which group they are about.
FAILOVER_START: Final = frozenset((b"+try-failover", b"+elected-leader"))
FAILOVER_ABORT: Final = frozenset(
    (
        b"-failover-abort-not-elected",
        b"-failover-abort-no-good-slave",
        b"-failover-abort-slave-timeout",
        b"-failover-abort-master-timeout",
    )
)
EVENTS: Final = (
    b"+switch-master",
    b"+failover-state-wait-promotion",
    b"+promoted-slave",
    b"-monitor",
    b"+monitor",
    *sorted(FAILOVER_START),
    *sorted(FAILOVER_ABORT),
)


@dataclass(frozen=True, slots=True)
class Vote:
    """The outcome of asking the sentinels: `primary` when a majority of those that answered
    named it; else `why` says what went wrong, for the clients' error and the logs."""

    primary: str | None
    answered: int
    why: str | None = None


def vote_primary(answers: Sequence[Answer]) -> Vote:
    """The address named by more than half of the sentinels that answered.

    Sentinels that did not answer do not count: one reachable sentinel is enough when the
    others are down, but a minority answer (a lying or stale sentinel) never wins.
    """
    given = [a for a in answers if a is not None]
    if not given:
        return Vote(None, 0, "no sentinel answered")
    counts: dict[str, int] = {}
    for answer in given:
        counts[answer] = counts.get(answer, 0) + 1
    best, votes = max(counts.items(), key=lambda item: item[1])
    if votes * 2 <= len(given):
        detail = ", ".join(f"{addr} ({n})" for addr, n in sorted(counts.items()))
        return Vote(None, len(given), f"the sentinels disagree: {detail}")
    if best == UNKNOWN:
        return Vote(None, len(given), "the sentinels know no master of that name")
    return Vote(best, len(given))


def parse_master_addr(reply: object, remap: Callable[[str], str]) -> Answer:
    """SENTINEL GET-MASTER-ADDR-BY-NAME: [ip, port] -> "ip:port"; nil -> UNKNOWN."""
    if reply is None:
        return UNKNOWN
    if not isinstance(reply, list) or len(reply) != 2:
        return None
    host, port = reply
    if not isinstance(host, bytes) or not isinstance(port, bytes) or not port.isdigit():
        return None
    return remap(format_addr(host.decode("ascii", "replace"), int(port)))


def parse_role_is_master(reply: object) -> bool:
    """ROLE (replication.c roleCommand): True when the first element is "master"."""
    return isinstance(reply, list) and bool(reply) and reply[0] == b"master"


def parse_replicas(reply: object, remap: Callable[[str], str]) -> tuple[str, ...]:
    """SENTINEL REPLICAS: the addresses of replicas that are up and linked to the master."""
    if not isinstance(reply, list):
        return ()
    out: list[str] = []
    for entry in reply:
        if not isinstance(entry, list):
            continue
        fields = dict(zip(entry[::2], entry[1::2], strict=False))
        host, port = fields.get(b"ip"), fields.get(b"port")
        flags = fields.get(b"flags", b"")
        if not isinstance(host, bytes) or not isinstance(port, bytes) or not port.isdigit():
            continue
        bad = {b"s_down", b"o_down", b"disconnected"}
        if not isinstance(flags, bytes) or bad & set(flags.split(b",")):
            continue
        if fields.get(b"master-link-status", b"ok") != b"ok":
            continue
        out.append(remap(format_addr(host.decode("ascii", "replace"), int(port))))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class Event:
    """One sentinel event about a master: `kind` is the channel; `addr` the instance the
    event names (the new master for +switch-master, the replica for +selected-slave)."""

    kind: bytes
    master_name: bytes
    addr: str | None
    master_addr: str | None


def parse_event(channel: bytes, payload: bytes, remap: Callable[[str], str]) -> Event | None:
    """A sentinel event message (sentinel.c sentinelEvent's "%@" format), or None.

    +switch-master: "<name> <old-ip> <old-port> <new-ip> <new-port>". Others:
    "<type> <name> <ip> <port>" for a master, or "... @ <master> <ip> <port>" for another
    instance. Both addresses go through `remap` (upstream.address_map).
    """
    words = payload.split()
    if channel == b"+switch-master":
        if len(words) != 5 or not (words[2].isdigit() and words[4].isdigit()):
            return None
        old = _addr(words[1], words[2], remap)
        return Event(channel, words[0], _addr(words[3], words[4], remap), old)
    if len(words) < 4 or not words[3].isdigit():
        return None
    addr = _addr(words[2], words[3], remap)
    if len(words) == 8 and words[4] == b"@" and words[7].isdigit():
        return Event(channel, words[5], addr, _addr(words[6], words[7], remap))
    if words[0] != b"master":
        return None
    return Event(channel, words[1], addr, addr)


def _addr(host: bytes, port: bytes, remap: Callable[[str], str]) -> str:
    return remap(format_addr(host.decode("ascii", "replace"), int(port)))
