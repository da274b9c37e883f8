"""routing/tracking.py: CLIENT TRACKING's options, state, table and wire shapes.

Expected bytes are redis-server 7.0.15's own (captured by hand from a throwaway server;
tests/integration/test_cluster_tracking.py compares them live).
"""

from __future__ import annotations

import shlex
from typing import Final

import pytest

from routing import replies
from routing.client import ClientState
from routing.resp import ErrorReply
from routing.tracking import (
    TrackingRequest,
    TrackingState,
    TrackingTable,
    encode_keys,
    group_by_prefix,
    invalidation,
    is_tracking_command,
    parse_caching,
    parse_invalidation,
    parse_tracking,
    prefix_collision,
    read_keys,
    redirect_broken,
    trackinginfo_reply,
    written_keys,
)
from tests.unit.routing.test_commands import TABLE

EXISTING: Final = {7, 9}


def parse(line: str, state: TrackingState | None = None) -> TrackingRequest | ErrorReply:
    args = tuple(word.encode() for word in shlex.split("CLIENT TRACKING " + line))
    return parse_tracking(args, state or TrackingState(), EXISTING.__contains__)


def enabled(line: str) -> TrackingState:
    state = TrackingState()
    request = parse(line)
    assert isinstance(request, TrackingRequest)
    state.enable(request)
    return state


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("maybe", replies.SYNTAX),
        ("on foo", replies.SYNTAX),
        ("on redirect", replies.SYNTAX),  # REDIRECT without a value
        ("on redirect abc", replies.NOT_INTEGER),
        ("on redirect 5", replies.TRACKING_NO_REDIRECT_CLIENT),
        ("on redirect 5 foo", replies.TRACKING_NO_REDIRECT_CLIENT),  # in option order
        ("on foo redirect 5", replies.SYNTAX),
        ("on redirect 7 redirect 9", replies.TRACKING_ONE_REDIRECT),
        ("maybe redirect 5", replies.TRACKING_NO_REDIRECT_CLIENT),  # options come first
        ("on prefix a", replies.TRACKING_PREFIX_NEEDS_BCAST),
        ("on bcast optin", replies.TRACKING_BCAST_OPTIN),
        ("on bcast optout", replies.TRACKING_BCAST_OPTIN),
        ("on optin optout", replies.TRACKING_OPTIN_OPTOUT),
        ("on bcast prefix ab prefix a", replies.prefix_overlap(b"ab", b"a", existing=False)),
        ("on bcast prefix a prefix a", replies.prefix_overlap(b"a", b"a", existing=False)),
    ],
)
def test_parse_errors(line: str, error: ErrorReply) -> None:
    assert parse(line) == error


def test_parse_options() -> None:
    assert parse("OFF bcast") == TrackingRequest(False)
    assert parse("on redirect 7 bcast noloop prefix a prefix b") == TrackingRequest(
        True, 7, bcast=True, noloop=True, prefixes=(b"a", b"b")
    )
    assert parse("On OPTOUT") == TrackingRequest(True, optout=True)


@pytest.mark.parametrize(
    ("first", "then", "error"),
    [
        ("on", "on bcast", replies.TRACKING_SWITCH_BCAST),
        ("on bcast", "on", replies.TRACKING_SWITCH_BCAST),
        ("on optin", "on optout", replies.TRACKING_SWITCH_OPTIN),
        ("on optout", "on optin", replies.TRACKING_SWITCH_OPTIN),
        ("on bcast prefix b", "on bcast prefix bc", replies.prefix_overlap(b"bc", b"b", True)),
        ("on bcast", "on bcast prefix x", replies.prefix_overlap(b"x", b"", True)),
    ],
)
def test_checks_against_the_current_state(first: str, then: str, error: ErrorReply) -> None:
    assert parse(then, enabled(first)) == error


def test_enable_replaces_flags_and_adds_prefixes() -> None:
    state = enabled("on bcast prefix b prefix a noloop redirect 7")
    assert (state.prefixes, state.noloop, state.redirect) == ([b"a", b"b"], True, 7)
    request = parse("on bcast", state)
    assert isinstance(request, TrackingRequest)
    state.enable(request)  # no PREFIX: the empty one joins, with no collision check
    assert (state.prefixes, state.noloop, state.redirect) == ([b"", b"a", b"b"], False, 0)
    assert state.flags() == b"tB"
    state.disable()
    assert (state.prefixes, state.on, state.redir(), state.flags()) == ([], False, -1, b"")


def test_prefix_collision_is_either_way() -> None:
    assert prefix_collision([b"abc"], [b"ab"]) == replies.prefix_overlap(b"ab", b"abc", True)
    assert prefix_collision([b"a"], [b"b", b"c"]) is None


