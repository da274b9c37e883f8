"""Key positions from the captured redis-server 7.0.15 command table, no server needed.

Expected values were checked against `COMMAND GETKEYS` on 7.0.15; the integration drift test
does that for every command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.commands import BeginSearch, CommandSpec, FindKeys, KeySpec, parse_command_reply
from routing.keys import key_positions, parse_ll, simple_key_index

CAPTURED: Final = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


def _load_table() -> object:
    reader = hiredis.Reader()
    reader.feed(CAPTURED.read_bytes())
    return reader.gets()


TABLE: Final = parse_command_reply(_load_table())
ALL_SPECS: Final = [s for top in TABLE for s in (top, *top.subcommands.values())]


def positions(line: bytes) -> tuple[int, ...] | None:
    # b"''" stands for the empty argument (MIGRATE's KEYS form).
    args = [b"" if a == b"''" else a for a in line.split(b" ")]
    spec = TABLE.resolve(args)
    assert spec is not None, line
    return key_positions(spec, args)


# (argv, positions): None = a server would reject the arguments.
SIMPLE_CASES: Final[list[tuple[bytes, tuple[int, ...] | None]]] = [
    (b"GET k", (1,)),
    (b"get k", (1,)),
    (b"GET", None),
    (b"GET a b", None),
    (b"SET k v", (1,)),
    (b"SET k v GET EX 10", (1,)),
    (b"MGET a b c", (1, 2, 3)),
    (b"MSET a 1 b 2", (1, 3)),
    (b"MSET a 1 b", (1, 3)),  # like GETKEYS: MSET itself then rejects the odd count
    (b"MSETNX a 1 b 2", (1, 3)),
    (b"DEL a", (1,)),
    (b"DEL a b c", (1, 2, 3)),
    (b"EXISTS a b", (1, 2)),
    (b"RENAME a b", (1, 2)),
    (b"SMOVE a b m", (1, 2)),
    (b"LMOVE a b LEFT RIGHT", (1, 2)),
    (b"BLMOVE a b LEFT RIGHT 0", (1, 2)),
    (b"BLPOP a b 0", (1, 2)),
    (b"BITOP AND d a b", (2, 3, 4)),
    (b"LCS a b", (1, 2)),
    (b"COPY a b REPLACE", (1, 2)),
    (b"EVAL s 0", ()),
    (b"EVAL s 0 x y", ()),
    (b"EVAL s 1 k", (3,)),
    (b"EVAL s 2 a b c", (3, 4)),
    (b"EVALSHA sha 2 a b", (3, 4)),
    (b"EVAL_RO s 1 k a", (3,)),
    (b"EVAL s 3 a b", None),
    (b"EVAL s -1 a", None),
    (b"EVAL s x a", None),
    (b"EVAL s 01 a", None),
    (b"EVAL s +1 a", None),
    (b"FCALL f 1 k a", (3,)),
    (b"FCALL_RO f 0", ()),
    (b"XREAD STREAMS a 0", (2,)),
    (b"XREAD STREAMS a b 0 0", (2, 3)),
    (b"XREAD COUNT 2 STREAMS a b 0 0", (4, 5)),
    (b"XREAD BLOCK 0 STREAMS a 0", (4,)),
    (b"XREAD COUNT 1 BLOCK 10 STREAMS a b 0 0", (6, 7)),
    (b"xread streams a 0", (2,)),
    (b"XREAD STREAMS streams streams 0 0", (2, 3)),
    (b"XREAD STREAMS a b 0", (2,)),  # GETKEYS rounds down; XREAD rejects it
    (b"XREAD COUNT 1 STREAMS", None),
    (b"XREAD COUNT 1 BLOCK 0", None),
    (b"XREADGROUP GROUP g c STREAMS a 0", (5,)),
    (b"XREADGROUP GROUP streams c STREAMS a 0", (5,)),
    (b"XREADGROUP GROUP g c COUNT 1 BLOCK 0 NOACK STREAMS a b 0 0", (10, 11)),
    (b"ZUNIONSTORE d 2 a b", (1, 3, 4)),
    (b"ZUNIONSTORE d 2 a b WEIGHTS 1 2 AGGREGATE MIN", (1, 3, 4)),
    (b"ZUNIONSTORE d 0 a", None),
    (b"ZUNIONSTORE d 3 a b", None),
    (b"ZINTERSTORE d 1 a", (1, 3)),
    (b"ZDIFFSTORE d 2 a b", (1, 3, 4)),
    (b"ZUNION 2 a b", (2, 3)),
    (b"ZUNION 2 a b WITHSCORES", (2, 3)),
    (b"ZINTER 1 a", (2,)),
    (b"ZINTERCARD 2 a b LIMIT 1", (2, 3)),
    (b"SINTERCARD 2 a b", (2, 3)),
    (b"SINTERCARD 0 a", None),
    (b"LMPOP 2 a b LEFT", (2, 3)),
    (b"LMPOP 1 a RIGHT COUNT 2", (2,)),
    (b"BLMPOP 0 2 a b LEFT", (3, 4)),
    (b"BLMPOP 0 3 a b", None),
    (b"ZMPOP 1 a MIN", (2,)),
    (b"BZMPOP 0 2 a b MAX COUNT 1", (3, 4)),
    (b"SORT k", (1,)),
    (b"SORT k STORE d", (1, 3)),
    (b"SORT k BY w_* GET o_* GET # STORE d", (1, 9)),
    (b"SORT k BY store GET store", (1,)),
    (b"SORT k LIMIT 0 1 ALPHA DESC STORE d", (1, 8)),
    (b"SORT k LIMIT store x y STORE z", (1, 7)),
    (b"SORT k STORE a STORE b", (1, 5)),
    (b"SORT k STORE", (1,)),
    (b"SORT k store\x00x d", (1, 3)),  # strcasecmp stops at NUL
    (b"SORT_RO k BY p GET g", (1,)),
    (b"SORT_RO k STORE d", (1,)),
    (b"MIGRATE h 1 k 0 5", (3,)),
    (b"MIGRATE h 1 k 0 5 COPY REPLACE", (3,)),
    (b"MIGRATE h 1 '' 0 5 KEYS a b", (7, 8)),
    (b"MIGRATE h 1 '' 0 5 COPY REPLACE KEYS a b c", (9, 10, 11)),
    (b"MIGRATE h 1 '' 0 5 AUTH keys KEYS a", (9,)),
    (b"MIGRATE h 1 '' 0 5 AUTH2 u keys KEYS a", (10,)),
    (b"MIGRATE h 1 k 0 5 KEYS a b", None),  # a key and KEYS: MIGRATE rejects it
    (b"MIGRATE h 1 '' 0 5 KEYS", (3,)),  # the KEYS spec finds nothing; the index spec stays
    (b"GEORADIUS k 0 0 1 m", (1,)),
    (b"GEORADIUS k 0 0 1 m WITHDIST STORE d", (1, 8)),
    (b"GEORADIUS k 0 0 1 m STOREDIST a STORE b", (1, 7, 9)),
    (b"GEORADIUS k 0 0 1 m STORE", (1,)),
    (b"GEORADIUSBYMEMBER k m 1 km STORE d", (1, 6)),
    (b"GEORADIUS_RO k 0 0 1 m", (1,)),
    (b"GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 m", (1, 2)),
    (b"OBJECT ENCODING k", (2,)),
    (b"object encoding k", (2,)),
    (b"OBJECT FREQ k", (2,)),
    (b"OBJECT HELP", ()),
    (b"MEMORY USAGE k", (2,)),
    (b"MEMORY USAGE k SAMPLES 5", (2,)),
    (b"XINFO STREAM k", (2,)),
    (b"XINFO STREAM k FULL COUNT 1", (2,)),
    (b"XINFO GROUPS k", (2,)),
    (b"CONFIG GET maxmemory", ()),
    (b"CONFIG GET", None),
    (b"PING", ()),
    (b"PING hello", ()),
    (b"DEBUG SLEEP 0", ()),
    (b"DBSIZE", ()),
    (b"KEYS *", ()),
    (b"SCAN 0 MATCH *", ()),
    (b"SPUBLISH ch m", ()),
    (b"PUBLISH ch m", ()),
    (b"SUBSCRIBE a b", ()),
    (b"WATCH a b", (1, 2)),
    (b"BITFIELD k GET u8 0", (1,)),
    (b"BITFIELD_RO k GET u8 0", (1,)),
    (b"PFMERGE d a b", (1, 2, 3)),
]


@pytest.mark.parametrize(
    ("line", "expected"), SIMPLE_CASES, ids=[c[0].decode() for c in SIMPLE_CASES]
)
def test_key_positions(line: bytes, expected: tuple[int, ...] | None) -> None:
    assert positions(line) == expected


def test_include_not_keys_gives_the_shard_channel() -> None:
    spublish = TABLE.get(b"spublish")
    assert spublish is not None
    assert key_positions(spublish, [b"SPUBLISH", b"ch", b"m"], include_not_keys=True) == (1,)
    ssubscribe = TABLE.get(b"ssubscribe")
    assert ssubscribe is not None
    args = [b"SSUBSCRIBE", b"a", b"b"]
    assert key_positions(ssubscribe, args, include_not_keys=True) == (1, 2)


@pytest.mark.parametrize(
    ("args", "index"),
    [
        ((b"get",), 1),
        ((b"set",), 1),
        ((b"incr",), 1),
        ((b"object", b"encoding"), 2),
        ((b"xinfo", b"stream"), 2),
        ((b"mget",), None),
        ((b"eval",), None),
        ((b"sort",), None),
        ((b"sort_ro",), None),
        ((b"ping",), None),
        ((b"rename",), None),
        ((b"georadius",), None),
    ],
)
def test_simple_key_index(args: tuple[bytes, ...], index: int | None) -> None:
    spec = TABLE.resolve(args)
    assert spec is not None
    assert simple_key_index(spec) == index


def test_simple_key_index_agrees_with_key_positions() -> None:
    for spec in ALL_SPECS:
        index = simple_key_index(spec)
        if index is None:
            continue
        argc = abs(spec.arity)
        args = [b"a%d" % i for i in range(argc)]
        assert key_positions(spec, args) == (index,), spec.name


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (b"0", 0),
        (b"7", 7),
        (b"-7", -7),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
        (b"9223372036854775808", None),
        (b"-0", None),
        (b"01", None),
        (b"+1", None),
        (b" 1", None),
        (b"1 ", None),
        (b"1\n", None),
        (b"1_0", None),
        (b"", None),
        (b"x", None),
        ("\u0661".encode(), None),
    ],
)
def test_parse_ll_is_string2ll(value: bytes, number: int | None) -> None:
    assert parse_ll(value) == number


# --- synthetic specs: the walk itself ----------------------------------------------------------


def _spec(
    *key_specs: KeySpec, arity: int = -1, flags: frozenset[bytes] = frozenset()
) -> CommandSpec:
    return CommandSpec(b"synthetic", arity, flags, key_specs=key_specs)


def _ks(begin: BeginSearch, find: FindKeys, *flags: bytes) -> KeySpec:
    return KeySpec(begin, find, frozenset(flags))


ARGS: Final = [b"cmd", b"a", b"KW", b"b", b"c", b"KW", b"d", b"e"]


@pytest.mark.parametrize(
    ("key_spec", "expected"),
    [
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=-1)), (1, 2, 3, 4, 5, 6, 7)),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=-2, keystep=2)), (1, 3, 5)),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=2)), (1, 2, 3)),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=-1, limit=2)), (1, 2, 3)),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=-1, limit=3)), (1, 2)),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=7)), None),
        (_ks(BeginSearch("index", index=8), FindKeys("range")), None),
        (_ks(BeginSearch("index", index=0), FindKeys("range")), None),
        (_ks(BeginSearch("index", index=1), FindKeys("range", lastkey=-1, keystep=0)), None),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=1), FindKeys("range")), (3,)),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=3), FindKeys("range")), (6,)),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=-1), FindKeys("range")), (6,)),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=-4), FindKeys("range")), (3,)),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=-7), FindKeys("range")), ()),
        (_ks(BeginSearch("keyword", keyword=b"kw", startfrom=0), FindKeys("range")), ()),
        (_ks(BeginSearch("keyword", keyword=b"e", startfrom=1), FindKeys("range")), ()),
        (_ks(BeginSearch("keyword", keyword=b"zz", startfrom=1), FindKeys("range")), ()),
        (_ks(BeginSearch("unknown"), FindKeys("range")), None),
        (_ks(BeginSearch("index", index=1), FindKeys("unknown")), None),
        (_ks(BeginSearch("index", index=1), FindKeys("range"), b"incomplete"), None),
        (_ks(BeginSearch("index", index=1), FindKeys("range"), b"not_key"), ()),
    ],
)
def test_key_spec_walk(key_spec: KeySpec, expected: tuple[int, ...] | None) -> None:
    # A spec that finds nothing counts as valid here: the synthetic command has no other key.
    spec = CommandSpec(b"synthetic", -1, frozenset({b"no_mandatory_keys"}), key_specs=(key_spec,))
    assert key_positions(spec, ARGS) == expected


def test_keynum_walk() -> None:
    keynum = _ks(BeginSearch("index", index=1), FindKeys("keynum", keynumidx=0, firstkey=1))
    spec = _spec(keynum)
    assert key_positions(spec, [b"c", b"2", b"a", b"b", b"x"]) == (2, 3)
    assert key_positions(spec, [b"c", b"3", b"a", b"b"]) is None
    assert key_positions(spec, [b"c", b"0", b"a"]) is None
    assert key_positions(spec, [b"c"]) is None
    stepped = _ks(BeginSearch("index", index=1), FindKeys("keynum", keystep=2, firstkey=1))
    # keynum's last key is first + numkeys - 1 whatever the step, as in getKeysUsingKeySpecs.
    assert key_positions(_spec(stepped), [b"c", b"3", b"a", b"1", b"b"]) == (2, 4)


def test_several_specs_come_back_in_argv_order() -> None:
    store = _ks(BeginSearch("keyword", keyword=b"kw", startfrom=-1), FindKeys("range"))
    first = _ks(BeginSearch("index", index=1), FindKeys("range"))
    assert key_positions(_spec(store, first), ARGS) == (1, 6)


@pytest.mark.parametrize("argc", [0, 1, 2, 4])
def test_arity_is_checked(argc: int) -> None:
    spec = _spec(_ks(BeginSearch("index", index=1), FindKeys("range")), arity=3)
    args = [b"x"] * argc
    assert key_positions(spec, args) is None


# --- totality --------------------------------------------------------------------------------

words = st.sampled_from(
    [b"", b"0", b"1", b"2", b"3", b"-1", b"01", b"x", b"streams", b"STREAMS", b"store",
     b"STORE", b"storedist", b"keys", b"KEYS", b"get", b"by", b"limit", b"auth", b"auth2",
     b"copy", b"block", b"count", b"group", b"weights", b"numkeys", b"\x00", b"k\x00"]
)  # fmt: skip
argvs = st.lists(words | st.binary(max_size=6), max_size=14)


def _check_total(spec: CommandSpec, args: list[bytes]) -> None:
    found = key_positions(spec, args)
    if found is not None:
        assert all(1 <= i < len(args) for i in found), (spec.name, args, found)
        assert list(found) == sorted(found)


@settings(max_examples=3000)
@given(st.sampled_from(ALL_SPECS), argvs)
def test_real_specs_are_total(spec: CommandSpec, tail: list[bytes]) -> None:
    name = spec.name.split(b"|")
    _check_total(spec, [*name, *tail])
    _check_total(spec, tail)


small = st.integers(-5, 5)
begins = st.builds(
    BeginSearch, st.sampled_from(["index", "keyword", "unknown"]), small, words, small
)
finds = st.builds(
    FindKeys, st.sampled_from(["range", "keynum", "unknown"]), small, small, small, small, small
)
key_specs = st.builds(
    KeySpec,
    begins,
    finds,
    st.frozensets(st.sampled_from([b"incomplete", b"not_key", b"variable_flags", b"ro"])),
)
specs = st.builds(
    CommandSpec,
    name=st.sampled_from([b"synthetic", b"sort", b"sort_ro", b"migrate"]),
    arity=small,
    flags=st.frozensets(st.sampled_from([b"no_mandatory_keys", b"movablekeys"])),
    first_key=small,
    last_key=small,
    step=small,
    key_specs=st.lists(key_specs, max_size=3).map(tuple),
)


@settings(max_examples=3000)
@given(specs, argvs, st.booleans())
def test_synthetic_specs_are_total(spec: CommandSpec, args: list[bytes], not_keys: bool) -> None:
    found = key_positions(spec, args, include_not_keys=not_keys)
    if found is not None:
        assert all(0 <= i < len(args) for i in found), (spec, args, found)
