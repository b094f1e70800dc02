"""Hold a check-then-insert race open on purpose, so that a notebook can show what a lock prevents.

Two requests for the same name race only if the second checks while the first is between its
check and its insert: a window of microseconds, which a demonstration cannot wait for by luck.
:class:`RaceWindow` holds every request in that window until each of the others has either made
its own check or is queued at the lock, so both outcomes are certain: without a lock every
request finds the name free; with one, only the first does.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["RaceWindow"]

K = TypeVar("K")
V = TypeVar("V")


class RaceWindow:
    """Holds ``racers`` requests between their check (``key in store``) and their insert.

    Give the app ``window.store()`` as its dictionary and ``window.guard(lock)`` as its lock
    (``window.guard(None)`` for no lock at all).  Each ``in`` on the store waits, after it has
    looked, until every racer has looked too or is waiting to enter the guard; ``timeout`` only
    ends a wait that would never end (fewer racers than announced).
    """

    def __init__(self, racers: int, *, timeout: float = 30.0) -> None:
        self.racers = racers
        self.checks: list[bool] = []  # what each check found: True if the key was there
        self._timeout = timeout
        self._condition = threading.Condition()
        self._queued = 0  # racers inside guard.__enter__, not yet holding the lock

    def store(self) -> _WatchedDict[Any, Any]:
        """An empty dictionary whose ``in`` holds the caller in the race window."""
        return _WatchedDict(self)

    def guard(self, lock: contextlib.AbstractContextManager[Any] | None) -> _Guard:
        """``lock`` (or a lock that locks nothing), which tells the window who is queued at it."""
        # Without a lock nobody waits at the guard: a racer passing through it must not count as
        # queued, or the racers in the window would take it for one that can no longer check
        # before their inserts, leave the window, insert, and that racer would find the name taken.
        if lock is None:
            return _Guard(None, contextlib.nullcontext())
        return _Guard(self, lock)

    @property
    def free_checks(self) -> int:
        """How many checks found the key absent: each of them went on to insert."""
        return self.checks.count(False)

    def _queue(self, change: int) -> None:
        with self._condition:
            self._queued += change
            self._condition.notify_all()

    def _checked(self, found: bool) -> None:
        with self._condition:
            self.checks.append(found)
            self._condition.notify_all()
            # Everyone not yet checked must be queued at the lock: only then can this racer's
            # insert no longer change what a check finds (with a lock), or every check has been
            # made before any insert (without one).
            everyone_there = self._condition.wait_for(
                lambda: len(self.checks) + self._queued >= self.racers, timeout=self._timeout
            )
        if not everyone_there:
            raise TimeoutError(f"{self.racers} racers were announced; {len(self.checks)} checked within the timeout")


class _WatchedDict(dict[K, V]):
    def __init__(self, window: RaceWindow) -> None:
        super().__init__()
        self._window = window

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        self._window._checked(found)
        return found


class _Guard:
    """Reusable, unlike a generator-based context manager: every request enters the same one."""

    def __init__(self, window: RaceWindow | None, lock: contextlib.AbstractContextManager[Any]) -> None:
        self._window = window  # None: a guard that locks nothing, where nobody is ever queued
        self._lock = lock

    def __enter__(self) -> None:
        if self._window is None:
            self._lock.__enter__()
            return
        self._window._queue(+1)
        try:
            self._lock.__enter__()
        finally:
            self._window._queue(-1)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._lock.__exit__(kind, error, trace)
