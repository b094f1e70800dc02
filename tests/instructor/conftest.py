"""Submissions made from chapter 1's master notebook, as learners would hand them in (and worse)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bgcourse.instructor._isolation import Isolation, SandboxUnavailableError, choose_isolation
from bgcourse.instructor._nbgrader import grade_id, is_solution
from bgcourse.instructor._release import chapters, read_master, student_notebook

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "ch01_core_mechanics"

Notebook = Any  # nbformat's NotebookNode: untyped


@pytest.fixture(scope="session")
def grading_isolation() -> Isolation:
    """The operating system's sandbox; where this machine cannot make one, the trusted mode (not in CI)."""
    try:
        return choose_isolation(trusted=False)
    except SandboxUnavailableError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{error}; CI=true, where grading is tested in its sandbox")
        return choose_isolation(trusted=True)


@pytest.fixture(scope="session")
def master_answers() -> dict[str, str]:
    """Chapter 1's reference answers: the source of each solution cell, by grade_id."""
    (chapter,) = chapters(ROOT, [CHAPTER])
    master, _ = read_master(chapter)
    return {grade_id(cell) or "": cell.source for cell in master.cells if is_solution(cell)}


@pytest.fixture(scope="session")
def learners_copy() -> Callable[[str], Notebook]:
    """A fresh learners' copy of chapter 1 in the given mode, as released."""
    (chapter,) = chapters(ROOT, [CHAPTER])
    master, quiz = read_master(chapter)
    copies = {mode: student_notebook(chapter, master, quiz, mode) for mode in ("practice", "assessed")}

    def make(mode: str = "assessed") -> Notebook:
        return copy.deepcopy(copies[mode])

    return make


@pytest.fixture(scope="session")
def answered(learners_copy: Callable[[str], Notebook], master_answers: dict[str, str]) -> Callable[[str], Notebook]:
    """A learners' copy with every answer right (the reference solutions typed in)."""

    def make(mode: str = "assessed") -> Notebook:
        notebook = learners_copy(mode)
        for each in notebook.cells:
            if is_solution(each):
                each.source = master_answers[grade_id(each) or ""]
        return notebook

    return make
