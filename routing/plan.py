"""Planning: what to do with one client request, decided from the command table alone.

`Router.plan(args)` returns a value and never raises for anything a client can send:
  - an int: forward the request unchanged to the primary of that slot (ANY_NODE: any primary);
  - `Reply`: answer locally with these bytes (errors included);
  - `Split`: send one sub-request per slot, then `merge.merge_split`;
  - `Local`: the session must handle it (per-connection state: QUIT, SELECT, HELLO, ...);
  - a `Special` (`Fanout`, `Scan`, `Script`): served by proxy/fanout.py (whole keyspace).
The int case is the hot path, so it allocates nothing.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from routing import replies
from routing.commands import CommandSpec, CommandTable
from routing.fanout import SCAN_PLAN, Script, Special, slowlog_plan, special_plan
from routing.keys import key_positions, simple_key_index
from routing.resp import Args, encode_bulk, pack_command
from routing.slots import key_hash_slot, key_hash_slots

ANY_NODE: Final = -1

Mode = Literal["cluster", "standalone"]


@dataclass(frozen=True, slots=True)
class Reply:
    raw: bytes


@dataclass(frozen=True, slots=True)
class Local:
    """Handled by the session itself; `name` is the lowercase command name."""

    name: bytes


# The name MGET's one-key parts are sent under (see _split_handler).
GET: Final = b"GET"

MergeKind = Literal["agg_sum", "all_succeeded", "by_key"]


# Not frozen: one is built per split request, and frozen dataclasses pay for
# object.__setattr__ in __init__. Nothing mutates one after planning.
@dataclass(slots=True)
class Split:
    """A multi-key request split by slot (the one fragmented-request model).

    Part i is `requests[i]` (packed), bound for `slots[i]`, and carries the keys
    `ordinals[i]` of the original request, in request order; `ordinals` is None in the usual
    cross-slot case where part i carries key i alone (with its value, for MSET). `as_get`:
    MGET's one-key parts go as GET (see _split_handler). routing/merge.py merges the parts.
    """

    slots: list[int]
    requests: list[bytes]
    ordinals: list[list[int]] | None
    merge: MergeKind
    key_count: int
    as_get: bool


Plan: TypeAlias = int | Reply | Local | Split | Special
Handler = Callable[[Args], Plan]

# Commands whose state lives on the connection. In standalone mode they get a dedicated
# upstream connection; in cluster mode they are refused until slotless emulates them.
SESSION_COMMANDS: Final = frozenset(
    b"multi exec discard watch unwatch subscribe psubscribe ssubscribe unsubscribe "
    b"punsubscribe sunsubscribe monitor sync psync replconf wait waitaof".split()
)
# Cluster mode: per-client state that slotless itself keeps (see proxy/local.py).
TXN_COMMANDS: Final = frozenset(b"multi exec discard watch unwatch".split())
PUBSUB_COMMANDS: Final = frozenset(
    b"subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe".split()
)
SESSION_STATE_COMMANDS: Final = TXN_COMMANDS | PUBSUB_COMMANDS
# Handled by the session in both modes (cluster) or only where noted (standalone: pipe).
LOCAL_COMMANDS: Final = frozenset(b"quit select hello client auth reset".split())
CLUSTER_ONLY_COMMANDS: Final = frozenset(b"cluster readonly readwrite asking".split())
_WHY_SESSION: Final = "in cluster mode yet (it needs per-connection state)"
_WHY_FANOUT: Final = "in cluster mode yet (it needs every shard)"

_PONG: Final = Reply(b"+PONG\r\n")


class Router:
    """Plans requests for one command table and mode; built once per table."""

    __slots__ = ("_denied_unknown", "_handlers", "_keyed_reads", "direct", "mode", "reads", "table")

    def __init__(
        self, table: CommandTable, mode: Mode, deny: Iterable[str] = (), keyed_reads: bool = False
    ) -> None:
        """`keyed_reads`: in standalone mode, route single-key reads by their key too, so
        that upstream.read_from can send them to replicas (sentinel mode)."""
        self.table = table
        self.mode = mode
        self._keyed_reads = keyed_reads
        self._handlers: dict[bytes, Handler] = {}
        denied = frozenset(name.lower().encode() for name in deny)
        # Denied names the table does not know (module commands): checked on the slow path.
        self._denied_unknown = frozenset(
            name for name in denied if table.get(name.partition(b"|")[0]) is None
        )
        # The hot path's shortcut: name -> (argv index of the one key, arity) for commands
        # that plan() would route by that key's slot alone (cluster), or -> (0, 0) for
        # commands forwarded as they are (standalone). Both casings of each name.
        self.direct: dict[bytes, tuple[int, int]] = {}
        # The single-key read-only commands of `direct` (upstream.read_from), both casings.
        reads: set[bytes] = set()
        for spec in table:
            handler = self._make_handler(spec)
            allowed = _deny_handler(spec, denied, handler)
            name = spec.name
            self._handlers[name] = allowed
            self._handlers[name.upper()] = allowed
            shortcut = self._direct_route(spec, handler) if allowed is handler else None
            if shortcut is not None:
                self.direct[name] = self.direct[name.upper()] = shortcut
                if b"readonly" in spec.flags and shortcut[0]:
                    reads.update((name, name.upper()))
        self.reads: frozenset[bytes] = frozenset(reads)

    def _direct_route(self, spec: CommandSpec, handler: Handler) -> tuple[int, int] | None:
        if handler is _any_node and self.mode == "standalone":
            if self._keyed_reads and b"readonly" in spec.flags and not spec.subcommands:
                index = simple_key_index(spec) if self._is_single_key(spec) else None
                if index is not None:
                    return (index, spec.arity)
            return (0, 0)
        if self.mode == "cluster" and not spec.subcommands and self._is_single_key(spec):
            index = simple_key_index(spec)
            if index is not None:
                return (index, spec.arity)
        return None

    def _is_single_key(self, spec: CommandSpec) -> bool:
        name = spec.name
        return not (
            name in LOCAL_COMMANDS
            or name in CLUSTER_ONLY_COMMANDS
            or name in SESSION_COMMANDS
            or name in (b"ping", b"echo", b"xread", b"xreadgroup")
            or spec.is_blocking
            or spec.request_policy is not None
        )

    def plan(self, args: Args) -> Plan:
        """Decide how to serve one request (see the module docstring)."""
        handler = self._handlers.get(args[0])
        if handler is None:
            handler = self._handlers.get(args[0].lower())
            if handler is None:
                # Unknown here (a module command, a typo): the node's own answer is right,
                # and a MOVED for a keyed module command is followed like any other.
                if self._denied_unknown and args[0].lower() in self._denied_unknown:
                    return Reply(replies.disabled(args[0]).encode())
                return ANY_NODE
        return handler(args)

    def _make_handler(self, spec: CommandSpec) -> Handler:
        name = spec.name
        if name in (b"ping", b"echo"):
            return _ping if name == b"ping" else _echo
        if self.mode == "standalone":
            if name in SESSION_COMMANDS or name in LOCAL_COMMANDS or spec.is_blocking:
                local = Local(name)
                return lambda args: local
            return _any_node
        return self._cluster_handler(spec)

    def _cluster_handler(self, spec: CommandSpec) -> Handler:
        name = spec.name
        if name in LOCAL_COMMANDS:
            local = Local(name)
            return _checked(spec, lambda args: local)
        if name in CLUSTER_ONLY_COMMANDS:
            return _reply(replies.CLUSTER_DISABLED.encode())
        if name in SESSION_STATE_COMMANDS or (
            spec.is_blocking and name not in (b"xread", b"xreadgroup", b"wait", b"waitaof")
        ):
            # Transactions, pub/sub and blocking commands: the session's own machinery
            # (proxy/txn.py, proxy/pubsub.py, proxy/blocking.py).
            local = Local(name)
            return _checked(spec, lambda args: local)
        # WAIT is a fan-out here: the shared connections carried this client's writes.
        if name in SESSION_COMMANDS and name != b"wait":
            return _reply(replies.unsupported(name, _WHY_SESSION).encode())
        if name in (b"xread", b"xreadgroup"):
            return _checked(spec, _xread_handler(spec))
        if spec.subcommands:
            return self._container_handler(spec)
        return _checked(spec, self._keyed_handler(spec))

    def _container_handler(self, spec: CommandSpec) -> Handler:
        subs = {sub.name: self._keyed_handler(sub) for sub in spec.subcommands.values()}
        subspecs = {sub.name: sub for sub in spec.subcommands.values()}
        prefix = spec.name + b"|"

        def plan_container(args: Args) -> Plan:
            if len(args) < 2:
                return Reply(replies.wrong_arity(spec.name).encode())
            full = prefix + args[1].lower()
            sub = subspecs.get(full)
            if sub is None:
                return Reply(replies.unknown_subcommand(spec.name, args[1]).encode())
            if not _arity_ok(sub.arity, len(args)):
                return Reply(replies.wrong_arity(sub.name).encode())
            return subs[full](args)

        return plan_container

    def _keyed_handler(self, spec: CommandSpec) -> Handler:
        special = _special_handler(spec)
        if special is not None:
            return special
        if spec.request_policy in (b"all_shards", b"all_nodes") or (
            spec.request_policy == b"special" and not spec.has_keys
        ):
            return _reply(replies.unsupported(spec.name, _WHY_FANOUT).encode())
        if (
            spec.request_policy == b"multi_shard"
            and spec.response_policy in _MERGES
            and _splittable(spec)
        ):
            return _split_handler(spec)
        index = simple_key_index(spec)
        if index is not None:
            return _single_key_handler(index)
        if not spec.has_keys and not spec.has_movable_keys:
            return _any_node
        return _keys_handler(spec)


def _arity_ok(arity: int, argc: int) -> bool:
    return argc == arity if arity >= 0 else argc >= -arity


def _checked(spec: CommandSpec, handler: Handler) -> Handler:
    """Redis checks arity before anything else (server.c processCommand)."""
    arity = spec.arity
    error = Reply(replies.wrong_arity(spec.name).encode())
    if arity >= 0:
        return lambda args: handler(args) if len(args) == arity else error
    least = -arity
    return lambda args: handler(args) if len(args) >= least else error


def _reply(raw: bytes) -> Handler:
    reply = Reply(raw)
    return lambda args: reply


def _any_node(args: Args) -> Plan:
    return ANY_NODE


def _ping(args: Args) -> Plan:
    if len(args) == 1:
        return _PONG
    if len(args) == 2:
        return Reply(encode_bulk(args[1]))
    return Reply(replies.wrong_arity(b"ping").encode())


def _echo(args: Args) -> Plan:
    if len(args) != 2:
        return Reply(replies.wrong_arity(b"echo").encode())
    return Reply(encode_bulk(args[1]))


def _single_key_handler(index: int) -> Handler:
    def plan_single(args: Args) -> Plan:
        return key_hash_slot(args[index])

    return plan_single


def _slot_of_keys(args: Args, positions: tuple[int, ...]) -> Plan:
    slot = key_hash_slot(args[positions[0]])
    for pos in positions[1:]:
        if key_hash_slot(args[pos]) != slot:
            return Reply(replies.CROSSSLOT.encode())
    return slot


def _keys_handler(spec: CommandSpec) -> Handler:
    def plan_keys(args: Args) -> Plan:
        positions = key_positions(spec, args)
        if not positions:
            # No keys, or arguments the server will reject with its own message.
            return ANY_NODE
        return _slot_of_keys(args, positions)

    return plan_keys


def _xread_handler(spec: CommandSpec) -> Handler:
    keys = _keys_handler(spec)
    blocking = Local(spec.name)

    def plan_xread(args: Args) -> Plan:
        if any(a.lower() == b"block" for a in args[1:]):
            return blocking  # proxy/blocking.py
        return keys(args)

    return plan_xread


def _splittable(spec: CommandSpec) -> bool:
    """A multi_shard command whose keys are one range, each key followed by step-1 values."""
    return (
        spec.first_key > 0
        and spec.last_key == -1
        and spec.step >= 1
        and not (spec.has_movable_keys)
    )


# Splitting is only safe where the parts are independent and the merge is exact. MSETNX
# (agg_min) is not: some slots could set while others refuse, so it stays CROSSSLOT.
_MERGES: Final[dict[bytes | None, MergeKind]] = {
    b"agg_sum": "agg_sum",
    b"all_succeeded": "all_succeeded",
    None: "by_key",
}


def _split_handler(spec: CommandSpec) -> Handler:
    first, step = spec.first_key, spec.step
    merge = _MERGES.get(spec.response_policy, "by_key")
    arity_error = Reply(replies.wrong_arity(spec.name).encode())
    as_get = spec.name == b"mget"

    def plan_split(args: Args) -> Plan:
        argc = len(args)
        if argc <= first or (argc - first) % step:
            return arity_error
        name = args[0]
        keys = args[first::step]
        slots = key_hash_slots(keys)
        if len(set(slots)) == len(slots) > 1:  # every key in a slot of its own: the usual
            if step == 1:
                head = GET if as_get else name
                requests = [pack_command((head, key)) for key in keys]
            else:
                requests = [
                    pack_command((name, *args[pos : pos + step]))
                    for pos in range(first, argc, step)
                ]
            return Split(slots, requests, None, merge, len(keys), as_get)
        # One part per slot, keys in request order within each part.
        parts: dict[int, tuple[list[bytes], list[int]]] = {}
        for ordinal, slot in enumerate(slots):
            pos = first + ordinal * step
            part = parts.get(slot)
            if part is None:
                parts[slot] = ([name, *args[pos : pos + step]], [ordinal])
            else:
                part[0].extend(args[pos : pos + step])
                part[1].append(ordinal)
        if len(parts) == 1:
            return slots[0]
        requests = []
        for part_args, ordinals in parts.values():
            # A slot with one key of an MGET gets a GET: a plain bulk reply, no array to
            # frame and unwrap. merge.py turns its WRONGTYPE back into MGET's nil.
            if as_get and len(ordinals) == 1:
                part_args[0] = GET
            requests.append(pack_command(part_args))
        ordinals_of = [ordinals for _, ordinals in parts.values()]
        return Split(list(parts), requests, ordinals_of, merge, len(keys), as_get)

    return plan_split


# --- whole-keyspace commands (routing/fanout.py decides) -----------------------------------


def _special_handler(spec: CommandSpec) -> Handler | None:
    """SCAN, script calls and the fan-outs; None for everything routed by key or to one node."""
    kind = special_plan(spec)
    if kind is None:
        return None
    if kind == "scan":
        return lambda args: SCAN_PLAN
    if kind == "script":
        return _script_handler(spec)
    if kind == "one_primary":
        return _any_node
    if kind.merge == "slowlog":
        targets = kind.targets
        return lambda args: slowlog_plan(targets, args)
    return lambda args: kind


def _script_handler(spec: CommandSpec) -> Handler:
    keys = _keys_handler(spec)

    def plan_script(args: Args) -> Plan:
        planned = keys(args)
        return Script(planned) if type(planned) is int else planned

    return plan_script


def _deny_handler(spec: CommandSpec, denied: frozenset[bytes], handler: Handler) -> Handler:
    """The configured deny list ("name" or "name|sub") comes before anything else."""
    if not denied:
        return handler
    name = spec.name
    if name in denied:
        return _reply(replies.disabled(name).encode())
    prefix = name + b"|"
    subs = frozenset(d[len(prefix) :] for d in denied if d.startswith(prefix))
    if not subs:
        return handler

    def plan_allowed(args: Args) -> Plan:
        if len(args) > 1 and args[1].lower() in subs:
            return Reply(replies.disabled(name + b" " + args[1]).encode())
        return handler(args)

    return plan_allowed
