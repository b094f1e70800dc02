"""A mixed class: learners who took the Chinese edition are graded in the same run as the others, alike."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bgcourse.instructor._isolation import Isolation
from bgcourse.instructor._nbgrader import grade_id, is_solution
from bgcourse.instructor._release import chapters, read_master, student_notebook
from tests.instructor.test_grade import CHAPTER, ROOT, grade, save


def test_a_chinese_copy_and_an_english_copy_score_the_same(
    tmp_path: Path, master_answers: dict[str, str], grading_isolation: Isolation
) -> None:
    if not (ROOT / "notebooks" / "zh-CN" / f"{CHAPTER}.ipynb").is_file():
        pytest.fail("the zh-CN edition of chapter 1 is missing")
    for language, learner in (("en", "alice"), ("zh-CN", "li_lei")):
        (chapter,) = chapters(ROOT, [CHAPTER], language)
        master, quiz = read_master(chapter)
        notebook = student_notebook(chapter, master, quiz, "assessed")
        for cell in notebook.cells:
            if is_solution(cell):
                cell.source = master_answers[grade_id(cell) or ""]
        save(tmp_path / "submissions", learner, notebook)
    grade(tmp_path / "submissions", tmp_path / "gradebook", grading_isolation)
    with (tmp_path / "gradebook" / CHAPTER / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        rows = {row.pop("learner"): row for row in csv.DictReader(stream)}
    assert rows["li_lei"] == rows["alice"]
    assert rows["alice"]["total"] == "13"
