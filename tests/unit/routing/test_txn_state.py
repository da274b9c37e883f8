"""routing/txn.py MultiState: every transition and error of the MULTI/WATCH machine.

`drive` plays the session's part: while the transaction lasts each request goes to
`MultiState.request` first; what that leaves (None) and the router plans as a transaction
command goes to `MultiState.command`, after the router's arity check, as in proxy/txn.py.
"""

from __future__ import annotations

import shlex

import pytest

from routing import replies
from routing.plan import ANY_NODE, TXN_COMMANDS, Reply
from routing.resp import OK, ErrorReply, pack_command
from routing.slots import key_hash_slot
from routing.txn import (
    DISCARD,
    EMPTY_EXEC,
    EXEC,
    MULTI,
    QUEUED,
    RESET,
    Action,
    Answer,
    Begin,
    Bind,
    End,
    MultiState,
    Send,
)
from tests.unit.routing.test_txn import router

A, B = b"{t}a", b"{t}b"
SLOT = key_hash_slot(A)
NODE = "10.0.0.1:7000"
ANY = "10.0.0.9:7000"  # the primary locate picks for a keyless block
CROSSSLOT = replies.CROSSSLOT.encode()
EXECABORT = replies.EXECABORT.encode()


class Locator:
    """The proxy's slot-map lookup: NODE for every slot, ANY for ANY_NODE, or `error`."""

    def __init__(self, error: ErrorReply | None = None) -> None:
        self.error = error
        self.asked: list[int] = []

    def __call__(self, slot: int) -> str | ErrorReply:
        self.asked.append(slot)
        if self.error is not None:
            return self.error
        return ANY if slot == ANY_NODE else NODE


def args_of(line: str) -> list[bytes]:
    return [word.encode() for word in shlex.split(line)]


def packed(line: str) -> bytes:
    return pack_command(args_of(line))


def drive(state: MultiState, *lines: str, locate: Locator | None = None) -> list[Action]:
    where = locate or Locator()
    out: list[Action] = []
    for line in lines:
        args = args_of(line)
        action = state.request(router(), args, where)
        if action is None and args[0].lower() in TXN_COMMANDS:
            plan = router().plan(args)
            if isinstance(plan, Reply):
                action = Answer(plan.raw)  # the router's arity error comes first
            else:
                action = state.command(router(), args, where)
        out.append(action)
    return out


def last(state: MultiState, *lines: str, locate: Locator | None = None) -> Action:
    return drive(state, *lines, locate=locate)[-1]


# --- outside MULTI ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("EXEC", Answer(replies.EXEC_WITHOUT_MULTI.encode())),
        ("exec", Answer(replies.EXEC_WITHOUT_MULTI.encode())),
        ("DISCARD", Answer(replies.DISCARD_WITHOUT_MULTI.encode())),
        ("UNWATCH", End(OK, DISCARD)),  # nothing bound: just +OK
        ("MULTI", Begin(upstream=False)),
        ("GET x", None),  # not the transaction's: the session routes it
        ("QUIT", None),
        ("RESET", End(None, RESET)),
    ],
)
def test_idle(line: str, action: Action) -> None:
    state = MultiState()
    assert drive(state, line) == [action]
    assert not state.flagged
    assert state.slot is None


def test_multi_begins() -> None:
    state = MultiState()
    assert drive(state, "MULTI") == [Begin(upstream=False)]
    assert state.in_multi and not state.flagged and state.slot is None


def test_watch_binds_its_slot() -> None:
    state, locate = MultiState(), Locator()
    assert drive(state, f"WATCH {A.decode()} {B.decode()}", locate=locate) == [
        Send(packed("WATCH {t}a {t}b"), "watch", Bind(NODE, ()))
    ]
    assert state.slot == SLOT and locate.asked == [SLOT]
    assert not state.in_multi


def test_watch_again_same_slot_other_slot() -> None:
    state = MultiState()
    drive(state, "WATCH {t}a")
    assert last(state, "WATCH {t}b") == Send(packed("WATCH {t}b"), "watch")  # no new binding
    assert last(state, "WATCH {u}x") == Answer(CROSSSLOT)
    assert state.slot == SLOT and not state.flagged  # outside MULTI nothing is flagged


def test_watch_across_slots_is_refused_before_binding() -> None:
    state, locate = MultiState(), Locator()
    assert drive(state, "WATCH {t}a {u}x", locate=locate) == [Answer(CROSSSLOT)]
    assert state.slot is None and locate.asked == []


