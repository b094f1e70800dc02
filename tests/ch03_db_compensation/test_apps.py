"""The chapter's two apps, as real uvicorn processes, behave as the notebook says, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import httpx
from sqlalchemy import text

from bgcourse import ChildProcess, Database, temporary_database, uvicorn_process

REGISTRATION_APP = "solutions.ch03_db_compensation.registration_app:app"
OUTBOX_APP = "solutions.ch03_db_compensation.outbox_app:app"


@contextlib.contextmanager
def app_process(app: str, **environment: str) -> Iterator[ChildProcess]:
    """As in the notebook: the child must say that *it* serves, not merely some process on that port."""
    with uvicorn_process(app, env=environment) as server:
        server.wait_for_output("Uvicorn running on", timeout=30)
        yield server


async def scalar(db: Database, sql: str, **parameters: object) -> object:
    async with db.engine.connect() as connection:
        return await connection.scalar(text(sql), parameters)


async def users_with(db: Database, email: str) -> object:
    return await scalar(db, "SELECT count(*) FROM users WHERE email = :email", email=email)


async def wait_for(condition: object, *, timeout: float = 10) -> None:
    assert callable(condition)
    for _ in range(int(timeout / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout} s")


def test_the_compensation_removes_the_refused_user_after_the_response(database: str) -> None:
    async def scenario() -> None:
        async with temporary_database() as db:
            assert db.engine.url.get_backend_name() == database
            with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="0.3") as server:
                accepted = httpx.post(f"{server.url}/register", params={"email": "ada@example.com"})
                refused = httpx.post(f"{server.url}/register", params={"email": "bob@fail.example"})
                assert accepted.status_code == 201, accepted.text
                assert refused.status_code == 502, refused.text
                assert await users_with(db, "bob@fail.example") == 1, "the row is still there at the response"

                async def bob_is_gone() -> bool:
                    return await users_with(db, "bob@fail.example") == 0

                await wait_for(bob_is_gone)
            assert await users_with(db, "ada@example.com") == 1

    asyncio.run(scenario())


def test_kill_9_loses_the_compensation_but_not_the_transactional_rollback(database: str) -> None:
    async def scenario() -> None:
        async with temporary_database() as db:
            for path, rows_left in (("/register", 1), ("/register-atomic", 0)):
                email = f"{path.strip('/')}@fail.example"
                with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="2") as server:
                    response = httpx.post(f"{server.url}{path}", params={"email": email})
                    server.send_signal(signal.SIGKILL)
                    assert server.wait(timeout=10) == -signal.SIGKILL
                assert response.status_code == 502, response.text
                assert await users_with(db, email) == rows_left, path

    asyncio.run(scenario())


def test_the_outbox_finishes_after_a_kill(database: str) -> None:
    async def scenario() -> None:
        async with temporary_database() as db:
            with app_process(OUTBOX_APP, DATABASE_URL=db.url, BILLING_SECONDS="2") as server:
                for email in ("ada@example.com", "bob@fail.example"):
                    assert httpx.post(f"{server.url}/register", params={"email": email}).status_code == 202
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=10)
            assert await scalar(db, "SELECT count(*) FROM outbox WHERE done_at IS NULL") == 2
            with app_process(OUTBOX_APP, DATABASE_URL=db.url):

                async def outbox_done() -> bool:
                    return await scalar(db, "SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0

                await wait_for(outbox_done)
            async with db.engine.connect() as connection:
                rows = (await connection.execute(text("SELECT email, status FROM users ORDER BY id"))).all()
            assert [tuple(row) for row in rows] == [("ada@example.com", "active"), ("bob@fail.example", "refused")]

    asyncio.run(scenario())
