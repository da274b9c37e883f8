"""Client-visible error text lives in routing/replies.py only (STYLE.md, error model 6).

Walks proxy/, routing/ and conf/ with ast and fails on any string or bytes literal (f-strings
included) outside routing/replies.py that reads as a Redis error text: a known error code at
the start, or after a '-' anywhere, followed by words (`"ERR foo"`, `b"-NOPERM ..."`, the
`"ERR "` a message is glued to). A bare code matched against a node's reply
(`raw.startswith(b"-MOVED ")`, `error.code == "ASK"`) is not text and passes; so do docstrings.
It also fails on ErrorReply(...) or encode_error(...) built from a literal outside replies.py.
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("proxy", "routing", "conf")
HOME = "routing/replies.py"
CODES = (
    *("ERR", "WRONGTYPE", "NOAUTH", "WRONGPASS", "NOPERM", "CROSSSLOT", "TRYAGAIN"),
    *("CLUSTERDOWN", "MOVED", "ASK", "LOADING", "BUSY", "BUSYKEY", "BUSYGROUP", "NOSCRIPT"),
    *("EXECABORT", "NOPROTO", "READONLY", "MASTERDOWN", "NOREPLICAS", "OOM", "MISCONF"),
    *("NOGROUP", "NOTBUSY", "UNKILLABLE", "UNBLOCKED", "NOTSUPPORTED", "INVALIDOBJ"),
)
_CODE = "|".join(CODES)
# A code at the very start, then anything but the end or a lone trailing space after a '-'.
_AT_START = re.compile(rf"(-?)({_CODE})(?![A-Za-z0-9_])(.*)", re.DOTALL)
# `-CODE words` anywhere in a longer literal.
_INSIDE = re.compile(rf"(?<![\w-])-({_CODE}) \S")
_BUILDERS = frozenset({"ErrorReply", "encode_error"})


# TEMPORARY (issue 12): literals in files another engineer is rewriting right now. Whoever
# moves one into routing/replies.py removes its entry here; a stale entry fails the test.
def is_error_text(value: str | bytes) -> bool:
    """True for a literal that reads as client-visible Redis error text."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if _INSIDE.search(text):
        return True
    match = _AT_START.match(text)
    if match is None:
        return False
    dash, _, rest = match.groups()
    return rest not in (("", " ") if dash else ("",))


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def _literal(node: ast.AST) -> str | bytes | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value
    if isinstance(node, ast.JoinedStr):  # placeholders read as "{}"
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
        )
    return None


def _builder(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name not in _BUILDERS:
        return False
    literals = [v for sub in ast.walk(node.args[0]) if (v := _literal(sub)) is not None]
    # One whose literal is error text already is reported as that literal.
    return bool(literals) and not any(is_error_text(v) for v in literals)


def offences(source: str) -> Iterator[tuple[int, str]]:
    """(line, literal repr) for each error text literal or literal-built error in `source`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(part) for part in node.values}
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.expr):
            continue
        value = _literal(node)
        if value is not None and is_error_text(value):
            yield node.lineno, repr(value)
        elif _builder(node):
            yield node.lineno, ast.unparse(node)


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _found() -> set[tuple[str, int, str]]:
    found = set()
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel != HOME:
            found |= {(rel, line, text) for line, text in offences(path.read_text())}
    return found


def test_error_texts_live_in_routing_replies() -> None:
    stray = sorted(_found())
    assert not stray, "error text outside routing/replies.py:\n" + "\n".join(
        f"  {path}:{line}: {text}" for path, line, text in stray
    )


def test_the_walk_finds_the_packages() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert {HOME, "proxy/session.py", "conf/loader.py"} <= names


@pytest.mark.parametrize(
    "value",
    [
        "ERR syntax error",
        "ERR ",
        b"-ERR upstream ",
        b"-NOPERM this user has no permissions\r\n",
        "WRONGPASS invalid username-password pair",
        "CLUSTERDOWN Hash slot not served",
        "NOAUTH {}",
        b"+OK\r\n-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    ],
)
def test_error_text_is_caught(value: str | bytes) -> None:
    assert is_error_text(value)


@pytest.mark.parametrize(
    "value",
    [
        b"-MOVED ",
        b"-ASK ",
        b"-TRYAGAIN",
        b"-ERR ",
        "MOVED",
        "ASK",
        "ERRORS",
        "asking",
        "connection lost",
        "upstream.seeds[1]: expected host:port",
        b"-",
    ],
)
def test_reply_prefixes_and_prose_pass(value: str | bytes) -> None:
    assert not is_error_text(value)


@pytest.mark.parametrize(
    "source",
    [
        'X = b"-ERR slotless broke\\r\\n"',
        'def f(n):\n    return f"NOPERM no {n}"',
        'reply = ErrorReply("something " + name)',
        'reply = encode_error(f"{code} went wrong")',
    ],
)
def test_offences_sees_through_code(source: str) -> None:
    assert list(offences(source))


def test_offences_skip_docstrings_and_prefix_checks() -> None:
    source = (
        '"""Answers NOAUTH before AUTH; -ERR texts come from replies."""\n'
        "def f(raw):\n"
        '    """ERR replies pass through."""\n'
        '    return raw.startswith(b"-MOVED ") or ErrorReply(message)\n'
    )
    assert not list(offences(source))
