"""The compiled hot path and its pure-Python source agree byte for byte (issue 13).

Each module of routing.accel.COMPILED_MODULES is loaded a second time from its .py under
another name (the pure copy) and fed the same inputs as the imported module: random request
batches over every command of the table (single key, multi-key splits, keyless, fan-outs,
locally answered, wrong arity, unknown), reply streams of every RESP2/RESP3 type cut at
every byte, request pipelines cut at every byte, keys with and without hash tags. Without a
built extension (or with SLOTLESS_PURE=1) only the pure side exists and these tests skip;
with CI=true a missing extension is a failure (test_ci_runs_the_compiled_build).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routing
from routing import accel, resp, route
from routing.commands import CommandTable, parse_command_reply
from routing.plan import Router

ROOT = Path(__file__).parents[3]
DATA = ROOT / "routing" / "data" / "command-7.0.resp"
NODES = ("n1", "n2", "n3")
OWNERS = tuple(NODES[slot * 3 // 16384] for slot in range(16384))


def is_compiled(module: ModuleType) -> bool:
    return not str(module.__file__).endswith(".py")


COMPILED = all(is_compiled(sys.modules[name]) for name in accel.COMPILED_MODULES)
needs_compiled = pytest.mark.skipif(
    not COMPILED,
    reason=f"only the pure hot path here ({accel.HOT_PATH_REASON}): nothing compiled to compare",
)
EQUIVALENCE = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def pure(name: str) -> ModuleType:
    """A fresh copy of module `name` run from its .py, whatever the import system picks."""
    stem = name.rpartition(".")[2]
    spec = importlib.util.spec_from_file_location(f"_pure_{stem}", accel.source_of(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert str(module.__file__).endswith(".py")
    return module


def both(name: str) -> tuple[ModuleType, ModuleType]:
    return pure(name), sys.modules[name]


def cut_points(data: bytes) -> list[int]:
    """Every byte boundary of a short input; of a long one (4 KB values), both ends densely
    and the middle at a stride, so that an example stays fast."""
    size = len(data)
    if size <= 600:
        return list(range(size + 1))
    return sorted({*range(300), *range(size - 300, size + 1), *range(0, size, 37)})


def outcome(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What call(*args) returns, or which exception it raises (classes differ between copies)."""
    try:
        return "value", call(*args)
    except Exception as exc:
        return "raises", (type(exc).__name__, str(exc))


# --- the build and the switch ------------------------------------------------------------


def test_ci_runs_the_compiled_build() -> None:
    """CI (CI=true) must build the extension; SLOTLESS_PURE=1 may still disable it there."""
    built = all(accel.extension_of(name) for name in accel.COMPILED_MODULES)
    if os.environ.get("CI") == "true":
        assert built, f"CI must build and test the extension: {accel.HOT_PATH_REASON}"
    if accel.HOT_PATH != "compiled":
        pytest.skip(f"the extension is not in use here: {accel.HOT_PATH_REASON}")
    assert built and COMPILED


def test_hot_path_says_what_was_imported() -> None:
    assert (accel.HOT_PATH == "compiled") == COMPILED
    assert (not COMPILED and not accel.PURE_REQUESTED) == accel.NOT_BUILT


def test_every_compiled_module_has_a_pxd_and_a_source() -> None:
    """setup.py compiles COMPILED_MODULES; dev.sh rebuilds when one's .py or .pxd changes."""
    pxds = {f"routing.{path.stem}" for path in (ROOT / "routing").glob("*.pxd")}
    assert pxds == set(accel.COMPILED_MODULES)
    assert all(accel.source_of(name).is_file() for name in accel.COMPILED_MODULES)


