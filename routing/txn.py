"""Transactions in cluster mode: one client's MULTI/WATCH state machine, and where each
command of a MULTI block may run (pure).

A cluster runs a transaction on one node, and Redis refuses EXEC when its keys span slots,
so slotless binds a transaction (and its WATCHed keys) to one slot. `MultiState` holds the
rules of multi.c (nesting, EXEC/DISCARD without MULTI, WATCH inside MULTI, flagged blocks
and EXECABORT) plus that binding: each method takes a request and returns an `Action`.
`plan_queued` says, for one command sent between MULTI and EXEC, which slot it needs or
which error answers it. No I/O here: proxy/txn.py owns the dedicated connection and sends.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from routing import replies
from routing.commands import CommandTable
from routing.fanout import Script
from routing.keys import key_positions
from routing.plan import (
    ANY_NODE,
    LOCAL_COMMANDS,
    PUBSUB_COMMANDS,
    Local,
    Reply,
    Router,
    Split,
)
from routing.resp import OK, Args, ErrorReply, pack_command
from routing.slots import key_hash_slot

MULTI: Final = pack_command([b"MULTI"])
EXEC: Final = pack_command([b"EXEC"])
DISCARD: Final = pack_command([b"DISCARD"])
RESET: Final = pack_command([b"RESET"])
QUEUED: Final = b"+QUEUED\r\n"
EMPTY_EXEC: Final = b"*0\r\n"
# Commands that act at once even inside MULTI (server.c processCommand's exceptions), with
# QUIT (the session's) and RESET (which ends the transaction, then the session serves it).
CONTROL: Final = frozenset(b"exec discard multi watch".split())
_WHY: Final = "inside MULTI in cluster mode"
_CROSSSLOT: Final = replies.CROSSSLOT.encode()
_EXEC_WITHOUT_MULTI: Final = replies.EXEC_WITHOUT_MULTI.encode()
_DISCARD_WITHOUT_MULTI: Final = replies.DISCARD_WITHOUT_MULTI.encode()

# The primary that serves a slot (ANY_NODE: any primary will do), or the error reply when
# none is known: the caller's lookup in its current slot map.
Locate: TypeAlias = Callable[[int], str | ErrorReply]


@dataclass(frozen=True, slots=True)
class Answer:
    """Reply `raw` to the client now; nothing goes upstream."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class Begin:
    """MULTI accepted: +OK now. `upstream`: the connection WATCH bound gets MULTI too."""

    upstream: bool


@dataclass(frozen=True, slots=True)
class Bind:
    """Open the dedicated connection to `node` (the bound slot's primary), then send it
    `prelude`: MULTI and the keyless commands queued so far, already answered +QUEUED."""

    node: str
    prelude: tuple[bytes, ...] = ()


