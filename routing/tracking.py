"""Client-side caching (CLIENT TRACKING) rules, sans-I/O: per-client state, the key table,
prefix matching, option parsing and the replies and invalidation messages (tracking.c and
networking.c clientCommand, Redis 7.0).

proxy/tracking.py feeds this with the requests of tracking clients and the invalidations the
nodes send, and writes what it returns. Rule: nothing here holds a session or a socket;
clients are known by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from routing import replies
from routing.commands import CommandTable
from routing.keys import key_positions
from routing.resp import Args, ErrorReply, encode_bulk, encode_int, string2ll

INVALIDATE_CHANNEL: Final = b"__redis__:invalidate"
_PUSH_HEAD: Final = b">2\r\n$10\r\ninvalidate\r\n"
_MESSAGE_HEAD: Final = b"*3\r\n$7\r\nmessage\r\n$20\r\n" + INVALIDATE_CHANNEL + b"\r\n"
_BROKEN_HEAD: Final = b">2\r\n$21\r\ntracking-redir-broken\r\n"
# What a flush (FLUSHALL, or slotless losing sight of a node) sends instead of the keys.
_NULL2: Final = b"$-1\r\n"
_NULL3: Final = b"_\r\n"
# Commands whose declared keys count as read although the command is not read-only: a
# script's reads are tracked in Redis (the commands it runs); slotless sees only its keys.
_SCRIPTS: Final = frozenset(
    b"eval evalsha eval_ro evalsha_ro fcall fcall_ro".split()
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrackingRequest:
    """A parsed CLIENT TRACKING ON|OFF with its options."""

    on: bool
    redirect: int = 0
    bcast: bool = False
    optin: bool = False
    optout: bool = False
    noloop: bool = False
    prefixes: tuple[bytes, ...] = ()


@dataclass(slots=True)
class TrackingState:
    """A client's tracking flags (server.h CLIENT_TRACKING_*), redirect and prefixes."""

    on: bool = False
    bcast: bool = False
    optin: bool = False
    optout: bool = False
    noloop: bool = False
    caching: bool = False  # CLIENT CACHING yes (OPTIN) / no (OPTOUT), for the next command
    broken_redirect: bool = False
    redirect: int = 0
    prefixes: list[bytes] = field(default_factory=list)  # sorted, as Redis's rax keeps them

    def enable(self, request: TrackingRequest) -> None:
        """tracking.c enableTracking: flags and redirect are replaced, prefixes added."""
        self.on = True
        self.broken_redirect = False
        self.redirect = request.redirect
        self.bcast = request.bcast
        self.optin = request.optin
        self.optout = request.optout
        self.noloop = request.noloop
        if request.bcast:
            added = request.prefixes or (b"",)
            self.prefixes = sorted(set(self.prefixes).union(added))

    def disable(self) -> None:
        """tracking.c disableTracking."""
        self.on = self.bcast = self.optin = self.optout = self.noloop = False
        self.caching = self.broken_redirect = False
        self.prefixes = []

    def flags(self) -> bytes:
        """CLIENT LIST flags= letters: t tracking, R broken redirect, B broadcast."""
        return (
            (b"t" if self.on else b"")
            + (b"R" if self.broken_redirect else b"")
            + (b"B" if self.bcast else b"")
        )

    def redir(self) -> int:
        """CLIENT GETREDIR and CLIENT LIST redir=: the redirect id, 0 for none, -1 when off."""
        return self.redirect if self.on else -1

    def tracks_reads(self) -> bool:
        """Whether the keys of the next read-only command go into the table
        (tracking.c trackingRememberKeys: OPTIN needs CACHING yes, OPTOUT skips on no)."""
        if not self.on or self.bcast:
            return False
        if self.optin:
            return self.caching
        if self.optout:
            return not self.caching
        return True

    def after_command(self, name: bytes, in_multi: bool) -> None:
        """networking.c resetClient: CLIENT CACHING lasts one command, outside MULTI, and
        any CLIENT subcommand keeps it."""
        if self.caching and not in_multi and name != b"client":
            self.caching = False

    def prefix_of(self, key: bytes) -> bytes | None:
        """The client's prefix that `key` starts with (prefixes of one client overlap only
        through the empty prefix, which `ON BCAST` without PREFIX adds)."""
        for prefix in self.prefixes:
            if key.startswith(prefix):
                return prefix
        return None


