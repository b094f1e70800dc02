"""Exercise 3.3's reference solution passes on SQLite and PostgreSQL; lost and repeated work is caught."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks import ch03_db_compensation as checks
from bgcourse.checks.ch03_db_compensation import BillingError, OutboxMessage, User
from solutions.ch03_db_compensation import ex03

pytestmark = pytest.mark.usefixtures("no_leftover_threads")

OpenAccount = Callable[[str], Awaitable[None]]


def test_solution_passes(database: str) -> None:
    assert "solved" in asyncio.run(checks.ex03(ex03.process_outbox))


def test_marking_done_before_the_call_is_caught() -> None:
    async def process_outbox(sessions: async_sessionmaker[AsyncSession], open_account: OpenAccount) -> int:
        async with sessions.begin() as session:
            pending = (
                await session.execute(
                    select(OutboxMessage.id, User.id, User.email)
                    .join(User, User.id == OutboxMessage.user_id)
                    .where(OutboxMessage.done_at.is_(None))
                )
            ).all()
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.done_at.is_(None)).values(done_at=datetime.now(UTC))
            )
        for _, user_id, email in pending:
            try:
                await open_account(email)
                outcome = "active"
            except BillingError:
                outcome = "refused"
            async with sessions.begin() as session:
                await session.execute(update(User).where(User.id == user_id).values(status=outcome))
        return len(pending)

    with pytest.raises(AssertionError, match=r"flaky@example\.com is still 'pending'"):
        asyncio.run(checks.ex03(process_outbox))


def test_never_marking_done_is_caught() -> None:
    async def process_outbox(sessions: async_sessionmaker[AsyncSession], open_account: OpenAccount) -> int:
        async with sessions() as session:
            pending = (
                await session.execute(
                    select(User.id, User.email)
                    .join(OutboxMessage, User.id == OutboxMessage.user_id)
                    .where(OutboxMessage.done_at.is_(None))
                )
            ).all()
        for user_id, email in pending:
            try:
                await open_account(email)
                outcome = "active"
            except BillingError:
                outcome = "refused"
            async with sessions.begin() as session:
                await session.execute(update(User).where(User.id == user_id).values(status=outcome))
        return len(pending)

    with pytest.raises(AssertionError, match=r"still not done after 10 s|open_account was called"):
        asyncio.run(checks.ex03(process_outbox))


@pytest.mark.parametrize("seen", [{}, {"responses": "202"}])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex03.decide(seen).solved
