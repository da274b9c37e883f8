"""The command table parsed from a captured `COMMAND` reply of redis-server 7.0.15."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.commands import (
    EXTRA_KEY_RULES,
    BeginSearch,
    CommandSpec,
    CommandTable,
    FindKeys,
    KeySpec,
    parse_command_reply,
)

CAPTURED: Final = Path(__file__).parents[3] / "routing" / "data" / "command-7.0.resp"


def load_reply() -> object:
    reader = hiredis.Reader()
    reader.feed(CAPTURED.read_bytes())
    reply = reader.gets()
    assert reader.gets() is False
    return reply


TABLE: Final = parse_command_reply(load_reply())


def spec_of(*args: bytes) -> CommandSpec:
    spec = TABLE.resolve(args)
    assert spec is not None, args
    return spec


def test_captured_table_is_complete() -> None:
    assert len(TABLE) == 240
    assert sum(len(spec.subcommands) for spec in TABLE) == 126
    assert len(TABLE.names()) == len(TABLE) == len(list(TABLE))
    assert all(name == name.lower() for name in TABLE.names())


@pytest.mark.parametrize(
    ("args", "request_policy", "response_policy"),
    [
        ((b"dbsize",), b"all_shards", b"agg_sum"),
        ((b"keys",), b"all_shards", None),
        ((b"mget",), b"multi_shard", None),
        ((b"mset",), b"multi_shard", b"all_succeeded"),
        ((b"del",), b"multi_shard", b"agg_sum"),
        ((b"exists",), b"multi_shard", b"agg_sum"),
        ((b"scan",), b"special", None),
        ((b"flushall",), b"all_shards", b"all_succeeded"),
        ((b"script", b"flush"), b"all_nodes", b"all_succeeded"),
        ((b"script", b"exists"), b"all_shards", b"agg_logical_and"),
        ((b"script", b"kill"), b"all_shards", b"one_succeeded"),
        ((b"wait",), b"all_shards", b"agg_min"),
        ((b"get",), None, None),
        ((b"ping",), b"all_shards", b"all_succeeded"),
    ],
)
def test_policies(
    args: tuple[bytes, ...], request_policy: bytes | None, response_policy: bytes | None
) -> None:
    spec = spec_of(*args)
    assert spec.request_policy == request_policy
    assert spec.response_policy == response_policy


def test_tips_are_raw_and_lowercase() -> None:
    assert spec_of(b"keys").tips == (
        b"request_policy:all_shards",
        b"nondeterministic_output_order",
    )
    assert spec_of(b"get").tips == ()


@pytest.mark.parametrize(
    ("args", "present", "absent"),
    [
        ((b"get",), {b"readonly", b"fast"}, {b"write", b"movablekeys"}),
        ((b"set",), {b"write", b"denyoom"}, {b"readonly"}),
        ((b"blpop",), {b"write", b"blocking"}, set()),
        ((b"xread",), {b"readonly", b"blocking", b"movablekeys"}, set()),
        ((b"eval",), {b"noscript", b"movablekeys", b"no_mandatory_keys", b"stale"}, set()),
        ((b"subscribe",), {b"pubsub", b"noscript", b"loading", b"stale"}, set()),
        ((b"config", b"set"), {b"admin", b"noscript", b"loading", b"stale"}, set()),
        ((b"sort",), {b"write", b"movablekeys"}, set()),
    ],
)
def test_flags(args: tuple[bytes, ...], present: set[bytes], absent: set[bytes]) -> None:
    spec = spec_of(*args)
    assert present <= spec.flags
    assert not absent & spec.flags


@pytest.mark.parametrize(
    ("args", "write", "readonly", "blocking", "movable", "has_keys"),
    [
        ((b"get",), False, True, False, False, True),
        ((b"set",), True, False, False, False, True),
        ((b"blmove",), True, False, True, False, True),
        ((b"xreadgroup",), True, False, True, True, True),
        ((b"eval",), False, False, False, True, True),
        ((b"ping",), False, False, False, False, False),
        ((b"config", b"get"), False, False, False, False, False),
        ((b"spublish",), False, False, False, False, False),  # the channel is NOT_KEY
        ((b"object", b"encoding"), False, True, False, False, True),
    ],
)
def test_convenience_booleans(
    args: tuple[bytes, ...],
    write: bool,
    readonly: bool,
    blocking: bool,
    movable: bool,
    has_keys: bool,
) -> None:
    spec = spec_of(*args)
    assert (spec.is_write, spec.is_readonly, spec.is_blocking) == (write, readonly, blocking)
    assert (spec.has_movable_keys, spec.has_keys) == (movable, has_keys)


def test_entry_fields() -> None:
    mset = spec_of(b"mset")
    assert (mset.name, mset.arity, mset.first_key, mset.last_key, mset.step) == (
        b"mset",
        -3,
        1,
        -1,
        2,
    )
    assert mset.acl_categories == {b"write", b"string", b"slow"}
    assert mset.key_specs == (
        KeySpec(
            BeginSearch("index", index=1),
            FindKeys("range", lastkey=-1, keystep=2, limit=0),
            frozenset({b"ow", b"update"}),
        ),
    )
    assert spec_of(b"xread").key_specs[0].begin_search == BeginSearch(
        "keyword", keyword=b"streams", startfrom=1
    )
    assert spec_of(b"xread").key_specs[0].find_keys == FindKeys("range", -1, 1, 2)
    assert spec_of(b"eval").key_specs[0].find_keys == FindKeys(
        "keynum", keystep=1, keynumidx=0, firstkey=1
    )
    sort = spec_of(b"sort")
    assert [ks.begin_search.kind for ks in sort.key_specs] == ["index", "unknown", "unknown"]
    assert [ks.find_keys.kind for ks in sort.key_specs] == ["range", "unknown", "unknown"]
    assert b"incomplete" in spec_of(b"migrate").key_specs[1].flags
    assert b"not_key" in spec_of(b"spublish").key_specs[0].flags


@pytest.mark.parametrize("name", [b"get", b"GET", b"Get", b"gEt"])
def test_get_is_case_insensitive(name: bytes) -> None:
    spec = TABLE.get(name)
    assert spec is not None
    assert spec.name == b"get"


def test_get_unknown() -> None:
    assert TABLE.get(b"nosuchcommand") is None
    assert TABLE.get(b"") is None
    assert TABLE.get(b"config|get") is None  # subcommands are reached through resolve()


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((b"config", b"get", b"maxmemory"), b"config|get"),
        ((b"CONFIG", b"GET", b"maxmemory"), b"config|get"),
        ((b"Config", b"gEt"), b"config|get"),
        ((b"object", b"ENCODING", b"k"), b"object|encoding"),
        ((b"xinfo", b"stream", b"k"), b"xinfo|stream"),
        ((b"config", b"nosuch"), b"config"),
        ((b"config",), b"config"),
        ((b"get", b"config"), b"get"),
        ((b"GET",), b"get"),
    ],
)
def test_resolve(args: tuple[bytes, ...], name: bytes) -> None:
    assert spec_of(*args).name == name


@pytest.mark.parametrize("args", [(), (b"nosuch",), (b"nosuch", b"get")])
def test_resolve_unknown(args: tuple[bytes, ...]) -> None:
    assert TABLE.resolve(args) is None


def test_subcommands_keyed_by_lowercase_name() -> None:
    config = spec_of(b"config")
    assert {b"get", b"set", b"resetstat", b"rewrite", b"help"} <= set(config.subcommands)
    assert config.subcommands[b"get"].name == b"config|get"
    assert spec_of(b"get").subcommands == {}


def test_simple_key() -> None:
    assert spec_of(b"get").simple_key == 1
    assert spec_of(b"object", b"freq").simple_key == 2
    assert spec_of(b"set").simple_key == 1  # VARIABLE_FLAGS only changes the flags
    for multi in (b"mget", b"rename", b"sort", b"sort_ro", b"eval", b"ping", b"spublish"):
        assert spec_of(multi).simple_key is None, multi


def test_extra_rules_cover_the_unknown_specs() -> None:
    """Every command whose specs can fail on valid input has a getkeys rule, and no other."""

    def needs_rule(spec: CommandSpec) -> bool:
        return any(
            ks.begin_search.kind == "unknown"
            or ks.find_keys.kind == "unknown"
            or b"incomplete" in ks.flags
            for ks in spec.key_specs
        )

    every = [s for top in TABLE for s in (top, *top.subcommands.values())]
    assert {s.name for s in every if needs_rule(s)} == set(EXTRA_KEY_RULES)


# --- hand-built specs ------------------------------------------------------------------------


def test_hand_built_spec_defaults() -> None:
    spec = CommandSpec(b"dbsize", 1, frozenset({b"readonly"}), tips=(b"request_policy:all_shards",))
    assert spec.request_policy == b"all_shards"
    assert spec.response_policy is None
    assert spec.key_specs == ()
    assert not spec.has_keys
    assert spec.subcommands == {}


def test_legacy_range_without_key_specs() -> None:
    """A Redis 6 entry has (first, last, step) only; that range becomes the key spec."""
    mset = CommandSpec(b"mset", -3, frozenset({b"write"}), 1, -1, 2)
    assert mset.key_specs == (
        KeySpec(BeginSearch("index", index=1), FindKeys("range", lastkey=-1, keystep=2)),
    )
    get = CommandSpec(b"get", 2, frozenset(), 1, 1, 1)
    assert get.simple_key == 1
    assert get.has_keys


def test_specs_compare_and_hash() -> None:
    assert spec_of(b"get") == parse_command_reply(load_reply()).get(b"get")
    assert len({spec_of(b"get"), spec_of(b"config")}) == 2


# --- robustness ------------------------------------------------------------------------------

GET_ENTRY: Final = [
    b"get",
    2,
    [b"readonly", b"fast"],
    1,
    1,
    1,
    [b"@read", b"@string", b"@fast"],
    [],
    [
        [
            b"flags",
            [b"RO", b"access"],
            b"begin_search",
            [b"type", b"index", b"spec", [b"index", 1]],
            b"find_keys",
            [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
        ]
    ],
    [],
]


@pytest.mark.parametrize(
    "bad",
    [
        42,
        None,
        b"get",
        [],
        [b"x"],
        [b"short", 1, [], 0, 0],
        [b"bad", b"notint", [], 0, 0, 0, [], [], [], []],
        [b"bad", True, [], 0, 0, 0, [], [], [], []],
        [b"bad", 2, [1, 2], 0, 0, 0, [], [], [], []],
        [b"bad", 2, [], 0, 0, 0, b"acl", [], [], []],
        [b"bad", 2, [], 0, 0, 0, [], [None], [], []],
        [b"bad", 2, [], 0, 0, 0, [], [], 7, []],
        [b"bad", 2, [], 0, 0, 0, [], [], [[b"odd"]], []],
        [b"bad", 2, [], 0, 0, 0, [], [], [[b"flags", 3]], []],
        [b"bad", 2, [], 0, 0, 0, [], [], [], 5],
        [b"", 2, [], 0, 0, 0, [], [], [], []],
        [None, 2, [], 0, 0, 0, [], [], [], []],
    ],
)
def test_malformed_entries_are_skipped(bad: object) -> None:
    table = parse_command_reply([bad, GET_ENTRY, bad])
    assert table.names() == (b"get",)
    spec = table.get(b"GET")
    assert spec is not None
    assert spec.simple_key == 1


@pytest.mark.parametrize("reply", [None, 7, b"ERR", {}, [], ()])
def test_non_list_reply_gives_empty_table(reply: object) -> None:
    assert len(parse_command_reply(reply)) == 0


def test_unknown_fields_and_kinds_are_tolerated() -> None:
    entry = [
        b"NEWCMD",
        -2,
        [b"write", b"brand_new_flag"],
        1,
        1,
        1,
        [b"@write"],
        [b"request_policy:whatever", b"future_tip"],
        [
            {
                b"flags": [b"RW"],
                b"begin_search": {b"type": b"index", b"spec": {b"index": 1}},
                b"find_keys": {b"type": b"range", b"spec": {b"lastkey": 0, b"keystep": 1}},
                b"future": 1,
            },
            [
                b"flags",
                [b"RO"],
                b"begin_search",
                [b"type", b"regex", b"spec", [b"pattern", b".*"]],
                b"find_keys",
                [b"type", b"range", b"spec", [b"lastkey", b"x"]],
            ],
        ],
        [[b"newcmd|sub", 2, [], 0, 0, 0, [], [], [], []], [b"broken"]],
        b"an 11th field",
    ]
    table = parse_command_reply([entry])
    spec = table.get(b"newcmd")
    assert spec is not None
    assert spec.name == b"newcmd"
    assert spec.request_policy == b"whatever"
    assert spec.key_specs[0].begin_search == BeginSearch("index", index=1)
    assert spec.key_specs[0].find_keys == FindKeys("range", lastkey=0, keystep=1, limit=0)
    assert spec.key_specs[1].begin_search.kind == "unknown"
    assert spec.key_specs[1].find_keys.kind == "unknown"
    assert list(spec.subcommands) == [b"sub"]
    assert spec.simple_key is None


def test_str_names_are_accepted() -> None:
    table = parse_command_reply([["ping", -1, ["fast"], 0, 0, 0, ["@connection"], [], [], []]])
    spec = table.get(b"PING")
    assert spec is not None
    assert spec.acl_categories == {b"connection"}


def test_duplicate_names_keep_the_first() -> None:
    other = [b"GET", 3, [], 0, 0, 0, [], [], [], []]
    table = parse_command_reply([GET_ENTRY, other])
    spec = table.get(b"get")
    assert spec is not None
    assert spec.arity == 2
    assert len(table) == 1


replies = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=12)
    | st.sampled_from([b"index", b"keyword", b"range", b"keynum", b"spec", b"type", b"flags"])
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=12)
        | st.dictionaries(st.binary(max_size=8), children, max_size=5)
    ),
    max_leaves=60,
)


@given(st.lists(replies, max_size=6))
def test_parse_never_raises(entries: list[object]) -> None:
    table = parse_command_reply([*entries, GET_ENTRY])
    assert isinstance(table, CommandTable)
    assert table.get(b"get") is not None


@given(replies)
def test_parse_anything_never_raises(reply: object) -> None:
    assert isinstance(parse_command_reply(reply), CommandTable)
