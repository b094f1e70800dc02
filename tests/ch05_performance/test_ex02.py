"""Exercise 5.2's reference solution passes its check; a missing, too small or import-time semaphore is caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import BackgroundTasks, FastAPI, Request, status

from bgcourse.checks import ch05_performance as checks
from bgcourse.helpers._observation import Observation
from solutions.ch05_performance import ex02

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def app_with_lifespan_semaphore(events: list[tuple[str, int]], value: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.exports = asyncio.Semaphore(value)
        yield

    app = FastAPI(lifespan=lifespan)

    async def export(number: int, exports: asyncio.Semaphore) -> None:
        async with exports:
            events.append(("start", number))
            await asyncio.sleep(0.2)
            events.append(("end", number))

    @app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
    async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(export, number, request.app.state.exports)
        return {"export": number}

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.app, ex02.events)


def test_no_semaphore_is_caught() -> None:
    events: list[tuple[str, int]] = []
    app = FastAPI()

    async def export(number: int) -> None:
        events.append(("start", number))
        await asyncio.sleep(0.2)
        events.append(("end", number))

    @app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
    async def start_export(number: int, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(export, number)
        return {"export": number}

    with pytest.raises(AssertionError, match="exports ran at once; the semaphore must allow two at most"):
        checks.ex02(app, events)


def test_a_semaphore_created_at_import_time_is_caught() -> None:
    events: list[tuple[str, int]] = []
    exports = asyncio.Semaphore(2)  # outside any running loop, as at the top of a module
    app = FastAPI()

    async def export(number: int) -> None:
        async with exports:
            events.append(("start", number))
            await asyncio.sleep(0.2)
            events.append(("end", number))

    @app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
    async def start_export(number: int, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(export, number)
        return {"export": number}

    with pytest.raises(AssertionError, match="started a second time, a task raised RuntimeError"):
        checks.ex02(app, events)


def test_a_semaphore_of_one_is_caught() -> None:
    events: list[tuple[str, int]] = []
    with pytest.raises(AssertionError, match="the exports ran one at a time"):
        checks.ex02(app_with_lifespan_semaphore(events, 1), events)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"starts": [{"statuses": [202] * 6, "failures": [], "events": []}]},
        {"starts": {"first": {"statuses": [202] * 6, "failures": [], "events": 12}}},
    ],
    ids=["empty", "a list for a dict", "a number for the events"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex02.decide(seen).solved
