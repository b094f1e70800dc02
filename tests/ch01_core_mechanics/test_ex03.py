"""Exercise 1.3's reference solution passes its check; a wrapper that swallows silently does not."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from bgcourse.checks import ch01_core_mechanics as checks
from solutions.ch01_core_mechanics import ex03


def test_solution_passes() -> None:
    assert "solved" in checks.ex03(ex03.keep_going)


def test_a_wrapper_that_makes_everything_async_is_caught() -> None:
    def make_async(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        return wrapper

    with pytest.raises(AssertionError, match="turned a def function into an async one"):
        checks.ex03(make_async)


def test_a_wrapper_that_swallows_without_logging_is_caught() -> None:
    def swallow(func: Callable[..., Any]) -> Callable[..., Any]:
        if func.__name__ == "record_async":

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception:  # noqa: BLE001 - the point: it swallows without a word
                return None

        return wrapper

    with pytest.raises(AssertionError, match="nothing was logged at ERROR"):
        checks.ex03(swallow)
