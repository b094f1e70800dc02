"""Finding and reading the notebooks in a learner's folder, trusting nothing about them.

No symbolic link is followed (a link could lead to the master notebook, or to ``/``): the folder
is walked without following links, and a notebook is opened with ``O_NOFOLLOW``. Only regular
files are read (a FIFO would block the grader forever), at most ``MAX_NOTEBOOK_BYTES`` of them,
and a walk stops after ``MAX_ENTRIES`` entries. The notebook is parsed cell by cell, so one cell
of an odd shape costs that cell, not the notebook: nbformat's validation would reject it whole.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from bgcourse.helpers._language import ENGLISH, LANGUAGES
from bgcourse.instructor._text import capped, valid_text

__all__ = [
    "LINK_REASON",
    "LearnerCell",
    "MAX_ENTRIES",
    "MAX_NOTEBOOK_BYTES",
    "OutOfTime",
    "Walk",
    "check_time",
    "read_cells",
    "read_notebook",
    "walk_notebooks",
]

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_ENTRIES = 10_000  # files and folders looked at in one learner's folder
LINK_REASON = "a symbolic link is not graded: hand in the notebook file itself"


class OutOfTime(Exception):
    """Reading the submission used up its deadline (``until``, a ``time.monotonic()`` value)."""


def check_time(until: float | None) -> None:
    if until is not None and time.monotonic() > until:
        raise OutOfTime


@dataclass(frozen=True)
class LearnerCell:
    """What grading uses of one cell: its grade_id, type and source (None if the source is not text)."""

    grade_id: str | None
    cell_type: str
    source: str | None
    damaged: str = ""  # why its nbgrader metadata could not be read, in the learner's terms
    repaired: bool = False  # lone surrogates in the source were replaced


@dataclass
class Walk:
    files: list[Path]  # regular (or at least not linked) *.ipynb files, sorted
    links: list[Path]  # symbolic links named *.ipynb: never followed, never graded
    cut: bool = False  # more than MAX_ENTRIES entries: the rest was not looked at


def walk_notebooks(folder: Path, until: float | None) -> Walk:
    """The notebooks under ``folder``, found without following a link; checkpoints left out."""
    walk, folders, seen = Walk([], []), [folder], 0
    while folders and not walk.cut:
        check_time(until)
        current = folders.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable: nothing in it can be graded anyway
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                walk.cut = True
                break
            path = current / entry.name
            if entry.is_symlink():
                if entry.name.endswith(".ipynb"):
                    walk.links.append(path)
            elif entry.is_dir(follow_symlinks=False):
                if entry.name != ".ipynb_checkpoints":
                    folders.append(path)
            elif entry.name.endswith(".ipynb"):
                walk.files.append(path)
    walk.files.sort()
    walk.links.sort()
    return walk


def read_cells(path: Path) -> list[LearnerCell]:
    """The cells of the notebook at ``path``; ValueError says, after the file's name, why there are none."""
    return read_notebook(path)[0]


def read_notebook(path: Path) -> tuple[list[LearnerCell], str]:
    """The cells of the notebook at ``path``, and the language of its edition (``bgcourse.language``).

    The language is one of the course's, else English: the metadata is the learner's to edit.
    """
    text = _read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"is not valid JSON ({error.msg}, line {error.lineno}): the file is damaged") from None
    except (ValueError, RecursionError):  # a number of thousands of digits, lists nested thousands deep
        raise ValueError("is not valid JSON (a number too long, or lists nested too deep): it is damaged") from None
    raw_cells = _raw_cells(document)
    cells = [_cell(raw) for raw in raw_cells if isinstance(raw, dict)]
    metadata = document.get("metadata") if isinstance(document, dict) else None
    course = metadata.get("bgcourse") if isinstance(metadata, dict) else None
    language = course.get("language") if isinstance(course, dict) else None
    return cells, language if isinstance(language, str) and language in LANGUAGES else ENGLISH


def _read_text(path: Path) -> str:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:  # the last part of the path became a link since the walk
            raise ValueError(f"is a symbolic link, and {LINK_REASON}") from None
        raise ValueError(f"could not be opened ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file: hand in the notebook file itself")
        if info.st_size > MAX_NOTEBOOK_BYTES:  # said before reading a byte of it
            size = info.st_size / 2**20
            raise ValueError(f"is {size:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit for a notebook")
        try:
            data = stream.read(MAX_NOTEBOOK_BYTES + 1)
        except OSError as error:
            raise ValueError(f"could not be read ({error.strerror})") from None
    if not data:
        raise ValueError("is empty (0 bytes): nothing was saved")
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"is over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit for a notebook")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not a text file (a notebook is JSON text)") from None


def _raw_cells(document: object) -> list[Any]:
    if isinstance(document, dict) and isinstance(document.get("cells"), list):
        cells: list[Any] = document["cells"]
        return cells
    if isinstance(document, dict) and "worksheets" in document:  # nbformat 3: let nbformat convert it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns about what it repairs: irrelevant here
            try:
                converted: list[Any] = nbformat.convert(nbformat.from_dict(document), 4).cells
                return converted
            except Exception as error:  # noqa: BLE001  # any malformed structure: say so
                raise ValueError(f"is JSON but not a Jupyter notebook ({type(error).__name__})") from None
    raise ValueError("is JSON but not a Jupyter notebook (it has no list of cells)")


def _cell(raw: dict[str, Any]) -> LearnerCell:
    cell_type = raw.get("cell_type")
    source = raw.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        source = "".join(source)
    repaired = False
    if isinstance(source, str):
        fixed = valid_text(source)
        repaired, source = fixed != source, fixed
    else:
        source = None
    metadata = raw.get("metadata")
    flags = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    cell_id: str | None = None
    damaged = ""
    if metadata is not None and not isinstance(metadata, dict):
        damaged = f"its metadata is {_quoted(metadata)}, not a set of fields"
    elif isinstance(flags, dict) and isinstance(flags.get("grade_id"), str):
        cell_id = flags["grade_id"]
        if valid_text(cell_id) != cell_id:
            cell_id, damaged = None, "its grade_id holds characters that are not valid text"
    elif isinstance(flags, dict) and "grade_id" in flags:
        damaged = f"its grade_id is {_quoted(flags['grade_id'])}, not text"
    elif flags is not None and not isinstance(flags, dict):
        damaged = f"its nbgrader metadata is {_quoted(flags)}, not a set of fields"
    kind = valid_text(cell_type) if isinstance(cell_type, str) else "unknown"
    return LearnerCell(cell_id, capped(kind, 40), source, damaged, repaired)


def _quoted(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return capped(text, 80)
