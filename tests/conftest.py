"""Shared fixtures: where the course lives, and a guard that no test leaves a thread behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def course_root() -> Path:
    return ROOT


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """Fail if the test leaves a thread running.

    AnyIO's worker threads are told to stop when their event loop finishes but exit a moment
    later, so the check waits (bounded) for them rather than failing on a race.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [thread for thread in threading.enumerate() if thread not in before and thread.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        extra[0].join(0.05)
    assert not extra, f"threads left running: {[thread.name for thread in extra]}"
