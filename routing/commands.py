"""The command table: what the upstream's own `COMMAND` reply says about each command.

Owns `CommandSpec` (arity, flags, tips, key specs, subcommands), `CommandTable` lookup and
`parse_command_reply`. The table is data from the server, never hand-written here, except
`EXTRA_KEY_RULES`: Redis's getkeys_proc cases its key specs leave "unknown" or "incomplete".
Pure: parsing is total and never raises for odd replies; a malformed entry is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

_EMPTY_SUBCOMMANDS: Final[Mapping[bytes, CommandSpec]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BeginSearch:
    """Where a key spec starts looking (src/server.h `kspec_bs_type`)."""

    kind: Literal["index", "keyword", "unknown"]
    index: int = 0
    keyword: bytes = b""
    startfrom: int = 0


@dataclass(frozen=True, slots=True)
class FindKeys:
    """How a key spec finds its keys once it has begun (src/server.h `kspec_fk_type`)."""

    kind: Literal["range", "keynum", "unknown"]
    lastkey: int = 0
    keystep: int = 1
    limit: int = 0
    keynumidx: int = 0
    firstkey: int = 0


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key spec of a command, as `COMMAND` reports it (flags lowercased)."""

    begin_search: BeginSearch
    find_keys: FindKeys
    flags: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class ExtraKeyRule:
    """A port of one Redis getkeys_proc, used when the key specs cannot answer.

    `fixed` positions are always keys. Options are scanned from `scan_from` on (C-string,
    case-insensitive compare); an option in `skip` consumes that many arguments. On `keyword`:
    kind "store" takes the next argument as a key (the last one wins, like SORT itself);
    kind "tail" takes every following argument instead of `fixed`, and no keys at all when
    argv[`fixed[0]`] is not empty (MIGRATE's KEYS form needs "" in the key slot).
    """

    kind: Literal["store", "tail"]
    fixed: tuple[int, ...]
    scan_from: int = 0
    skip: Mapping[bytes, int] = field(default_factory=dict, compare=False)
    keyword: bytes = b""


# What Redis 7.0 computes in a getkeys_proc because its key specs say "unknown"/"incomplete"
# (src/db.c sortGetKeys, sortROGetKeys, migrateGetKeys). The other getkeys_procs only repeat
# what the specs already give for every argv the command itself accepts.
EXTRA_KEY_RULES: Final[Mapping[bytes, ExtraKeyRule]] = MappingProxyType(
    {
        # BY/GET take patterns, not keys: the key names derive from the sorted values.
        b"sort": ExtraKeyRule(
            kind="store",
            fixed=(1,),
            scan_from=2,
            skip=MappingProxyType({b"limit": 2, b"get": 1, b"by": 1}),
            keyword=b"store",
        ),
        b"sort_ro": ExtraKeyRule(kind="store", fixed=(1,)),
        b"migrate": ExtraKeyRule(
            kind="tail",
            fixed=(3,),
            scan_from=6,
            skip=MappingProxyType({b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}),
            keyword=b"keys",
        ),
    }
)


def _policy(tips: Iterable[bytes], prefix: bytes) -> bytes | None:
    for tip in tips:
        if tip.startswith(prefix):
            return tip[len(prefix) :]
    return None


def _legacy_key_spec(first: int, last: int, step: int) -> KeySpec:
    # Redis 6 replies have no key specs; Redis derives the same range from (first, last, step).
    lastkey = last - first if last >= 0 else last
    return KeySpec(BeginSearch("index", index=first), FindKeys("range", lastkey, step))


