"""Automatic checks for the exercises, one module per chapter (``checks.ch01_core_mechanics``).

A check raises ``AssertionError`` with a message that says what went wrong and what to try;
it returns a short confirmation when the exercise is solved.
"""

from __future__ import annotations

__all__: list[str] = []
