"""Checks for chapter 3's exercises, run against a real server and the course's real database.

The tables and the billing service the exercises use are defined here, so that an answer and
its check agree on them.  Each check makes a fresh database with :func:`temporary_database`:
SQLite in a temporary folder, or the database that ``$DATABASE_URL`` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, status
from sqlalchemy import DateTime, ForeignKey, String, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._db import Database, temporary_database
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation, json_or_none
from bgcourse.helpers._server import serve
from bgcourse.helpers._tracebacks import logged_errors

__all__ = [
    "BillingError",
    "Booking",
    "Event",
    "ExerciseBase",
    "OutboxMessage",
    "User",
    "create_billing_account",
    "ex01",
    "ex02",
    "ex03",
]

Sessions = async_sessionmaker[AsyncSession]


class ExerciseBase(DeclarativeBase):
    """The tables of chapter 3's exercises."""


class User(ExerciseBase):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="active")  # pending, active or refused


class Event(ExerciseBase):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    seats_left: Mapped[int]


class Booking(ExerciseBase):
    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    email: Mapped[str] = mapped_column(String(254))


class OutboxMessage(ExerciseBase):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class BillingError(Exception):
    """The billing service refused to open an account."""


# Exercise 3.1's check looks at the database from another connection while the billing call runs.
_billing_observers: list[Callable[[str], Awaitable[None]]] = []


async def create_billing_account(email: str) -> None:
    """The billing service of exercises 3.1 and 3.3: it refuses every address at ``fail.example``."""
    for observe in list(_billing_observers):
        await observe(email)
    await asyncio.sleep(0.01)
    if email.endswith("@fail.example"):
        raise BillingError(f"the billing service refused {email}")


async def _count(db: Database, model: type[ExerciseBase], *conditions: Any) -> int:
    async with db.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


