"""Build the compiled hot path: routing/accel.py's COMPILED_MODULES, by Cython, from their .py.

Cython compiles each module from its own .py source (pure-Python mode; the types come from
the .pxd beside it), so the .py is both the extension's source and the fallback. When
compiling fails (no Cython, no gcc, no Python headers) the build prints one warning and the
install goes on with the pure-Python modules. Everything else is in pyproject.toml.
"""

import ast
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent
WARNING = (
    "slotless: the compiled hot path was not built ({}); installing the pure-Python modules "
    "(slower; slotless says so at start)"
)
DIRECTIVES = {
    "language_level": 3,
    # The .py annotations are for mypy; only the .pxd types the compiled code.
    "annotation_typing": False,
}


def compiled_modules() -> list[str]:
    """COMPILED_MODULES from routing/accel.py, read without importing routing."""
    tree = ast.parse((ROOT / "routing" / "accel.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMPILED_MODULES":
            assert node.value is not None
            return list(ast.literal_eval(node.value))
    raise SystemExit("setup.py: routing/accel.py has no COMPILED_MODULES")


_warned: set[str] = set()


def warn(why: object) -> None:
    """Print the warning, once per process whatever calls it."""
    text = WARNING.format(why)
    if text not in _warned:
        _warned.add(text)
        sys.stderr.write(f"\n{text}\n\n")


class OptionalBuildExt(build_ext):
    """build_ext that cythonizes first and never fails the install: pure Python instead."""

    def finalize_options(self) -> None:
        self.not_built: str | None = None  # why, once cythonize failed
        try:
            from Cython.Build import cythonize

            modules = cythonize(
                self.distribution.ext_modules, compiler_directives=DIRECTIVES, quiet=True
            )
        except Exception as exc:  # no Cython, or it failed on a module: install pure Python
            self.not_built = f"{type(exc).__name__}: {exc}"
            modules = []
        self.distribution.ext_modules = list(modules)
        super().finalize_options()

    def run(self) -> None:
        # Warned here, not above: metadata steps finalize build_ext too, without building.
        if self.not_built is not None:
            warn(self.not_built)
            return
        try:
            super().run()
        except Exception as exc:  # the C compiler or linker failed: install pure Python
            warn(f"{type(exc).__name__}: {exc}")


setup(
    ext_modules=[Extension(name, [name.replace(".", "/") + ".py"]) for name in compiled_modules()],
    cmdclass={"build_ext": OptionalBuildExt},
)
