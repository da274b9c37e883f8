"""Transactions in cluster mode: where each command of a MULTI block may run (pure).

A cluster runs a transaction on one node, and Redis refuses EXEC when its keys span slots,
so slotless binds a transaction (and its WATCHed keys) to one slot. `plan_queued` says, for
one command sent between MULTI and EXEC, which slot it needs or which error answers it (the
transaction is then flagged, as server.c rejectCommand does). No I/O here: proxy/txn.py
sends the commands.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

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
from routing.resp import Args
from routing.slots import key_hash_slot

# Commands that act at once even inside MULTI (server.c processCommand's exceptions); the
# session handles QUIT and RESET, proxy/txn.py the others.
IMMEDIATE: Final = frozenset(b"exec discard multi watch quit reset".split())
_WHY: Final = "inside MULTI in cluster mode"


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer this error now; the transaction is flagged (EXEC gives EXECABORT)."""

    raw: bytes


QueuedPlan = int | Refuse  # a slot, ANY_NODE (keyless: any node will do), or a refusal


def plan_queued(router: Router, args: Args) -> QueuedPlan:
    """Where one command queued inside MULTI runs (server.c processCommand, then multi.c
    queueMultiCommand); for commands outside `IMMEDIATE`."""
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
        return Refuse(replies.CROSSSLOT.encode())
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
            return Refuse(replies.CROSSSLOT.encode())
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