class _KeptSessions(async_sessionmaker[AsyncSession]):
    """The course's sessionmaker, keeping every session it made, so that a check can close what an answer left open."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.engine, expire_on_commit=False)
        self.made: list[AsyncSession] = []

    def __call__(self, **options: Any) -> AsyncSession:
        session = super().__call__(**options)
        self.made.append(session)
        return session


def _error_lines(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{error.type}: {error.message.splitlines()[0] if error.message else ''}" for error in logged_errors(records)
    ]


@exercise_check("3.1")
async def ex01(make_app: Callable[[Sessions], FastAPI]) -> Observation:
    """Exercise 3.1: the user and the billing call in one transaction; a refusal leaves nothing behind."""
    async with temporary_database(ExerciseBase.metadata) as db:
        seen_during_billing: dict[str, int] = {}

        async def look(email: str) -> None:  # runs on the server's loop, on a connection of its own
            seen_during_billing[email] = await _count(db, User, User.email == email)

        _billing_observers.append(look)
        try:
            app = make_app(db.sessions)
            with serve(app) as url, httpx.Client(base_url=url) as client:
                accepted = client.post("/register", params={"email": "ada@example.com"})
                refused = client.post("/register", params={"email": "bob@fail.example"})
                bob_rows_at_response = await _count(db, User, User.email == "bob@fail.example")
        finally:
            _billing_observers.remove(look)
        ada_rows = await _count(db, User, User.email == "ada@example.com")
        bob_rows = await _count(db, User, User.email == "bob@fail.example")
        body = json_or_none(accepted)
        ada_id = body.get("user_id") if isinstance(body, dict) else None
        # Looked up only by an id the response really gave: the judgement then compares plain counts.
        ada_by_id = await _count(db, User, User.id == ada_id) if isinstance(ada_id, int) else 0
    return {
        "accepted_status": accepted.status_code,
        "accepted_text": accepted.text,
        "ada_id": ada_id,
        "ada_rows": ada_rows,
        "ada_by_id": ada_by_id,
        "refused_status": refused.status_code,
        "refused_text": refused.text,
        "seen_during_billing": seen_during_billing,
        "bob_rows_at_response": bob_rows_at_response,
        "bob_rows": bob_rows,
    }


@ex01.judgement
def _ex01(seen: Observation) -> str:
    accepted_status = seen["accepted_status"]
    assert accepted_status == 201, _("ada@example.com: expected 201 Created, got {status}: {text}").format(
        status=accepted_status, text=seen["accepted_text"]
    )
    ada_id = seen["ada_id"]
    assert isinstance(ada_id, int), _("expected a body {{'user_id': <the new id>}}, got {text}").format(
        text=seen["accepted_text"]
    )
    ada_rows, ada_by_id = seen["ada_rows"], seen["ada_by_id"]
    assert (ada_rows, ada_by_id) == (1, 1), _(
        "after ada's 201 the users table has {rows} row(s) for ada@example.com (and {rows_by_id} with id "
        "{user_id}); expected her row, committed, with the id the response gave"
    ).format(rows=ada_rows, rows_by_id=ada_by_id, user_id=ada_id)
    refused_status = seen["refused_status"]
    assert refused_status == 502, _("bob@fail.example: expected 502, got {status}: {text}").format(
        status=refused_status, text=seen["refused_text"]
    )
    seen_during_billing = seen["seen_during_billing"]
    assert "bob@fail.example" in seen_during_billing, _(
        "create_billing_account was never called for bob@fail.example: await it inside the registration"
    )
    assert seen_during_billing["bob@fail.example"] == 0, _(
        "bob's row was already committed while the billing call ran: if the process had died then, it would "
        "have stayed. Call create_billing_account inside the `async with sessions.begin()` block, so that its "
        "BillingError rolls the INSERT back"
    )
    bob_rows_at_response, bob_rows = seen["bob_rows_at_response"], seen["bob_rows"]
    assert (bob_rows_at_response, bob_rows) == (0, 0), _(
        "bob's row was still in the table when the client had its 502 ({rows_at_response} row, "
        "{rows_after} after the server stopped): nothing may be left to undo after the response"
    ).format(rows_at_response=bob_rows_at_response, rows_after=bob_rows)
    return _("Exercise 3.1 solved: a refusal rolls the user back before the response; nothing is left to undo.")


@exercise_check("3.2")
async def ex02(cancel_booking: Callable[[Sessions, int], Awaitable[None]]) -> Observation:
    """Exercise 3.2: a compensation with its own session, harmless when it runs more than once."""
    async with temporary_database(ExerciseBase.metadata) as db:
        async with db.sessions.begin() as session:
            course_day = Event(name="Course day", seats_left=0)
            session.add(course_day)
            await session.flush()
            ada = Booking(event_id=course_day.id, email="ada@example.com")
            bob = Booking(event_id=course_day.id, email="bob@example.com")
            session.add_all([ada, bob])
        connections: Counter[str] = Counter()
        event.listen(db.engine.sync_engine, "checkout", lambda *_arguments: connections.update(["taken"]))
        event.listen(db.engine.sync_engine, "checkin", lambda *_arguments: connections.update(["returned"]))
        sessions = _KeptSessions(db)
        still_taken: list[int] = []

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            # After the tasks, on the server's own loop: count what was left open, then close it.
            still_taken.append(connections["taken"] - connections["returned"])
            for session in sessions.made:
                await session.close()

        app = FastAPI(lifespan=lifespan)

        @app.post("/bookings/{booking_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
        async def cancel(booking_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
            for _run in range(3):  # the compensation, and two retries of it (a retry library, a redelivery)
                background_tasks.add_task(cancel_booking, sessions, booking_id)
            return {"cancelling": booking_id}

        with capture_logs("uvicorn.error") as records, serve(app) as url:
            response = httpx.post(f"{url}/bookings/{ada.id}/cancel")
        errors = _error_lines(records)
        async with db.sessions() as session:
            seats_left = await session.scalar(select(Event.seats_left).where(Event.id == course_day.id))
            left = list(await session.scalars(select(Booking.email).order_by(Booking.id)))
    return {
        "status": response.status_code,
        "text": response.text,
        "errors": errors[:1],  # the judgement names the first; the rest would only make the record longer
        "left": left,
        "seats_left": seats_left,
        "still_taken": still_taken,
    }


@ex02.judgement
def _ex02(seen: Observation) -> str:
    assert seen["status"] == 202, _("expected 202, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    errors = seen["errors"]
    assert not errors, _(
        "a run of cancel_booking raised {error}. The first run cancelled the booking; the next runs must "
        "find nothing to do and do nothing (a DELETE that matches no row is harmless; session.delete(None) is not)"
    ).format(error=errors[0])
    left = seen["left"]
    assert left == ["bob@example.com"], _(
        "the bookings left are {bookings}; expected only bob's: cancel ada's, by its id"
    ).format(bookings=left)
    seats_left = seen["seats_left"]
    assert seats_left == 1, _(
        "after cancelling one booking (once, and twice more as retries) the event has {seats} seats left; "
        "expected 1. Give the seat back only if this run really deleted the booking (the DELETE's rowcount), "
        "in the same transaction"
    ).format(seats=seats_left)
    still_taken = seen["still_taken"]
    assert still_taken == [0], _(
        "after the tasks, {connections} connection(s) were still taken by sessions "
        "nobody closed: open the session with `async with`, so that it is closed whatever happens"
    ).format(connections=still_taken[0] if still_taken else "?")
    return _("Exercise 3.2 solved: one seat given back, however often the compensation runs.")


@exercise_check("3.3")
async def ex03(process_outbox: Callable[[Sessions, Callable[[str], Awaitable[None]]], Awaitable[int]]) -> Observation:
    """Exercise 3.3: an outbox worker: each message carried out once, a failed one tried again later."""
    calls: Counter[str] = Counter()
    failures: list[str] = []

    async def open_account(email: str) -> None:
        calls[email] += 1
        if email == "flaky@example.com" and calls[email] == 1:
            raise ConnectionError("the billing service is unavailable")  # a passing failure: try again later
        await create_billing_account(email)

    async with temporary_database(ExerciseBase.metadata) as db:
        stopping = asyncio.Event()

        async def work() -> None:
            while not stopping.is_set():
                try:
                    await process_outbox(db.sessions, open_account)
                except Exception as error:  # noqa: BLE001 - a worker loop carries on; the check reads `failures`
                    failures.append(f"{type(error).__name__}: {error}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.02)

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            worker = asyncio.create_task(work())
            yield
            # Let the round in progress end: cancelled in the middle of a query, the database driver's
            # thread would answer a loop that is gone by then.
            stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(worker), 30)
            except TimeoutError:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)

        app = FastAPI(lifespan=lifespan)

        @app.post("/register", status_code=status.HTTP_202_ACCEPTED)
        async def register(email: str) -> dict[str, int]:
            async with db.sessions.begin() as session:  # the user and the message in one transaction
                user = User(email=email, status="pending")
                session.add(user)
                await session.flush()
                session.add(OutboxMessage(user_id=user.id))
            return {"user_id": user.id}

        emails = ["ada@example.com", "bob@fail.example", "flaky@example.com"]
        with serve(app) as url:
            responses = [httpx.post(f"{url}/register", params={"email": email}) for email in emails]
            # Counted from here: on a slow machine the worker may go round many times while the later
            # users are still being registered.
            registered = dict(calls)
            deadline = time.monotonic() + 10
            while await _count(db, OutboxMessage, OutboxMessage.done_at.is_(None)) and time.monotonic() < deadline:
                if max(calls[email] - registered.get(email, 0) for email in emails) > 3:
                    break  # the same message carried out again and again: no need to wait
                await asyncio.sleep(0.05)
        async with db.sessions() as session:
            rows = (await session.execute(select(User.email, User.status).order_by(User.id))).all()
            statuses = {email: user_status for email, user_status in rows}
            not_done = await _count(db, OutboxMessage, OutboxMessage.done_at.is_(None))
        calls_before = dict(calls)
        again = await process_outbox(db.sessions, open_account)
    return {
        "responses": [{"status": response.status_code, "text": response.text} for response in responses],
        "statuses": statuses,
        "not_done": not_done,
        "failures": failures[:3],  # what the judgement quotes; a worker that fails every round fails 500 times
        "calls_before": calls_before,
        "again": again,
        "extra_calls": sum(calls.values()) - sum(calls_before.values()),
    }


@ex03.judgement
def _ex03(seen: Observation) -> str:
    responses = seen["responses"]
    assert all(response["status"] == 202 for response in responses), [response["text"] for response in responses]
    expected = {"ada@example.com": "active", "bob@fail.example": "refused", "flaky@example.com": "active"}
    statuses, not_done = seen["statuses"], seen["not_done"]
    if statuses.get("flaky@example.com") == "pending" and not not_done:
        raise AssertionError(
            _(
                "flaky@example.com is still 'pending' although every message is marked done: its first billing call "
                "failed (ConnectionError), and the message must then stay in the outbox for the next round. Mark a "
                "message done only after open_account has answered, in the same transaction as the status"
            )
        )
    assert not_done == 0, _(
        "{not_done} message(s) were still not done after 10 s; statuses {statuses}; the worker's failures: {failures}"
    ).format(not_done=not_done, statuses=statuses, failures=seen["failures"][:3])
    assert statuses == expected, _("the users' statuses are {statuses}; expected {expected}").format(
        statuses=statuses, expected=expected
    )
    repeated = {
        email: count for email, count in seen["calls_before"].items() if count > (2 if email.startswith("flaky") else 1)
    }
    assert not repeated, _(
        "open_account was called {calls} times: a message that is done must not be carried out again "
        "(mark it done, and select only messages that are not)"
    ).format(calls=repeated)
    again, extra_calls = seen["again"], seen["extra_calls"]
    assert (again, extra_calls) == (0, 0), _(
        "with nothing left to do, process_outbox returned {returned} and made {calls} call(s); expected 0 and none"
    ).format(returned=again, calls=extra_calls)
    return _("Exercise 3.3 solved: every message carried out once, the refused user marked, the failed call retried.")
