"""The project's own modules import each other without a circle, in one direction.

The graph is built with `ast` from every import in proxy/, routing/ and conf/: those under
`if TYPE_CHECKING:` and inside functions count too (a type-only circle is still a circle
for whoever reads or splits the code). Layers, top to bottom: a module imports only from
its own layer or below (issue 12: server -> session -> features -> pool/upstream ->
routing/conf, never back up).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("proxy", "routing", "conf")

# Top to bottom. Every module of PACKAGES must be in exactly one layer.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entry points", frozenset({"proxy.__main__", "proxy.cli", "proxy.demo"})),
    ("server", frozenset({"proxy.server", "proxy.workers"})),
    ("admin", frozenset({"proxy.admin", "proxy.metrics"})),  # issue 14: /metrics, probes
    ("session", frozenset({"proxy.session"})),
    ("local commands", frozenset({"proxy.local"})),
    (
        "features",
        frozenset(
            {
                "proxy.auth",
                "proxy.blocking",
                "proxy.fanout",
                "proxy.pipe",
                "proxy.pubsub",
                "proxy.scripts",
                "proxy.tracking",
                "proxy.txn",
            }
        ),
    ),
    ("contracts", frozenset({"proxy.contracts"})),
    (
        "upstream",
        frozenset(
            {
                "proxy",
                "proxy.dispatch",
                "proxy.flow",
                "proxy.framing",
                "proxy.localcluster",
                "proxy.localsentinel",
                "proxy.logs",
                "proxy.pool",
                "proxy.sentinel",
                "proxy.stats",
                "proxy.tls",
                "proxy.topology",
                "proxy.upstream",
            }
        ),
    ),
    ("routing and conf", frozenset()),  # every routing.* and conf.* module
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The known modules `name` imports, wherever the import statement is."""
    modules = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_longest_known(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.module, node.level)
            for alias in node.names:
                # `from proxy import txn` imports the module proxy.txn; `from proxy.txn import
                # flag` imports proxy.txn.
                submodule = f"{base}.{alias.name}" if base else alias.name
                found.add(submodule if submodule in modules else _longest_known(base, modules))
    found.discard("")
    found.discard(name)  # `from routing import replies` in routing/__init__ would be no edge
    return found


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    keep = len(parts) - level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{module}" if module else base


def _longest_known(dotted: str, modules: set[str]) -> str:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return ""  # outside the project


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    modules = find_modules(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circular_groups(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """The strongly connected components with a circle in them (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One circle per circular group, as a path from its first module back to it."""
    return [_circle_in(graph, group) for group in circular_groups(graph)]


def _circle_in(graph: Mapping[str, Iterable[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ == start:
                    return [*paths[node], start]
                if succ in component and succ not in paths:
                    paths[succ] = [*paths[node], succ]
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no circle in {component}")


def layer_of(module: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if module in members:
            return i
    if module.split(".")[0] in ("routing", "conf"):
        return len(LAYERS) - 1
    raise LookupError(module)


# --- the project --------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT)
    found = [
        f"{len(group)} modules {sorted(group)}, e.g. {' -> '.join(_circle_in(graph, group))}"
        for group in circular_groups(graph)
    ]
    assert not found, "import cycles among:\n" + "\n".join(found)


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in find_modules(ROOT):
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert not unplaced, f"add these modules to a layer in LAYERS: {unplaced}"


def test_imports_go_down_the_layers() -> None:
    def named(module: str) -> str:
        return f"{module} ({LAYERS[layer_of(module)][0]})"

    upward = [
        f"{named(module)} imports {named(target)}"
        for module, targets in sorted(import_graph(ROOT).items())
        for target in sorted(targets)
        if layer_of(target) < layer_of(module)
    ]
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_the_walk_finds_the_modules() -> None:
    graph = import_graph(ROOT)
    assert {"proxy.session", "proxy.server", "routing.plan", "conf.loader", "conf"} <= set(graph)
    assert "proxy.session" in graph["proxy.server"]
    assert "routing.replies" in graph["proxy.auth"]  # `from routing import replies`


# --- the checker itself -------------------------------------------------------------------


def write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_type_checking_and_function_local_imports_count(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.b import B\n",
            "pkg/b.py": "def f():\n    from pkg import c\n",
            "pkg/c.py": "import pkg.a\n",
            "pkg/d.py": "from . import a\nfrom .c import x\nimport os\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.d"] == {"pkg.a", "pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"a"}}, [["a", "a"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"c", "a"}, "c": {"a"}}, [["a", "b", "a"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b", "a"], ["c", "d", "c"]]),
    ],
)
def test_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert sorted(cycles(graph)) == expected