@pytest.mark.parametrize("error", [replies.NO_TOPOLOGY, replies.SLOT_NOT_SERVED])
def test_watch_without_a_node(error: ErrorReply) -> None:
    state = MultiState()
    assert drive(state, "WATCH {t}a", locate=Locator(error)) == [Answer(error.encode())]
    assert state.slot is None and not state.flagged


def test_unwatch_after_watch_sends_and_ends() -> None:
    state = MultiState()
    drive(state, "WATCH {t}a")
    assert last(state, "UNWATCH") == Send(packed("UNWATCH"), "unwatch")


def test_watch_then_multi_sends_multi_upstream() -> None:
    state = MultiState()
    assert drive(state, "WATCH {t}a", "MULTI", "SET {t}b 1", "PING", "EXEC") == [
        Send(packed("WATCH {t}a"), "watch", Bind(NODE, ())),
        Begin(upstream=True),
        Send(packed("SET {t}b 1"), "queued"),
        Send(packed("PING"), "queued"),  # bound: keyless commands go straight up
        Send(EXEC, "exec"),
    ]
    assert not state.in_multi and state.buffered == []


def test_exec_without_multi_keeps_the_watch() -> None:
    state = MultiState()
    drive(state, "WATCH {t}a", "EXEC")
    assert last(state, "MULTI") == Begin(upstream=True)


# --- inside MULTI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("MULTI", Answer(replies.NESTED_MULTI.encode())),
        ("WATCH {t}a", Answer(replies.WATCH_INSIDE_MULTI.encode())),
    ],
)
def test_refused_without_flagging(line: str, action: Action) -> None:
    state = MultiState()
    assert drive(state, "MULTI", line) == [Begin(upstream=False), action]
    assert state.in_multi and not state.flagged


def test_first_key_binds_and_sends_the_buffered_commands() -> None:
    state, locate = MultiState(), Locator()
    assert drive(state, "MULTI", "PING", "TIME", "INCR {t}a", "GET {t}b", locate=locate) == [
        Begin(upstream=False),
        Answer(QUEUED),
        Answer(QUEUED),
        Send(packed("INCR {t}a"), "queued", Bind(NODE, (MULTI, packed("PING"), packed("TIME")))),
        Send(packed("GET {t}b"), "queued"),
    ]
    assert state.slot == SLOT and state.buffered == [] and locate.asked == [SLOT]
    assert last(state, "EXEC") == Send(EXEC, "exec")
    assert not state.in_multi and not state.flagged


def test_keyless_commands_wait_in_the_buffer() -> None:
    state = MultiState()
    drive(state, "MULTI", "PING", "ECHO x", "UNWATCH")  # UNWATCH is queued inside MULTI
    assert state.buffered == [packed("PING"), packed("ECHO x"), packed("UNWATCH")]
    assert state.slot is None


def test_keyless_block_binds_at_exec_to_any_primary() -> None:
    state, locate = MultiState(), Locator()
    drive(state, "MULTI", "PING", locate=locate)
    assert last(state, "EXEC", locate=locate) == Send(
        EXEC, "exec", Bind(ANY, (MULTI, packed("PING")))
    )
    assert locate.asked == [ANY_NODE] and state.slot == ANY_NODE and not state.in_multi


def test_keyless_block_without_a_node_ends() -> None:
    state = MultiState()
    drive(state, "MULTI", "PING")
    action = last(state, "EXEC", locate=Locator(replies.NO_TOPOLOGY))
    assert action == End(replies.NO_TOPOLOGY.encode(), DISCARD)
    assert not state.in_multi and state.buffered == []


def test_empty_exec() -> None:
    state = MultiState()
    assert drive(state, "MULTI", "EXEC") == [Begin(upstream=False), End(EMPTY_EXEC, DISCARD)]
    assert not state.in_multi


