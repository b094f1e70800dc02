"""An assignment (a chapter's master notebook and quiz) and what one learner handed in for it.

A submission is never trusted for anything but the learner's own answer cells, found by their
nbgrader ``grade_id``: every other cell comes from the master, so deleted, moved, duplicated or
edited cells change nothing but a note in the feedback.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language
from bgcourse.helpers._language import ENGLISH
from bgcourse.helpers._quiz import Quiz, load_quiz
from bgcourse.instructor._learner_files import (
    LINK_REASON,
    MAX_NOTEBOOK_BYTES,
    LearnerCell,
    OutOfTime,
    check_time,
    read_cells,
    read_notebook,
    walk_notebooks,
)
from bgcourse.instructor._nbgrader import grade_id, is_grade, is_locked, is_solution
from bgcourse.instructor._quiz_release import assessed_quiz_text
from bgcourse.instructor._release import chapters, languages, read_master, student_notebook
from bgcourse.instructor._text import capped, shown_name

__all__ = [
    "Assignment",
    "Item",
    "MAX_ANSWER_CHARS",
    "MAX_NOTEBOOK_BYTES",
    "Submission",
    "load_assignment",
    "read_submission",
]

# A reference answer is under 3,000 characters; reading a megabyte of code to plan the run takes
# the grader many seconds and gigabytes (IPython's transformer and the ast), so a longer answer
# cell is not graded at all.
MAX_ANSWER_CHARS = 100_000
MAX_NOTES = 20
MAX_NOTEBOOKS_OPENED = 20  # looking for a wrongly named notebook among many
Kind = Literal["choice", "code", "exercise"]


@dataclass(frozen=True)
class Item:
    """One graded cell of the master: a quiz question or an exercise check, worth ``points``."""

    grade_id: str
    points: float
    kind: Kind
    answer_id: str


@dataclass(frozen=True)
class Assignment:
    slug: str
    master: Any
    released: dict[str, str]  # grade_id -> source of each locked cell as learners got it
    quiz: Quiz | None
    quiz_files: dict[str, str]  # what the grading kernel may read: the assessed quiz file
    items: tuple[Item, ...]
    # Each edition's quiz (same ids, answers and points: tests/test_editions.py), for its explanations.
    editions: dict[str, Quiz] = field(default_factory=dict)

    def quiz_in(self, language: str) -> Quiz | None:
        """The quiz as a learner of ``language`` reads it (English where that edition has none)."""
        return self.editions.get(language, self.quiz)

    @property
    def answer_ids(self) -> set[str]:
        return {grade_id(cell) or "" for cell in self.master.cells if is_solution(cell)}

    @property
    def total(self) -> float:
        return sum(item.points for item in self.items)


@functools.cache
def load_assignment(course: Path, slug: str) -> Assignment:
    (chapter,) = chapters(course, [slug])
    master, quiz = read_master(chapter)
    released = student_notebook(chapter, master, quiz, "assessed")
    locked = {grade_id(cell) or "": cell.source for cell in released.cells if is_locked(cell)}
    kinds = {question.id: question.kind for question in quiz.questions} if quiz else {}
    items, previous_answer = [], ""
    for cell in master.cells:
        if is_solution(cell):
            previous_answer = grade_id(cell) or ""
        if is_grade(cell) and not is_solution(cell):
            cell_id = grade_id(cell) or ""
            answer = f"{cell_id}_answer" if any(grade_id(c) == f"{cell_id}_answer" for c in master.cells) else ""
            kind: Kind = kinds.get(cell_id, "exercise")
            items.append(Item(cell_id, float(cell.metadata.nbgrader["points"]), kind, answer or previous_answer))
    quiz_files = {f"{slug}.toml": assessed_quiz_text(chapter.quiz)} if chapter.quiz else {}
    return Assignment(slug, master, locked, quiz, quiz_files, tuple(items), _edition_quizzes(course, slug))


def _edition_quizzes(course: Path, slug: str) -> dict[str, Quiz]:
    found = {}
    for language in languages(course):
        quiz_file = course / "quizzes" / language / f"{slug}.toml"
        if language != ENGLISH and quiz_file.is_file():
            found[language] = load_quiz(quiz_file)
    return found


@dataclass
class Submission:
    """A learner's answer cells (source by grade_id), the notes to show them, or why nothing could be graded."""

    learner: str
    path: Path | None = None
    language: str = ENGLISH  # of the edition the notebook came from: the feedback is written in it
    answers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problem: str = ""
    unreadable: dict[str, str] = field(default_factory=dict)  # answer grade_id -> why its cell was not graded
    damaged: list[str] = field(default_factory=list)  # cells whose nbgrader metadata could not be read

    def missing_answer_hint(self) -> str:
        """Why an answer cell may seem deleted: a cell whose metadata is damaged cannot be matched to it."""
        if not self.damaged:
            return ""
        return _(
            " A cell of your notebook could not be matched to any question ({cell}): "
            "was its nbgrader metadata edited? Copy your answer into a fresh copy of the notebook."
        ).format(cell=self.damaged[0])


def read_submission(learner: str, folder: Path, assignment: Assignment, *, until: float | None = None) -> Submission:
    """What ``folder`` holds for ``assignment``; reading stops (with a reason) at ``until`` (``time.monotonic()``)."""
    submission = Submission(learner)
    try:
        _read(folder, assignment, submission, until)
    except OutOfTime:
        submission.answers.clear()
        with in_language(submission.language):
            submission.problem = _("Reading your submission took longer than this notebook's grading deadline.")
    with in_language(submission.language):
        submission.notes = _bounded(submission.notes)
    return submission


