"""Exercise 5.3's reference solution passes its check; a timeout that waits for the thread is caught."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from fastapi import BackgroundTasks, FastAPI, status
from fastapi.concurrency import run_in_threadpool

from bgcourse.checks import ch05_performance as checks
from bgcourse.helpers._observation import Observation
from solutions.ch05_performance import ex03

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def slow_fetch(calls: list[str]) -> Callable[[], None]:
    """A rates service that takes 1 s, then notes that it answered."""

    def fetch_rates() -> None:
        time.sleep(1)
        calls.append("fetched")

    return fetch_rates


def app_scheduling(refresh_rates: Callable[[], Awaitable[None]]) -> FastAPI:
    """An app whose POST /refresh schedules ``refresh_rates`` as a background task."""
    app = FastAPI()

    @app.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
    async def refresh(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(refresh_rates)
        return {"status": "refreshing"}

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex03(ex03.app, ex03.outcomes, ex03.calls)


def test_fail_after_around_run_in_threadpool_is_caught() -> None:
    calls: list[str] = []
    outcomes: list[str] = []
    fetch_rates = slow_fetch(calls)

    async def refresh_rates() -> None:
        try:
            with anyio.fail_after(0.3):  # AnyIO shields the wait for the thread: this never gives up early
                await run_in_threadpool(fetch_rates)
        except TimeoutError:
            outcomes.append("timed out")
        else:
            outcomes.append("ok")

    app = app_scheduling(refresh_rates)

    with pytest.raises(AssertionError, match=r"anyio\.fail_after cannot stop waiting for run_in_threadpool"):
        checks.ex03(app, outcomes, calls)


def test_abandoning_the_thread_with_anyio_passes() -> None:
    calls: list[str] = []
    outcomes: list[str] = []
    fetch_rates = slow_fetch(calls)

    async def refresh_rates() -> None:
        try:
            with anyio.fail_after(0.3):
                await anyio.to_thread.run_sync(fetch_rates, abandon_on_cancel=True)
        except TimeoutError:
            outcomes.append("timed out")
        else:
            outcomes.append("ok")

    app = app_scheduling(refresh_rates)

    assert "solved" in checks.ex03(app, outcomes, calls)


def test_recording_timed_out_after_waiting_for_the_thread_is_caught() -> None:
    calls: list[str] = []
    outcomes: list[str] = []
    fetch_rates = slow_fetch(calls)

    async def refresh_rates() -> None:
        started = time.perf_counter()
        await run_in_threadpool(fetch_rates)  # the mistake: it waits for the thread, then judges the time
        outcomes.append("timed out" if time.perf_counter() - started > 0.3 else "ok")

    app = app_scheduling(refresh_rates)

    with pytest.raises(AssertionError, match="the task waited for the thread"):
        checks.ex03(app, outcomes, calls)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"status": 202, "body": {"status": "refreshing"}, "outcomes": ["timed out"], "recorded_after": None},
        {"status": 202, "body": {"status": "refreshing"}, "outcomes": ["timed out"], "recorded_after": "soon"},
    ],
    ids=["empty", "null for a duration", "a string for a duration"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex03.decide(seen).solved
