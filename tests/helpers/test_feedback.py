"""Checks give one short verdict: "Not yet" (and Run All goes on) in a practice copy, a short failure elsewhere."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bgcourse import load_quiz
from bgcourse.helpers._check import Check, exercise_check
from bgcourse.helpers._feedback import COPY_MARKER, NotSolved, Verdict, copy_mode
from bgcourse.helpers._observation import MIME, Observation, as_json
from bgcourse.helpers._quiz import WrongAnswer


@exercise_check("9.1")
def check_double(double: Any) -> Observation:
    return {"callable": callable(double), "result": double(2) if callable(double) else None}  # may raise


@check_double.judgement
def _judge_double(seen: Observation) -> str:
    assert seen["callable"], "define `double` as a function"
    assert seen["result"] == 4, f"double(2) returned {seen['result']!r}, expected 4"
    return "Exercise 9.1 solved: double(2) == 4."


@exercise_check("9.2")
async def check_double_async(double: object) -> Observation:
    await asyncio.sleep(0)
    return {"callable": callable(double), "pair": (1, 2)}


@check_double_async.judgement
def _judge_double_async(seen: Observation) -> str:
    assert seen["callable"], "define `double` as a function"
    assert seen["pair"] == [1, 2], "a tuple comes back as a list: the record made a round trip through JSON"
    return "Exercise 9.2 solved."


def broken_double(number: int) -> int:
    return int(number * undefined_factor)  # type: ignore[name-defined]  # noqa: F821  # a learner's mistake


@pytest.fixture
def practice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / COPY_MARKER).write_text(json.dumps({"mode": "practice"}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_mode_is_practice_only_where_the_marker_says_so(tmp_path: Path) -> None:
    assert copy_mode(tmp_path) == "strict"
    for text, mode in (('{"mode": "practice"}', "practice"), ('{"mode": "assessed"}', "strict"), ("{", "strict")):
        (tmp_path / COPY_MARKER).write_text(text, encoding="utf-8")
        assert copy_mode(tmp_path) == mode, text


def test_a_solved_check_says_so_in_every_copy(practice: Path) -> None:
    verdict = check_double(lambda number: number * 2)
    assert isinstance(verdict, Verdict)
    assert verdict.solved
    assert "solved" in verdict
    assert verdict._repr_markdown_() == "**Solved.** Exercise 9.1 solved: double(2) == 4."


def test_in_a_practice_copy_a_failed_check_returns_not_yet(practice: Path) -> None:
    verdict = check_double(lambda number: number + 1)
    assert isinstance(verdict, Verdict)
    assert not verdict.solved
    # (The first line: pytest adds its own explanation to an assert in a test module.)
    assert verdict.splitlines()[0] == "Exercise 9.1: double(2) returned 3, expected 4"
    assert verdict._repr_markdown_().startswith("**Not yet.** Exercise 9.1:")


def test_an_untouched_stub_is_not_attempted_yet(practice: Path) -> None:
    assert "Exercise 9.1: not attempted yet" in check_double(...)
    assert "Exercise 9.2: not attempted yet" in asyncio.run(check_double_async(...))


def test_the_learners_own_exception_is_named_with_their_line(practice: Path) -> None:
    verdict = check_double(broken_double)
    assert verdict.startswith("Exercise 9.1: your code raised NameError: name 'undefined_factor' is not defined")
    assert "in broken_double: `return int(number * undefined_factor)" in verdict


def test_elsewhere_a_failed_check_raises_a_short_not_solved(strict: Path) -> None:
    with pytest.raises(NotSolved, match=r"^Exercise 9\.1: double\(2\) returned 3") as caught:
        check_double(lambda number: number + 1)
    assert isinstance(caught.value, AssertionError), "graders count an AssertionError as a failed check"
    assert caught.value._render_traceback_() == ["\x1b[31mNot solved yet.\x1b[0m " + str(caught.value)]
    assert caught.value.__cause__ is None
    with pytest.raises(NotSolved, match="not attempted yet"):
        asyncio.run(check_double_async(...))


def test_a_wrong_quiz_answer_gives_a_hint_not_the_explanation(practice: Path) -> None:
    quiz = load_quiz("ch01_core_mechanics")
    question = quiz["q01"]
    verdict = quiz.check("q01", "A")
    assert repr(verdict).startswith(f"Not yet. Question q01: A is not right. Hint: {question.hint}")
    assert 'quiz.explain("q01")' in repr(verdict)
    assert question.explanation.strip() not in repr(verdict)
    assert repr(quiz.check("q01", question.answer)).startswith("Right! Question q01: ")
    assert question.explanation.strip() in repr(quiz.explain("q01"))


def test_outside_a_practice_copy_a_wrong_answer_raises_in_one_line(strict: Path) -> None:
    quiz = load_quiz("ch01_core_mechanics")
    with pytest.raises(WrongAnswer) as caught:
        quiz.check("q01", "A")
    (line,) = caught.value._render_traceback_()
    assert line.endswith(f"Question q01: A is not right. Hint: {quiz['q01'].hint}")


def test_an_observation_is_judged_the_same_wherever_it_is_judged(strict: Path) -> None:
    seen = check_double.observation(lambda number: number + 1)
    assert seen == {"callable": True, "result": 3}
    decided = check_double.decide(seen)
    assert not decided.solved
    assert decided.splitlines()[0] == "Exercise 9.1: double(2) returned 3, expected 4"  # pytest adds lines
    assert check_double.decide(check_double.observation(lambda number: number * 2)).solved
    assert asyncio.run(check_double_async(lambda number: number)).solved


def test_an_observation_is_plain_json_with_capped_text() -> None:
    seen = as_json({"tuple": (1, 2), "object": object(), "long": "x" * 10_000, 3: "key"})
    assert seen["tuple"] == [1, 2]
    assert seen["object"].startswith("<object object at")
    assert len(seen["long"]) == 2_000
    assert seen["3"] == "key"
    assert MIME.endswith("+json")


@pytest.mark.parametrize(
    ("seen", "reason"),
    [
        ({}, "the check could not make sense of what it saw (KeyError: 'callable')"),
        ({"callable": True, "result": {"no": "number"}}, "double(2) returned {'no': 'number'}, expected 4"),
        ({"_raised": "SystemExit: 0", "_where": 7}, "your code raised SystemExit: 0"),
        ({"_unattempted": True}, "not attempted yet"),
    ],
)
def test_a_record_of_any_shape_is_judged_without_raising(seen: Observation, reason: str) -> None:
    decided = check_double.decide(seen)
    assert not decided.solved
    assert reason in decided


def test_a_check_without_a_judgement_never_passes() -> None:
    @exercise_check("9.3")
    def unjudged(value: object) -> Observation:
        return {"value": value}

    assert not unjudged.decide(unjudged.observation(1)).solved


def test_every_exercise_check_of_the_course_has_a_judgement_and_every_master_calls_one() -> None:
    root = Path(__file__).resolve().parents[2]
    for notebook in sorted((root / "notebooks").glob("ch*.py")):
        module = importlib.import_module(f"bgcourse.checks.{notebook.stem}")
        checks = {name: value for name, value in vars(module).items() if isinstance(value, Check)}
        assert checks, notebook.stem
        for name, check in checks.items():
            assert check.judge is not None, f"{notebook.stem}.{name} has no judgement: it could never pass"
        called = set(re.findall(r"checks\.(ex\d\d)\(", notebook.read_text(encoding="utf-8")))
        assert called == set(checks), f"{notebook.stem}: the notebook calls {sorted(called)}"
