"""Exercise 5.1's reference solution passes its check; a task that blocks the event loop is caught."""

from __future__ import annotations

import time

import pytest
from fastapi import BackgroundTasks, FastAPI, status

from bgcourse.checks import ch05_performance as checks
from bgcourse.helpers._observation import Observation
from solutions.ch05_performance import ex01

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def app_with(render_in_async_def: bool, rendered: list[str]) -> FastAPI:
    app = FastAPI()

    async def render_async(name: str) -> None:
        time.sleep(0.5)  # the mistake: a blocking call on the event loop
        rendered.append(name)

    def render_sync(name: str) -> None:
        time.sleep(0.5)
        rendered.append(name)

    @app.post("/reports/{name}", status_code=status.HTTP_202_ACCEPTED)
    async def create_report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(render_async if render_in_async_def else render_sync, name)
        return {"report": name, "status": "rendering"}

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex01(ex01.app, ex01.rendered)


def test_a_blocking_async_def_task_is_caught() -> None:
    rendered: list[str] = []
    with pytest.raises(AssertionError, match="the blocking call runs on the event loop"):
        checks.ex01(app_with(render_in_async_def=True, rendered=rendered), rendered)


def test_the_same_task_as_def_passes() -> None:
    rendered: list[str] = []
    assert "solved" in checks.ex01(app_with(render_in_async_def=False, rendered=rendered), rendered)


def test_rendering_inside_the_endpoint_is_caught() -> None:
    rendered: list[str] = []
    app = FastAPI()

    @app.post("/reports/{name}", status_code=status.HTTP_202_ACCEPTED)
    def create_report(name: str) -> dict[str, str]:
        time.sleep(0.5)
        rendered.append(name)
        return {"report": name, "status": "rendering"}

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    with pytest.raises(AssertionError, match="render the report in a background task"):
        checks.ex01(app, rendered)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"status": 202, "body": {"report": "q3", "status": "rendering"}, "rendered_at_response": None},
        {
            "status": 202,
            "body": {"report": "q3", "status": "rendering"},
            "rendered_at_response": [],
            "ping_status": 200,
            "ping_seconds": "fast",
        },
    ],
    ids=["empty", "null for a list", "a string for a duration"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex01.decide(seen).solved


def test_a_tampered_record_of_a_wrong_answer_does_not_pass() -> None:
    rendered: list[str] = []
    seen = checks.ex01.observation(app_with(render_in_async_def=True, rendered=rendered), rendered)
    assert not checks.ex01.decide(seen).solved
    # A verdict slipped into the record, or an empty string where the check recorded a list, change nothing.
    decided = checks.ex01.decide(seen | {"solved": True, "rendered_at_ping": ""})
    assert not decided.solved
    assert "the blocking call runs on the event loop" in decided