def run_python(code: str, pure: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SLOTLESS_PURE"}
    if pure is not None:
        env["SLOTLESS_PURE"] = pure
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


PROBE = (
    "import routing.resp, routing.route, routing.slots\n"
    "from routing import accel\n"
    "print(accel.HOT_PATH, *(routing.__dict__[n.split('.')[1]].__file__.endswith('.py')"
    " for n in accel.COMPILED_MODULES))"
)


def test_slotless_pure_imports_the_py_sources() -> None:
    assert run_python(PROBE, "1").split() == ["pure", "True", "True", "True"]


@pytest.mark.parametrize("value", [None, "", "0"])
def test_without_slotless_pure_the_build_decides(value: str | None) -> None:
    words = run_python(PROBE, value).split()
    expected = "False" if accel.extension_of("routing.route") is not None else "True"
    assert words[0] == ("compiled" if expected == "False" else "pure")
    assert words[1:] == [expected] * 3


def test_the_finder_gives_the_pure_module() -> None:
    spec = accel.PureFinder().find_spec("routing.route", routing.__path__)
    assert spec is not None and spec.origin == str(accel.source_of("routing.route"))
    module = importlib.util.module_from_spec(spec)
    assert str(module.__file__).endswith("route.py")
    assert accel.PureFinder().find_spec("routing.plan", routing.__path__) is None


# --- slots -------------------------------------------------------------------------------

tagged_keys = st.builds(
    lambda a, b, c, shape: shape.replace(b"A", a).replace(b"B", b).replace(b"C", c),
    st.binary(max_size=6),
    st.binary(max_size=6),
    st.binary(max_size=6),
    st.sampled_from([b"A", b"A{B}C", b"{B}C", b"A{}C", b"A{{B}}C", b"A{B}{C}", b"{", b"A}B{C"]),
)
any_keys = st.binary(max_size=40) | tagged_keys


@needs_compiled
@EQUIVALENCE
@given(st.lists(any_keys, max_size=12))
def test_key_hash_slot_agrees(keys: list[bytes]) -> None:
    py, c = both("routing.slots")
    for key in keys:
        assert py.key_hash_slot(key) == c.key_hash_slot(key)
        assert py.key_hash_slot(bytearray(key)) == c.key_hash_slot(bytearray(key))
    assert py.key_hash_slots(keys) == c.key_hash_slots(keys)


# --- routing a batch ---------------------------------------------------------------------


@cache
def table() -> CommandTable:
    return parse_command_reply(resp.parse_reply(DATA.read_bytes()))


@cache
def router(mode: str) -> Router:
    return Router(table(), mode, deny=("flushall", "config|set"))


KEYS = [b"a", b"b", b"{t}1", b"{t}2", b"k:1", b"k:2", b"", b"{}x", b"\xff{\x00}"]
WORDS = [b"0", b"1", b"-1", b"10", b"EX", b"COUNT", b"MATCH", b"*", b"LIMIT", b"WITHSCORES"]
argument = st.one_of(
    st.sampled_from(KEYS + WORDS),
    st.binary(max_size=12),
    st.sampled_from([b"v" * 4095, b"v" * 4096, b"w" * 5000]),  # around the 4 KB header table
)


@st.composite
def requests(draw: st.DrawFn) -> list[bytes]:
    """One request of any command in the table, with its arity or around it."""
    if draw(st.integers(0, 30)) == 0:
        return [draw(st.sampled_from([b"NOSUCH", b"nosuch", b"G\xffT"])), *draw(st.lists(argument))]
    spec = draw(st.sampled_from(sorted(table(), key=lambda s: s.name)))
    name = draw(st.sampled_from([spec.name, spec.name.upper(), spec.name.capitalize()]))
    args = [name]
    if spec.subcommands and draw(st.booleans()):
        sub = draw(st.sampled_from(sorted(spec.subcommands)))
        args.append(sub.partition(b"|")[2] or sub)
    low = abs(spec.arity)
    count = draw(st.sampled_from([low, low, low + 1, low + 3, max(low - 1, 1)]))
    args += draw(st.lists(argument, min_size=max(count - len(args), 0), max_size=count + 1))
    return args


MULTI_KEY = [b"MGET", b"MSET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"mget", b"del"]


@st.composite
def splits(draw: st.DrawFn) -> list[bytes]:
    """A multi-key command that splits by slot (or answers CROSSSLOT / arity errors)."""
    name = draw(st.sampled_from(MULTI_KEY))
    keys = draw(st.lists(st.sampled_from(KEYS) | st.binary(max_size=5), max_size=8))
    if name.upper() == b"MSET":
        return [name, *(x for key in keys for x in (key, draw(argument)))]
    return [name, *keys]


HOT = [[b"GET", b"a"], [b"SET", b"b", b"1"], [b"get", b"{t}1"], [b"PING"], [b"GET"]]
batches = st.lists(st.one_of(requests(), splits(), st.sampled_from(HOT)), min_size=1, max_size=12)


def routed_state(routed: Any) -> tuple[Any, ...]:
    """Everything route_batch decided, as plain values (pieces byte for byte)."""
    return (
        routed.start,
        routed.stop,
        routed.count,
        routed.slot,
        routed.nodes,
        routed.pieces,
        routed.node,
        routed.raw,
        routed.by_node(),
        routed.packed(),
        routed.filled,
        routed.layout,
        routed.plan,
        routed.requests_count(),
    )


def fake_raws(routed: Any, seed: int) -> list[bytes]:
    """A plausible raw reply for every part, the kind its merge expects (errors included)."""
    raws = [b"" for _ in range(routed.count)]
    for index, raw in routed.filled or ():
        raws[index] = raw
    kinds: dict[int, str] = {}
    for step in routed.layout or ():
        if isinstance(step, tuple):
            first, split = step
            for offset in range(len(split.slots)):
                kinds[first + offset] = split.merge
    choices = {
        "by_key": [b"$1\r\nx\r\n", b"$-1\r\n", b"_\r\n", b"*2\r\n$1\r\na\r\n$-1\r\n"],
        "agg_sum": [b":0\r\n", b":3\r\n"],
        "all_succeeded": [b"+OK\r\n"],
        "": [b"+OK\r\n", b"$3\r\nabc\r\n", b":7\r\n", b"*0\r\n", b"%1\r\n+k\r\n:1\r\n"],
    }
    errors = [b"-ERR boom\r\n", b"-MOVED 12182 127.0.0.1:7002\r\n", b"!5\r\nERR x\r\n"]
    for index in range(routed.count):
        if raws[index]:
            continue
        options = choices[kinds.get(index, "")]
        pick = (seed + index * 7) % (len(options) + 1)
        raws[index] = options[pick] if pick < len(options) else errors[index % len(errors)]
    return raws


def route_all(
    module: ModuleType, batch: list[list[bytes]], mode: str, owners: Any, reads: bool
) -> Iterator[Any]:
    """The session's loop: route, and past each stop that names a plan, go on after it."""
    read_node = (lambda slot: f"replica{slot % 2}") if reads else None
    start = 0
    while start < len(batch):
        routed = module.route_batch(batch, start, router(mode), owners, lambda: "any", read_node)
        yield routed
        start = routed.stop + (1 if routed.plan is not None else 0)


@needs_compiled
@EQUIVALENCE
@given(
    batches,
    st.sampled_from(["cluster", "standalone"]),
    st.sampled_from([OWNERS, None]),
    st.booleans(),
    st.integers(0, 1000),
)
def test_route_batch_and_assemble_agree(
    batch: list[list[bytes]], mode: str, owners: Any, reads: bool, seed: int
) -> None:
    py, c = both("routing.route")
    py_runs = list(route_all(py, batch, mode, owners, reads))
    c_runs = list(route_all(c, batch, mode, owners, reads))
    assert [routed_state(r) for r in py_runs] == [routed_state(r) for r in c_runs]
    for py_routed, c_routed in zip(py_runs, c_runs, strict=True):
        raws = fake_raws(py_routed, seed)
        for resp3 in (False, True):
            assert outcome(py.assemble, py_routed, raws, resp3) == outcome(
                c.assemble, c_routed, raws, resp3
            )
        for index in range(py_routed.count):
            assert outcome(py_routed.part, index, router(mode)) == outcome(
                c_routed.part, index, router(mode)
            )


@needs_compiled
@EQUIVALENCE
@given(batches, st.dictionaries(st.sampled_from([b"GET", b"get", b"SET"]), st.integers(0, 9)))
def test_count_names_agrees(batch: list[list[bytes]], seen: dict[bytes, int]) -> None:
    py, c = both("routing.route")
    py_counts, c_counts = dict(seen), dict(seen)
    assert py.count_names(batch, py_counts) == c.count_names(batch, c_counts)
    assert py_counts == c_counts
    assert sum(py_counts.values()) == sum(seen.values()) + len(batch)


def test_the_batches_cover_every_outcome() -> None:
    """The request strategy reaches each kind of plan (a guard against a weak strategy)."""
    seen: set[str] = set()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(batches)
    def collect(batch: list[list[bytes]]) -> None:
        for routed in route_all(route, batch, "cluster", OWNERS, False):
            seen.update(
                type(step[1]).__name__ for step in routed.layout or () if type(step) is tuple
            )
            if routed.filled:
                seen.add("filled")
            if routed.plan is not None:
                seen.add(type(routed.plan).__name__)
            if routed.nodes:
                seen.add("sent")
            if routed.raw is not None:
                seen.add("single")

    collect()
    assert {"Split", "filled", "Local", "sent", "single"} <= seen, seen
    assert seen & {"Fanout", "Scan", "Script"}, seen


# --- scanning requests -------------------------------------------------------------------

odd_requests = st.sampled_from(
    [
        b"*0\r\n",
        b"*-1\r\n",
        b"*01\r\n$1\r\na\r\n",
        b"*1\r\n$01\r\na\r\n",
        b"*1\r\n$+1\r\na\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$1\r\nab\r\n",  # the body runs past its length
        b"*1\r\n$1\r\na\n\r",
        b"*1\r\r$1\r\na\r\n",
        b"*1\r\n:1\r\n",
        b"*123456\r\n",
        b"*99999\r\n$1\r\na\r\n",
        b"*1\r\n$99999999999\r\n",
        b"*1\r\n$12345678901\r\n",
        b"*1\r\n$\r\n",
        b"*\r\n",
        b"PING\r\n",
        b"\x16\x03\x01",
    ]
)
request_streams = st.lists(
    st.one_of(requests().map(resp.pack_command), splits().map(resp.pack_command), odd_requests),
    min_size=1,
    max_size=6,
).map(b"".join)


def scanned(module: ModuleType, data: bytes, max_bulk: int, max_count: int) -> Any:
    out: list[list[bytes]] = []
    return outcome(module.scan_requests, data, out, max_bulk, max_count), out


@needs_compiled
@EQUIVALENCE
@given(request_streams, st.sampled_from([(512 * 1024 * 1024, 2**31 - 1), (4096, 3), (0, 1)]))
def test_scan_requests_agrees_at_every_byte_boundary(
    stream: bytes, limits: tuple[int, int]
) -> None:
    py, c = both("routing.resp")
    for cut in cut_points(stream):
        assert scanned(py, stream[:cut], *limits) == scanned(c, stream[:cut], *limits)
        assert scanned(py, stream[cut:], *limits) == scanned(c, stream[cut:], *limits)


# --- framing replies ---------------------------------------------------------------------


def bulk(body: bytes, kind: bytes = b"$") -> bytes:
    return kind + b"%d\r\n" % len(body) + body + b"\r\n"


def aggregate(kind: bytes, items: list[bytes]) -> bytes:
    count = len(items) // 2 if kind in b"%|" else len(items)
    return kind + b"%d\r\n" % count + b"".join(items)


line_replies = st.one_of(
    st.sampled_from(
        [
            b"+OK\r\n",
            b"+\r\n",
            b":0\r\n",
            b":-42\r\n",
            b":9223372036854775807\r\n",
            b"-ERR unknown command 'x'\r\n",
            b"-MOVED 3999 127.0.0.1:6381\r\n",
            b"-ASK 3999 127.0.0.1:6381\r\n",
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            b"-CLUSTERDOWN The cluster is down\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"_\r\n",
            b"#t\r\n",
            b"#f\r\n",
            b",3.14\r\n",
            b",-inf\r\n",
            b"(3492890328409238509324850943850943825024385\r\n",
        ]
    ),
    st.binary(max_size=8)
    .filter(lambda b: b"\r" not in b and b"\n" not in b)
    .map(lambda b: b"+" + b + b"\r\n"),
)
blob_replies = st.one_of(
    st.binary(max_size=20).map(bulk),
    st.sampled_from([b"v" * 4095, b"v" * 4096, b"x" * 5000]).map(bulk),
    st.binary(max_size=10).map(lambda b: bulk(b"txt:" + b, b"=")),
    st.binary(max_size=10).map(lambda b: bulk(b"ERR " + b, b"!")),
)
replies = st.recursive(
    line_replies | blob_replies,
    lambda inner: st.tuples(
        st.sampled_from([b"*", b"~", b">", b"%", b"|"]), st.lists(inner, max_size=4)
    ).map(lambda t: aggregate(t[0], t[1] + t[1][:1] if t[0] in b"%|" and len(t[1]) % 2 else t[1])),
    max_leaves=10,
)
odd_replies = st.sampled_from(
    [
        b"$99999999999999999999999\r\n",  # a length no buffer reaches (Python int, not C)
        b"$-99999999999999999999999\r\n",
        b"*99999999999999999999999\r\n$1\r\na\r\n",
        b"*-7\r\n",
        b"$ 5\r\nhello\r\n",
        b"$+5\r\nhello\r\n",
        b"$05\r\nhello\r\n",
        b"$5_0\r\n",
        b"$abc\r\n",
        b"*x\r\n",
        b"*2\r\n$x\r\n",
        b"%x\r\n",
        b"?what\r\n",
        b"$3\r\nabc",  # no CRLF after the body
        b"+no end",
        b"\r\n",
    ]
)
streams = st.lists(replies | odd_replies, min_size=1, max_size=5).map(b"".join)


def framed(module: ModuleType, data: bytes) -> tuple[list[int], Any]:
    ends: list[int] = []
    result = outcome(module.frame_replies, data, ends)
    return ends, result


def fed_in_two(module: ModuleType, stream: bytes, cut: int) -> list[Any]:
    """What an upstream connection does: frame, keep the rest, frame again with more."""
    seen = []
    ends, result = framed(module, stream[:cut])
    seen.append((ends, result))
    rest = stream[ends[-1] :] if ends else stream[:cut]
    if result[0] == "value" and result[1][1] is None:
        seen.append(framed(module, rest + stream[cut:]))
    return seen


@needs_compiled
@EQUIVALENCE
@given(streams)
def test_frame_replies_agrees_at_every_byte_boundary(stream: bytes) -> None:
    py, c = both("routing.route")
    for cut in cut_points(stream):
        assert framed(py, stream[:cut]) == framed(c, stream[:cut])
        assert framed(py, stream[cut:]) == framed(c, stream[cut:])
        assert fed_in_two(py, stream, cut) == fed_in_two(c, stream, cut)
    for pos in cut_points(stream)[:-1]:
        assert outcome(py._reply_end, stream, pos, len(stream)) == outcome(
            c._reply_end, stream, pos, len(stream)
        )


@needs_compiled
@EQUIVALENCE
@given(st.binary(max_size=60), streams)
def test_frame_replies_agrees_on_garbage(data: bytes, stream: bytes) -> None:
    py, c = both("routing.route")
    assert framed(py, data) == framed(c, data)
    for flip in range(0, len(stream), 3):  # one byte changed
        broken = stream[:flip] + bytes([stream[flip] ^ 0x15]) + stream[flip + 1 :]
        assert framed(py, broken) == framed(c, broken)


# --- resp: packing, parsing requests, reply boundaries --------------------------------------

inline_lines = st.lists(
    st.sampled_from([b"GET", b"a", b'"q w"', b"'s'", b'"\\x41\\n"', b'"open', b" ", b"\t"]),
    max_size=5,
).map(lambda words: b" ".join(words) + b"\r\n")
pipelines = st.lists(
    st.one_of(
        st.lists(argument, min_size=1, max_size=4).map(lambda args: resp.pack_command(args)),
        inline_lines,
        st.sampled_from([b"*0\r\n", b"*-1\r\n", b"\r\n", b"*1\r\n$-3\r\n", b"*2\r\n+x\r\n"]),
        st.sampled_from([b"*3000000000\r\n", b"*1\r\n$999999999999\r\n", b"*abc\r\n"]),
    ),
    min_size=1,
    max_size=5,
).map(b"".join)


def parsed(module: ModuleType, data: bytes, limits: Any) -> tuple[Any, ...]:
    result = module.parse_requests(data, limits)
    return result.requests, result.consumed, result.error


def fed(module: ModuleType, chunks: list[bytes], limits: Any) -> list[Any]:
    parser = module.RequestParser(limits)
    return [(parser.feed(chunk), parser.error, parser.idle) for chunk in chunks]


@needs_compiled
@EQUIVALENCE
@given(pipelines, st.sampled_from([(512 * 1024 * 1024, 2**31 - 1, 64 * 1024), (100, 3, 16)]))
def test_request_parsing_agrees_at_every_byte_boundary(
    data: bytes, limits: tuple[int, int, int]
) -> None:
    py, c = both("routing.resp")
    py_limits, c_limits = py.RequestLimits(*limits), c.RequestLimits(*limits)
    assert parsed(py, data, py_limits) == parsed(c, data, c_limits)
    for cut in cut_points(data):
        chunks = [data[:cut], data[cut:]]
        assert parsed(py, data[:cut], py_limits) == parsed(c, data[:cut], c_limits)
        assert fed(py, chunks, py_limits) == fed(c, chunks, c_limits)
    if len(data) <= 2000:
        one_by_one = [data[i : i + 1] for i in range(len(data))]
        assert fed(py, one_by_one, py_limits) == fed(c, one_by_one, c_limits)


@needs_compiled
@EQUIVALENCE
@given(st.lists(argument, min_size=1, max_size=6), st.binary(max_size=30), streams, replies)
def test_resp_helpers_agree(args: list[bytes], raw: bytes, stream: bytes, reply: bytes) -> None:
    py, c = both("routing.resp")
    for packed in (args, tuple(args), args[:2], args[:3]):
        assert py.pack_command(packed) == c.pack_command(packed)
    assert py.string2ll(raw) == c.string2ll(raw)
    assert py.split_args(raw) == c.split_args(raw)
    assert py.is_error(raw or b"-") == c.is_error(raw or b"-")
    for pos in cut_points(stream):
        assert outcome(py.reply_end, stream, pos) == outcome(c.reply_end, stream, pos)
        data = bytearray(stream)
        assert outcome(py.reply_end, data, pos) == outcome(c.reply_end, data, pos)
    # array_elements takes one complete reply (it loops over the count it reads).
    assert outcome(py.array_elements, reply) == outcome(c.array_elements, reply)
    message = raw.decode("latin-1")
    assert py.encode_error(message) == c.encode_error(message)
    assert py.ErrorReply(message).encode() == c.ErrorReply(message).encode()
    assert py.ErrorReply(message).code == c.ErrorReply(message).code


values = st.recursive(
    st.none() | st.binary(max_size=10) | st.integers(-(2**70), 2**70) | st.booleans(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


@needs_compiled
@EQUIVALENCE
@given(values)
def test_encoding_agrees(value: Any) -> None:
    py, c = both("routing.resp")
    assert py.encode_value(value) == c.encode_value(value)
    encoded = py.encode_value(value)
    assert outcome(py.parse_reply, encoded) == outcome(c.parse_reply, encoded)


@needs_compiled
@EQUIVALENCE
@given(st.lists(replies | odd_replies, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_fill_parts_agrees(chunks: list[bytes], rng: Any) -> None:
    """The same replies go to the same parts, and the run stops at the same error reply."""
    py, c = both("routing.route")
    stream = b"".join(chunks)
    ends: list[int] = []
    py.frame_replies(stream, ends)
    for first in range(len(ends)):
        pos = ends[first - 1] if first else 0
        size = rng.randint(0, len(ends) + 2)
        indices = rng.sample(range(size + 3), size)
        done = rng.randint(0, size)
        py_raws, c_raws = [b""] * (size + 3), [b""] * (size + 3)
        py_taken = outcome(py.fill_parts, stream, ends, first, pos, py_raws, indices, done)
        c_taken = outcome(c.fill_parts, stream, ends, first, pos, c_raws, indices, done)
        assert py_taken == c_taken
        assert py_raws == c_raws