def _read(folder: Path, assignment: Assignment, submission: Submission, until: float | None) -> None:
    if folder.is_symlink():
        submission.problem = f"Your submission folder is a symbolic link, and {LINK_REASON}."
        return
    path = _find_notebook(folder, assignment, submission, until)
    if path is None:
        return
    submission.path = path
    check_time(until)
    try:
        cells, submission.language = read_notebook(path)
    except ValueError as error:
        submission.problem = f"{_relative(path, folder)} {error}"
        return
    check_time(until)
    # What is said before the notebook is read is in English: its language is not known yet.
    with in_language(submission.language):
        _collect_answers(cells, assignment, submission)


def _find_notebook(folder: Path, assignment: Assignment, submission: Submission, until: float | None) -> Path | None:
    expected = f"{assignment.slug}.ipynb"
    walk = walk_notebooks(folder, until)
    if walk.cut:
        submission.notes.append("Your folder holds very many files: only the first ones were looked at.")
    named = [path for path in walk.files if path.name == expected]
    linked = [path for path in walk.links if path.name == expected]
    if linked and not named:
        submission.problem = f"{_relative(linked[0], folder)} is a symbolic link, and {LINK_REASON}."
        return None
    if linked:
        submission.notes.append(f"{_relative(linked[0], folder)} is a symbolic link, and was not graded.")
    if named:
        return named[0]
    # A wrong file name: grade the one notebook that holds this assignment's answer cells.
    ours = [path for path in walk.files[:MAX_NOTEBOOKS_OPENED] if _mentions(path, assignment, until)]
    if len(ours) == 1:
        submission.notes.append(
            f"Graded {_relative(ours[0], folder)}: please hand in this notebook as {expected} next time."
        )
        return ours[0]
    found = [_relative(path, folder) for path in walk.files] + [
        f"{_relative(path, folder)} (a symbolic link)" for path in walk.links
    ]
    others = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    submission.problem = capped(
        f"No {expected} in the submission (found: {others or 'no notebook at all'}); "
        + ("several of them hold this assignment's cells, so none was graded." if ours else "nothing to grade.")
    )
    return None


def _relative(path: Path, folder: Path) -> str:
    return shown_name(str(path.relative_to(folder)))


def _mentions(path: Path, assignment: Assignment, until: float | None) -> bool:
    check_time(until)
    try:
        cells = read_cells(path)
    except ValueError:
        return False
    return any(cell.grade_id in assignment.answer_ids for cell in cells)


def _collect_answers(cells: list[LearnerCell], assignment: Assignment, submission: Submission) -> None:
    answer_ids, seen, order = assignment.answer_ids, set[str](), []
    for cell in cells:
        if cell.damaged:
            submission.damaged.append(cell.damaged)
        cell_id = cell.grade_id
        if cell_id is None:
            continue
        order.append(cell_id)
        if cell_id in seen:
            text = _("Cell {cell} appears more than once; the first copy was graded.")
            submission.notes.append(text.format(cell=shown_name(cell_id)))
            continue
        seen.add(cell_id)
        if cell_id in answer_ids:
            _take_answer(cell, cell_id, submission)
        elif cell_id in assignment.released and cell.source != assignment.released[cell_id]:
            submission.notes.append(
                _("You had changed the locked cell {cell}; the original was used.").format(cell=cell_id)
            )
    if submission.damaged:
        text = _("A cell's nbgrader metadata is damaged ({cell}): it was not graded.")
        submission.notes.append(text.format(cell=submission.damaged[0]))
    missing = [cell_id for cell_id in assignment.released if cell_id not in seen]
    if missing:
        text = _("Locked cells missing from your notebook were put back: {cells}.")
        submission.notes.append(text.format(cells=", ".join(missing)))
    master_order = [grade_id(cell) for cell in assignment.master.cells if grade_id(cell) in seen]
    if [cell_id for cell_id in dict.fromkeys(order)] != master_order:
        submission.notes.append(_("Some cells had been moved; they were graded in the original order."))


def _take_answer(cell: LearnerCell, cell_id: str, submission: Submission) -> None:
    if cell.source is None:
        submission.unreadable[cell_id] = _(
            "Your answer cell {cell} could not be graded: its source is not text."
        ).format(cell=cell_id)
        return
    if len(cell.source) > MAX_ANSWER_CHARS:
        text = _(
            "Your answer cell {cell} is {length} characters long, over the limit of {limit} for one cell: "
            "it was not graded."
        )
        submission.unreadable[cell_id] = text.format(
            cell=cell_id, length=f"{len(cell.source):,}", limit=f"{MAX_ANSWER_CHARS:,}"
        )
        return
    submission.answers[cell_id] = cell.source
    if cell.repaired:
        text = _(
            "Your answer cell {cell} held characters that are not valid text (lone surrogates): "
            "each was replaced by U+FFFD (\ufffd) before grading."
        )
        submission.notes.append(text.format(cell=cell_id))
    if cell.cell_type != "code":
        text = _("Your answer cell {cell} had been turned into {kind}: graded as code.")
        submission.notes.append(text.format(cell=cell_id, kind=shown_name(cell.cell_type)))


def _bounded(notes: list[str]) -> list[str]:
    """The notes, each once and capped, at most ``MAX_NOTES`` of them (a notebook may repeat a cell 10,000 times)."""
    unique = [capped(note) for note in dict.fromkeys(notes)]
    if len(unique) <= MAX_NOTES:
        return unique
    more = _("... and {count} more notes like these.").format(count=len(unique) - MAX_NOTES)
    return [*unique[:MAX_NOTES], more]
