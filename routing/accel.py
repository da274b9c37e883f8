"""Which hot path runs: the Cython-compiled modules or their pure-Python sources.

The modules of COMPILED_MODULES are compiled from their own .py files (setup.py; types come
from the .pxd next to each), and the .py stays the reference and the fallback. With
SLOTLESS_PURE set (not "" or "0"), or when not every extension is built, a finder makes
imports of these names load the .py even where an extension exists. SLOTLESS_PURE is the one
environment read outside conf/: it must act before the first import. This module imports no
compiled module, so routing/__init__.py imports it first.
"""

import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec, SourceFileLoader
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

# The per-request hot path; setup.py reads this tuple to know what to compile.
COMPILED_MODULES: Final = ("routing.resp", "routing.route", "routing.slots")

_HERE: Final = Path(__file__).parent
_PURE_VALUE: Final = os.environ.get("SLOTLESS_PURE", "")
PURE_REQUESTED: Final = _PURE_VALUE not in ("", "0")


def source_of(name: str) -> Path:
    """The .py file of one of COMPILED_MODULES."""
    return _HERE / f"{name.rpartition('.')[2]}.py"


def extension_of(name: str) -> Path | None:
    """The built extension of one of COMPILED_MODULES, or None where it is not built."""
    stem = name.rpartition(".")[2]
    for suffix in EXTENSION_SUFFIXES:
        path = _HERE / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


class PureFinder(MetaPathFinder):
    """Finds COMPILED_MODULES as their .py sources (SourceFileLoader), ahead of the .so."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        source = str(source_of(fullname))
        return spec_from_file_location(fullname, source, loader=SourceFileLoader(fullname, source))


def _hot_path() -> tuple[Literal["compiled", "pure"], str]:
    if PURE_REQUESTED:
        return "pure", f"disabled by SLOTLESS_PURE={_PURE_VALUE}"
    missing = [name for name in COMPILED_MODULES if extension_of(name) is None]
    if missing:
        return "pure", f"extension not built ({', '.join(missing)})"
    return "compiled", "built"


_CHOSEN: Final = _hot_path()
HOT_PATH: Final = _CHOSEN[0]
HOT_PATH_REASON: Final = _CHOSEN[1]  # "built", or why not compiled
# The start-up warning is for a missing build only, never for SLOTLESS_PURE on purpose.
NOT_BUILT: Final = HOT_PATH == "pure" and not PURE_REQUESTED

# Pure means all pure: a build that failed half-way leaves some extensions, not loaded then.
if HOT_PATH == "pure" and not any(isinstance(f, PureFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, PureFinder())
