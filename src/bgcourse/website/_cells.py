"""An executed master notebook made into a page: answers and solutions folded, a note on its run.

The page is built from the master notebook (so that its outputs are the reference solutions'),
and what a reader must open to see is decided by the cells' nbgrader metadata, as the release
and the grader decide it, never by their position:

- a quiz question (``qNN_question``): its output only (the question and its choices);
- a quiz answer (``qNN_answer``): folded, "Show the answer";
- a quiz check (``qNN``, graded): its output folded, "Show the explanation";
- an exercise's reference solution (``exNN_answer``): the whole cell folded, "Show the reference
  solution"; the exercise's check below it stays open (it shows the check's verdict).

Folded cells are left out of the search index (class ``no-search``), so that a search does not
lead to an answer. nbgrader's solution markers are taken out of the code; widget outputs (tqdm's
progress bars) keep their text form only, since a static page has no kernel to draw a widget.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nbformat

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language

__all__ = ["FOLDED", "Fold", "RUN_NOTE", "fold_of", "page_notebook", "run_note"]

FOLDED = "bgcourse-folded"  # the tag of every folded cell (the site's extension marks it no-search)
RUN_NOTE = "bgcourse-run-note"  # the class of the note on the page's run, under the title
_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)[ \t]*\n?", re.MULTILINE)
_WIDGET = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


@dataclass(frozen=True)
class Fold:
    """How one cell is shown: MyST-NB's tags, and the label of its fold (empty when open)."""

    tags: tuple[str, ...]
    label: str = ""


def fold_of(cell: nbformat.NotebookNode) -> Fold:
    """How the page shows a cell, from its nbgrader metadata (labels in the current language)."""
    grade_id = str(cell.metadata.get("nbgrader", {}).get("grade_id", ""))
    if cell.cell_type != "code" or not grade_id:
        return Fold(())
    if grade_id.startswith("q") and grade_id.endswith("_question"):
        return Fold(("remove-input",))
    if grade_id.startswith("q") and grade_id.endswith("_answer"):
        return Fold(("hide-input", FOLDED), _("Show the answer"))
    if grade_id.startswith("q"):
        return Fold(("remove-input", "hide-output", FOLDED), _("Show the explanation"))
    if grade_id.endswith("_answer"):
        return Fold(("hide-cell", FOLDED), _("Show the reference solution"))
    return Fold(())


def _drop_widgets(outputs: list[Any]) -> list[Any]:
    kept = []
    for output in outputs:
        data = output.get("data")
        if data is not None:
            for kind in _WIDGET:
                data.pop(kind, None)
            if not data:
                continue
        kept.append(output)
    return kept


def run_note(record: dict[str, Any]) -> str:
    """The page's note on its run: when, on which versions and machine (current language)."""
    when = datetime.fromisoformat(str(record["executed_at"])).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{name} {version}" for name, version in record["versions"].items())
    return _(
        "Executed on {when} in {seconds:.0f} s, by Python {python} with {versions}, "
        "on {machine} with {cpus} CPUs. Every output below is from that run."
    ).format(
        when=when,
        seconds=float(record["seconds"]),
        python=record["python"],
        versions=versions,
        machine=record["machine"],
        cpus=record["cpus"],
    )


def page_notebook(
    executed: nbformat.NotebookNode, *, language: str, record: dict[str, Any], links: str
) -> nbformat.NotebookNode:
    """The page's notebook: folds from the metadata, markers and widgets out, the note under the title.

    ``links`` is a line of MyST markdown (how to run the chapter, its notebook file) put after the note.
    """
    page = copy.deepcopy(executed)
    page.metadata.pop("widgets", None)
    with in_language(language):
        for cell in page.cells:
            if cell.cell_type != "code":
                continue
            cell.source = _MARKER.sub("", cell.source)
            cell.outputs = _drop_widgets(cell.outputs)
            fold = fold_of(cell)
            if fold.tags:
                cell.metadata["tags"] = [*cell.metadata.get("tags", []), *fold.tags]
            if fold.label:
                cell.metadata["mystnb"] = {"code_prompt_show": fold.label, "code_prompt_hide": _("Fold it again")}
        title = _("How this page was made")
        note = nbformat.v4.new_markdown_cell(
            f"```{{admonition}} {title}\n:class: note {RUN_NOTE}\n\n{run_note(record)}\n\n{links}\n```"
        )
    page.cells.insert(1, note)
    return page
