"""Exercise 3.3: an outbox worker that carries out each message once and retries a failed one later."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import BillingError, OutboxMessage, User


async def process_outbox(
    sessions: async_sessionmaker[AsyncSession], open_account: Callable[[str], Awaitable[None]]
) -> int:
    async with sessions() as session:
        pending = (
            await session.execute(
                select(OutboxMessage.id, User.id, User.email)
                .join(User, User.id == OutboxMessage.user_id)
                .where(OutboxMessage.done_at.is_(None))
                .order_by(OutboxMessage.id)
            )
        ).all()
    for message_id, user_id, email in pending:
        try:
            await open_account(email)
            outcome = "active"
        except BillingError:
            outcome = "refused"
        async with sessions.begin() as session:
            await session.execute(update(User).where(User.id == user_id).values(status=outcome))
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message_id).values(done_at=datetime.now(UTC))
            )
    return len(pending)
