"""Exercise 3.2: a compensation that opens its own session and is harmless to run again."""

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import Booking, Event


async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
    async with sessions.begin() as session:
        deleted = await session.execute(delete(Booking).where(Booking.id == booking_id).returning(Booking.event_id))
        event_id = deleted.scalar_one_or_none()
        if event_id is not None:
            await session.execute(update(Event).where(Event.id == event_id).values(seats_left=Event.seats_left + 1))
