"""Errors shown briefly: those a server logged (innermost frame), and those a cell raises on purpose."""

from __future__ import annotations

import html
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bgcourse.helpers._i18n import gettext as _

__all__ = ["IN_NOTEBOOK", "LoggedError", "ShownError", "logged_errors", "shows_error"]

IN_NOTEBOOK = "this notebook"  # where code typed into a cell is said to be


@dataclass(frozen=True)
class LoggedError:
    """An exception from a log record: its type, its message, and where it was raised."""

    type: str  # "RuntimeError"
    message: str  # "No response returned."
    file: str  # the innermost frame's file, from its package folder on ("starlette/middleware/base.py"), or IN_NOTEBOOK
    line: int
    function: str  # the innermost frame's function

    def __str__(self) -> str:
        """The first line of the message (some run to many lines) and where the exception was raised."""
        first_line = self.message.splitlines()[0] if self.message else ""
        where = f"{self.file}, line {self.line}" if self.file == IN_NOTEBOOK else f"{self.file}:{self.line}"
        return f"{self.type}: {first_line}\n    raised in {where}, in {self.function}"


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
    """``.../site-packages/starlette/middleware/base.py`` -> ``starlette/middleware/base.py``.

    A notebook cell's code (a temporary file of ipykernel's) is "this notebook".
    """
    if _in_notebook(filename):
        return IN_NOTEBOOK
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


@dataclass
class ShownError:
    """The error a :func:`shows_error` block raised on purpose (``None`` until the block ends)."""

    error: BaseException | None = None
    frames: int = 0  # how many frames its full traceback had

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error else "no error"


@contextmanager
def shows_error(*expected: type[BaseException]) -> Iterator[ShownError]:
    """Run a block that raises one of ``expected`` on purpose; show the error in a few lines, and go on.

    The cell does not fail, so Run All carries on past it. What is shown: the exception's type and
    message, the line that raised it and the line of this notebook that led there; the full
    traceback is folded underneath (plain-text outputs get the short form only). Any other
    exception propagates as usual, and a block that raises nothing fails with ``AssertionError``.
    """
    shown = ShownError()
    try:
        yield shown
    except expected as error:
        shown.error, shown.frames = error, len(traceback.extract_tb(error.__traceback__))
        from IPython.display import display  # imported here: only notebooks call this

        display(_Shown(error))  # type: ignore[no-untyped-call]
        _clear(error)  # the frames' locals would otherwise live as long as the notebook
    else:
        names = " or ".join(kind.__name__ for kind in expected)
        raise AssertionError(f"expected the block to raise {names}; it finished without an error")


class _Shown:
    """An exception's short form (text) and, in HTML, its full traceback folded below it."""

    def __init__(self, error: BaseException) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        self.short = [f"{type(error).__name__}: {error}"]
        if frames:
            self.short.append(f"    raised in {_where(frames[-1])}")
            ours = [frame for frame in frames if _in_notebook(frame.filename)]
            if ours and ours[0] is not frames[-1]:
                self.short.append(f"    from {_where(ours[0])}")
        self.full = "".join(traceback.format_exception(error)).rstrip()
        self.frames = len(frames)

    def __repr__(self) -> str:
        return "\n".join(self.short)

    def _repr_html_(self) -> str:
        short = html.escape("\n".join(self.short))
        summary = html.escape(_("The full traceback ({count} frames)").format(count=self.frames))
        return f"<pre>{short}</pre><details><summary>{summary}</summary><pre>{html.escape(self.full)}</pre></details>"


def _in_notebook(filename: str) -> bool:
    # ipykernel compiles each cell to a file of its own in a temporary "ipykernel_<pid>" folder.
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def _where(frame: traceback.FrameSummary) -> str:
    place = _shorten(frame.filename)
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"{place}, line {frame.lineno}, in {frame.name}{code}"