def parse_tracking(
    args: Args, state: TrackingState, client_exists: Callable[[int], bool]
) -> TrackingRequest | ErrorReply:
    """networking.c clientCommand "tracking": the option loop, then ON's checks in Redis's
    order. `args` is the whole request (CLIENT TRACKING on|off ...), arity already checked."""
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    i, argc = 3, len(args)
    while i < argc:
        option = args[i].lower()
        more = i + 1 < argc
        if option == b"redirect" and more:
            i += 1
            if redirect != 0:
                return replies.TRACKING_ONE_REDIRECT
            value = string2ll(args[i])
            if value is None:
                return replies.NOT_INTEGER
            if not client_exists(value):
                return replies.TRACKING_NO_REDIRECT_CLIENT
            redirect = value
        elif option == b"bcast":
            bcast = True
        elif option == b"optin":
            optin = True
        elif option == b"optout":
            optout = True
        elif option == b"noloop":
            noloop = True
        elif option == b"prefix" and more:
            i += 1
            prefixes.append(args[i])
        else:
            return replies.SYNTAX
        i += 1
    mode = args[2].lower()
    if mode == b"off":
        return TrackingRequest(False)
    if mode != b"on":
        return replies.SYNTAX
    error = _check_on(state, bcast, optin, optout, prefixes)
    if error is not None:
        return error
    return TrackingRequest(True, redirect, bcast, optin, optout, noloop, tuple(prefixes))


def _check_on(
    state: TrackingState, bcast: bool, optin: bool, optout: bool, prefixes: list[bytes]
) -> ErrorReply | None:
    if prefixes and not bcast:
        return replies.TRACKING_PREFIX_NEEDS_BCAST
    if state.on and state.bcast != bcast:
        return replies.TRACKING_SWITCH_BCAST
    if bcast and (optin or optout):
        return replies.TRACKING_BCAST_OPTIN
    if optin and optout:
        return replies.TRACKING_OPTIN_OPTOUT
    if (optin and state.optout) or (optout and state.optin):
        return replies.TRACKING_SWITCH_OPTIN
    if bcast:
        return prefix_collision(state.prefixes, prefixes)
    return None


def prefix_collision(existing: Sequence[bytes], given: Sequence[bytes]) -> ErrorReply | None:
    """tracking.c checkPrefixCollisionsOrReply: two prefixes overlap when one starts the
    other (stringCheckPrefix), an equal one included."""
    for i, prefix in enumerate(given):
        for old in existing:
            if _overlap(old, prefix):
                return replies.prefix_overlap(prefix, old, existing=True)
        for other in given[i + 1 :]:
            if _overlap(prefix, other):
                return replies.prefix_overlap(prefix, other, existing=False)
    return None


def _overlap(a: bytes, b: bytes) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def parse_caching(state: TrackingState, arg: bytes) -> bytes:
    """CLIENT CACHING yes|no: sets the one-command flag, or Redis's error."""
    if not state.on:
        return replies.CACHING_NOT_TRACKING.encode()
    option = arg.lower()
    if option == b"yes":
        if not state.optin:
            return replies.CACHING_YES_NOT_OPTIN.encode()
    elif option == b"no":
        if not state.optout:
            return replies.CACHING_NO_NOT_OPTOUT.encode()
    else:
        return replies.SYNTAX.encode()
    state.caching = True
    return b"+OK\r\n"


def trackinginfo_reply(state: TrackingState, resp3: bool) -> bytes:
    """CLIENT TRACKINGINFO: a map of flags (a set), redirect and prefixes."""
    flags = [b"on" if state.on else b"off"]
    if state.bcast:
        flags.append(b"bcast")
    if state.optin:
        flags.append(b"optin")
        if state.caching:
            flags.append(b"caching-yes")
    if state.optout:
        flags.append(b"optout")
        if state.caching:
            flags.append(b"caching-no")
    if state.noloop:
        flags.append(b"noloop")
    if state.broken_redirect:
        flags.append(b"broken_redirect")
    head = b"%3\r\n" if resp3 else b"*6\r\n"
    set_head = b"~%d\r\n" if resp3 else b"*%d\r\n"
    return b"".join(
        (
            head,
            encode_bulk(b"flags"),
            set_head % len(flags),
            *(encode_bulk(flag) for flag in flags),
            encode_bulk(b"redirect"),
            encode_int(state.redir()),
            encode_bulk(b"prefixes"),
            b"*%d\r\n" % len(state.prefixes),
            *(encode_bulk(prefix) for prefix in state.prefixes),
        )
    )


