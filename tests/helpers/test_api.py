"""The helper package's public surface is exactly its sorted __all__, each name loaded on first use."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import bgcourse


def test_all_is_sorted() -> None:
    assert bgcourse.__all__ == sorted(bgcourse.__all__)


def test_all_is_exactly_the_names_it_imports_for_type_checkers() -> None:
    assert sorted(bgcourse._where()) == bgcourse.__all__


def test_every_public_name_resolves_and_nothing_else_is_public() -> None:
    for name in bgcourse.__all__:
        assert not isinstance(getattr(bgcourse, name), types.ModuleType), name
    public = {
        name
        for name, value in vars(bgcourse).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING", "Any", "Path"}
    }
    assert public == set(bgcourse.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'serve_forever'"):
        _ = bgcourse.serve_forever


def test_a_process_pool_worker_imports_only_what_it_unpickles() -> None:
    # A fresh interpreter: this one has imported everything already.
    code = "import sys, bgcourse; bgcourse.count_primes; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("sqlalchemy", "matplotlib", "huey", "fastapi", "nbformat"):
        assert f"'{heavy}'" not in loaded, f"counting primes imported {heavy}"