@pytest.mark.parametrize(
    ("lines", "refusal"),
    [
        (["INCR {t}a", "INCR {u}x"], CROSSSLOT),  # another slot than the bound one
        (["MSET {t}a 1 {u}x 2"], CROSSSLOT),  # one command across slots
        (["NOSUCH x"], b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"),
        (["GET"], b"-ERR wrong number of arguments for 'get' command\r\n"),
        (
            ["DBSIZE"],
            replies.unsupported(
                b"DBSIZE", "inside MULTI in cluster mode (it needs every shard)"
            ).encode(),
        ),
        (
            ["SUBSCRIBE c"],
            replies.unsupported(b"SUBSCRIBE", "inside MULTI in cluster mode").encode(),
        ),
        (["DISCARD x"], b"-ERR wrong number of arguments for 'discard' command\r\n"),
        (["MULTI x"], b"-ERR wrong number of arguments for 'multi' command\r\n"),
        (["WATCH"], b"-ERR wrong number of arguments for 'watch' command\r\n"),
    ],
)
def test_refusals_flag_the_block(lines: list[str], refusal: bytes) -> None:
    state = MultiState()
    actions = drive(state, "MULTI", *lines)
    assert actions[-1] == Answer(refusal)
    assert state.flagged and state.in_multi  # the block goes on, EXEC aborts it
    assert drive(state, "GET {t}a", "EXEC")[-1] == End(EXECABORT, DISCARD)
    assert not state.in_multi


def test_a_key_without_a_node_flags_the_block() -> None:
    state = MultiState()
    drive(state, "MULTI", "PING")
    action = last(state, "GET {t}a", locate=Locator(replies.SLOT_NOT_SERVED))
    assert action == Answer(replies.SLOT_NOT_SERVED.encode())
    assert state.flagged and state.slot is None
    assert last(state, "EXEC") == End(EXECABORT, DISCARD)


def test_refused_exec_ends_the_block() -> None:
    state = MultiState()
    drive(state, "MULTI", "SET {t}a 1")
    assert last(state, "EXEC x") == End(
        b"-EXECABORT Transaction discarded because of: "
        b"wrong number of arguments for 'exec' command\r\n",
        DISCARD,
    )
    assert not state.in_multi


def test_denied_exec_ends_the_block_with_its_reason() -> None:
    state = MultiState()
    denying = router(("exec",))
    state.request(denying, args_of("MULTI"), Locator())  # outside: not the state's
    state.command(denying, args_of("MULTI"), Locator())
    action = state.request(denying, args_of("EXEC"), Locator())
    assert action == End(
        b"-EXECABORT Transaction discarded because of: "
        b"command 'EXEC' is disabled by slotless configuration\r\n",
        DISCARD,
    )


def test_discard() -> None:
    state = MultiState()
    assert drive(state, "MULTI", "PING", "DISCARD") == [
        Begin(upstream=False),
        Answer(QUEUED),
        End(OK, DISCARD),
    ]
    assert not state.in_multi and state.buffered == []
    assert last(state, "DISCARD") == Answer(replies.DISCARD_WITHOUT_MULTI.encode())


@pytest.mark.parametrize("before", [[], ["MULTI"], ["MULTI", "PING"], ["WATCH {t}a", "MULTI"]])
def test_reset_ends_it_and_passes_on(before: list[str]) -> None:
    state = MultiState()
    drive(state, *before)
    assert last(state, "RESET") == End(None, RESET)
    assert not state.in_multi and state.buffered == []


def test_quit_passes_inside_multi() -> None:
    state = MultiState()
    assert drive(state, "MULTI", "QUIT") == [Begin(upstream=False), None]
    assert state.in_multi


# --- flags set from outside: the node's refusals, proxy/auth.py ----------------------------


def test_node_refusal_flags() -> None:
    state = MultiState()
    drive(state, "MULTI", "SET {t}a 1")
    assert state.on_exec_refused(b"-ERR explained\r\n") == b"-ERR explained\r\n"
    state.flag()
    assert state.flagged
    assert state.on_exec_refused(b"-ERR explained\r\n") == EXECABORT
    assert last(state, "EXEC") == End(EXECABORT, DISCARD)


def test_on_refused_flags_only_inside_multi() -> None:
    state = MultiState()
    drive(state, "WATCH {t}a")
    state.on_refused()
    assert not state.flagged
    drive(state, "MULTI")
    state.on_refused()
    assert state.flagged


def test_slot_stays_after_the_end() -> None:
    """A late MOVED on the dedicated connection is explained with the transaction's slot."""
    state = MultiState()
    drive(state, "MULTI", "GET {t}a", "DISCARD")
    assert state.slot == SLOT


def test_queued_counts_what_was_queued_not_what_was_refused() -> None:
    """CLIENT LIST multi=: buffered keyless, bound and sent, refused (not counted)."""
    state = MultiState()
    drive(state, "MULTI", "PING", f"SET {A.decode()} 1", "SET other 1", f"GET {B.decode()}")
    assert state.queued == 3 and state.flagged  # SET other: another slot, refused
    drive(state, "DISCARD", "MULTI")
    assert state.queued == 0
