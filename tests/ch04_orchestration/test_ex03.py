"""Exercise 4.3's reference solution passes its check; the dropped audit and work done too early are caught."""

from __future__ import annotations

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response
from starlette.background import BackgroundTask

from bgcourse.checks import ch04_orchestration as checks
from solutions.ch04_orchestration import ex03

CSV = "order,total\n1,9.50\n2,12.00\n"


def app_with(export: str, events: list[str]) -> FastAPI:
    """The exercise's app, with the endpoint written one of several ways."""

    def audit(request: Request, background_tasks: BackgroundTasks) -> None:
        background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")

    app = FastAPI()

    @app.get("/exports/{name}", dependencies=[Depends(audit)])
    def export_csv(name: str, background_tasks: BackgroundTasks) -> Response:
        if export == "own background":
            return Response(CSV, media_type="text/csv", background=BackgroundTask(events.append, f"release {name}"))
        if export == "inline":
            events.append(f"release {name}")
            return Response(CSV, media_type="text/csv")
        background_tasks.add_task(events.append, f"release {name}")
        return Response(CSV, media_type="text/csv", background=background_tasks)

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex03(ex03.app, ex03.events)


def test_passing_the_injected_tasks_as_background_passes_too() -> None:
    events: list[str] = []
    assert "solved" in checks.ex03(app_with("background=background_tasks", events), events)


def test_the_original_bug_is_caught() -> None:
    events: list[str] = []
    with pytest.raises(AssertionError, match="the dependency's audit task never ran"):
        checks.ex03(app_with("own background", events), events)


def test_work_done_before_the_response_is_caught() -> None:
    events: list[str] = []
    with pytest.raises(AssertionError, match="when the CSV was sent, events already held"):
        checks.ex03(app_with("inline", events), events)


@pytest.mark.parametrize(
    "seen",
    [{}, {"status": 200, "text": CSV, "content_type": ["text/csv"], "when_sent": [[]], "events": []}],
    ids=["empty", "content-type-a-list"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex03.decide(seen).solved


def test_the_observation_of_a_wrong_solution_is_judged_not_solved() -> None:
    events: list[str] = []
    seen = checks.ex03.observation(app_with("own background", events), events)
    assert seen["events"] == ["release march"]  # plain data: what the app did, no verdict
    decided = checks.ex03.decide(seen)
    assert not decided.solved
    assert "the dependency's audit task never ran" in decided
