"""Exercise 6.2: the endpoint hands the task an id; the task reads the user in a session of its own."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bgcourse.checks.ch06_troubleshooting import User


def create_app(sessions: async_sessionmaker[AsyncSession], summaries: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def write_summary(user_id: int) -> None:
        async with sessions() as session:
            user = await session.scalar(select(User).where(User.id == user_id).options(selectinload(User.orders)))
            if user is not None:
                summaries.append(f"{user.name}: {len(user.orders)} orders")

    @app.post("/users/{user_id}/summary", status_code=status.HTTP_202_ACCEPTED)
    async def summary(
        user_id: int, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, str]:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        background_tasks.add_task(write_summary, user.id)  # the id, not the object
        return {"queued": user.name}

    return app
