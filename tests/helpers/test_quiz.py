"""The quiz format: good files load, bad ones fail with the file, the question and the problem named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bgcourse import QuizFormatError, WrongAnswer, find_quiz_file, load_quiz

QUIZZES = sorted((Path(__file__).resolve().parents[2] / "quizzes").glob("*.toml"))

GOOD_CHOICE = """
title = "t"
[[question]]
id = "q01"
kind = "choice"
points = 1
prompt = "Which?"
answer = "A"
hint = "Look at section 1."
explanation = "Because."
[question.choices]
A = "this"
B = "that"
"""


@pytest.mark.parametrize("quiz_file", QUIZZES, ids=[path.stem for path in QUIZZES])
def test_every_answer_key_passes_its_own_check(quiz_file: Path) -> None:
    quiz = load_quiz(quiz_file)
    for question in quiz.questions:
        verdict = quiz.check(question.id, question.reference_answer())
        assert question.explanation.strip() in repr(verdict)


@pytest.mark.parametrize("quiz_file", QUIZZES, ids=[path.stem for path in QUIZZES])
def test_every_wrong_choice_is_rejected_with_the_explanation(quiz_file: Path) -> None:
    quiz = load_quiz(quiz_file)
    for question in quiz.questions:
        if question.kind != "choice":
            continue
        for letter in question.choices:
            if letter != question.answer:
                with pytest.raises(WrongAnswer, match=f"{letter} is not right"):
                    quiz.check(question.id, letter)


def test_quizzes_exist_for_the_course() -> None:
    assert QUIZZES, "no quiz files found in quizzes/"


def test_a_choice_answer_is_read_leniently() -> None:
    quiz = load_quiz(find_quiz_file("ch01_core_mechanics"))
    assert quiz.check("q01", " b ")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (..., "has no answer yet"),
        ("Z", r"'Z' is not one of the choices A, B, C, D"),
    ],
)
def test_unusable_choice_answers_say_what_to_do(answer: object, message: str) -> None:
    quiz = load_quiz("ch01_core_mechanics")
    with pytest.raises(WrongAnswer, match=message):
        quiz.check("q01", answer)


def test_a_wrong_code_answer_reports_the_failed_check() -> None:
    quiz = load_quiz("ch01_core_mechanics")

    def appends_itself(background_tasks: object, log: list[str]) -> None:
        log.append("first")

    with pytest.raises(WrongAnswer, match="schedule appended"):
        quiz.check("q06", appends_itself)


def test_a_crashing_code_answer_names_the_exception() -> None:
    quiz = load_quiz("ch01_core_mechanics")

    def crashes(background_tasks: object, log: list[str]) -> None:
        raise RuntimeError("oops")

    with pytest.raises(WrongAnswer, match="raised RuntimeError: oops"):
        quiz.check("q06", crashes)


def test_an_unknown_question_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"has no question 'q99'; it has q01, q02"):
        load_quiz("ch01_core_mechanics").ask("q99")


def test_a_missing_quiz_file_says_where_it_looked() -> None:
    with pytest.raises(FileNotFoundError, match=r"No quiz file nope\.toml in"):
        load_quiz("nope")


def test_a_question_renders_as_markdown() -> None:
    question = load_quiz("ch01_core_mechanics").ask("q01")
    text = question._repr_markdown_()
    assert "**Question q01** (1 point)" in text
    assert '`answer_q01 = "A"`' in text
    assert "- **B**: After the server has sent" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title = ", "not valid TOML"),
        ('title = "t"', "has no \\[\\[question\\]\\] tables"),
        ('titel = "t"\n[[question]]\nid="q"', "needs a top-level 'title'"),
        (
            GOOD_CHOICE.replace('answer = "A"', 'answer = "E"'),
            "question 'q01': 'answer' 'E' is not one of the choices A, B",
        ),
        (GOOD_CHOICE.replace("points = 1", "points = 0"), "question 'q01': 'points' must be a positive number"),
        (GOOD_CHOICE.replace('kind = "choice"', 'kind = "essay"'), "question 'q01': 'kind' must be"),
        (GOOD_CHOICE.replace('prompt = "Which?"\n', ""), r"question 'q01': missing \['prompt'\]"),
        (GOOD_CHOICE.replace('prompt = "Which?"', 'prompt = "Which?"\ntip = "x"'), r"unknown keys \['tip'\]"),
        (GOOD_CHOICE.replace('hint = "Look at section 1."\n', ""), r"question 'q01': missing \['hint'\]"),
        (
            GOOD_CHOICE.replace('hint = "Look at section 1."', 'hint = " "'),
            r"question 'q01': 'hint' must be a non-empty",
        ),
        (GOOD_CHOICE.replace('id = "q01"', 'id = "1st"'), "question '1st': needs an 'id' that is a Python identifier"),
        (GOOD_CHOICE + GOOD_CHOICE.split('title = "t"')[1], "question 'q01': the id is used twice"),
        (GOOD_CHOICE.replace('B = "that"\n', ""), "'choices' must be a table of at least two"),
        (
            'title = "t"\n[[question]]\nid = "q02"\nkind = "code"\npoints = 1\nprompt = "p"\nname = "f"\n'
            'answer = "def f(:"\ncheck = "def observe(f): pass"\nhint = "h"\nexplanation = "e"\n',
            "question 'q02': 'answer' is not valid Python",
        ),
        (
            'title = "t"\n[[question]]\nid = "q02"\nkind = "code"\npoints = 1\nprompt = "p"\nname = "f"\n'
            'answer = "def f(): pass"\ncheck = "x = 1"\nhint = "h"\nexplanation = "e"\n',
            "question 'q02': 'check' must define `def observe\\(answer\\)`",
        ),
    ],
)
def test_malformed_quiz_files_name_file_question_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ch99_broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(QuizFormatError, match=message) as caught:
        load_quiz(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("path", QUIZZES, ids=lambda path: path.stem)
def test_no_hint_gives_its_answer_away(path: Path) -> None:
    for question in load_quiz(path).questions:
        hint = " ".join(question.hint.split())
        assert hint, question.id
        assert hint != " ".join(question.explanation.split()), question.id
        first_sentence = " ".join(question.explanation.split(". ")[0].split())
        assert first_sentence not in hint, f"{question.id}: the hint repeats the explanation"
        assert not re.search(r"\b(?:choice|answer|option)\s+[A-Z]\b|\(\s*[A-Z]\s*\)", hint), question.id
        if question.kind == "choice":
            right = " ".join(question.choices[question.answer].split())
            assert right not in hint, f"{question.id}: the hint quotes the right choice"
        else:
            lines = [line.strip() for line in question.answer.splitlines() if len(line.strip()) > 15]
            assert not [line for line in lines if line in hint], f"{question.id}: the hint holds the answer's code"
