"""Exercise 3.2's reference solution passes on SQLite and PostgreSQL; repeats that do harm are caught."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks import ch03_db_compensation as checks
from bgcourse.checks.ch03_db_compensation import Booking, Event
from solutions.ch03_db_compensation import ex02

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def test_solution_passes(database: str) -> None:
    assert "solved" in asyncio.run(checks.ex02(ex02.cancel_booking))


def test_a_seat_given_back_on_every_run_is_caught() -> None:
    async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
        async with sessions.begin() as session:
            booking = await session.get(Booking, booking_id)
            event_id = booking.event_id if booking is not None else 1
            await session.execute(delete(Booking).where(Booking.id == booking_id))
            await session.execute(update(Event).where(Event.id == event_id).values(seats_left=Event.seats_left + 1))

    with pytest.raises(AssertionError, match="the event has 3 seats left"):
        asyncio.run(checks.ex02(cancel_booking))


def test_a_second_run_that_raises_is_caught() -> None:
    async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
        async with sessions.begin() as session:
            booking = await session.get(Booking, booking_id)
            await session.delete(booking)  # None on the second run: UnmappedInstanceError
            await session.execute(update(Event).values(seats_left=Event.seats_left + 1))

    with pytest.raises(AssertionError, match="raised UnmappedInstanceError"):
        asyncio.run(checks.ex02(cancel_booking))


def test_a_session_left_open_is_caught() -> None:
    async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
        session = sessions()
        booking = await session.get(Booking, booking_id)
        if booking is None:
            return  # nothing to do; but the session, and the connection its SELECT took, are left open
        await session.delete(booking)
        await session.execute(update(Event).where(Event.id == booking.event_id).values(seats_left=Event.seats_left + 1))
        await session.commit()
        await session.close()

    with pytest.raises(AssertionError, match="open the session with `async with`"):
        asyncio.run(checks.ex02(cancel_booking))


@pytest.mark.parametrize("seen", [{}, {"status": 202, "text": "", "errors": 5}])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex02.decide(seen).solved
