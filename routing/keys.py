"""Which arguments of a command are keys: Redis's key-spec walk, in Python.

Mirrors src/db.c `getKeysFromCommandWithSpecs` / `getKeysUsingKeySpecs` (Redis 7.0), then the
`EXTRA_KEY_RULES` stand-ins for getkeys_procs. Total: any argv gives positions or None, never
an exception. None means "a server would reject these arguments", so the caller lets one say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from routing.commands import EXTRA_KEY_RULES, CommandSpec, ExtraKeyRule, FindKeys, KeySpec

_LL_MIN: Final = -(2**63)
_LL_MAX: Final = 2**63 - 1


def parse_ll(value: bytes) -> int | None:
    """The integer Redis's string2ll (src/util.c) reads from `value`, or None if it rejects it."""
    # string2ll: an optional '-', ASCII digits, no '+', spaces, '_' or leading zeros; 64 bits.
    negative = value[:1] == b"-"
    digits = value[1:] if negative else value
    if not digits.isdigit() or len(digits) > 19 or (digits[0] == 0x30 and len(value) != 1):
        return None
    number = -int(digits) if negative else int(digits)
    return number if _LL_MIN <= number <= _LL_MAX else None


def _option(arg: bytes) -> bytes:
    # Redis compares options with strcasecmp on C strings: a NUL byte ends the argument.
    nul = arg.find(b"\0")
    return (arg if nul < 0 else arg[:nul]).lower()


def simple_key_index(spec: CommandSpec) -> int | None:
    """The argv index of the only key for commands with one key at a fixed index, else None."""
    return spec.simple_key


def _begin(ks: KeySpec, args: Sequence[bytes]) -> int | None:
    """First position to look at; 0 when the keyword is absent; None for an unusable spec."""
    bs = ks.begin_search
    if bs.kind == "index":
        return bs.index if bs.index >= 1 else None
    if bs.kind != "keyword":
        return None
    argc = len(args)
    # The search never looks at its end index: the last argument (forwards) or argv[1]
    # (backwards) cannot be the keyword, as in getKeysUsingKeySpecs.
    if bs.startfrom > 0:
        candidates = range(bs.startfrom, argc - 1)
    elif bs.startfrom < 0:
        candidates = range(argc + bs.startfrom, 1, -1)
    else:
        return 0
    for i in candidates:
        if _option(args[i]) == bs.keyword:
            return i + 1
    return 0


def _find(fk: FindKeys, first: int, args: Sequence[bytes], spec: CommandSpec) -> range | None:
    """Positions of the keys from `first` on, or None where Redis reports an invalid spec."""
    argc = len(args)
    if first >= argc or fk.keystep < 1:
        return None
    if fk.kind == "range":
        if fk.lastkey >= 0:
            last = first + fk.lastkey
        elif fk.limit == 0:
            last = argc + fk.lastkey
        elif fk.limit > 0:
            last = first + (argc - first) // fk.limit + fk.lastkey
        else:
            return None
    elif fk.kind == "keynum":
        at = first + fk.keynumidx
        numkeys = parse_ll(args[at]) if 0 < at < argc else None
        if numkeys is None or numkeys < 0:
            return None
        first += fk.firstkey
        if numkeys == 0 and b"no_mandatory_keys" in spec.flags:
            # EVAL/FCALL with numkeys 0: Redis's getkeys_proc answers "no keys", validly.
            return range(0)
        last = first + numkeys - 1
    else:
        return None
    if last >= argc or last < first or first < 1:
        return None
    return range(first, last + 1, fk.keystep)


def _from_key_specs(
    spec: CommandSpec, args: Sequence[bytes], include_not_keys: bool
) -> tuple[int, ...] | None:
    found: tuple[int, ...] = ()
    sources = 0
    for ks in spec.key_specs:
        if not include_not_keys and b"not_key" in ks.flags:
            continue
        first = _begin(ks, args)
        if first is None:
            return None
        if first == 0:
            continue
        positions = _find(ks.find_keys, first, args, spec)
        # An incomplete spec still fails the whole walk: Redis then asks the getkeys_proc.
        if positions is None or b"incomplete" in ks.flags:
            return None
        if positions:
            found += tuple(positions)
            sources += 1
    # Specs run in declaration order; callers get argv order.
    return tuple(sorted(found)) if sources > 1 else found


def _from_rule(rule: ExtraKeyRule, args: Sequence[bytes]) -> tuple[int, ...]:
    """src/db.c sortGetKeys / sortROGetKeys / migrateGetKeys, table-driven."""
    argc = len(args)
    fixed = tuple(i for i in rule.fixed if i < argc)
    if not rule.keyword:
        return fixed
    store = 0
    i = rule.scan_from
    while i < argc:
        option = _option(args[i])
        if option == rule.keyword:
            if rule.kind == "tail":
                if not fixed or args[fixed[0]]:
                    return ()
                return tuple(range(i + 1, argc))
            if i + 1 < argc:
                store = i + 1
        else:
            i += rule.skip.get(option, 0)
        i += 1
    return (*fixed, store) if store else fixed


def key_positions(
    spec: CommandSpec, args: Sequence[bytes], *, include_not_keys: bool = False
) -> tuple[int, ...] | None:
    """argv indexes of the keys in `args`, in argv order; () for none; None if invalid.

    Mirrors src/db.c getKeysFromCommandWithSpecs as `COMMAND GETKEYS` uses it, arity check
    included, except that a numkeys string2ll rejects (GETKEYS retries it with atoi) or one
    past the end gives None: the command itself fails on those. `include_not_keys` also
    returns NOT_KEY specs (a shard channel's position), like GET_KEYSPEC_INCLUDE_NOT_KEYS.
    """
    argc = len(args)
    arity = spec.arity
    if argc == 0 or (arity > 0 and argc != arity) or argc < -arity:
        return None
    index = spec.simple_key
    if index is not None:
        return (index,) if index < argc else None
    found = _from_key_specs(spec, args, include_not_keys)
    if found is None:
        rule = EXTRA_KEY_RULES.get(spec.name)
        if rule is None:
            return None
        found = _from_rule(rule, args)
    if not found and spec.has_keys and b"no_mandatory_keys" not in spec.flags:
        return None
    return found
