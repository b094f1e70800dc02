"""An assignment (a chapter's master notebook and quiz) and what one learner handed in for it.

A submission is never trusted for anything but the learner's own answer cells, found by their
nbgrader ``grade_id``: every other cell comes from the master, so deleted, moved, duplicated or
edited cells change nothing but a note in the feedback.
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbformat

from bgcourse.helpers._quiz import Quiz
from bgcourse.instructor._nbgrader import grade_id, is_grade, is_locked, is_solution
from bgcourse.instructor._quiz_release import assessed_quiz_text
from bgcourse.instructor._release import chapters, read_master, student_notebook

__all__ = ["Assignment", "Item", "Submission", "load_assignment", "read_submission"]

MAX_NOTEBOOK_BYTES = 20 * 2**20
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
    return Assignment(slug, master, locked, quiz, quiz_files, tuple(items))


@dataclass
class Submission:
    """A learner's answer cells (source by grade_id), the notes to show them, or why nothing could be graded."""

    learner: str
    path: Path | None = None
    answers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problem: str = ""


def read_submission(learner: str, folder: Path, assignment: Assignment) -> Submission:
    submission = Submission(learner)
    path = _find_notebook(folder, assignment, submission)
    if path is None:
        return submission
    submission.path = path
    try:
        notebook = _read_notebook(path)
    except ValueError as error:
        submission.problem = f"{path.name} {error}"
        return submission
    _collect_answers(notebook, assignment, submission)
    return submission


def _find_notebook(folder: Path, assignment: Assignment, submission: Submission) -> Path | None:
    expected = f"{assignment.slug}.ipynb"
    found = sorted(path for path in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts)
    named = [path for path in found if path.name == expected]
    if named:
        return named[0]
    # A wrong file name: grade the one notebook that holds this assignment's answer cells.
    ours = [path for path in found if _mentions(path, assignment)]
    if len(ours) == 1:
        submission.notes.append(
            f"Graded {ours[0].relative_to(folder)}: please hand in this notebook as {expected} next time."
        )
        return ours[0]
    others = ", ".join(str(path.relative_to(folder)) for path in found) or "no notebook at all"
    submission.problem = f"No {expected} in the submission (found: {others}); " + (
        "several of them hold this assignment's cells, so none was graded." if ours else "nothing to grade."
    )
    return None


def _mentions(path: Path, assignment: Assignment) -> bool:
    try:
        notebook = _read_notebook(path)
    except ValueError:
        return False
    return any(grade_id(cell) in assignment.answer_ids for cell in notebook.cells)


def _read_notebook(path: Path) -> Any:
    size = path.stat().st_size
    if size == 0:
        raise ValueError("is empty (0 bytes): nothing was saved")
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit for a notebook")
    try:
        text = path.read_bytes().decode("utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("is not a text file (a notebook is JSON text)") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"is not valid JSON ({error.msg}, line {error.lineno}): the file is damaged") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat warns about missing cell ids and the like: irrelevant here
        try:
            notebook = nbformat.reads(text, as_version=4)
            cells = [cell for cell in notebook.cells if isinstance(cell.get("source"), str)]
        except Exception as error:  # noqa: BLE001  # any malformed structure: say so, grade nothing
            raise ValueError(f"is JSON but not a Jupyter notebook ({type(error).__name__})") from None
    notebook.cells = cells
    return notebook


def _collect_answers(notebook: Any, assignment: Assignment, submission: Submission) -> None:
    answer_ids, seen, order = assignment.answer_ids, set[str](), []
    for cell in notebook.cells:
        cell_id = grade_id(cell) if isinstance(cell.get("metadata", {}).get("nbgrader"), dict) else None
        if cell_id is None:
            continue
        order.append(cell_id)
        if cell_id in seen:
            submission.notes.append(f"Cell {cell_id} appears more than once; the first copy was graded.")
            continue
        seen.add(cell_id)
        if cell_id in answer_ids:
            submission.answers[cell_id] = cell.source
            if cell.cell_type != "code":
                submission.notes.append(
                    f"Your answer cell {cell_id} had been turned into {cell.cell_type}: graded as code."
                )
        elif cell_id in assignment.released and cell.source != assignment.released[cell_id]:
            submission.notes.append(f"You had changed the locked cell {cell_id}; the original was used.")
    missing = [cell_id for cell_id in assignment.released if cell_id not in seen]
    if missing:
        submission.notes.append(f"Locked cells missing from your notebook were put back: {', '.join(missing)}.")
    master_order = [grade_id(cell) for cell in assignment.master.cells if grade_id(cell) in seen]
    if [cell_id for cell_id in dict.fromkeys(order)] != master_order:
        submission.notes.append("Some cells had been moved; they were graded in the original order.")
