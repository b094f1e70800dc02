"""`bgcourse grade`: every learner gets a score and a reason, whatever they hand in; re-running changes nothing."""

from __future__ import annotations

import copy
import csv
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from bgcourse import load_quiz
from bgcourse._cli import main
from bgcourse.instructor._isolation import Isolation
from bgcourse.instructor._nbgrader import grade_id

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "ch01_core_mechanics"
QUIZ = ROOT / "quizzes" / f"{CHAPTER}.toml"
TIMEOUT = 10  # seconds a cell may run: the endless loop costs this much once
Notebook = Any


def cell(notebook: Notebook, cell_id: str) -> Any:
    return next(each for each in notebook.cells if grade_id(each) == cell_id)


def save(folder: Path, learner: str, notebook: Notebook | str, name: str = f"{CHAPTER}.ipynb") -> None:
    path = folder / learner / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook if isinstance(notebook, str) else nbformat.writes(notebook), encoding="utf-8")


def make_submissions(folder: Path, answered: Callable[..., Notebook], stub: Notebook, master: dict[str, str]) -> None:
    save(folder, "perfect", answered())
    save(folder, "stub", stub)

    wrong = answered()
    cell(wrong, "q01_answer").source = 'answer_q01 = "C"'
    cell(wrong, "q02_answer").source = 'answer_q02 = "Z"'
    cell(wrong, "q03_answer").source = "answer_q03 = chr(66)"
    cell(wrong, "q04_answer").source = 'answer_q04 = "D'
    cell(wrong, "q05_answer").source = "# I am not sure"
    cell(wrong, "q06_answer").source = "def schedule(background_tasks, log):\n    log.append('first')"
    cell(wrong, "ex01_answer").source = master["ex01_answer"].replace("status_code=status.HTTP_202_ACCEPTED", "")
    save(folder, "wrong", wrong)

    edited = answered()
    edited.cells.remove(cell(edited, "q01_answer"))  # deleted
    duplicate = copy.deepcopy(cell(edited, "ex03_answer"))
    duplicate.source, duplicate.id = "raise ValueError('my draft')", "draft"
    edited.cells.append(duplicate)  # duplicated: the first copy counts
    moved = cell(edited, "q05")
    edited.cells.remove(moved)
    edited.cells.insert(0, moved)  # moved
    retyped = cell(edited, "q02_answer")
    retyped.cell_type = "markdown"  # retyped: graded as code, as nbgrader does
    del retyped["outputs"], retyped["execution_count"]
    cell(edited, "ex02").source = "pass  # the check, emptied"  # a locked cell changed: restored
    edited.cells.append(nbformat.v4.new_code_cell("raise SystemExit('a cell of my own')"))
    save(folder, "edited", edited)

    save(folder, "invalid_json", '{"cells": [')
    save(folder, "empty", "")
    save(folder, "wrong_name", answered(), name="Untitled (1).ipynb")
    save(folder, "no_notebook", "my answers are in my head", name="notes.txt")

    loop = answered()
    cell(loop, "ex02_answer").source = "while True:\n    pass"
    save(folder, "endless_loop", loop)

    crash = answered()
    cell(crash, "ex02_answer").source = "import os\nos._exit(3)"
    save(folder, "kernel_crash", crash)

    huge = answered()
    cell(huge, "ex01_answer").source = "print('spam ' * 5_000_000)\n" + master["ex01_answer"]
    save(folder, "huge_output", huge)

    cheat = answered()
    cell(cheat, "ex01_answer").source = f"key = open({str(QUIZ)!r}).read()\n" + master["ex01_answer"]
    cell(cheat, "ex03_answer").source = (
        "import urllib.request\ntry:\n    urllib.request.urlopen('http://example.com', timeout=2)\n"
        "except OSError:\n    pass\n" + master["ex03_answer"]
    )
    save(folder, "reads_answer_key", cheat)


def grade(submissions: Path, output: Path, isolation: Isolation) -> None:
    """Grade as an instructor would, with the kernels' temporary folders in a folder of the test's own."""
    arguments = ["--course", str(ROOT), "grade", str(submissions), "--output", str(output), "--no-progress"]
    arguments += ["--timeout", str(TIMEOUT), "--workers", "2"]
    arguments += [] if isolation.sandboxed else ["--trusted-cohort"]
    temporary = submissions.parent / "tmp"
    temporary.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(temporary))  # for the worker processes
        patch.setattr(tempfile, "tempdir", str(temporary))  # for this one
        assert main(arguments) == 0
    assert not list(temporary.iterdir()), "a kernel's temporary folder was left behind"


@pytest.fixture(scope="module")
def graded(
    tmp_path_factory: pytest.TempPathFactory,
    answered: Callable[..., Notebook],
    learners_copy: Callable[..., Notebook],
    master_answers: dict[str, str],
    grading_isolation: Isolation,
) -> Path:
    folder = tmp_path_factory.mktemp("course")
    make_submissions(folder / "submissions", answered, learners_copy(), master_answers)
    grade(folder / "submissions", folder / "gradebook", grading_isolation)
    return folder


