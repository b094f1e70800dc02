"""What a page shows of each cell: folds decided by the nbgrader metadata, never by position."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import bgcourse.website
from bgcourse.website import FOLDED, RUN_NOTE, fold_of, page_notebook, run_note

ROOT = Path(__file__).resolve().parents[2]
RECORD = {
    "executed_at": "2026-12-01T10:30:00+00:00",
    "seconds": 41.6,
    "python": "3.11.7",
    "versions": {"fastapi": "0.163.2", "starlette": "1.10.0"},
    "machine": "Linux x86_64",
    "cpus": 2,
}


Outputs = list[dict[str, object]]


def _cell(grade_id: str, source: str = "x = 1", outputs: Outputs | None = None) -> nbformat.NotebookNode:
    cell: nbformat.NotebookNode = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": True}
    cell.outputs = [nbformat.from_dict(output) for output in outputs or []]
    return cell


def test_the_public_api_is_sorted() -> None:
    assert bgcourse.website.__all__ == sorted(bgcourse.website.__all__)


@pytest.mark.parametrize(
    ("grade_id", "tags", "label"),
    [
        ("q03_question", ("remove-input",), ""),
        ("q03_answer", ("hide-input", FOLDED), "Show the answer"),
        ("q03", ("remove-input", "hide-output", FOLDED), "Show the explanation"),
        ("ex02_answer", ("hide-cell", FOLDED), "Show the reference solution"),
        ("ex02_check", (), ""),
    ],
)
def test_each_graded_cell_is_folded_by_its_grade_id(grade_id: str, tags: tuple[str, ...], label: str) -> None:
    fold = fold_of(_cell(grade_id))
    assert (fold.tags, fold.label) == (tags, label)


def test_an_ungraded_cell_and_a_markdown_cell_stay_open() -> None:
    assert fold_of(nbformat.v4.new_code_cell("print(1)")).tags == ()
    markdown = nbformat.v4.new_markdown_cell("# q01_answer")
    markdown.metadata["nbgrader"] = {"grade_id": "q01_answer"}
    assert fold_of(markdown).tags == ()


def _notebook() -> nbformat.NotebookNode:
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "100%|##| 3/3"}
    only_widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "n"}}
    solution = "def app():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    notebook: nbformat.NotebookNode = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Chapter 9: A title"),
            _cell("ex01_answer", solution),
            _cell(
                "ex01_check",
                "check()",
                [
                    {"output_type": "display_data", "data": widget, "metadata": {}},
                    {"output_type": "display_data", "data": only_widget, "metadata": {}},
                ],
            ),
        ]
    )
    notebook.metadata["widgets"] = {"state": {}}
    return notebook


def test_a_page_has_its_run_note_under_the_title_in_its_language() -> None:
    page = page_notebook(_notebook(), language="zh-CN", record=RECORD, links="[run](run_locally.md)")
    note = page.cells[1]
    assert note.cell_type == "markdown"
    assert f":class: note {RUN_NOTE}" in note.source
    assert "2026-12-01 10:30 UTC" in note.source
    assert "42 s" in note.source
    assert "fastapi 0.163.2, starlette 1.10.0" in note.source
    assert "Linux x86_64" in note.source
    assert "这一页是怎么来的" in note.source
    assert "[run](run_locally.md)" in note.source


def test_a_page_folds_the_solution_without_the_solution_markers() -> None:
    page = page_notebook(_notebook(), language="en", record=RECORD, links="")
    answer = page.cells[2]
    assert "BEGIN SOLUTION" not in answer.source
    assert "END SOLUTION" not in answer.source
    assert "return 1" in answer.source
    assert answer.metadata["tags"] == ["hide-cell", FOLDED]
    assert answer.metadata["mystnb"] == {
        "code_prompt_show": "Show the reference solution",
        "code_prompt_hide": "Fold it again",
    }


def test_a_page_keeps_a_widgets_text_and_drops_an_output_that_was_only_a_widget() -> None:
    executed = _notebook()
    page = page_notebook(executed, language="en", record=RECORD, links="")
    outputs = page.cells[3].outputs
    assert [dict(output.data) for output in outputs] == [{"text/plain": "100%|##| 3/3"}]
    assert "widgets" not in page.metadata
    # The executed notebook (the cache's copy) is left as it was.
    assert len(executed.cells[2].outputs) == 2
    assert "widgets" in executed.metadata


def test_the_run_note_rounds_the_seconds_and_names_every_version() -> None:
    note = run_note(RECORD)
    assert note.startswith("Executed on 2026-12-01 10:30 UTC in 42 s, by Python 3.11.7")
    assert "with 2 CPUs" in note


@pytest.mark.parametrize("edition", [ROOT / "notebooks", ROOT / "notebooks" / "zh-CN"], ids=["en", "zh-CN"])
def test_every_chapter_folds_every_answer_and_solution(edition: Path) -> None:
    """In the real chapters, every quiz answer, explanation and reference solution is folded."""
    for path in sorted(edition.glob("ch*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        graded = [cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id")]
        answers = [cell for cell in graded if str(cell.metadata["nbgrader"]["grade_id"]).endswith("_answer")]
        assert answers, f"{path.name}: no answer cells found"
        for cell in answers:
            assert FOLDED in fold_of(cell).tags, f"{path.name}: {cell.metadata['nbgrader']['grade_id']} is not folded"
