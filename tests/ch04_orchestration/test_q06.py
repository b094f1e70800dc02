"""Quiz question q06 of chapter 4: a response's own background= is caught, from a record judged on its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import BackgroundTasks, Response
from starlette.background import BackgroundTask

from bgcourse import WrongAnswer, load_quiz


def own_background(background_tasks: BackgroundTasks, cleanup: Callable[[], None]) -> Response:
    return Response("done", background=BackgroundTask(cleanup))  # the bug: it replaces the injected tasks


def test_a_response_with_its_own_background_is_caught() -> None:
    with pytest.raises(WrongAnswer, match=r"log was \['cleanup'\]; expected \['audit', 'endpoint', 'cleanup'\]"):
        load_quiz("ch04_orchestration").check("q06", own_background)


def test_a_record_of_the_wrong_shape_is_a_wrong_answer() -> None:
    question = load_quiz("ch04_orchestration")["q06"]
    assert question.observation(own_background)["log"] == ["cleanup"]
    with pytest.raises(WrongAnswer, match="could not make sense"):
        question.judged({"status": 200, "text": "done"})