def test_trackinginfo_shapes() -> None:
    state = TrackingState()
    assert trackinginfo_reply(state, True) == (
        b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
    )
    state = enabled("on bcast prefix b prefix a")
    assert trackinginfo_reply(state, True) == (
        b"%3\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n"
        b"$8\r\nprefixes\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    )
    state = enabled("on redirect 7 noloop")
    state.broken_redirect = True
    assert trackinginfo_reply(state, False) == (
        b"*6\r\n$5\r\nflags\r\n*3\r\n$2\r\non\r\n$6\r\nnoloop\r\n$15\r\nbroken_redirect\r\n"
        b"$8\r\nredirect\r\n:7\r\n$8\r\nprefixes\r\n*0\r\n"
    )


def test_caching_lasts_one_command() -> None:
    state = TrackingState()
    assert parse_caching(state, b"yes") == replies.CACHING_NOT_TRACKING.encode()
    state = enabled("on")
    assert parse_caching(state, b"yes") == replies.CACHING_YES_NOT_OPTIN.encode()
    state = enabled("on optin")
    assert state.tracks_reads() is False
    assert parse_caching(state, b"no") == replies.CACHING_NO_NOT_OPTOUT.encode()
    assert parse_caching(state, b"maybe") == replies.SYNTAX.encode()
    assert parse_caching(state, b"YES") == b"+OK\r\n"
    state.after_command(b"client", False)  # CLIENT TRACKINGINFO keeps it
    assert b"caching-yes" in trackinginfo_reply(state, True)
    state.after_command(b"get", True)  # inside MULTI too
    assert state.tracks_reads() is True
    state.after_command(b"get", False)
    assert state.tracks_reads() is False
    state = enabled("on optout")
    assert parse_caching(state, b"yes") == replies.CACHING_YES_NOT_OPTIN.encode()
    assert state.tracks_reads() is True
    assert parse_caching(state, b"no") == b"+OK\r\n"
    assert state.tracks_reads() is False
    assert b"caching-no" in trackinginfo_reply(state, False)
    assert enabled("on bcast").tracks_reads() is False  # broadcast: no table


def test_invalidation_shapes() -> None:
    keys = encode_keys([b"k1"], True)
    assert invalidation(keys, True) == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nk1\r\n"
    assert invalidation(keys, False) == (
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nk1\r\n"
    )
    assert invalidation(encode_keys(None, True), True) == b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    assert invalidation(encode_keys(None, False), False).endswith(b"invalidate\r\n$-1\r\n")
    assert redirect_broken(10) == b">2\r\n$21\r\ntracking-redir-broken\r\n:10\r\n"


def test_parse_invalidation() -> None:
    assert parse_invalidation([b"invalidate", [b"a", b"b"]]) == [b"a", b"b"]
    assert parse_invalidation([b"invalidate", None]) is None
    assert parse_invalidation([b"message", b"x", b"y"]) is False
    assert parse_invalidation(b"OK") is False


def test_group_by_prefix() -> None:
    state = enabled("on bcast prefix b prefix a")
    keys = [b"b1", b"a1", b"c1", b"a2"]
    assert group_by_prefix(state, keys) == [[b"a1", b"a2"], [b"b1"]]
    assert group_by_prefix(enabled("on bcast"), keys) == [keys]


@pytest.mark.parametrize(
    ("line", "reads", "writes"),
    [
        ("GET k", (b"k",), ()),
        ("MGET a b", (b"a", b"b"), ()),
        ("SET k v", (), (b"k",)),
        ("MSET a 1 b 2", (), (b"a", b"b")),
        ("OBJECT ENCODING k", (b"k",), ()),
        ("EVAL x 2 a b 1", (b"a", b"b"), ()),  # a script's keys: it may read them
        ("FCALL_RO f 1 a", (b"a",), ()),
        ("PING", (), ()),
        ("NOSUCH k", (), ()),
        ("GET", (), ()),
    ],
)
def test_read_and_written_keys(line: str, reads: tuple[bytes, ...], writes: tuple[bytes, ...]):
    args = tuple(word.encode() for word in line.split())
    assert read_keys(TABLE, args) == reads
    assert written_keys(TABLE, args) == writes


def test_table_generations_and_bound() -> None:
    table = TrackingTable(max_keys=2)
    assert table.remember(1, 0, [b"a", b"b"]) == []
    assert table.remember(2, 5, [b"a"]) == []
    evicted = table.remember(1, 0, [b"c"])  # past the bound: the oldest goes, to be told
    assert evicted == [(b"a", {1: 0, 2: 5})]
    assert len(table) == 2
    assert table.pop(b"b") == {1: 0}
    assert table.pop(b"c") == {1: 0}
    assert table.pop(b"c") is None
    unbounded = TrackingTable(max_keys=0)
    assert unbounded.remember(1, 0, [b"k%d" % i for i in range(100)]) == []
    unbounded.clear()
    assert len(unbounded) == 0


def test_client_list_flags_and_reset() -> None:
    client = ClientState(1, 0.0)
    assert client.flags() == b"N"
    client.tracking = enabled("on bcast redirect 7")
    client.tracking.broken_redirect = True
    assert (client.flags(), client.tracking.redir()) == (b"tRB", 7)
    client.reset()  # RESET turns tracking off (clearClientConnectionState)
    assert (client.flags(), client.tracking.redir()) == (b"N", -1)


def test_is_tracking_command() -> None:
    assert is_tracking_command((b"CLIENT", b"Tracking", b"on"))
    assert is_tracking_command((b"client", b"getredir"))
    assert not is_tracking_command((b"client", b"list"))
    assert not is_tracking_command((b"client",))