# What the node's reply to a `Send` is to the client: a queued command's +QUEUED (or its
# refusal), WATCH's (later requests wait for it), UNWATCH's (the connection's last), EXEC's.
SendKind = Literal["queued", "watch", "unwatch", "exec"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send `raw` on the dedicated connection, opened first when `bind` says so; the node's
    reply is the client's. After "unwatch" and "exec" the transaction is over."""

    raw: bytes
    kind: SendKind
    bind: Bind | None = None


@dataclass(frozen=True, slots=True)
class End:
    """The transaction is over: reply `raw` (None: the session serves the request itself,
    as for RESET); the dedicated connection, if one is open, gets `last` and then closes."""

    raw: bytes | None
    last: bytes


# None: not the transaction's business; the session routes the request as usual.
Action: TypeAlias = Answer | Begin | Send | End | None


@dataclass(slots=True)
class MultiState:
    """One client's MULTI block and WATCHed keys (server.h `multiState` and the CLIENT_MULTI,
    CLIENT_DIRTY_EXEC flags), bound to one slot once a key or WATCH names it. From MULTI or
    WATCH until the `End` or the last `Send`; late replies may still `flag` it after that."""

    in_multi: bool = False
    flagged: bool = False  # a command was refused: EXEC answers EXECABORT (DIRTY_EXEC)
    # The slot the dedicated connection serves (ANY_NODE: a keyless block); None before
    # binding. It stays set after the end, to explain a late cluster error.
    slot: int | None = None
    # Keyless commands queued before the binding, packed: answered +QUEUED at once, sent
    # after MULTI once a slot binds (or at EXEC, to any primary).
    buffered: list[bytes] = field(default_factory=list)
    queued: int = 0  # commands queued in this block (CLIENT LIST multi=)

    def request(self, router: Router, args: Args, locate: Locate) -> Action:
        """Any request while the transaction lasts (server.c processCommand): inside MULTI
        all but QUIT are the transaction's; RESET ends it; outside MULTI, nothing else is."""
        name = args[0].lower()
        if name == b"reset":
            return self._end(None, RESET)
        if not self.in_multi or name == b"quit":
            return None
        if name not in CONTROL:
            return self._queue(router, args, locate)
        plan = router.plan(args)  # arity and the deny list come first
        if isinstance(plan, Reply):
            if name == b"exec":
                # multi.c execCommandAbort: an EXEC refused by processCommand ends the block.
                return self._end(exec_abort(plan.raw), DISCARD)
            return self._refuse(plan.raw)
        return self.command(router, args, locate)

    def command(self, router: Router, args: Args, locate: Locate) -> Action:
        """MULTI, EXEC, DISCARD, WATCH or UNWATCH, arity checked (multi.c multiCommand,
        execCommand, discardCommand, watchCommand, unwatchCommand)."""
        name = args[0].lower()
        if name == b"multi":
            if self.in_multi:
                return Answer(replies.NESTED_MULTI.encode())
            self.in_multi = True
            self.queued = 0
            return Begin(upstream=self.slot is not None)
        if name == b"exec":
            return self._exec(locate) if self.in_multi else Answer(_EXEC_WITHOUT_MULTI)
        if name == b"discard":
            # DISCARD also forgets the watched keys (multi.c discardTransaction).
            return self._end(OK, DISCARD) if self.in_multi else Answer(_DISCARD_WITHOUT_MULTI)
        if name == b"watch":
            if self.in_multi:
                return Answer(replies.WATCH_INSIDE_MULTI.encode())
            return self._watch(args, locate)
        assert name == b"unwatch"
        if self.in_multi:  # queued, as any command inside MULTI
            return self._queue(router, args, locate)
        if self.slot is None:
            return self._end(OK, DISCARD)
        # The watches live on the dedicated connection: its answer, then it closes.
        return Send(pack_command(args), "unwatch")

    def flag(self) -> None:
        """The node refused a command of the block: its EXEC will answer EXECABORT, so must
        ours (server.c rejectCommand flags the transaction on any refusal)."""
        self.flagged = True

    def on_refused(self) -> None:
        """A command refused before it reached the transaction (proxy/auth.py's ACL check):
        inside MULTI it flags the block, as server.c rejectCommand does."""
        if self.in_multi:
            self.flagged = True

    def on_exec_refused(self, explained: bytes) -> bytes:
        """The node refused EXEC as a whole (cluster.c getNodeByQuery) and discarded the
        block: the client gets EXECABORT if a queued command was refused, else `explained`."""
        return replies.EXECABORT.encode() if self.flagged else explained

    def _watch(self, args: Args, locate: Locate) -> Action:
        slot = watch_slot(args)
        if isinstance(slot, Refuse):
            return Answer(slot.raw)
        if self.slot is not None:
            if slot != self.slot:  # another slot, even on the same node: EXEC would fail
                return Answer(_CROSSSLOT)
            return Send(pack_command(args), "watch")
        bind = self._bind(slot, locate)
        if isinstance(bind, ErrorReply):
            return Answer(bind.encode())
        return Send(pack_command(args), "watch", bind)

    def _queue(self, router: Router, args: Args, locate: Locate) -> Action:
        slot = plan_queued(router, args)
        if isinstance(slot, Refuse):
            return self._refuse(slot.raw)
        raw = pack_command(args)
        if self.slot is None:
            if slot == ANY_NODE:  # nothing names a node yet: answer now, send on binding
                self.buffered.append(raw)
                self.queued += 1
                return Answer(QUEUED)
            bind = self._bind(slot, locate)
            if isinstance(bind, ErrorReply):
                return self._refuse(bind.encode())
            self.queued += 1
            return Send(raw, "queued", bind)
        if slot != ANY_NODE and slot != self.slot:
            # Another slot, even on the same node: a cluster refuses EXEC with CROSSSLOT.
            return self._refuse(_CROSSSLOT)
        self.queued += 1
        return Send(raw, "queued")

    def _exec(self, locate: Locate) -> Action:
        if self.flagged:
            return self._end(replies.EXECABORT.encode(), DISCARD)
        bind = None
        if self.slot is None:
            if not self.buffered:
                return self._end(EMPTY_EXEC, DISCARD)
            bound = self._bind(ANY_NODE, locate)  # keyless commands only: any primary runs them
            if isinstance(bound, ErrorReply):
                return self._end(bound.encode(), DISCARD)
            bind = bound
        self.in_multi = False
        return Send(EXEC, "exec", bind)

    def _bind(self, slot: int, locate: Locate) -> Bind | ErrorReply:
        node = locate(slot)
        if isinstance(node, ErrorReply):
            return node
        self.slot = slot
        prelude = (MULTI, *self.buffered) if self.in_multi else ()
        self.buffered = []
        return Bind(node, prelude)

    def _refuse(self, raw: bytes) -> Answer:
        self.flagged = True
        return Answer(raw)

    def _end(self, raw: bytes | None, last: bytes) -> End:
        self.in_multi = False
        self.buffered = []
        return End(raw, last)


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer this error now; the transaction is flagged (EXEC gives EXECABORT)."""

    raw: bytes


QueuedPlan = int | Refuse  # a slot, ANY_NODE (keyless: any node will do), or a refusal


def plan_queued(router: Router, args: Args) -> QueuedPlan:
    """Where one command queued inside MULTI runs (server.c processCommand, then multi.c
    queueMultiCommand); for commands outside `CONTROL`, QUIT and RESET."""
    table = router.table
    if table.get(args[0]) is None:
        plan = router.plan(args)  # a denied module command keeps its own text
        if type(plan) is Reply:
            return Refuse(plan.raw)
        return Refuse(replies.unknown_command(list(args)).encode())
    plan = router.plan(args)
    if type(plan) is int:
        return plan
    if isinstance(plan, Reply):
        # PING and ECHO are answered locally outside MULTI; inside, they are queued.
        return Refuse(plan.raw) if plan.raw.startswith(b"-") else ANY_NODE
    if isinstance(plan, Split):
        return Refuse(_CROSSSLOT)
    if isinstance(plan, Script):
        return plan.slot
    if isinstance(plan, Local):
        return _plan_local(table, plan.name, args)
    # Fan-outs and SCAN need every shard: one node's transaction cannot hold them.
    return Refuse(replies.unsupported(args[0], _WHY + " (it needs every shard)").encode())


def _plan_local(table: CommandTable, name: bytes, args: Args) -> QueuedPlan:
    if name == b"unwatch":
        return ANY_NODE
    if name in PUBSUB_COMMANDS or name in LOCAL_COMMANDS:
        # Connection state slotless keeps itself; queuing it upstream would set it on the
        # transaction's connection instead.
        return Refuse(replies.unsupported(args[0], _WHY).encode())
    spec = table.resolve(args)
    if spec is None:
        return Refuse(replies.unknown_command(list(args)).encode())
    if b"no_multi" in spec.flags:
        return Refuse(replies.NOT_IN_MULTI.encode())
    # Blocking commands: inside MULTI Redis runs them without blocking.
    return keys_slot(args, key_positions(spec, args) or ())


def keys_slot(args: Args, positions: Iterable[int]) -> QueuedPlan:
    """The one slot of the keys at `positions`, ANY_NODE for none, or a CROSSSLOT refusal."""
    slot = ANY_NODE
    for pos in positions:
        key_slot = key_hash_slot(args[pos])
        if slot == ANY_NODE:
            slot = key_slot
        elif key_slot != slot:
            return Refuse(_CROSSSLOT)
    return slot


def watch_slot(args: Args) -> QueuedPlan:
    """WATCH key [key ...]: every key in one slot (arity already checked by the router)."""
    return keys_slot(args, range(1, len(args)))


def exec_abort(raw_error: bytes) -> bytes:
    """EXEC refused by processCommand (multi.c execCommandAbort): the reason, sans prefix."""
    message = raw_error[5:-2] if raw_error.startswith(b"-ERR ") else raw_error[1:-2]
    return replies.execabort_because(message)


def lost_before_exec(node: str) -> bytes:
    """The dedicated connection failed before EXEC was sent: the node discarded it all."""
    return replies.txn_lost_before_exec(node).encode()


def lost_in_exec(node: str, established: bool) -> bytes:
    """EXEC's reply never came: applied or not is unknown once the request could be sent."""
    return replies.txn_lost_in_exec(node, established).encode()


def slot_moving(slot: int | None, raw_error: bytes, outcome: str) -> bytes:
    """A MOVED/ASK/TRYAGAIN/CLUSTERDOWN inside a transaction, told to a client that sees one
    server: what happened, and what it means for the transaction (`outcome`)."""
    code = raw_error[1:-2].split(b" ", 1)[0].decode("ascii", "replace")
    return replies.txn_slot_moving(slot, code, outcome).encode()
