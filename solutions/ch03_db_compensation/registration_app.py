"""Chapter 3's registration service, run as a uvicorn process of its own (sections 2 to 4).

``POST /register`` commits the new user, then asks the billing service for an account; when
billing refuses, a background task removes the user again: the compensation.
``POST /register-atomic`` does both steps in one transaction instead, so there is nothing to undo.

The database is ``$DATABASE_URL`` (the notebook and the tests pass theirs), else a SQLite file
in a new temporary folder.  ``$UNDO_SECONDS`` is how long the undo takes before it deletes the
row (it stands in for cancelling what other services already did for this user).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, status
from fastapi.responses import JSONResponse
from sqlalchemy import String, delete
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bgcourse import create_tables, database_url, make_engine, make_sessionmaker

UNDO_SECONDS = float(os.environ.get("UNDO_SECONDS", "0.5"))


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)


class BillingError(Exception):
    """The billing service refused to open an account."""


async def create_billing_account(email: str) -> None:
    """The later step: another service, which refuses every address at fail.example."""
    await asyncio.sleep(0.05)
    if email.endswith("@fail.example"):
        raise BillingError(f"the billing service refused {email}")


# One engine per process, created at import and disposed when the app shuts down.
engine = make_engine(database_url())
sessions = make_sessionmaker(engine)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await create_tables(engine, Base.metadata)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def remove_user(user_id: int) -> None:
    """The compensation: the user's id, a session of its own, and a delete that is harmless to repeat."""
    await asyncio.sleep(UNDO_SECONDS)
    async with sessions.begin() as session:
        await session.execute(delete(User).where(User.id == user_id))


@app.post("/register", status_code=status.HTTP_201_CREATED, response_model=None)
async def register(email: str, background_tasks: BackgroundTasks) -> dict[str, int] | JSONResponse:
    async with sessions.begin() as session:  # transaction 1: the user, committed at the end of the block
        user = User(email=email)
        session.add(user)
    try:
        await create_billing_account(email)
    except BillingError as error:
        background_tasks.add_task(remove_user, user.id)  # undo it after the response
        # A returned response keeps the tasks; a raised HTTPException would drop them.
        return JSONResponse({"detail": str(error), "user_id": user.id}, status_code=status.HTTP_502_BAD_GATEWAY)
    return {"user_id": user.id}


@app.post("/register-atomic", status_code=status.HTTP_201_CREATED, response_model=None)
async def register_atomic(email: str) -> dict[str, int] | JSONResponse:
    try:
        async with sessions.begin() as session:  # one transaction around both steps
            user = User(email=email)
            session.add(user)
            await session.flush()  # the INSERT runs now (and gives the id); the COMMIT comes at the end
            await create_billing_account(email)
    except BillingError as error:  # the block rolled back: the user was never committed
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_502_BAD_GATEWAY)
    return {"user_id": user.id}