def encode_keys(keys: Sequence[bytes] | None, resp3: bool) -> bytes:
    """The value part of an invalidation: the keys, or null for a flush."""
    if keys is None:
        return _NULL3 if resp3 else _NULL2
    return b"*%d\r\n" % len(keys) + b"".join(encode_bulk(key) for key in keys)


def invalidation(value: bytes, push: bool) -> bytes:
    """tracking.c sendTrackingMessage: a RESP3 push, or (a RESP2 redirect target in Pub/Sub
    mode) a message on __redis__:invalidate. `value` comes from encode_keys."""
    return (_PUSH_HEAD if push else _MESSAGE_HEAD) + value


def redirect_broken(redirect: int) -> bytes:
    """The push a RESP3 client gets when its redirect target has gone away."""
    return _BROKEN_HEAD + encode_int(redirect)


def group_by_prefix(state: TrackingState, keys: Iterable[bytes]) -> list[list[bytes]]:
    """A broadcasting client's keys, one list per matching prefix in prefix order (Redis
    sends one message per prefix)."""
    groups: dict[bytes, list[bytes]] = {}
    for key in keys:
        prefix = state.prefix_of(key)
        if prefix is not None:
            groups.setdefault(prefix, []).append(key)
    return [groups[p] for p in state.prefixes if p in groups]


def read_keys(table: CommandTable, args: Args) -> tuple[bytes, ...]:
    """The keys a request reads, as tracking remembers them: a read-only command's keys, and
    the declared keys of scripts and functions (server.c call, trackingRememberKeys)."""
    spec = table.resolve(args)
    if spec is None:
        return ()
    if b"readonly" not in spec.flags and spec.name not in _SCRIPTS:
        return ()
    return tuple(args[i] for i in key_positions(spec, args) or ())


def written_keys(table: CommandTable, args: Args) -> tuple[bytes, ...]:
    """The keys a write command modifies (for NOLOOP)."""
    spec = table.resolve(args)
    if spec is None or b"write" not in spec.flags or spec.name in _SCRIPTS:
        return ()
    return tuple(args[i] for i in key_positions(spec, args) or ())


class TrackingTable:
    """Key -> {client id: generation} of the clients that read it (tracking.c TrackingTable).

    A client's generation grows with each flush it gets, so its older entries lapse without
    a walk over the table. At most `max_keys` keys (0: no bound, as tracking-table-max-keys);
    past that the oldest keys are evicted and their clients must be told, as Redis does."""

    __slots__ = ("_keys", "max_keys")

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._keys: dict[bytes, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def remember(
        self, client: int, generation: int, keys: Iterable[bytes]
    ) -> list[tuple[bytes, dict[int, int]]]:
        """Record that `client` read `keys`; returns the keys evicted to stay in bound."""
        table = self._keys
        for key in keys:
            readers = table.get(key)
            if readers is None:
                table[key] = {client: generation}
            else:
                readers[client] = generation
        evicted = []
        bound = self.max_keys
        while bound and len(table) > bound:
            key = next(iter(table))
            evicted.append((key, table.pop(key)))
        return evicted

    def pop(self, key: bytes) -> dict[int, int] | None:
        """The readers of `key`, which stops being tracked (until read again)."""
        return self._keys.pop(key, None)

    def clear(self) -> None:
        self._keys.clear()


def parse_invalidation(value: object) -> list[bytes] | bool | None:
    """A node's push (parsed): the keys of `>2 invalidate [keys]`, None for a flush, False
    for anything else."""
    if not isinstance(value, list) or len(value) != 2 or value[0] != b"invalidate":
        return False
    keys = value[1]
    if keys is None:
        return None
    if isinstance(keys, list) and all(isinstance(k, bytes) for k in keys):
        return keys
    return False


TRACKING_SUBCOMMANDS: Final = frozenset(b"tracking caching trackinginfo getredir".split())


def is_tracking_command(args: Args) -> bool:
    """CLIENT TRACKING / CACHING / TRACKINGINFO / GETREDIR (served by proxy/tracking.py)."""
    return len(args) >= 2 and args[1].lower() in TRACKING_SUBCOMMANDS
