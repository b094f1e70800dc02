"""nbgrader accepts the released notebooks: the same cells as its own release, validate, and the same scores.

nbgrader lives in .venv-nbgrader (`make nbgrader-env`; `make test` builds it, so CI never skips these).
Its kernels run with RuntimeWarnings ignored: chapter 1's section 8 leaves coroutines that are never
awaited, and the garbage collector reports them on stderr in whatever cell runs next, which
nbgrader counts as a failed test cell. That is noise from the chapter, not the learner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from bgcourse._cli import main
from bgcourse.instructor._nbgrader import grade_id, is_solution
from bgcourse.instructor._release import chapters

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "ch01_core_mechanics"
BIN = ROOT / ".venv-nbgrader" / "bin"
pytestmark = pytest.mark.skipif(
    not (BIN / "nbgrader").exists(), reason="nbgrader is not installed: run `make nbgrader-env` (`make test` does)"
)
Notebook = Any
JUPYTEXT_KEYS = {"lines_to_next_cell", "cell_marker"}
SCORES = """
import json, sys
from nbgrader.api import Gradebook
with Gradebook("sqlite:///" + sys.argv[1] + "/gradebook.db") as gradebook:
    submissions = gradebook.notebook_submissions(sys.argv[2], sys.argv[2])
    print(json.dumps({s.student.id: {grade.name: grade.score for grade in s.grades} for s in submissions}))
"""


def run(program: str, *arguments: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONWARNINGS": "ignore::RuntimeWarning"}
    env.pop("BGCOURSE_QUIZZES", None)
    done = subprocess.run(
        [str(BIN / program), *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def nbgrader_course(folder: Path, assignment: str, notebooks: list[Path]) -> Path:
    (folder / "source" / assignment).mkdir(parents=True)
    for notebook in notebooks:
        shutil.copy(notebook, folder / "source" / assignment)
    config = f"c = get_config()\nc.CourseDirectory.root = {str(folder)!r}\nc.CourseDirectory.course_id = 'bgcourse'\n"
    (folder / "nbgrader_config.py").write_text(config, encoding="utf-8")
    run("nbgrader", "generate_assignment", assignment, "--force", cwd=folder)
    return folder


def comparable(cell: Any) -> dict[str, Any]:
    metadata = {key: value for key, value in cell.metadata.items() if key not in JUPYTEXT_KEYS}
    return {"id": cell.get("id"), "type": cell.cell_type, "source": cell.source, "metadata": metadata}


def test_the_release_is_nbgraders_own_but_for_the_quiz_answer_stubs(tmp_path: Path) -> None:
    every = chapters(ROOT)
    course = nbgrader_course(tmp_path / "nbgrader", "all", [chapter.notebook for chapter in every])
    assert main(["--course", str(ROOT), "release", "--output", str(tmp_path / "release")]) == 0
    for chapter in every:
        theirs = nbformat.read(course / "release" / "all" / f"{chapter.slug}.ipynb", as_version=4)
        ours = nbformat.read(tmp_path / "release" / "assessed" / "notebooks" / f"{chapter.slug}.ipynb", as_version=4)
        our_cells = [cell for cell in ours.cells if not cell.id.startswith("bgcourse-")]
        assert len(our_cells) == len(theirs.cells), chapter.slug
        for mine, nbgraders in zip(our_cells, theirs.cells, strict=True):
            if is_solution(mine) and mine.source.startswith("answer_"):
                # A quiz answer's stub is `answer_q01 = ...`, where nbgrader writes its generic code stub.
                assert nbgraders.source == "# YOUR CODE HERE\nraise NotImplementedError()"
                continue
            assert comparable(mine) == comparable(nbgraders), f"{chapter.slug}: cell {grade_id(mine) or mine.id}"


def test_nbgrader_validate_passes_a_completed_practice_copy(tmp_path: Path, answered: Callable[..., Notebook]) -> None:
    assert main(["--course", str(ROOT), "release", "--output", str(tmp_path / "release")]) == 0
    folder = tmp_path / "release" / "practice" / "notebooks"
    nbformat.write(answered("practice"), folder / f"{CHAPTER}.ipynb")
    output = run("nbgrader", "validate", f"{CHAPTER}.ipynb", cwd=folder)
    assert "Success! Your notebook passes all the tests." in output, output


def test_nbgrader_autograde_and_bgcourse_grade_give_the_same_scores(
    tmp_path: Path, answered: Callable[..., Notebook], master_answers: dict[str, str]
) -> None:
    mixed = answered()
    for each in mixed.cells:
        if grade_id(each) == "q02_answer":
            each.source = 'answer_q02 = "A"'
        if grade_id(each) == "ex02_answer":
            each.source = "# YOUR CODE HERE\nraise NotImplementedError()"
        if grade_id(each) == "q06_answer":
            each.source = "def schedule(background_tasks, log):\n    log.append('first')"
    submissions = tmp_path / "submissions"
    (submissions / "mixed").mkdir(parents=True)
    nbformat.write(mixed, submissions / "mixed" / f"{CHAPTER}.ipynb")

    course = nbgrader_course(tmp_path / "nbgrader", CHAPTER, [ROOT / "notebooks" / f"{CHAPTER}.ipynb"])
    (course / "submitted" / "mixed" / CHAPTER).mkdir(parents=True)
    shutil.copy(submissions / "mixed" / f"{CHAPTER}.ipynb", course / "submitted" / "mixed" / CHAPTER)
    run("nbgrader", "autograde", CHAPTER, "--force", cwd=course)
    theirs = json.loads(run("python", "-c", SCORES, str(course), CHAPTER, cwd=course))["mixed"]

    grading = ["--course", str(ROOT), "grade", str(submissions), "--output", str(tmp_path / "book"), "--no-progress"]
    assert main(grading) == 0
    results = json.loads((tmp_path / "book" / CHAPTER / "learners" / "mixed" / "results.json").read_text())
    ours = {test["name"]: test["score"] for test in results["tests"]}
    assert ours == theirs
    assert sum(ours.values()) == 13 - 2 - 1 - 2
