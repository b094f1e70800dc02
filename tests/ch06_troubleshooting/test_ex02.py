"""Exercise 6.2's reference solution passes; a task given the request's ORM object is caught."""

# No `from __future__ import annotations` here: FastAPI reads the endpoint's annotations at run time,
# and `Annotated[AsyncSession, Depends(get_session)]` names a function local to `create_app`.

from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks import ch06_troubleshooting as checks
from bgcourse.checks.ch06_troubleshooting import User
from solutions.ch06_troubleshooting import ex02


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.create_app)


def test_a_task_that_lazy_loads_from_the_request_object_is_caught() -> None:
    def create_app(sessions: async_sessionmaker[AsyncSession], summaries: list[str]) -> FastAPI:
        app = FastAPI()

        async def get_session() -> AsyncIterator[AsyncSession]:
            async with sessions() as session:
                yield session

        async def write_summary(user: User) -> None:
            summaries.append(f"{user.name}: {len(user.orders)} orders")  # a lazy load, outside any greenlet

        @app.post("/users/{user_id}/summary", status_code=status.HTTP_202_ACCEPTED)
        async def summary(
            user_id: int, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
        ) -> dict[str, str]:
            user = await session.get(User, user_id)
            if user is None:
                raise HTTPException(status_code=404, detail="no such user")
            background_tasks.add_task(write_summary, user)
            return {"queued": user.name}

        return app

    with pytest.raises(AssertionError, match="MissingGreenlet"):
        checks.ex02(create_app)


def test_a_missing_404_is_caught() -> None:
    def create_app(sessions: async_sessionmaker[AsyncSession], summaries: list[str]) -> FastAPI:
        inner = ex02.create_app(sessions, summaries)
        app = FastAPI()

        @app.post("/users/99/summary", status_code=status.HTTP_202_ACCEPTED)
        async def nobody() -> dict[str, str]:
            return {"queued": "nobody"}

        app.mount("/", inner)
        return app

    with pytest.raises(AssertionError, match="expected 404, got 202"):
        checks.ex02(create_app)


@pytest.mark.parametrize(
    "seen",
    [{}, {"errors": "", "ada": {"status": 202, "text": "", "body": {"queued": "Ada"}}, "grace": 202}],
    ids=["empty", "grace-a-number"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex02.decide(seen).solved
