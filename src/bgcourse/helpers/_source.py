"""Find where an error message is written in an installed package's source: file, line, function."""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["SourceHit", "find_in_source"]


@dataclass(frozen=True)
class SourceHit:
    """One line of a package's source that contains the text searched for."""

    path: Path  # the file, absolute
    file: str  # the file from the package's own folder on, as tracebacks end: "starlette/middleware/base.py"
    line: int  # 1-based
    function: str  # qualified name of the innermost enclosing function or class, "<module>" if none
    code: str  # the line itself, stripped

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}: {self.code}"

    def excerpt(self, before: int = 3, after: int = 1) -> str:
        """The hit with ``before`` lines above and ``after`` below, numbered, the hit marked ``>``."""
        lines = _lines(self.path)
        first, last = max(1, self.line - before), min(len(lines), self.line + after)
        return "\n".join(
            f"{'>' if number == self.line else ' '} {number:4} {lines[number - 1]}" for number in range(first, last + 1)
        )


def find_in_source(package: str, text: str) -> list[SourceHit]:
    """Every line of the installed ``package``'s ``.py`` files that contains ``text`` (case-sensitive).

    Search for a fragment that fits on one line: a long message is often split over two string
    literals, and a formatted one (``f"{self!r} is bound to ..."``) only has its constant part in
    the source.  No hit means the text is not in the package's Python source: it may come from
    another package, or from compiled code (the interpreter itself, or a C extension).
    """
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ModuleNotFoundError(f"No installed package named {package!r}")
    if spec.submodule_search_locations:  # a package: search its whole folder
        roots = [Path(location) for location in spec.submodule_search_locations]
        files = sorted(path for root in roots for path in root.rglob("*.py") if "__pycache__" not in path.parts)
    elif spec.origin and spec.origin.endswith(".py"):  # a single-module package
        roots, files = [Path(spec.origin).parent], [Path(spec.origin)]
    else:
        return []  # built in or compiled: there is no Python source to search
    hits: list[SourceHit] = []
    for path in files:
        root = next(root for root in roots if path.is_relative_to(root))
        shown = path.relative_to(root.parent if spec.submodule_search_locations else root).as_posix()
        content = _read(path)
        if text not in content:
            continue
        for number, line in enumerate(content.splitlines(), start=1):
            if text in line:
                hits.append(SourceHit(path, shown, number, _enclosing(path, number), line.strip()))
    return hits


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


@lru_cache(maxsize=64)  # only the files with hits: a whole package's source would stay in memory otherwise
def _lines(path: Path) -> list[str]:
    return _read(path).splitlines()


def _enclosing(path: Path, line: int) -> str:
    """The qualified name (as in ``__qualname__``) of the innermost def or class around ``line``."""
    around = [name for first, last, name in _scopes(path) if first <= line <= last]
    return around[-1] if around else "<module>"  # scopes are listed outer before inner


@lru_cache(maxsize=64)
def _scopes(path: Path) -> list[tuple[int, int, str]]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return []
    scopes: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                first = min([child.lineno, *(decorator.lineno for decorator in child.decorator_list)])
                scopes.append((first, child.end_lineno or child.lineno, name))
                inner = f"{name}.<locals>." if not isinstance(child, ast.ClassDef) else f"{name}."
                visit(child, inner)
            else:
                visit(child, prefix)

    visit(tree, "")
    return scopes
