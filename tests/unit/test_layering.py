"""routing/ stays pure: no event loop, sockets, clocks, randomness, logging or proxy imports."""

import ast
from pathlib import Path

import pytest

FORBIDDEN = {
    "asyncio",
    "socket",
    "uvloop",
    "structlog",
    "time",
    "random",
    "logging",
    "proxy",
    "select",
}
ROUTING = Path(__file__).parents[2] / "routing"


@pytest.mark.parametrize("path", sorted(ROUTING.rglob("*.py")), ids=lambda p: p.name)
def test_routing_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path.name} imports {sorted(imported & FORBIDDEN)}"


def test_the_walk_finds_the_modules() -> None:
    assert {p.name for p in ROUTING.glob("*.py")} >= {"resp.py", "plan.py", "slots.py", "merge.py"}
