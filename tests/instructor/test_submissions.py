"""Reading what learners hand in, choosing the cells to run, and writing the gradebook whole (no kernel here)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

import bgcourse
from bgcourse.instructor import _gradebook
from bgcourse.instructor._grade import protected_folders
from bgcourse.instructor._nbgrader import grade_id
from bgcourse.instructor._plan import plan_cells, read_choice
from bgcourse.instructor._scoring import ItemResult, LearnerResult
from bgcourse.instructor._submissions import Item, Submission, load_assignment, read_submission

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "ch01_core_mechanics"
ITEM = Item("q01", 1.0, "choice", "q01_answer")
Notebook = Any


@pytest.mark.parametrize(
    ("source", "value", "problem"),
    [
        ('### BEGIN SOLUTION\nanswer_q01 = "B"\n### END SOLUTION', "B", ""),
        ("answer_q01: str = 'c'  # my guess", "c", ""),
        ('answer_q01 = "A"\nanswer_q01 = "D"', "D", ""),
        ("answer_q01 = ...", ..., ""),
        ("%time x = 1\nanswer_q01 = 'B'", "B", ""),
        ("answer_q01 = open('key').read()", None, "answer_q01 must be a letter in quotes"),
        ("answer_q01 = ", None, "is not valid Python (invalid syntax, line 1)"),
        ("answer = 'B'", None, "does not set answer_q01"),
        (None, None, "no answer cell for q01 (cell q01_answer was deleted?)"),
    ],
)
def test_a_choice_is_read_without_running_the_cell(source: str | None, value: object, problem: str) -> None:
    got, reason = read_choice(source, ITEM)
    assert got == value
    assert problem in reason
    assert bool(reason) == bool(problem)


def test_only_what_scores_runs_and_only_the_chapter_cells_it_needs(master_answers: dict[str, str]) -> None:
    assignment = load_assignment(ROOT, CHAPTER)
    cells = plan_cells(assignment, Submission("someone", answers=dict(master_answers)))
    roles = [(cell.role, cell.item) for cell in cells]
    assert ("answer", "q01") not in roles, "a multiple-choice answer is read, never run"
    assert ("check", "q01") not in roles
    assert roles.count(("context", "")) == 1, "only the chapter cell that imports load_quiz"
    assert "load_quiz" in cells[0].source
    (check,) = [cell for cell in cells if (cell.role, cell.item) == ("check", "q06")]
    assert "def observe(schedule)" in check.source, "a code question's probe is added at grading time"
    assert check.judge == ("question", "q06"), "and its record is judged in the grader"
    (probe,) = [cell for cell in cells if (cell.role, cell.item) == ("check", "ex01")]
    assert "checks.ex01.observation(app, receipts)" in probe.source, "an exercise's probe observes only"
    assert probe.judge == ("exercise", "bgcourse.checks.ch01_core_mechanics:ex01")
    # A missing answer does not pull in the chapter's own definitions of the names it should define.
    stubbed = plan_cells(assignment, Submission("someone"))
    assert [cell.role for cell in stubbed].count("context") == 1


def test_the_assignment_items_come_from_the_master() -> None:
    assignment = load_assignment(ROOT, CHAPTER)
    assert [(item.grade_id, item.kind, item.points) for item in assignment.items] == [
        ("ex01", "exercise", 2), ("ex02", "exercise", 2), ("ex03", "exercise", 2), ("q01", "choice", 1),
        ("q02", "choice", 1), ("q03", "choice", 1), ("q04", "choice", 1), ("q05", "choice", 1), ("q06", "code", 2),
    ]  # fmt: skip
    assert "answer" not in assignment.quiz_files[f"{CHAPTER}.toml"].split("[[question]]")[1]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({f"{CHAPTER}.ipynb": "[1, 2]"}, "is JSON but not a Jupyter notebook"),
        ({f"{CHAPTER}.ipynb": b"\xff\xfe\x00"}, "is not a text file"),
        ({"a.ipynb": "ANSWERED", "b.ipynb": "ANSWERED"}, "several of them hold this assignment's cells"),
        ({"other.ipynb": "{}"}, f"No {CHAPTER}.ipynb in the submission (found: other.ipynb); nothing to grade."),
    ],
)
def test_unusable_submissions_say_why(
    tmp_path: Path, answered: Callable[..., Notebook], files: dict[str, str | bytes], problem: str
) -> None:
    for name, content in files.items():
        data = nbformat.writes(answered()) if content == "ANSWERED" else content
        (tmp_path / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    submission = read_submission("someone", tmp_path, load_assignment(ROOT, CHAPTER))
    assert problem in submission.problem


def test_a_notebook_in_nbgraders_folder_layout_is_found(tmp_path: Path, answered: Callable[..., Notebook]) -> None:
    (tmp_path / CHAPTER).mkdir()
    nbformat.write(answered(), tmp_path / CHAPTER / f"{CHAPTER}.ipynb")
    submission = read_submission("someone", tmp_path, load_assignment(ROOT, CHAPTER))
    assert (submission.problem, submission.notes) == ("", [])
    assert submission.answers["q01_answer"] == '### BEGIN SOLUTION\nanswer_q01 = "B"\n### END SOLUTION'


def test_locked_cells_deleted_by_the_learner_are_named(tmp_path: Path, answered: Callable[..., Notebook]) -> None:
    notebook = answered()
    notebook.cells = [cell for cell in notebook.cells if grade_id(cell) not in ("q03", "q04_question")]
    nbformat.write(notebook, tmp_path / f"{CHAPTER}.ipynb")
    submission = read_submission("someone", tmp_path, load_assignment(ROOT, CHAPTER))
    assert submission.notes == ["Locked cells missing from your notebook were put back: q03, q04_question."]


def test_what_a_grading_kernel_may_not_read() -> None:
    protected = protected_folders(ROOT, Path("/srv/submissions"))
    for name in ("quizzes", "solutions", "notebooks", "tests", "release"):
        assert ROOT / name in protected
    assert Path("/srv/submissions") in protected
    assert not [path for path in protected if Path(sys.prefix).is_relative_to(path)], "the environment is needed"
    assert not [path for path in protected if Path(bgcourse.__file__).is_relative_to(path)], "and the checks"


def test_a_gradebook_that_fails_half_way_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assignment = load_assignment(ROOT, CHAPTER)
    items = tuple(ItemResult(item.grade_id, item.points, item.points, "Passed.") for item in assignment.items)
    _gradebook.write_gradebook(tmp_path / "book", assignment, [LearnerResult("ada", items)], isolation="bubblewrap")
    before = {path: path.read_bytes() for path in (tmp_path / "book").rglob("*") if path.is_file()}

    def broken(*arguments: object) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(_gradebook, "_plot", broken)
    with pytest.raises(OSError, match="disk full"):
        _gradebook.write_gradebook(tmp_path / "book", assignment, [LearnerResult("bob", items)], isolation="bubblewrap")
    assert {path: path.read_bytes() for path in (tmp_path / "book").rglob("*") if path.is_file()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["book"], "no staging folder is left behind"
    results = json.loads((tmp_path / "book" / "learners" / "ada" / "results.json").read_text())
    assert results["score"] == assignment.total


def test_the_gradebook_csv_holds_no_formula(tmp_path: Path) -> None:
    assignment = load_assignment(ROOT, CHAPTER)
    items = tuple(ItemResult(item.grade_id, item.points, 0.0, "Not graded.") for item in assignment.items)
    learners = [LearnerResult('=HYPERLINK("http://x","y")', items, problem="-1+2"), LearnerResult("ada", items)]
    _gradebook.write_gradebook(tmp_path / "book", assignment, learners, isolation="bubblewrap")
    with (tmp_path / "book" / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["learner"] for row in rows] == ['\'=HYPERLINK("http://x","y")', "ada"]
    assert rows[0]["problem"] == "'-1+2"
