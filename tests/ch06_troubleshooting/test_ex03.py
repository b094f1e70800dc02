"""Exercise 6.3's reference solution passes; a module-level semaphore, a lock, and no limit do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import BackgroundTasks, FastAPI, Request, status

from bgcourse.checks import ch06_troubleshooting as checks
from solutions.ch06_troubleshooting import ex03

MODULE_LEVEL_SLOTS = asyncio.Semaphore(2)


def app_with(make_slots: asyncio.Semaphore | None, log: list[str]) -> FastAPI:
    """An app whose tasks share ``make_slots``, made once (``None``: no limit at all)."""
    app = FastAPI()

    async def send(n: int) -> None:
        await ex03.send_email(make_slots or asyncio.Semaphore(99), n, log)

    @app.post("/emails/{n}", status_code=status.HTTP_202_ACCEPTED)
    async def queue_email(n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(send, n)
        return {"queued": n}

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex03(ex03.create_app)


def test_a_module_level_semaphore_is_caught() -> None:
    with pytest.raises(AssertionError, match="create it in the app's lifespan"):
        checks.ex03(lambda log: app_with(MODULE_LEVEL_SLOTS, log))


def test_a_semaphore_made_with_the_app_is_caught() -> None:
    with pytest.raises(AssertionError, match="bound to a different event loop"):
        checks.ex03(lambda log: app_with(asyncio.Semaphore(2), log))


def test_no_limit_is_caught() -> None:
    with pytest.raises(AssertionError, match="e-mails were being sent at once"):
        checks.ex03(lambda log: app_with(None, log))


def test_a_lock_in_the_lifespan_is_too_strict() -> None:
    def create_app(log: list[str]) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            app.state.lock = asyncio.Lock()
            yield

        app = FastAPI(lifespan=lifespan)

        async def send(lock: asyncio.Lock, n: int) -> None:
            async with lock:
                log.append(f"start {n}")
                await asyncio.sleep(0.2)
                log.append(f"end {n}")

        @app.post("/emails/{n}", status_code=status.HTTP_202_ACCEPTED)
        async def queue_email(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
            background_tasks.add_task(send, request.app.state.lock, n)
            return {"queued": n}

        return app

    with pytest.raises(AssertionError, match="only one e-mail was sent at a time"):
        checks.ex03(create_app)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"runs": []},
        {"runs": [{"errors": [], "answers": [{"status": 202, "body": {"queued": n}} for n in (1, 2, 3, 4)]}]},
    ],
    ids=["empty", "no-runs", "one-run-without-a-log"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex03.decide(seen).solved
