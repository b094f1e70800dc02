"""find_in_source: every line with the text, where it is, and which function it is in."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bgcourse import SourceHit, find_in_source

PACKAGE = '''
"""A package made for the test."""

MODULE_LEVEL = "needle at module level"


def outer():
    def inner():
        raise RuntimeError("needle in a nested function")

    return inner


class Widget:
    @staticmethod
    def method():
        return "needle in a method"

    class Part:
        async def run(self):
            return "needle in a nested class"
'''


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "needlepkg"
    (folder / "sub").mkdir(parents=True)
    (folder / "__init__.py").write_text("", encoding="utf-8")
    (folder / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "sub" / "core.py").write_text(textwrap.dedent(PACKAGE), encoding="utf-8")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "stale.py").write_text('x = "needle in a cache"', encoding="utf-8")
    (tmp_path / "needlemodule.py").write_text('def only():\n    return "needle alone"\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return folder


def test_finds_every_line_with_its_file_line_and_function(package: Path) -> None:
    hits = find_in_source("needlepkg", "needle")
    assert [(hit.file, hit.function) for hit in hits] == [
        ("needlepkg/sub/core.py", "<module>"),
        ("needlepkg/sub/core.py", "outer.<locals>.inner"),
        ("needlepkg/sub/core.py", "Widget.method"),
        ("needlepkg/sub/core.py", "Widget.Part.run"),
    ]
    nested = hits[1]
    assert nested.path == package / "sub" / "core.py"
    assert nested.code == 'raise RuntimeError("needle in a nested function")'
    assert str(nested) == f"needlepkg/sub/core.py:{nested.line} in outer.<locals>.inner: {nested.code}"


def test_the_excerpt_numbers_the_lines_and_marks_the_hit(package: Path) -> None:
    hit = find_in_source("needlepkg", "nested function")[0]
    excerpt = hit.excerpt(before=2, after=1).splitlines()
    assert len(excerpt) == 4
    assert excerpt[2].startswith(f"> {hit.line:4} ")
    assert excerpt[1].startswith(f"  {hit.line - 1:4} ")
    assert "def inner():" in excerpt[1]


def test_a_single_module_and_text_that_is_not_there(package: Path) -> None:
    assert [str(hit) for hit in find_in_source("needlemodule", "needle")] == [
        'needlemodule.py:2 in only: return "needle alone"'
    ]
    assert find_in_source("needlepkg", "no such text") == []
    assert find_in_source("needlepkg", "NEEDLE") == [], "the search is case-sensitive"


def test_compiled_and_missing_packages() -> None:
    assert find_in_source("sys", "anything") == [], "a built-in module has no Python source"
    with pytest.raises(ModuleNotFoundError, match="no_such_package_here"):
        find_in_source("no_such_package_here", "anything")


def test_finds_the_real_origin_of_no_response_returned() -> None:
    hits = find_in_source("starlette", "No response returned")
    assert len(hits) == 1
    assert isinstance(hits[0], SourceHit)
    assert hits[0].file == "starlette/middleware/base.py"
    assert hits[0].function == "BaseHTTPMiddleware.__call__.<locals>.call_next"
