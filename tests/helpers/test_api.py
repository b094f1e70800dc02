"""The helper package's public surface is exactly its sorted __all__."""

from __future__ import annotations

import types

import bgcourse


def test_all_is_sorted() -> None:
    assert bgcourse.__all__ == sorted(bgcourse.__all__)


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(bgcourse).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(bgcourse.__all__)
