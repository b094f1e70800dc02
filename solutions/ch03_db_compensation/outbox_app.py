"""Chapter 3's registration with an outbox, run as a uvicorn process of its own (section 6).

``POST /register`` writes the user (status ``pending``) and an outbox message saying what is
left to do, in one transaction, and answers ``202 Accepted``.  A worker loop in the same process
reads the oldest unfinished message, asks the billing service for an account, and then, in one
transaction, sets the user's status (``active``, or ``refused``: the compensation marks the row)
and marks the message done.  A message that was not marked done is simply done again, by this
process or by the next one after a crash.

The database is ``$DATABASE_URL``, else a SQLite file in a new temporary folder.
``$BILLING_SECONDS`` is how long a billing call takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, status
from sqlalchemy import DateTime, ForeignKey, String, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bgcourse import create_tables, database_url, make_engine, make_sessionmaker

BILLING_SECONDS = float(os.environ.get("BILLING_SECONDS", "0.05"))
POLL_SECONDS = 0.05
logger = logging.getLogger("outbox")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[str] = mapped_column(String(20))  # pending, active or refused


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    task: Mapped[str] = mapped_column(String(50))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class BillingError(Exception):
    """The billing service refused to open an account."""


async def create_billing_account(email: str) -> None:
    """Another service, which refuses every address at fail.example."""
    await asyncio.sleep(BILLING_SECONDS)
    if email.endswith("@fail.example"):
        raise BillingError(f"the billing service refused {email}")


engine = make_engine(database_url())
sessions = make_sessionmaker(engine)


async def process_next_message() -> bool:
    """Carry out the oldest unfinished message; return False when there was none."""
    async with sessions() as session:
        message = await session.scalar(
            select(OutboxMessage).where(OutboxMessage.done_at.is_(None)).order_by(OutboxMessage.id).limit(1)
        )
        if message is None:
            return False
        email = await session.scalar(select(User.email).where(User.id == message.user_id))
    # The slow call runs outside any transaction: no connection is held while it waits.
    try:
        await create_billing_account(str(email))
        outcome = "active"
    except BillingError:
        outcome = "refused"  # the compensation: mark the row, in the same transaction as "done"
    async with sessions.begin() as session:
        await session.execute(
            update(User).where(User.id == message.user_id, User.status == "pending").values(status=outcome)
        )
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == message.id).values(done_at=datetime.now(UTC))
        )
    return True


async def work_through_outbox() -> None:
    """The worker loop: drain the outbox, pause, repeat; a failure is logged and tried again later."""
    while True:
        try:
            while await process_next_message():
                pass
        except Exception:
            logger.exception("outbox worker: a message failed; it stays in the outbox and is tried again")
        await asyncio.sleep(POLL_SECONDS)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await create_tables(engine, Base.metadata)
    worker = asyncio.create_task(work_through_outbox())
    yield
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/register", status_code=status.HTTP_202_ACCEPTED)
async def register(email: str) -> dict[str, int | str]:
    async with sessions.begin() as session:  # one transaction: the user AND what is left to do
        user = User(email=email, status="pending")
        session.add(user)
        await session.flush()  # the user's id, for the message
        session.add(OutboxMessage(user_id=user.id, task="open billing account"))
    return {"user_id": user.id, "status": user.status}
