"""Notebook hygiene and consistency: every chapter found by glob, none listed by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks

from bgcourse import load_quiz

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("ch*.ipynb"))
IDS = [path.stem for path in NOTEBOOKS]
NBGRADER_KEYS = {"grade", "grade_id", "locked", "schema_version", "solution", "task"}
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL)


def read(path: Path) -> nbformat.NotebookNode:
    notebook: nbformat.NotebookNode = nbformat.read(path, as_version=4)
    return notebook


def graded(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {cell.metadata.nbgrader["grade_id"]: cell for cell in notebook.cells if "nbgrader" in cell.metadata}


def solution_code(cell: nbformat.NotebookNode) -> str:
    match = SOLUTION_REGION.search(cell.source)
    assert match, f"solution cell has no ### BEGIN SOLUTION / ### END SOLUTION region:\n{cell.source}"
    return match.group(1)


def same_code(left: str, right: str) -> bool:
    """Equal as Python, whatever the formatting; a module docstring does not count."""

    def normalised(source: str) -> str:
        tree = ast.parse(source)
        if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant):
            tree.body = tree.body[1:]
        return ast.dump(tree)

    return normalised(left) == normalised(right)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_is_valid_nbformat_without_outputs(path: Path) -> None:
    notebook = read(path)
    nbformat.validate(notebook)
    with_outputs = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not with_outputs, f"{path.name}: cells {with_outputs} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_is_in_sync_with_its_percent_script(path: Path) -> None:
    script = path.with_suffix(".py")
    assert script.is_file(), f"{script.name} is missing; run `make notebooks`"
    compare_notebooks(jupytext.read(script), read(path), fmt="py:percent")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_has_all_its_parts(path: Path) -> None:
    slug = path.stem
    assert (ROOT / "quizzes" / f"{slug}.toml").is_file(), f"quizzes/{slug}.toml is missing"
    assert (ROOT / "solutions" / slug / "__init__.py").is_file(), f"solutions/{slug}/ is missing"
    assert list((ROOT / "tests" / slug).glob("test_ex*.py")), f"tests/{slug}/ has no exercise tests"
    assert f"notebooks/{slug}.ipynb" in (ROOT / "README.md").read_text(encoding="utf-8"), (
        f"{slug} is not in the README's chapter table"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_follows_the_chapter_skeleton(path: Path) -> None:
    notebook = read(path)
    markdown = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    assert markdown[0].startswith("# Chapter "), "the first cell is the chapter's H1 title"
    assert "**You will learn**" in markdown[0]
    headings = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    numbered = [heading for heading in headings if re.match(r"## \d+\. ", heading)]
    assert numbered, "the chapter has numbered sections"
    numbers = [int(re.match(r"## (\d+)\.", heading).group(1)) for heading in numbered]  # type: ignore[union-attr]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"sections out of order: {numbers}"
    assert {"## Exercises", "## Quiz", "## Summary"} <= set(headings), f"missing parts in {headings}"
    assert headings.index("## Exercises") < headings.index("## Quiz") < headings.index("## Summary")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nbgrader_metadata_is_complete_and_unique(path: Path) -> None:
    notebook = read(path)
    ids: list[str] = []
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        assert set(meta) >= NBGRADER_KEYS, f"cell {meta.get('grade_id')} lacks {NBGRADER_KEYS - set(meta)}"
        ids.append(meta["grade_id"])
        if meta["grade"]:
            assert meta["locked"], f"{meta['grade_id']}: a test cell is locked"
            assert not meta["solution"], f"{meta['grade_id']}: a test cell is not a solution"
            assert meta["points"] > 0
        if meta["solution"]:
            assert not meta["locked"], f"{meta['grade_id']}: the learner must be able to edit it"
            solution_code(cell)
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {path.name}: {ids}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_quiz_question_is_asked_answered_and_checked(path: Path) -> None:
    quiz = load_quiz(path.stem)
    cells = graded(read(path))
    for question in quiz.questions:
        qid = question.id
        assert f"quiz.ask({qid!r})".replace("'", '"') in cells[f"{qid}_question"].source
        check = cells[qid]
        assert f'quiz.check("{qid}"' in check.source
        assert check.metadata.nbgrader["points"] == question.points, f"{qid}: points differ from the quiz file"
        answer = solution_code(cells[f"{qid}_answer"])
        if question.kind == "choice":
            assert same_code(answer, f"answer_{qid} = {question.answer!r}"), f"{qid}: the notebook's answer differs"
        else:
            assert same_code(answer, question.answer), f"{qid}: the notebook's answer differs from the quiz key"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercise_solutions_match_the_solution_modules(path: Path) -> None:
    cells = graded(read(path))
    exercises = sorted(grade_id for grade_id in cells if re.fullmatch(r"ex\d\d", grade_id))
    assert exercises, f"{path.name} has no graded exercises"
    for exercise in exercises:
        module = ROOT / "solutions" / path.stem / f"{exercise}.py"
        assert module.is_file(), f"{module.relative_to(ROOT)} is missing"
        assert (ROOT / "tests" / path.stem / f"test_{exercise}.py").is_file()
        assert same_code(solution_code(cells[f"{exercise}_answer"]), module.read_text(encoding="utf-8")), (
            f"the notebook's solution to {exercise} differs from {module.relative_to(ROOT)}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_imports_only_the_public_api(path: Path) -> None:
    code = "\n".join(
        line
        for cell in read(path).cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if not line.lstrip().startswith(("%", "!"))  # IPython magics are not Python
    )
    for node in ast.walk(ast.parse(code)):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        private = [name for name in names if name.startswith("bgcourse") and "._" in name]
        assert not private, f"{path.name} imports private helpers {private}; use the public API"
    assert "sys.path" not in code, f"{path.name} changes sys.path; the helper package is installed"
