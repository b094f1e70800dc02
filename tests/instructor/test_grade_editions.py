"""A mixed class: learners who took the Chinese edition are graded in the same run as the others, alike."""

from __future__ import annotations

import csv
import tomllib
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
    questions = {
        language: tomllib.loads((ROOT / "quizzes" / folder / f"{CHAPTER}.toml").read_text(encoding="utf-8"))["question"]
        for language, folder in (("en", ""), ("zh-CN", "zh-CN"))
    }
    first = questions["en"][0]
    wrong = next(letter for letter in first["choices"] if letter != first["answer"])
    learners: tuple[tuple[str, str, dict[str, str]], ...] = (
        ("en", "alice", {}),
        ("zh-CN", "li_lei", {}),
        ("zh-CN", "han_meimei", {first["id"]: f'"{wrong}"'}),
    )
    for language, learner, answers in learners:
        (chapter,) = chapters(ROOT, [CHAPTER], language)
        master, quiz = read_master(chapter)
        notebook = student_notebook(chapter, master, quiz, "assessed")
        for cell in notebook.cells:
            if is_solution(cell):
                cell_id = grade_id(cell) or ""
                source = master_answers[cell_id]
                for question_id, letter in answers.items():  # a wrong choice in place of the right one
                    if cell_id == f"{question_id}_answer":
                        source = source.replace(f'"{first["answer"]}"', letter)
                cell.source = source
        save(tmp_path / "submissions", learner, notebook)
    grade(tmp_path / "submissions", tmp_path / "gradebook", grading_isolation)
    with (tmp_path / "gradebook" / CHAPTER / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        rows = {row.pop("learner"): row for row in csv.DictReader(stream)}
    assert rows["li_lei"] == rows["alice"]
    assert rows["alice"]["total"] == "13"
    assert rows["han_meimei"][first["id"]] == "0"

    def feedback(learner: str) -> str:
        return (tmp_path / "gradebook" / CHAPTER / "learners" / learner / "feedback.md").read_text(encoding="utf-8")

    # Each learner reads the feedback in the language of their copy, with their quiz file's explanations.
    english, chinese = questions["en"][0]["explanation"].strip(), questions["zh-CN"][0]["explanation"].strip()
    assert "**Score: 13 / 13**" in feedback("alice")
    assert english.splitlines()[0] in feedback("alice")
    assert "**得分：13 / 13**" in feedback("li_lei")
    assert chinese.splitlines()[0] in feedback("li_lei")
    assert "通过。" in feedback("li_lei")
    assert "locked cell" not in feedback("li_lei")
    assert "锁定的单元格" not in feedback("li_lei")
    wrong_feedback = feedback("han_meimei")
    assert f"题目 {first['id']}：{wrong} 不对。提示：" in wrong_feedback
    assert "讲解：" + chinese.splitlines()[0] in wrong_feedback
