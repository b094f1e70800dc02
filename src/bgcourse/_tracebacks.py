"""The exceptions a server logged, each with the innermost frame of its traceback."""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoggedError", "logged_errors"]


@dataclass(frozen=True)
class LoggedError:
    """An exception from a log record: its type, its message, and where it was raised."""

    type: str  # "RuntimeError"
    message: str  # "No response returned."
    file: str  # the innermost frame's file, from its package folder on: "starlette/middleware/base.py"
    line: int
    function: str  # the innermost frame's function

    def __str__(self) -> str:
        """The first line of the message (some run to many lines) and where the exception was raised."""
        first_line = self.message.splitlines()[0] if self.message else ""
        return f"{self.type}: {first_line}\n    raised in {self.file}:{self.line}, in {self.function}"


def logged_errors(records: list[logging.LogRecord]) -> list[LoggedError]:
    """Describe the exception of every record that has one, then release what its traceback held.

    The innermost frame of a traceback is where the exception was raised: the line to look up.
    A traceback keeps every local variable of every frame alive, an un-awaited coroutine
    included, whose ``RuntimeWarning`` would then appear whenever the garbage collector happens
    to run, in some later cell.  So, once read, the frames are cleared (``traceback.clear_frames``)
    and anything they held is released now.
    """
    errors: list[LoggedError] = []
    for record in records:
        if not record.exc_info or record.exc_info[1] is None:
            continue
        exception = record.exc_info[1]
        frames = traceback.extract_tb(exception.__traceback__)
        innermost = frames[-1] if frames else None
        errors.append(
            LoggedError(
                type=type(exception).__name__,
                message=str(exception),
                file=_shorten(innermost.filename) if innermost else "?",
                line=(innermost.lineno or 0) if innermost else 0,
                function=innermost.name if innermost else "?",
            )
        )
        _clear(exception)
    return errors


def _shorten(filename: str) -> str:
    """``.../site-packages/starlette/middleware/base.py`` -> ``starlette/middleware/base.py``."""
    path = Path(filename)
    roots = [Path(entry) for entry in sys.path if entry and path.is_relative_to(entry)]
    return path.relative_to(max(roots, key=lambda root: len(root.parts))).as_posix() if roots else filename


def _clear(exception: BaseException, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        if exception.__traceback__ is not None:
            traceback.clear_frames(exception.__traceback__)
        if exception.__cause__ is not None:
            _clear(exception.__cause__, seen)
        exception = exception.__context__  # type: ignore[assignment]
