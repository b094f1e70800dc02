"""What a learner sees from a check: one short verdict in their own terms, never a traceback wall.

Two behaviours, chosen by the copy the notebook belongs to:

- in a learner's **practice** copy (its folder holds a ``.course-copy.json`` that says
  ``"mode": "practice"``), a check that is not satisfied *returns* a "Not yet" verdict: nothing
  raises, so Run All goes through the whole chapter and every check says where the learner is;
- everywhere else (the master notebooks, an assessed copy, a grader, nbgrader), it *raises*
  :class:`NotSolved`, an ``AssertionError``, so that a grader counts the cell as failed. IPython
  shows such an exception as its message alone (``_render_traceback_``), not as a traceback
  through the course's code.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._language import COPY_MARKER

__all__ = ["COPY_MARKER", "NotSolved", "Verdict", "copy_mode", "learner_frame", "not_yet"]

_PACKAGE = Path(__file__).resolve().parents[1]  # the whole bgcourse package


def copy_mode(folder: Path | None = None) -> str:
    """``"practice"`` if ``folder`` (default: the cwd, the notebook's folder) is a practice copy, else ``"strict"``."""
    marker = (folder or Path.cwd()) / COPY_MARKER
    try:
        mode = json.loads(marker.read_text(encoding="utf-8")).get("mode")
    except (OSError, ValueError, AttributeError):
        return "strict"
    return "practice" if mode == "practice" else "strict"


class NotSolved(AssertionError):
    """A check is not satisfied yet; the message says what was wrong, in the learner's terms."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback (the frames are the course's, not yours).
        return ["\x1b[31m" + _("Not solved yet.") + f"\x1b[0m {self}"]


class Verdict(str):
    """A check's verdict, shown as one line of Markdown: right, or not yet and why. It is the message itself."""

    solved: bool

    def __new__(cls, message: str, *, solved: bool) -> Verdict:
        verdict = super().__new__(cls, message)
        verdict.solved = solved
        return verdict

    def __repr__(self) -> str:
        return (_("Solved") if self.solved else _("Not yet")) + f": {self}"

    def _repr_markdown_(self) -> str:
        # Words, not an emoji: a learner without an emoji font would see an empty box.
        return "**" + (_("Solved.") if self.solved else _("Not yet.")) + f"** {self}"


def learner_frame(error: BaseException) -> str:
    """Where in the learner's own code ``error`` was raised ("line 12, in send_receipt"), or ``""``.

    The innermost frame outside the Python installation and outside this package: a notebook
    cell, or a module of the learner's.
    """
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), _PACKAGE}
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if path.is_absolute() and any(path.resolve().is_relative_to(root) for root in roots):
            continue
        code = f": `{frame.line.strip()}`" if frame.line else ""
        # As a traceback says it, in every language: it is recorded where the code ran, and read anywhere.
        return f"line {frame.lineno}, in {frame.name}{code}"
    return ""


def not_yet(message: str) -> Verdict:
    """The verdict "not yet": returned in a practice copy, raised as :class:`NotSolved` everywhere else."""
    if copy_mode() == "practice":
        return Verdict(message, solved=False)
    raise NotSolved(message) from None
