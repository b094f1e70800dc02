"""`bgcourse release`: nothing of the answer key reaches the learners' copies, and release/ is current."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import nbformat
import pytest

from bgcourse import WrongAnswer, find_quiz_file, load_quiz
from bgcourse._cli import main
from bgcourse.instructor._nbgrader import CODE_STUB, compute_checksum, grade_id, is_grade, is_solution
from bgcourse.instructor._release import MODES, chapters, read_master

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = chapters(ROOT)
IDS = [chapter.slug for chapter in CHAPTERS]
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("release") / "release"
    assert main(["--course", str(ROOT), "release", "--output", str(output)]) == 0
    return output


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_committed_release_is_current(fresh_release: Path) -> None:
    committed, fresh = files_of(ROOT / "release"), files_of(fresh_release)
    stale = sorted(name for name in committed.keys() | fresh.keys() if committed.get(name) != fresh.get(name))
    assert not stale, f"release/ is not current for {stale}: run `make release`"


def test_release_check_says_whether_it_is_current(fresh_release: Path, tmp_path: Path) -> None:
    assert main(["--course", str(ROOT), "release", "--check", "--output", str(fresh_release)]) == 0
    assert main(["--course", str(ROOT), "release", "--check", "--output", str(tmp_path)]) == 1


def test_a_release_is_deterministic(fresh_release: Path, tmp_path: Path) -> None:
    assert main(["--course", str(ROOT), "release", "--output", str(tmp_path / "again")]) == 0
    assert files_of(tmp_path / "again") == files_of(fresh_release)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")], "a staging folder was left behind"


def released(folder: Path, mode: str, slug: str) -> Any:
    return nbformat.read(folder / mode / "notebooks" / f"{slug}.ipynb", as_version=4)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_no_solution_answer_or_output_reaches_a_learner(fresh_release: Path, chapter: Any) -> None:
    master, quiz = read_master(chapter)
    choice_answers = {f'answer_{q.id} = "{q.answer}"' for q in quiz.questions if q.kind == "choice"} if quiz else set()
    regions = [match.strip() for cell in master.cells for match in SOLUTION_REGION.findall(cell.source)]
    for mode in MODES:
        text = (fresh_release / mode / "notebooks" / f"{chapter.slug}.ipynb").read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text
        assert "END SOLUTION" not in text
        assert "HIDDEN TESTS" not in text
        notebook = nbformat.reads(text, as_version=4)
        sources = "\n".join(cell.source for cell in notebook.cells)
        assert not [region for region in regions if region in sources], "a solution region was released"
        assert not [answer for answer in choice_answers if answer in sources], "a quiz answer was released"
        checks = {grade_id(each): each.source for each in notebook.cells if is_grade(each)}
        for each in notebook.cells:
            if is_solution(each):
                cell_id = grade_id(each) or ""
                stub = f"answer_{cell_id.removesuffix('_answer')} = ..."
                if mode == "assessed" or each.source == stub or each.cell_type != "code":
                    assert each.source in (CODE_STUB, stub), f"{cell_id} is not a stub: {each.source!r}"
                    continue
                # The practice stub: a comment, then `name = ...` for each name its check cell uses.
                comment, *names = each.source.split("\n")
                assert comment.startswith("# YOUR CODE HERE: replace each ..."), each.source
                assert names, f"{cell_id}: the practice stub names nothing for its check"
                for line in names:
                    name, equals, value = line.partition(" = ")
                    assert equals, f"{cell_id}: {line!r}"
                    assert value == "...", f"{cell_id}: {line!r}"
                    assert name.isidentifier(), f"{cell_id}: {line!r}"
                    assert re.search(rf"\b{name}\b", checks[cell_id.removesuffix("_answer")]), (cell_id, name)
            if each.cell_type == "code":
                assert each.outputs == [], "outputs are cleared"
                assert each.execution_count is None
        assert "jupytext" not in notebook.metadata, "a learner's copy is not paired with a script"


@pytest.mark.parametrize("chapter", [chapter for chapter in CHAPTERS if chapter.quiz], ids=lambda c: c.slug)
def test_the_assessed_quiz_file_has_no_answer_key(fresh_release: Path, chapter: Any) -> None:
    full = load_quiz(chapter.quiz)
    path = fresh_release / "assessed" / "quizzes" / f"{chapter.slug}.toml"
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert data["assessed"] is True
    for question in data["question"]:
        assert not {"answer", "explanation", "check"} & set(question), question["id"]
    for question in full.questions:
        assert question.explanation.strip() not in text
        if question.kind == "code":
            assert question.answer.strip() not in text
            assert question.check_source.strip() not in text
    assessed = load_quiz(path)
    assert [(q.id, q.kind, q.points, q.prompt, dict(q.choices)) for q in assessed.questions] == [
        (q.id, q.kind, q.points, q.prompt, dict(q.choices)) for q in full.questions
    ]
    practice = fresh_release / "practice" / "quizzes" / f"{chapter.slug}.toml"
    assert practice.read_bytes() == chapter.quiz.read_bytes(), "practice mode keeps the full quiz: instant feedback"


def test_an_assessed_quiz_records_answers_without_judging_them(fresh_release: Path) -> None:
    quiz = load_quiz(fresh_release / "assessed" / "quizzes" / "ch01_core_mechanics.toml")
    for letter in "ABCD":
        assert "recorded; feedback after grading" in repr(quiz.check("q01", letter.lower()))
    assert "recorded" in repr(quiz.check("q06", lambda background_tasks, log: None))
    with pytest.raises(WrongAnswer, match="has no answer yet"):
        quiz.check("q01", ...)
    with pytest.raises(WrongAnswer, match="not one of the choices"):
        quiz.check("q01", "Z")
    with pytest.raises(WrongAnswer, match="define `schedule`"):
        quiz.check("q06", "not a function")
    with pytest.raises(ValueError, match="no answer key"):
        quiz["q01"].reference_answer()


def test_a_released_notebook_finds_its_own_quiz_file(fresh_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BGCOURSE_QUIZZES", raising=False)
    for mode in MODES:
        monkeypatch.chdir(fresh_release / mode / "notebooks")
        assert find_quiz_file("ch01_core_mechanics") == fresh_release / mode / "quizzes" / "ch01_core_mechanics.toml"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_checksums_are_nbgraders_and_in_the_manifest(fresh_release: Path, chapter: Any) -> None:
    manifest = json.loads((fresh_release / "checksums.json").read_text(encoding="utf-8"))
    for mode in MODES:
        recorded = manifest["chapters"][chapter.slug]["cells"][mode]
        notebook = released(fresh_release, mode, chapter.slug)
        graded = {grade_id(c): c for c in notebook.cells if "checksum" in c.metadata.get("nbgrader", {})}
        assert graded.keys() == recorded.keys()
        for cell_id, each in graded.items():
            assert each.metadata.nbgrader.checksum == compute_checksum(each) == recorded[cell_id]["checksum"]
            assert each.metadata.nbgrader.cell_type == each.cell_type
    # The two copies differ only in their stubs: every graded and locked cell is the same in both.
    practice, assessed = (manifest["chapters"][chapter.slug]["cells"][mode] for mode in ("practice", "assessed"))
    for cell_id, entry in assessed.items():
        if entry["role"] != "solution":
            assert practice[cell_id] == entry, cell_id
    for name, digest in manifest["files"].items():
        assert len(digest) == 64, name
        assert (fresh_release / name).is_file(), name


MASTER_WITH_HIDDEN_TESTS = {
    "cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# Chapter 9"},
        {
            "cell_type": "code",
            "id": "answer",
            "metadata": {
                "nbgrader": {
                    "grade": False,
                    "grade_id": "ex01_answer",
                    "locked": False,
                    "schema_version": 3,
                    "solution": True,
                    "task": False,
                }
            },
            "source": "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "id": "check",
            "metadata": {
                "nbgrader": {
                    "grade": True,
                    "grade_id": "ex01",
                    "locked": True,
                    "points": 1,
                    "schema_version": 3,
                    "solution": False,
                    "task": False,
                }
            },
            "source": "assert double(1) == 2\n### BEGIN HIDDEN TESTS\nassert double(21) == 42  # secret\n"
            "### END HIDDEN TESTS\nprint('visible')",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "visible\n"}],
            "execution_count": 3,
        },
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def make_course(folder: Path, notebook: dict[str, Any]) -> Path:
    (folder / "notebooks").mkdir(parents=True)
    (folder / "quizzes").mkdir()
    (folder / "notebooks" / "ch09_hidden.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    return folder


def test_hidden_tests_are_removed_and_a_solution_inside_a_cell_is_stubbed_in_place(tmp_path: Path) -> None:
    course = make_course(tmp_path / "course", MASTER_WITH_HIDDEN_TESTS)
    assert main(["--course", str(course), "release"]) == 0
    text = (course / "release" / "assessed" / "notebooks" / "ch09_hidden.ipynb").read_text(encoding="utf-8")
    assert "secret" not in text
    assert "double(21)" not in text
    notebook = nbformat.reads(text, as_version=4)
    answer, check = (cell for cell in notebook.cells if "nbgrader" in cell.metadata)
    assert answer.source == "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert check.source == "assert double(1) == 2\nprint('visible')"
    assert check.outputs == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda cells: cells[2].update(source="### BEGIN SOLUTION\n### END SOLUTION"), "cell ex01: a solution region"),
        (lambda cells: cells[1].update(source="### BEGIN SOLUTION\nx = 1"), "cell ex01_answer: BEGIN SOLUTION without"),
        (
            lambda cells: cells[0].update(source="### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"),
            "cell #0: a hidden-tests",
        ),
    ],
)
def test_a_master_that_cannot_be_released_fails_naming_the_cell(
    tmp_path: Path, change: Any, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = json.loads(json.dumps(MASTER_WITH_HIDDEN_TESTS))
    change(notebook["cells"])
    course = make_course(tmp_path / "course", notebook)
    with pytest.raises(SystemExit) as exit_status:
        main(["--course", str(course), "release"])
    assert exit_status.value.code == 2
    assert f"bgcourse release: ch09_hidden.ipynb, {problem}" in capsys.readouterr().err
    assert not (course / "release").exists(), "nothing is written when a chapter cannot be released"