def rows(graded: Path) -> dict[str, dict[str, str]]:
    with (graded / "gradebook" / CHAPTER / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        return {row["learner"]: row for row in csv.DictReader(stream)}


def feedback(graded: Path, learner: str) -> dict[str, tuple[float, str]]:
    path = graded / "gradebook" / CHAPTER / "learners" / learner / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    return {test["name"]: (test["score"], test["output"]) for test in results["tests"]}


def test_every_learner_has_a_row_and_the_batch_completed(graded: Path) -> None:
    table = rows(graded)
    assert sorted(table) == sorted(path.name for path in (graded / "submissions").iterdir())
    assert list(next(iter(table.values()))) == [
        "learner", "ex01", "ex02", "ex03", "q01", "q02", "q03", "q04", "q05", "q06", "total", "max", "problem",
    ]  # fmt: skip
    assert {row["max"] for row in table.values()} == {"13"}


def test_right_answers_get_full_marks(graded: Path) -> None:
    assert rows(graded)["perfect"]["total"] == "13"
    results = feedback(graded, "perfect")
    assert results["ex01"] == (2, "Passed.")
    assert results["q01"][1].startswith("Right. The task runs in the same process")


def test_an_untouched_copy_scores_nothing_and_says_why(graded: Path) -> None:
    assert rows(graded)["stub"]["total"] == "0"
    results = feedback(graded, "stub")
    assert results["ex01"][1].startswith("Your answer cell still raises NotImplementedError")
    # After grading, the feedback may explain the answer: the learner can no longer change it.
    assert results["q01"][1].startswith("Question q01 has no answer yet: replace the ... in the answer cell. ")
    assert results["q01"][1].endswith(f"Explanation: {load_quiz('ch01_core_mechanics')['q01'].explanation.strip()}")
    assert results["q06"][1].startswith("Your answer cell still raises NotImplementedError")


def test_wrong_and_malformed_answers_say_what_is_wrong(graded: Path) -> None:
    row, results = rows(graded)["wrong"], feedback(graded, "wrong")
    assert [row[item] for item in ("ex01", "ex02", "ex03", "q01", "q02", "q03", "q04", "q05", "q06")] == [
        "0", "2", "2", "0", "0", "0", "0", "0", "0",
    ]  # fmt: skip
    assert results["ex01"][1].startswith("The check failed: Exercise 1.1: expected 202 Accepted, got 200")
    assert "<id>" in results["ex01"][1], "random ids are masked, so re-grading gives the same text"
    assert results["q01"][1].startswith("Question q01: C is not right. Hint:")
    assert results["q02"][1].startswith("Question q02: 'Z' is not one of the choices A, B, C, D. Explanation: A `def`")
    assert results["q03"][1] == 'answer_q03 must be a letter in quotes, such as "B", not chr(66).'
    assert results["q04"][1].startswith("Your answer cell for q04 is not valid Python")
    assert results["q05"][1].startswith("Your answer cell does not set answer_q05")
    assert "schedule appended ['first'] itself" in results["q06"][1]


def test_deleted_duplicated_moved_retyped_and_edited_cells(graded: Path) -> None:
    row, results = rows(graded)["edited"], feedback(graded, "edited")
    assert row["total"] == "12", "only the deleted answer costs its point"
    assert results["q01"] == (0, "Your notebook has no answer cell for q01 (cell q01_answer was deleted?).")
    notes = json.loads((graded / "gradebook" / CHAPTER / "learners" / "edited" / "results.json").read_text())["output"]
    assert "Cell ex03_answer appears more than once; the first copy was graded." in notes
    assert "Some cells had been moved; they were graded in the original order." in notes
    assert "Your answer cell q02_answer had been turned into markdown: graded as code." in notes
    assert "You had changed the locked cell ex02; the original was used." in notes
    assert "Locked cells missing" not in notes


@pytest.mark.parametrize(
    ("learner", "reason"),
    [
        ("invalid_json", "ch01_core_mechanics.ipynb is not valid JSON (Expecting value, line 1): the file is damaged"),
        ("empty", "ch01_core_mechanics.ipynb is empty (0 bytes): nothing was saved"),
        (
            "no_notebook",
            "No ch01_core_mechanics.ipynb in the submission (found: no notebook at all); nothing to grade.",
        ),
    ],
)
def test_a_file_that_cannot_be_graded_scores_zero_with_the_reason(graded: Path, learner: str, reason: str) -> None:
    row = rows(graded)[learner]
    assert (row["total"], row["problem"]) == ("0", reason)
    assert {text for _, text in feedback(graded, learner).values()} == {reason}


def test_a_wrongly_named_notebook_is_graded_with_a_note(graded: Path) -> None:
    row = rows(graded)["wrong_name"]
    assert (row["total"], row["problem"]) == ("13", "")
    path = graded / "gradebook" / CHAPTER / "learners" / "wrong_name" / "feedback.md"
    assert "Graded Untitled (1).ipynb: please hand in this notebook as ch01_core_mechanics.ipynb" in path.read_text()


def test_an_endless_loop_costs_only_its_own_item(graded: Path) -> None:
    row, results = rows(graded)["endless_loop"], feedback(graded, "endless_loop")
    assert (row["ex01"], row["ex02"], row["ex03"], row["q06"], row["total"]) == ("2", "0", "2", "2", "11")
    assert results["ex02"][1].startswith(f"Your answer cell was still running after {TIMEOUT} s and was stopped")


def test_a_crashed_kernel_zeroes_what_could_not_run(graded: Path) -> None:
    row, results = rows(graded)["kernel_crash"], feedback(graded, "kernel_crash")
    assert (row["ex01"], row["ex02"], row["ex03"], row["q06"], row["total"]) == ("2", "0", "0", "0", "7")
    reason = "Not graded: the kernel died (exit code 3): the code exited or crashed the Python process, "
    assert results["ex02"][1] == reason + "while running your answer cell for ex02."
    assert results["q06"][1] == reason + "while running your answer cell for ex02."


def test_huge_output_is_cut_and_does_not_cost_points(graded: Path) -> None:
    assert rows(graded)["huge_output"]["total"] == "13"
    assert feedback(graded, "huge_output")["ex01"][1] == "Passed. Your code printed so much that the output was cut."


def test_reading_the_answer_key_scores_zero_and_says_so(graded: Path) -> None:
    row, results = rows(graded)["reads_answer_key"], feedback(graded, "reads_answer_key")
    assert (row["ex01"], row["ex03"]) == ("0", "2")
    assert f"Your code tried to read {QUIZ}, which is not allowed while grading: 0 points." in results["ex01"][1]
    assert results["ex03"][1] == (
        "Passed. Your code tried to reach example.com; while grading, only 127.0.0.1 can be reached."
    )


def test_the_summary_names_the_most_missed_questions(graded: Path) -> None:
    summary = (graded / "gradebook" / CHAPTER / "summary.md").read_text(encoding="utf-8")
    assert "Most missed (learners without full marks):" in summary
    assert "| ex01 | 2 |" in summary
    assert "Learners' code ran in: a sandbox of its own for each learner (bubblewrap" in summary or (
        "Learners' code ran in: no sandbox (--trusted-cohort" in summary
    )
    assert (graded / "gradebook" / CHAPTER / "summary.png").read_bytes().startswith(b"\x89PNG")


def test_the_gradebook_is_complete_and_regrading_changes_no_byte(graded: Path, grading_isolation: Isolation) -> None:
    book = graded / "gradebook"
    before = {path.relative_to(book): path.read_bytes() for path in sorted(book.rglob("*")) if path.is_file()}
    learners = sorted(path.name for path in (graded / "submissions").iterdir())
    expected = {Path(CHAPTER, name) for name in ("gradebook.csv", "summary.md", "summary.png")}
    expected |= {
        Path(CHAPTER, "learners", learner, name) for learner in learners for name in ("results.json", "feedback.md")
    }
    assert set(before) == expected, "exactly the gradebook's files, and no temporary ones"
    grade(graded / "submissions", book, grading_isolation)
    after = {path.relative_to(book): path.read_bytes() for path in sorted(book.rglob("*")) if path.is_file()}
    changed = sorted(str(path) for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert not changed, f"grading again changed {changed}"


def test_a_check_cell_of_plain_asserts_is_refused_before_anyone_is_graded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # nbgrader's kind of check (asserts, hidden tests among them) decides in the learner's kernel,
    # where the learner's code can make any assert pass: bgcourse grade does not take such a verdict.
    course = tmp_path / "course"
    (course / "quizzes").mkdir(parents=True)
    (course / "notebooks").mkdir()
    answer = nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION")
    answer.metadata.nbgrader = {"grade": False, "grade_id": "ex01_answer", "locked": False, "schema_version": 3,
                                "solution": True, "task": False}  # fmt: skip
    check = nbformat.v4.new_code_cell(
        "assert double(1) == 2, 'double(1) should be 2'\n### BEGIN HIDDEN TESTS\nassert double(21) == 42\n"
        "### END HIDDEN TESTS"
    )
    check.metadata.nbgrader = {"grade": True, "grade_id": "ex01", "locked": True, "points": 3, "schema_version": 3,
                               "solution": False, "task": False}  # fmt: skip
    nbformat.write(nbformat.v4.new_notebook(cells=[answer, check]), course / "notebooks" / "ch09_hidden.ipynb")
    learner_copy = nbformat.v4.new_notebook(cells=[nbformat.from_dict(answer), nbformat.from_dict(check)])
    save(tmp_path / "submissions", "right", learner_copy, name="ch09_hidden.ipynb")
    arguments = ["--course", str(course), "grade", str(tmp_path / "submissions"), "--no-progress", "--workers", "1"]
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert "ch09_hidden: the check cell ex01 is not a call to one of the course's checks" in message
    assert "nbgrader" in message, "the message says what to do instead"
    assert "21" not in message, "the hidden tests stay hidden"
    assert not (tmp_path / "gradebook").exists()
