"""Exercise 3.1's reference solution passes on SQLite and PostgreSQL; committing first is caught."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException, status
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks import ch03_db_compensation as checks
from bgcourse.checks.ch03_db_compensation import BillingError, User, create_billing_account
from solutions.ch03_db_compensation import ex01

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def test_solution_passes(database: str) -> None:
    assert "solved" in asyncio.run(checks.ex01(ex01.make_app))


def commit_then_compensate(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    """Commit the user, then undo it in a background task: the task is dropped with the 502."""
    app = FastAPI()

    async def remove(user_id: int) -> None:
        async with sessions.begin() as session:
            await session.execute(delete(User).where(User.id == user_id))

    @app.post("/register", status_code=status.HTTP_201_CREATED, response_model=None)
    async def register(email: str, background_tasks: BackgroundTasks) -> dict[str, int]:
        async with sessions.begin() as session:
            user = User(email=email)
            session.add(user)
        try:
            await create_billing_account(email)
        except BillingError as error:
            background_tasks.add_task(remove, user.id)
            raise HTTPException(status_code=502, detail=str(error)) from error  # and the task is dropped, too
        return {"user_id": user.id}

    return app


def test_commit_then_compensate_in_a_task_is_caught() -> None:
    with pytest.raises(AssertionError, match="already committed while the billing call ran"):
        asyncio.run(checks.ex01(commit_then_compensate))


def test_commit_then_delete_before_answering_is_caught() -> None:
    """The end state is right, but a crash during the billing call would have left the row."""

    def make_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
        app = FastAPI()

        @app.post("/register", status_code=status.HTTP_201_CREATED)
        async def register(email: str) -> dict[str, int]:
            async with sessions.begin() as session:
                user = User(email=email)
                session.add(user)
            try:
                await create_billing_account(email)
            except BillingError as error:
                async with sessions.begin() as session:
                    await session.execute(delete(User).where(User.id == user.id))
                raise HTTPException(status_code=502, detail=str(error)) from error
            return {"user_id": user.id}

        return app

    with pytest.raises(AssertionError, match="already committed while the billing call ran"):
        asyncio.run(checks.ex01(make_app))


def test_a_wrong_answer_is_judged_not_solved_from_its_observation() -> None:
    seen = asyncio.run(checks.ex01.observation(commit_then_compensate))
    assert seen["seen_during_billing"]["bob@fail.example"] == 1  # committed before the billing call
    decided = checks.ex01.decide(seen)
    assert not decided.solved
    assert "already committed while the billing call ran" in decided


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {
            "accepted_status": 201,
            "accepted_text": "",
            "ada_id": 1,
            "ada_rows": 1,
            "ada_by_id": 1,
            "refused_status": 502,
            "refused_text": "",
            "seen_during_billing": None,
        },
    ],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex01.decide(seen).solved
