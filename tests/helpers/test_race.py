"""RaceWindow: without a lock every racer finds the key free; with one, only the first does."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from bgcourse import RaceWindow

RACERS = 4


def register_all(window: RaceWindow, lock: AbstractContextManager[Any] | None) -> tuple[list[str], dict[str, int]]:
    """Each racer checks for "ada" and inserts its number if the name was free, as chapter 2's endpoint does."""
    users: dict[str, int] = window.store()
    guard = window.guard(lock)
    outcomes: list[str] = []

    def register(number: int) -> None:
        with guard:
            if "ada" in users:
                outcomes.append("taken")
                return
            users["ada"] = number
        outcomes.append("won")

    threads = [threading.Thread(target=register, args=(number,)) for number in range(window.racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes, users


def test_without_a_lock_every_racer_finds_the_name_free() -> None:
    window = RaceWindow(RACERS)
    outcomes, users = register_all(window, None)
    assert outcomes == ["won"] * RACERS
    assert window.free_checks == RACERS
    assert window.checks == [False] * RACERS
    assert list(users) == ["ada"]


def test_without_a_lock_no_racer_finds_the_name_taken_however_threads_switch() -> None:
    """A racer passing through a guard that locks nothing is not queued at it: none leaves early.

    With threads switching every microsecond, 16 racers at a time, this failed about one race in
    three while the window counted such a racer as queued (one racer inserted before the others
    had checked). A busy machine made that happen to chapter 2's four racers.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(30):
            window = RaceWindow(16)
            outcomes, _users = register_all(window, None)
            assert window.checks == [False] * 16, window.checks
            assert outcomes == ["won"] * 16
    finally:
        sys.setswitchinterval(interval)


def test_with_a_lock_only_the_first_racer_finds_the_name_free() -> None:
    window = RaceWindow(RACERS)
    outcomes, _ = register_all(window, threading.Lock())
    assert sorted(outcomes) == ["taken"] * (RACERS - 1) + ["won"]
    assert window.checks == [False] + [True] * (RACERS - 1)


def test_a_missing_racer_ends_the_wait_with_a_timeout() -> None:
    window = RaceWindow(2, timeout=0.05)
    users: dict[str, int] = window.store()
    with pytest.raises(TimeoutError, match="2 racers were announced; 1 checked"):
        _ = "ada" in users


@pytest.mark.parametrize("make_lock", [threading.Lock, threading.RLock])
def test_the_guard_holds_the_lock_inside_and_releases_it_after(make_lock: Callable[[], Any]) -> None:
    lock = make_lock()
    guard = RaceWindow(1).guard(lock)
    for _ in range(2):  # every request enters the same guard
        with guard:
            assert not _acquired_elsewhere(lock)
        assert _acquired_elsewhere(lock)


def _acquired_elsewhere(lock: Any) -> bool:
    """Whether another thread can take the lock right now (and give it back)."""
    result: list[bool] = []

    def attempt() -> None:
        taken = lock.acquire(blocking=False)
        if taken:
            lock.release()
        result.append(taken)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return result[0]
