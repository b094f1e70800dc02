"""Question q05's check in two halves: wrong run_off_loop functions are caught, and only its judgement decides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bgcourse import WrongAnswer, load_quiz

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def not_async(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


async def on_the_loop(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)  # the mistake: the blocking call runs on the event loop


async def never_calls(func: Callable[..., Any], *args: Any) -> Any:
    return 5


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (not_async, "must be an async def function"),
        (on_the_loop, "func ran on the event loop's thread"),
        (never_calls, "returned without calling slow_add"),
    ],
    ids=["not async", "on the loop", "never calls func"],
)
def test_a_wrong_run_off_loop_is_caught(answer: object, message: str) -> None:
    with pytest.raises(WrongAnswer, match=message):
        load_quiz("ch05_performance").check("q05", answer)


def test_a_record_of_the_wrong_shape_is_not_a_right_answer() -> None:
    question = load_quiz("ch05_performance")["q05"]
    seen = question.observation(on_the_loop)
    with pytest.raises(WrongAnswer, match="event loop's thread"):
        question.judged(seen | {"solved": True})
    with pytest.raises(WrongAnswer, match="could not make sense"):
        question.judged({"is_async": True, "returned": True})