def _simple_key(name: bytes, key_specs: tuple[KeySpec, ...]) -> int | None:
    if len(key_specs) != 1 or name in EXTRA_KEY_RULES:
        return None
    ks = key_specs[0]
    bs, fk = ks.begin_search, ks.find_keys
    if bs.kind != "index" or fk.kind != "range" or fk.lastkey != 0 or bs.index < 1:
        return None
    if b"incomplete" in ks.flags or b"not_key" in ks.flags:
        return None
    return bs.index


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One entry of `COMMAND` (src/server.c addReplyCommandInfo); names and flags lowercased.

    Policies default to what the tips say; with no key specs, a positive `first_key` stands
    for a legacy range spec, as on Redis 6.
    """

    name: bytes
    arity: int
    flags: frozenset[bytes]
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    acl_categories: frozenset[bytes] = frozenset()
    tips: tuple[bytes, ...] = ()
    request_policy: bytes | None = None
    response_policy: bytes | None = None
    key_specs: tuple[KeySpec, ...] = ()
    subcommands: Mapping[bytes, CommandSpec] = field(
        default_factory=lambda: _EMPTY_SUBCOMMANDS, compare=False, repr=False
    )
    is_write: bool = field(init=False, compare=False, repr=False)
    is_readonly: bool = field(init=False, compare=False, repr=False)
    is_blocking: bool = field(init=False, compare=False, repr=False)
    has_movable_keys: bool = field(init=False, compare=False, repr=False)
    has_keys: bool = field(init=False, compare=False, repr=False)
    simple_key: int | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        def put(attr: str, value: object) -> None:
            object.__setattr__(self, attr, value)

        if not self.key_specs and self.first_key > 0 and self.step > 0:
            put("key_specs", (_legacy_key_spec(self.first_key, self.last_key, self.step),))
        if self.request_policy is None:
            put("request_policy", _policy(self.tips, b"request_policy:"))
        if self.response_policy is None:
            put("response_policy", _policy(self.tips, b"response_policy:"))
        put("is_write", b"write" in self.flags)
        put("is_readonly", b"readonly" in self.flags)
        put("is_blocking", b"blocking" in self.flags)
        put("has_movable_keys", b"movablekeys" in self.flags)
        put(
            "has_keys",
            self.name in EXTRA_KEY_RULES
            or any(b"not_key" not in ks.flags for ks in self.key_specs),
        )
        put("simple_key", _simple_key(self.name, self.key_specs))


class CommandTable:
    """Top-level commands by name, case-insensitive (src/server.c lookupCommand)."""

    __slots__ = ("_by_name", "_specs")

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._specs: dict[bytes, CommandSpec] = {}
        for spec in specs:
            self._specs.setdefault(spec.name.lower(), spec)
        # The hot path sees lowercase or UPPERCASE names nearly always: one dict hit for both.
        self._by_name = dict(self._specs)
        for name, spec in self._specs.items():
            self._by_name.setdefault(name.upper(), spec)

    def get(self, name: bytes) -> CommandSpec | None:
        """The top-level command named `name` (any case), or None."""
        spec = self._by_name.get(name)
        return spec if spec is not None else self._specs.get(name.lower())

    def resolve(self, args: Sequence[bytes]) -> CommandSpec | None:
        """The spec that runs `args`: the subcommand of a container, else the command."""
        if not args:
            return None
        spec = self.get(args[0])
        if spec is None or not spec.subcommands or len(args) < 2:
            return spec
        subs = spec.subcommands
        sub = subs.get(args[1])
        if sub is None:
            sub = subs.get(args[1].lower())
        return sub if sub is not None else spec

    def names(self) -> tuple[bytes, ...]:
        """Lowercase names of the top-level commands."""
        return tuple(self._specs)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, bytes) and self.get(name) is not None


# --- parsing the `COMMAND` reply (RESP2 flat maps or RESP3 dicts) -------------------------


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return None


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_map(value: object) -> dict[bytes, object] | None:
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple) and len(value) % 2 == 0:
        items = list(zip(value[::2], value[1::2], strict=True))
    else:
        return None
    out: dict[bytes, object] = {}
    for key, item in items:
        name = _as_bytes(key)
        if name is None:
            return None
        out[name.lower()] = item
    return out


def _as_names(value: object) -> tuple[bytes, ...] | None:
    if not isinstance(value, list | tuple | set):
        return None
    names = tuple(_as_bytes(item) for item in value)
    if any(name is None for name in names):
        return None
    return tuple(name.lower() for name in names if name is not None)


def _parse_begin_search(value: object) -> BeginSearch:
    bs = _as_map(value) or {}
    spec = _as_map(bs.get(b"spec")) or {}
    kind = _as_bytes(bs.get(b"type"))
    if kind == b"index":
        index = _as_int(spec.get(b"index"))
        if index is not None:
            return BeginSearch("index", index=index)
    elif kind == b"keyword":
        keyword = _as_bytes(spec.get(b"keyword"))
        startfrom = _as_int(spec.get(b"startfrom"))
        if keyword and startfrom is not None:
            return BeginSearch("keyword", keyword=keyword.lower(), startfrom=startfrom)
    return BeginSearch("unknown")


def _parse_find_keys(value: object) -> FindKeys:
    fk = _as_map(value) or {}
    spec = _as_map(fk.get(b"spec")) or {}
    kind = _as_bytes(fk.get(b"type"))
    if kind == b"range":
        lastkey, keystep, limit = (_as_int(spec.get(k)) for k in (b"lastkey", b"keystep", b"limit"))
        if lastkey is not None and keystep is not None:
            return FindKeys("range", lastkey=lastkey, keystep=keystep, limit=limit or 0)
    elif kind == b"keynum":
        keynumidx, firstkey, keystep = (
            _as_int(spec.get(k)) for k in (b"keynumidx", b"firstkey", b"keystep")
        )
        if keynumidx is not None and firstkey is not None and keystep is not None:
            return FindKeys("keynum", keystep=keystep, keynumidx=keynumidx, firstkey=firstkey)
    return FindKeys("unknown")


def _parse_key_spec(value: object) -> KeySpec | None:
    ks = _as_map(value)
    if ks is None:
        return None
    flags = _as_names(ks.get(b"flags", ()))
    if flags is None:
        return None
    return KeySpec(
        _parse_begin_search(ks.get(b"begin_search")),
        _parse_find_keys(ks.get(b"find_keys")),
        frozenset(flags),
    )


def _field(entry: Sequence[object], index: int) -> object:
    return entry[index] if index < len(entry) else ()


def _parse_entry(entry: object) -> CommandSpec | None:
    if not isinstance(entry, list | tuple) or len(entry) < 6:
        return None
    name = _as_bytes(entry[0])
    arity, first, last, step = (_as_int(entry[i]) for i in (1, 3, 4, 5))
    flags = _as_names(entry[2])
    acl = _as_names(_field(entry, 6))
    tips = _as_names(_field(entry, 7))
    raw_specs = _field(entry, 8)
    raw_subs = _field(entry, 9)
    if (
        not name
        or arity is None
        or first is None
        or last is None
        or step is None
        or flags is None
        or acl is None
        or tips is None
        or not isinstance(raw_specs, list | tuple)
        or not isinstance(raw_subs, list | tuple | dict)
    ):
        return None
    key_specs = tuple(_parse_key_spec(ks) for ks in raw_specs)
    if any(ks is None for ks in key_specs):
        return None
    subs = raw_subs.values() if isinstance(raw_subs, dict) else raw_subs
    return CommandSpec(
        name=name.lower(),
        arity=arity,
        flags=frozenset(flags),
        first_key=first,
        last_key=last,
        step=step,
        acl_categories=frozenset(c.removeprefix(b"@") for c in acl),
        tips=tips,
        key_specs=tuple(ks for ks in key_specs if ks is not None),
        subcommands=_parse_subcommands(subs),
    )


def _parse_subcommands(entries: Iterable[object]) -> Mapping[bytes, CommandSpec]:
    subs: dict[bytes, CommandSpec] = {}
    for entry in entries:
        spec = _parse_entry(entry)
        if spec is not None:
            subs.setdefault(spec.name.rpartition(b"|")[2], spec)
    return MappingProxyType(subs) if subs else _EMPTY_SUBCOMMANDS


def parse_command_reply(reply: object) -> CommandTable:
    """Build the table from a hiredis-decoded `COMMAND` reply (src/server.c commandCommand)."""
    if isinstance(reply, dict):
        entries: Iterable[object] = reply.values()
    elif isinstance(reply, list | tuple):
        entries = reply
    else:
        entries = ()
    specs = (_parse_entry(entry) for entry in entries)
    return CommandTable(spec for spec in specs if spec is not None)
