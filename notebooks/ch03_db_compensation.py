# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3: Database transaction compensation, and a task's own session
#
# Chapter 2 kept its users in a dictionary. Real users live in a database, and a database brings
# two questions that background tasks make sharp. First: when a registration has written its user
# and a later step fails, who removes the user again, and what if that never happens? Second: a
# background task runs after the response; which database session may it use? Everything here is
# real: SQLAlchemy's asyncio API on a real database, uvicorn servers in threads and in processes
# of their own, and `kill -9`. Run the cells from top to bottom; each statement of fact is followed
# by a cell that proves it.
#
# **You will learn**
#
# - SQLAlchemy 2's asyncio API: `AsyncEngine`, `async_sessionmaker`, `AsyncSession`, on SQLite
#   through `aiosqlite`; the same code runs on PostgreSQL through `asyncpg` when `DATABASE_URL`
#   says so;
# - the compensation pattern: a task that undoes a committed write after a later step failed,
#   and why it is fragile: if the process dies before the task runs, the undo never happens;
# - better designs: undo inside the request's transaction, compensations that are harmless to
#   repeat (idempotent), and the outbox, where the work still to do is written in the same
#   transaction as the data;
# - when a dependency with `yield` closes its session, relative to the response and the tasks,
#   on FastAPI 0.163 and on the versions before it, and what `Depends(..., scope="function")` does;
# - what goes wrong when a task uses the request's session or its ORM objects
#   (`MissingGreenlet`, `DetachedInstanceError`, a connection nobody returns), and the pattern
#   that always works: pass ids, and open a session inside the task.

# %% [markdown]
# ## 0. Set-up: the versions, the database, and the course's helpers
#
# The cell prints the versions this chapter was proved on, and says so if yours differ.

# %%
import asyncio
import contextlib
import gc
import inspect
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import requires, version
from pathlib import Path
from typing import Annotated

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "sqlalchemy": "2.1.9",
    "aiosqlite": "0.22.1",
    "asyncpg": "0.32.0",
    "greenlet": "3.5.6",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown]
# **The database.** Without any set-up the chapter uses SQLite, a database in one file, through
# the `aiosqlite` driver: `temporary_database()` makes a new file in a temporary folder for each
# cell, creates the tables, and removes the folder when the cell is done. To run the chapter on
# PostgreSQL instead, start Jupyter with the environment variable `DATABASE_URL` set, for example
# `DATABASE_URL=postgresql+asyncpg://user:password@localhost:5432/course_db`, naming an empty
# database made for the course (the cells create their tables and drop them afterwards). The
# course's tests run every app of this chapter on both.
#
# From the course's helpers, besides `serve` (a uvicorn server in a thread of the notebook):
#
# - `database_url()`, `make_engine(url)`, `make_sessionmaker(engine)`, `create_tables(...)`:
#   what an app uses to reach its database (section 1);
# - `temporary_database(metadata)`: a fresh database for one `async with` block;
# - `uvicorn_process(app)`: a real `python -m uvicorn` in a child process, which the notebook can
#   kill (section 3), and `read_module_source` to show the code such a process runs (the cell
#   below wraps it as `app_process(app, NAME=value, ...)`, with the child's environment);
# - `logged_errors(records)`: the exceptions a server logged, by type and message;
# - `version_table(...)`: what `make versions` measured on older FastAPI releases (section 7).

# %%
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from IPython.display import Code
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, event, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Select
from tqdm.auto import tqdm

from bgcourse import (
    DATABASE_URL_VARIABLE,
    ChildProcess,
    Database,
    Timeline,
    TimelineMiddleware,
    capture_logs,
    create_tables,
    find_postgres_bin,
    load_quiz,
    logged_errors,
    make_engine,
    make_sessionmaker,
    read_module_source,
    serve,
    temporary_database,
    throwaway_postgres,
    uvicorn_process,
    version_table,
)

if os.environ.get(DATABASE_URL_VARIABLE):
    print("DATABASE_URL is set: the cells run on the database it names.")
else:
    print("DATABASE_URL is not set: each cell gets a SQLite file in a temporary folder of its own.")


async def count_rows(db: Database, sql: str, **parameters: object) -> int:
    """Run a `SELECT count(*) ...` on a connection of its own, as another program would."""
    async with db.engine.connect() as connection:
        return int(await connection.scalar(text(sql), parameters) or 0)


@contextlib.contextmanager
def app_process(app: str, **environment: str) -> Iterator[ChildProcess]:
    """`python -m uvicorn <app>` in a child process, with these environment variables, once it serves."""
    with uvicorn_process(app, env=environment) as server:
        server.wait_for_output("Uvicorn running on", timeout=30)  # uvicorn says so once it has its port
        yield server


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Ask `condition` every 20 ms until it is true. The timeout only ends a wait that would never end."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.02)


# %% [markdown]
# ## 1. SQLAlchemy's asyncio API, on SQLite or PostgreSQL
#
# Four pieces make up SQLAlchemy 2's asyncio API, and an app uses them in this order:
#
# 1. an `AsyncEngine` (`make_engine(url)` calls `create_async_engine`): one per process; it
#    knows the database and keeps a pool of connections;
# 2. an `async_sessionmaker` (`make_sessionmaker(engine)`): a factory of sessions. The course's
#    sets `expire_on_commit=False`, so that an object keeps its values after a commit
#    (section 8 shows what happens without it);
# 3. `async with sessions.begin() as session:` a session with a transaction that commits when
#    the block ends and rolls back if the block raises;
# 4. `await session.execute(...)`, `await session.scalars(select(...))`: every statement that
#    reaches the database is awaited.
#
# **Fact 1.1.** The same code writes and reads rows on SQLite (a file in a temporary folder,
# which is gone after the block) and on PostgreSQL; only the URL differs.

# %%
class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)


async with temporary_database(Base.metadata) as db:
    async with db.sessions.begin() as session:  # BEGIN; the INSERTs; COMMIT when the block ends
        session.add_all([User(email="ada@example.com"), User(email="bob@example.com")])
    async with db.sessions() as session:
        emails = list(await session.scalars(select(User.email).order_by(User.id)))
    backend, driver = db.engine.url.get_backend_name(), db.engine.url.get_driver_name()
    sqlite_file = Path(db.engine.url.database or "") if backend == "sqlite" else None

print(f"the database: {backend}, through the {driver} driver")
print(f"two users written in one transaction, read back: {emails}")
if sqlite_file is not None:
    print(f"after the block, the SQLite file still exists: {sqlite_file.exists()}")
assert emails == ["ada@example.com", "bob@example.com"]
assert sqlite_file is None or not sqlite_file.exists()

# %% [markdown]
# The transaction is what the rest of the chapter builds on: what happens inside one either
# happens entirely or not at all.
#
# **Fact 1.2.** If a `sessions.begin()` block raises, nothing it wrote stays, even a row whose
# `INSERT` had already run (`session.flush()` sends it, and the row gets its id).

# %%
class LaterStepFailed(Exception):
    pass


async with temporary_database(Base.metadata) as db:
    try:
        async with db.sessions.begin() as session:
            user = User(email="cy@example.com")
            session.add(user)
            await session.flush()  # the INSERT runs now
            id_inside = user.id
            raise LaterStepFailed("a later step failed")
    except LaterStepFailed:
        pass
    rows_after = await count_rows(db, "SELECT count(*) FROM users")

print(f"inside the transaction the INSERT had given the user id {id_inside}")
print(f"after the block raised, the table holds {rows_after} rows: the transaction was rolled back")
assert id_inside is not None and rows_after == 0

# %% [markdown]
# The asyncio API needs one more package. SQLAlchemy's ORM is written as ordinary, blocking
# Python; its asyncio API runs that code in a *greenlet* (a lightweight coroutine from the
# `greenlet` package) and suspends the greenlet wherever the driver has to `await`. SQLAlchemy
# 2.1 does not install `greenlet` by default. Its documentation says: "Changed in version 2.1:
# greenlet is no longer installed by default; to use the asyncio extension, the
# `sqlalchemy[asyncio]` target must be used." So install it as
#
# ```
# pip install "sqlalchemy[asyncio]"
# ```
#
# as the course's requirements do.
#
# **Fact 1.3.** SQLAlchemy's own package metadata names `greenlet` as a requirement of its
# `asyncio` extra only, and `greenlet` is installed here. In a fresh Python in which
# `import greenlet` fails (the cell blocks it, as if it were not installed), importing
# `sqlalchemy.ext.asyncio` raises an `ImportError` that says to install `sqlalchemy[asyncio]`.

# %%
greenlet_requirements = [line for line in requires("sqlalchemy") or [] if line.startswith("greenlet")]
without_greenlet = subprocess.run(
    [sys.executable, "-c", "import sys; sys.modules['greenlet'] = None; import sqlalchemy.ext.asyncio"],
    capture_output=True, text=True, timeout=120,
)
error_line = without_greenlet.stderr.strip().splitlines()[-1]
print(f"SQLAlchemy {version('sqlalchemy')} asks for greenlet as: {greenlet_requirements}")
print(f"greenlet installed here: {version('greenlet')}")
print(f"without greenlet, `import sqlalchemy.ext.asyncio` exits with {without_greenlet.returncode}:\n    {error_line}")
assert greenlet_requirements == ['greenlet>=1; extra == "asyncio"']
assert without_greenlet.returncode != 0
assert error_line.startswith("ImportError: The SQLAlchemy asyncio module requires that the Python 'greenlet' library")
assert "pip install sqlalchemy[asyncio]" in error_line

# %% [markdown]
# ## 2. A registration with a compensation task
#
# The chapter's example is a registration that has two steps: write the user, then open an
# account at a billing service (another system; it refuses every address at `fail.example`). The
# first design commits the user at once, because it does not want to hold a database transaction
# open while it waits for another service. When billing refuses, the user must go again, and
# that undo, a **compensation**, is slow (it stands for cancelling what other services already
# did), so it goes into a background task and the client gets its `502 Bad Gateway` at once.
#
# The app runs as a real `python -m uvicorn` process, as in production; it is a module of the
# course, shown here:

# %%
Code(read_module_source("solutions.ch03_db_compensation.registration_app"), language="python")

# %% [markdown]
# Note two choices in it: the endpoint *returns* its `502` instead of raising `HTTPException`
# (Fact 2.2 shows why), and the task gets the user's *id* and opens a session of its own
# (sections 7 to 9 show why).
#
# **Fact 2.1.** A refused registration answers `502` at once; when the client has that answer,
# the user's row is still in the table, and the compensation removes it afterwards, no sooner
# than the half second it takes (`UNDO_SECONDS`). A successful registration keeps its row.
# (Starting the app's process takes a few seconds; the progress bar shows the steps.)

# %%
REGISTRATION_APP = "solutions.ch03_db_compensation.registration_app:app"
UNDO_SECONDS = 0.5  # how long the app's compensation takes before it deletes the row


async def users_with(db: Database, email: str) -> int:
    return await count_rows(db, "SELECT count(*) FROM users WHERE email = :email", email=email)


async def no_user(db: Database, email: str) -> bool:
    return await users_with(db, email) == 0


with tqdm(total=2, desc="start the app's process; register ada and bob") as progress:
    async with temporary_database() as db:  # the app creates its table when it starts
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS=str(UNDO_SECONDS)) as server:
            progress.update()
            accepted = httpx.post(f"{server.url}/register", params={"email": "ada@example.com"})
            refused_sent = time.monotonic()
            refused = httpx.post(f"{server.url}/register", params={"email": "bob@fail.example"})
            refused_answered = time.monotonic()
            bob_rows_at_response = await users_with(db, "bob@fail.example")
            await eventually(lambda: no_user(db, "bob@fail.example"), "the compensation's delete of bob's row")
            bob_gone = time.monotonic()
            progress.update()
        ada_rows = await users_with(db, "ada@example.com")

print(f"ada@example.com:  {accepted.status_code} {accepted.json()}; rows for ada afterwards: {ada_rows}")
print(f"bob@fail.example: {refused.status_code} {refused.json()['detail']!r}")
print(f"when the client had the 502, the table held {bob_rows_at_response} row for bob;"
      f" the compensation removed it {bob_gone - refused_answered:.1f} s later")
assert accepted.status_code == 201 and ada_rows == 1
assert refused.status_code == 502 and bob_rows_at_response == 1
# The task starts after the response and waits UNDO_SECONDS before it deletes: a lower bound, never too tight.
assert bob_gone - refused_sent >= UNDO_SECONDS, "the row went only after the compensation's UNDO_SECONDS"

# %% [markdown]
# An error answer is where compensations are scheduled, and the usual way to answer with an
# error is to raise `HTTPException`. FastAPI attaches the task list to the response the endpoint
# *returns*; a raised exception is turned into a new response by the exception handler, and that
# one has no tasks.
#
# **Fact 2.2.** A task added before the endpoint raises `HTTPException(502)` never runs. The same
# task, with the `502` returned as a `JSONResponse`, runs.

# %%
app = FastAPI()
ran: list[str] = []


@app.post("/raises")
async def raises(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(ran.append, "the task of the endpoint that raised")
    raise HTTPException(status_code=502, detail="the billing service refused")


@app.post("/returns", response_model=None)
async def returns(background_tasks: BackgroundTasks) -> JSONResponse:
    background_tasks.add_task(ran.append, "the task of the endpoint that returned")
    return JSONResponse({"detail": "the billing service refused"}, status_code=502)


with serve(app) as url:  # when the block ends, the server has run every task it had
    answers = {path: httpx.post(f"{url}{path}").status_code for path in ("/raises", "/returns")}

print(f"answers: {answers}")
print(f"tasks that ran: {ran}")
assert answers == {"/raises": 502, "/returns": 502}
assert ran == ["the task of the endpoint that returned"]

# %% [markdown]
# ## 3. Why it is fragile: the process can die before the task runs
#
# A background task lives only in the memory of the process that answered the request. Nothing
# about it is written anywhere. If that process ends before the task has run (`kill -9`, the
# operating system's out-of-memory killer, a crashed machine, a deployment that stops the old
# process before its tasks are done), the task is gone, and no other process knows it existed.
#
# **Fact 3.1.** Killed with `SIGKILL` after it has answered `502` but while its compensation is
# still waiting, the process leaves the refused user in the table, and a freshly started process
# does not remove it either: it carries out a compensation of its own (for a new refused
# registration), and the first user's row is still there.
#
# So that the kill surely comes while the compensation waits, the first process gets a slow one
# (`UNDO_SECONDS=60`); the restarted process has the usual half second.

# %%
with tqdm(total=3, desc="start; register cy; kill -9; restart; register dan") as progress:
    async with temporary_database() as db:
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="60") as server:
            progress.update()
            refused = httpx.post(f"{server.url}/register", params={"email": "cy@fail.example"})
            server.send_signal(signal.SIGKILL)  # kill -9: no shutdown, no finally, no task
            exit_status = server.wait(timeout=30)
        rows_after_kill = await users_with(db, "cy@fail.example")
        progress.update()
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS=str(UNDO_SECONDS)) as restarted:
            dan = httpx.post(f"{restarted.url}/register", params={"email": "dan@fail.example"})
            await eventually(lambda: no_user(db, "dan@fail.example"), "the restarted process's compensation for dan")
            rows_after_restart = await users_with(db, "cy@fail.example")
        progress.update()

print(f"the client had its {refused.status_code}; then the process was killed (exit status {exit_status})")
print(f"rows for cy@fail.example after the kill: {rows_after_kill}; after a restart, once the new process had"
      f" undone a refused registration of its own (dan's, {dan.status_code}): {rows_after_restart}")
assert refused.status_code == 502 and exit_status == -signal.SIGKILL
assert dan.status_code == 502
assert rows_after_kill == 1 and rows_after_restart == 1, "the compensation was lost with the process"

# %% [markdown]
# The user cy now exists in the database but has no billing account, and nothing in the system
# remembers that it should be removed. Retrying the task inside the process (chapter 4) does not
# help: the retry lives in the same memory. The next sections make the undo unnecessary, harmless
# to repeat, or durable.

# %% [markdown]
# ## 4. Better: undo inside the request's transaction
#
# When the later step can run while the transaction is still open, there is nothing to
# compensate: do the insert and the call in one transaction, and let the failure roll the insert
# back (Fact 1.2). `POST /register-atomic` in the module above does that: inside one
# `async with sessions.begin()` block it adds the user, calls `await session.flush()`, and then
# awaits the billing call; the block commits when it ends, and rolls back if the call raised.
#
# **Fact 4.1.** In the module's source, `register_atomic` opens the transaction, flushes, and
# calls billing, in that order. Run with the same steps on an engine whose events note every
# statement, a successful registration gives: `BEGIN`, the `INSERT` (after which the user has its
# id), the billing call (during which another connection sees no row for the user), and only then
# `COMMIT`. A refused one gives the same first three, then `ROLLBACK`.

# %%
registration_source = read_module_source("solutions.ch03_db_compensation.registration_app")
atomic_source = registration_source[registration_source.index("async def register_atomic"):]
steps = ["async with sessions.begin() as session:", "await session.flush()", "await create_billing_account(email)"]
print("register_atomic, in the order its source has them:", *sorted(steps, key=atomic_source.index), sep="\n    ")
assert sorted(steps, key=atomic_source.index) == steps and all(step in atomic_source for step in steps)


class BillingRefused(Exception):
    pass


async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    async with engine.connect():  # the first connection runs the dialect's own set-up queries: not traced
        pass
    trace: list[str] = []
    event.listen(engine.sync_engine, "begin", lambda connection: trace.append("BEGIN"))
    event.listen(engine.sync_engine, "before_cursor_execute", lambda _c, _k, sql, *_: trace.append(sql.split()[0]))
    event.listen(engine.sync_engine, "commit", lambda connection: trace.append("COMMIT"))
    event.listen(engine.sync_engine, "rollback", lambda connection: trace.append("ROLLBACK"))
    sessions = make_sessionmaker(engine)

    async def create_billing_account(email: str) -> None:
        trace.append(f"billing call (rows for the user seen by another connection: {await users_with(db, email)})")
        if email.endswith("@fail.example"):
            raise BillingRefused(email)

    traces: dict[str, list[str]] = {}
    for email in ("dee@example.com", "eve@fail.example"):
        with contextlib.suppress(BillingRefused):
            async with sessions.begin() as session:  # the steps of register_atomic
                user = User(email=email)
                session.add(user)
                await session.flush()
                trace.append(f"flush() returned: the user has id {user.id}")
                await create_billing_account(email)
        traces[email] = trace.copy()
        trace.clear()
    rows_after = {email: await users_with(db, email) for email in traces}
    await engine.dispose()

for email, steps_run in traces.items():
    print(f"{email}: " + " -> ".join(steps_run) + f"; rows afterwards: {rows_after[email]}")
billing_step = "billing call (rows for the user seen by another connection: 0)"
for email, last in (("dee@example.com", "COMMIT"), ("eve@fail.example", "ROLLBACK")):
    assert [step if not step.startswith("flush()") else "flush" for step in traces[email]] == [
        "BEGIN", "INSERT", "flush", billing_step, last
    ], traces[email]
assert rows_after == {"dee@example.com": 1, "eve@fail.example": 0}

# %% [markdown]
# **Fact 4.2.** Treated the same way (a refused registration, then `kill -9` right after the
# `502`), the compensating endpoint leaves a row behind and the transactional one leaves none;
# a successful transactional registration has its row committed when the client has its `201`.

# %%
outcomes: dict[str, tuple[int, int, int]] = {}
with tqdm(total=3, desc="a process for each: /register, /register-atomic, then a good /register-atomic") as progress:
    async with temporary_database() as db:
        for path in ("/register", "/register-atomic"):
            email = f"{path.strip('/')}@fail.example"
            # UNDO_SECONDS=60: the kill surely comes while the compensation still waits.
            with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="60") as server:
                answer = httpx.post(f"{server.url}{path}", params={"email": email})
                rows_at_response = await users_with(db, email)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=30)
            outcomes[path] = (answer.status_code, rows_at_response, await users_with(db, email))
            progress.update()
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url) as server:
            welcome = httpx.post(f"{server.url}/register-atomic", params={"email": "dee@example.com"})
            dee_rows_at_response = await users_with(db, "dee@example.com")
        progress.update()

print(f"{'endpoint':18} {'answer':>6} {'rows at the answer':>19} {'rows after kill -9':>19}")
for path, (code, at_response, after_kill) in outcomes.items():
    print(f"{path:18} {code:>6} {at_response:>19} {after_kill:>19}")
print(f"a successful /register-atomic: {welcome.status_code}, and {dee_rows_at_response} row when the client had it")
assert outcomes["/register"] == (502, 1, 1)
assert outcomes["/register-atomic"] == (502, 0, 0)
assert welcome.status_code == 201 and dee_rows_at_response == 1

# %% [markdown]
# The price: the transaction, and the connection it runs on, stay open for as long as the
# billing call takes (on SQLite the whole database's write lock is held that long). For a call of
# a few milliseconds that is the right trade; for a slow or unreliable one, section 6 shows a
# design that holds nothing open. And a transaction can only undo what is in the database: an
# e-mail already sent stays sent.

# %% [markdown]
# ## 5. Make compensations idempotent
#
# A compensation can run more than once: a retry after a timeout that had in fact succeeded
# (chapter 4), a message carried out again after a crash (section 6). So it must be
# **idempotent**: a second run must change nothing and raise nothing. A statement that says what
# the result should be (`DELETE FROM users WHERE id = ...`) is idempotent; code that first loads
# the object and then acts on it usually is not.
#
# **Fact 5.1.** Run twice by one request (a compensation and its retry), a `DELETE ... WHERE id`
# deletes one row, then none, quietly. Loading the user with `session.get` and passing it to
# `session.delete` works once; the second run raises
# `UnmappedInstanceError: Class 'builtins.NoneType' is not mapped` (the user is gone, `get`
# returned `None`).

# %%
async with temporary_database(Base.metadata) as db:
    async with db.sessions.begin() as session:
        session.add_all([User(id=1, email="eve@example.com"), User(id=2, email="fay@example.com")])
    runs: dict[str, list[str]] = {"delete": [], "get": []}

    async def remove_with_delete(user_id: int) -> None:
        async with db.sessions.begin() as session:
            result = await session.execute(delete(User).where(User.id == user_id))
            runs["delete"].append(f"deleted {result.rowcount} row(s)")

    async def remove_with_get(user_id: int) -> None:
        async with db.sessions.begin() as session:
            user = await session.get(User, user_id)
            await session.delete(user)
            runs["get"].append("deleted 1 row")

    app = FastAPI()

    @app.post("/undo/{how}/{user_id}")
    async def undo(how: str, user_id: int, background_tasks: BackgroundTasks) -> dict[str, str]:
        compensation = remove_with_delete if how == "delete" else remove_with_get
        background_tasks.add_task(compensation, user_id)
        background_tasks.add_task(compensation, user_id)  # the retry
        return {"undoing": how}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        httpx.post(f"{url}/undo/delete/1")
        httpx.post(f"{url}/undo/get/2")
    errors = logged_errors(records)
    users_left = await count_rows(db, "SELECT count(*) FROM users")

print(f"DELETE ... WHERE id, run twice:  {runs['delete']}")
print(f"get, then delete, run twice:     {runs['get']}, then the second run raised:")
for error in errors:
    print(f"    {error.type}: {error.message}")
print(f"users left: {users_left}")
assert runs == {"delete": ["deleted 1 row(s)", "deleted 0 row(s)"], "get": ["deleted 1 row"]}
assert [error.type for error in errors] == ["UnmappedInstanceError"] and users_left == 0

# %% [markdown]
# The same idea works for a compensation that *marks* a row instead of deleting it: put the
# state it expects into the `WHERE` clause (`UPDATE users SET status = 'refused' WHERE id = ...
# AND status = 'pending'`), as the outbox worker of section 6 does, so that a second run finds
# nothing to change. Where a compensation also gives something back (a seat, a credit), give it
# back only if this run really changed the row; exercise 3.2 does that.

# %% [markdown]
# ## 6. The outbox: write down what is left to do, in the same transaction
#
# The durable version of "do this later" is a row in the database. The registration writes the
# user (status `pending`) *and* an outbox message ("open a billing account for user 7") in one
# transaction, and answers `202 Accepted`. A worker reads unfinished messages, does the work,
# and then, in one transaction, records the outcome (the user becomes `active`, or `refused`:
# the compensation marks the row) and marks the message done. If the process dies anywhere in
# between, the message is still there, not done, and the next worker does it. Here the worker is
# a loop started by the app's lifespan, in the same process:

# %%
Code(read_module_source("solutions.ch03_db_compensation.outbox_app"), language="python")

# %% [markdown]
# **Fact 6.1.** Two registrations (one to be refused) are answered `202`; right after that the
# process is killed, when its worker has at most begun the first billing call (each takes a
# minute in that process, `BILLING_SECONDS=60`, so that none can be finished before the kill).
# Both users are `pending` and both messages are not done. A new process, with quick billing
# calls, finishes them: one user `active`, the other `refused`, every message done.

# %%
OUTBOX_APP = "solutions.ch03_db_compensation.outbox_app:app"


async def outbox_state(db: Database) -> tuple[dict[str, str], int]:
    """The users' statuses by e-mail, and how many outbox messages are not done."""
    async with db.engine.connect() as connection:
        rows = await connection.execute(text("SELECT email, status FROM users ORDER BY id"))
        statuses = {email: state for email, state in rows}
    return statuses, await count_rows(db, "SELECT count(*) FROM outbox WHERE done_at IS NULL")


async def outbox_empty(db: Database) -> bool:
    return (await outbox_state(db))[1] == 0


with tqdm(total=2, desc="start; register ada and bob; kill -9; restart; wait for the outbox") as progress:
    async with temporary_database() as db:
        with app_process(OUTBOX_APP, DATABASE_URL=db.url, BILLING_SECONDS="60") as server:
            answers = [httpx.post(f"{server.url}/register", params={"email": email})
                       for email in ("ada@example.com", "bob@fail.example")]
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
        after_kill = await outbox_state(db)
        progress.update()
        with app_process(OUTBOX_APP, DATABASE_URL=db.url) as restarted:
            started = time.monotonic()
            await eventually(lambda: outbox_empty(db), "the restarted worker's emptying of the outbox")
            finished_after = time.monotonic() - started
        after_restart = await outbox_state(db)
        progress.update()

print("answers:", [(answer.status_code, answer.json()["status"]) for answer in answers])
print(f"after kill -9:    users {after_kill[0]}, messages not done: {after_kill[1]}")
print(f"after a restart:  users {after_restart[0]}, messages not done: {after_restart[1]}"
      f" ({finished_after:.1f} s after it started)")
assert [answer.status_code for answer in answers] == [202, 202]
assert after_kill == ({"ada@example.com": "pending", "bob@fail.example": "pending"}, 2)
assert after_restart == ({"ada@example.com": "active", "bob@fail.example": "refused"}, 0)

# %% [markdown]
# What this minimal outbox does and does not give you:
#
# - **Nothing is lost**: the intent was committed with the user, so a crash only delays it.
# - **At least once, not exactly once**: a message is done only once its outcome is committed,
#   so if a billing call was under way when the process died, the next process makes it again.
#   The other service must accept a repeat, for example by taking the message id as an
#   idempotency key; and the worker's own steps must be idempotent (section 5: the status
#   changes only from `pending`).
# - **One worker**: two processes running this loop would both take the oldest message
#   (Fact 6.2). On PostgreSQL, `SELECT ... FOR UPDATE SKIP LOCKED` lets several workers share the
#   table (Fact 6.3).
#
# Chapter 7 completes the picture with a durable queue, where a separate worker process takes the
# place of this loop.
#
# Two workers sharing the outbox means two connections, each with a transaction of its own,
# asking the worker's question ("the oldest message not done") at the same time. The cells below
# ask it on an outbox table with three messages: the first worker takes one in its transaction,
# and while that transaction is still open, the second asks.
#
# **Fact 6.2.** Without a lock, both workers take message 1. On SQLite, `FOR UPDATE SKIP LOCKED`
# does not exist: written out, it is a syntax error, and SQLAlchemy's
# `.with_for_update(skip_locked=True)` is simply left out of the SQL, so both workers still take
# message 1.

# %%
outbox_tables = MetaData()
outbox = Table("outbox", outbox_tables, Column("id", Integer, primary_key=True), Column("done_at", DateTime))
oldest_not_done = select(outbox.c.id).where(outbox.c.done_at.is_(None)).order_by(outbox.c.id).limit(1)
skipping_locked = oldest_not_done.with_for_update(skip_locked=True)


async def two_workers_take(engine: AsyncEngine, query: Select[tuple[int]]) -> tuple[int | None, int | None]:
    """Three messages; worker 1 takes one in its transaction, and while that is open worker 2 asks too."""
    async with engine.begin() as connection:
        await connection.execute(delete(outbox))
        await connection.execute(insert(outbox), [{"id": number} for number in (1, 2, 3)])
    async with engine.connect() as first, engine.connect() as second:
        async with first.begin():
            first_took = await first.scalar(query)
            async with second.begin():
                second_took = await second.scalar(query)
    return first_took, second_took


async with temporary_database(outbox_tables) as db:
    backend = db.engine.dialect.name
    without_lock = await two_workers_take(db.engine, oldest_not_done)
    print(f"{backend}, without a lock: worker 1 took message {without_lock[0]}, worker 2 message {without_lock[1]}")
    assert without_lock == (1, 1)
    if backend == "sqlite":
        try:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"))
            written_out = "accepted"
        except OperationalError as error:
            written_out = str(error.orig)
        compiled = " ".join(str(skipping_locked.compile(db.engine)).split())
        with_for_update = await two_workers_take(db.engine, skipping_locked)
        print(f"sqlite, FOR UPDATE SKIP LOCKED written out: {written_out}")
        print(f"sqlite, .with_for_update(skip_locked=True) compiles to: {compiled}")
        print(f"sqlite, with it: worker 1 took message {with_for_update[0]}, worker 2 message {with_for_update[1]}")
        assert written_out == 'near "FOR": syntax error'
        assert "FOR UPDATE" not in compiled and with_for_update == (1, 1)

# %% [markdown]
# **Fact 6.3.** On PostgreSQL, with `FOR UPDATE SKIP LOCKED`, worker 1's query locks message 1
# until its transaction ends, and worker 2's query passes over the locked row: it takes message
# 2. The cell runs on the chapter's database if that is PostgreSQL; otherwise on a throwaway
# PostgreSQL server (`throwaway_postgres()`, from the course's helpers), if this machine has
# PostgreSQL installed. Where it has neither, the cell says that the fact is not shown here.

# %%
async def skip_locked_on(engine: AsyncEngine) -> tuple[str, tuple[int | None, int | None]]:
    compiled = " ".join(str(skipping_locked.compile(engine)).split())
    return compiled, await two_workers_take(engine, skipping_locked)


if backend == "postgresql":
    async with temporary_database(outbox_tables) as db:
        compiled, taken = await skip_locked_on(db.engine)
elif find_postgres_bin() is not None:
    with throwaway_postgres() as postgres:
        engine = make_engine(postgres.url(), pooled=False)
        try:
            await create_tables(engine, outbox_tables)
            compiled, taken = await skip_locked_on(engine)
        finally:
            await engine.dispose()
else:
    compiled, taken = "", (None, None)
    print("PostgreSQL is not installed here (and DATABASE_URL does not name it): Fact 6.3 is not shown on this machine.")
if compiled:
    print(f"postgresql, the query: {compiled}")
    print(f"postgresql, FOR UPDATE SKIP LOCKED: worker 1 took message {taken[0]}, worker 2 message {taken[1]}")
    assert compiled.endswith("FOR UPDATE SKIP LOCKED") and taken == (1, 2)

# %% [markdown]
# ## 7. When does a dependency with `yield` close its session?
#
# The usual way to give an endpoint a session is a dependency with `yield`: the code before
# `yield` opens the session, and the code after it closes it. FastAPI's documentation calls that
# second part the dependency's *exit code* (code, not a number). A background task can use the
# request's session only if the exit code has not run yet when the task starts.
#
# When the exit code runs has changed twice, and since FastAPI 0.121.0 you can choose it. The
# choice is the dependency's *scope*, an argument of `Depends`:
#
# - `Depends(get_session, scope="function")`: the exit code runs when the endpoint function has
#   returned, before the response is sent;
# - `scope="request"`, the default for a dependency with `yield`: it runs after the response is
#   sent, and (Fact 7.1 shows) after the background tasks too.
#
# FastAPI keeps the exit codes it has to run in an *exit stack* (a `contextlib.AsyncExitStack`),
# one for each scope of each request; closing the stack runs them, last in, first out. So the
# question "when does the session close?" is the question "when does FastAPI close that stack?".
#
# **Fact 7.1.** On FastAPI 0.163.2, a dependency with `yield` and the default scope runs its exit
# code after the response was sent *and after the background task ended*. With
# `scope="function"` it runs before the response is sent, so before the task starts.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


def resource_for(lane: str) -> Callable[[], AsyncIterator[str]]:
    async def dependency() -> AsyncIterator[str]:
        timeline.record(lane, "dependency set-up")
        yield "a session, say"
        timeline.record(lane, "dependency exit code")

    return dependency


async def slow_task(lane: str) -> None:
    timeline.record(lane, "task start")
    await asyncio.sleep(0.3)
    timeline.record(lane, "task end")


request_scoped = resource_for("default scope")
function_scoped = resource_for('scope="function"')


@app.post("/default")
async def with_default_scope(
    background_tasks: BackgroundTasks, resource: Annotated[str, Depends(request_scoped)]
) -> dict[str, str]:
    background_tasks.add_task(slow_task, "default scope")
    return {"scope": "request"}


@app.post("/function")
async def with_function_scope(
    background_tasks: BackgroundTasks, resource: Annotated[str, Depends(function_scoped, scope="function")]
) -> dict[str, str]:
    background_tasks.add_task(slow_task, 'scope="function"')
    return {"scope": "function"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/default", lane="default scope")
    timeline.request(client, "POST", "/function", lane='scope="function"')

server_side = ("dependency set-up", "dependency exit code", "response sent", "task start", "task end")
orders = {}
for lane in ("default scope", 'scope="function"'):
    orders[lane] = [event.what for event in timeline.events if event.lane == lane and event.what in server_side]
    print(f"{lane:17} " + " -> ".join(orders[lane]))
exit_after_task = timeline.at("default scope", "dependency exit code") - timeline.at("default scope", "task end")
print(f"default scope: the exit code ran {1000 * exit_after_task:.1f} ms after the task ended")
assert orders["default scope"] == [
    "dependency set-up", "response sent", "task start", "task end", "dependency exit code"
]
assert orders['scope="function"'] == [
    "dependency set-up", "dependency exit code", "response sent", "task start", "task end"
]

# %% [markdown]
# In `fastapi/routing.py` of 0.163.2 you can see why: the request's exit stack closes only after
# `await response(...)`, and a Starlette response runs its background tasks inside that call.
#
# Older releases behaved differently. The course measures this on each of them: `make versions`
# installs each release below in an environment of its own, runs the same small app on a real
# uvicorn server, and records the order of events (the exit code, the response leaving the app,
# the task). The table is what it recorded; a test of the course measures it again.
#
# **Fact 7.2.** The default exit code ran after the response and the tasks on FastAPI 0.103.2
# and 0.105.0, *before the response* on 0.106.0 to 0.117.0, and after the response and the
# tasks again from 0.118.0. `scope="function"` exists from 0.121.0 and runs it before the
# response. The last row is the pinned version: the same as the cell above.

# %%
exit_code_history = version_table("yield_exit", "yield_exit_function_scope")
default_exit = {stack.name: outcomes[0] for stack, outcomes in exit_code_history.rows}
assert {name for name, outcome in default_exit.items() if outcome.startswith("before")} == {
    "FastAPI 0.106.0", "FastAPI 0.115.0", "FastAPI 0.117.0"
}
assert exit_code_history.outcome("FastAPI 0.163.2", "yield_exit") == "after the response and the tasks"
assert exit_code_history.outcome("FastAPI 0.163.2", "yield_exit_function_scope").startswith("before the response")
exit_code_history

# %% [markdown]
# FastAPI's release notes say the same:
#
# - 0.106.0, under *Breaking Changes*: "Using resources from dependencies with `yield` in
#   background tasks is no longer supported." Before it, the exit code ran "*after* the response
#   was sent", by design, "to allow using the same objects 'yielded' by dependencies inside of
#   background tasks".
# - 0.118.0: "This behavior was reverted in 0.118.0, to make the exit code after `yield` be
#   executed after the response is sent."
# - 0.121.0: "Add support for dependencies with scopes". (That note says `scope="request"` is
#   the one that exits before the response; the documentation, the code and the table agree that
#   it is `"function"`.)
#
# So the same code hands a background task an open session on FastAPI 0.163 (and before
# 0.106), and a closed one on 0.106 to 0.117, or with `scope="function"`. The next section shows
# both situations; neither is what you want.

# %% [markdown]
# ## 8. What goes wrong when a task uses the request's session
#
# Section 7 showed that a background task that is handed the request's session gets it either
# closed or still open, depending on the FastAPI version and the dependency's scope. Neither is
# safe, and neither are the objects that session loaded:
#
# - **A closed session** does not complain. It quietly starts a new transaction on a new
#   connection, which nobody gives back (Fact 8.1); enough such requests leave the pool with no
#   connection to give, and the next request fails (Fact 8.2).
# - **An open session** works, but the request's connection stays taken, and its commit waits,
#   until the task is done (Fact 8.3).
# - **The request's ORM objects**: after the commit, reading one of their attributes can need the
#   database again, and a plain attribute read cannot reach it under asyncio (Fact 8.4).
# - **One session for the whole app** fails as soon as two tasks use it at once (Fact 8.5).
#
# Section 9 shows the pattern that avoids all four.
#
# *How the cells look.* Each app gets an engine of its own (`make_engine(db.url)`, with a
# connection pool), used only by the server's event loop and disposed in the app's lifespan, as a
# real app does. `count_connections` counts, with two SQLAlchemy pool events, the connections
# taken from the pool and given back. Some tasks catch the error they meet and keep only its text,
# with `what_went_wrong`; its comment says why it also clears the error's traceback.


# %%
def count_connections(engine: AsyncEngine) -> Counter[str]:
    """Count the connections `engine`'s pool hands out ("taken") and gets back ("returned")."""
    counts: Counter[str] = Counter()
    event.listen(engine.sync_engine, "checkout", lambda *_: counts.update(["taken"]))
    event.listen(engine.sync_engine, "checkin", lambda *_: counts.update(["returned"]))
    return counts


def what_went_wrong(error: BaseException) -> str:
    """The error's type and the first line of its message; then its traceback's frames are cleared."""
    # Cleared here, in the server's thread: a traceback of MissingGreenlet holds the greenlet it was
    # raised in, and when one outlived the server's thread, the course's tests saw Python crash at a
    # later garbage collection (a segmentation fault in greenlet 3.5.6), about once in forty runs.
    text = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    caught: BaseException | None = error
    while caught is not None:
        traceback.clear_frames(caught.__traceback__)
        caught = caught.__cause__ or caught.__context__
    return text


# %% [markdown]
# **Fact 8.1.** With `scope="function"` (the timing that FastAPI 0.106 to 0.117 used by default,
# according to the release notes above) the task gets a session that is already closed. Using it
# raises nothing: a closed `AsyncSession` simply takes a *new* connection from the pool and starts
# a new transaction. Nobody closes the session again, so after the request and its task are done
# that connection is still taken.

# %%
async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    handed_over: list[AsyncSession] = []
    task_saw: dict[str, object] = {}
    task_done = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for session in handed_over:  # tidy up after the demonstration, on the server's own loop
            await session.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def count_users_later(session: AsyncSession) -> None:
        handed_over.append(session)
        task_saw["taken before its query"] = connections["taken"]
        task_saw["in a transaction before"] = session.in_transaction()
        task_saw["users"] = await session.scalar(select(func.count()).select_from(User))
        task_saw["in a transaction after"] = session.in_transaction()
        task_done.set()

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.commit()
        background_tasks.add_task(count_users_later, session)
        return {"created": email}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        created = httpx.post(f"{url}/users", params={"email": "gus@example.com"})
        assert task_done.wait(timeout=60), "the task did not finish"
        still_taken = connections["taken"] - connections["returned"]
        totals = dict(connections)
    errors = logged_errors(records)

print(f"{created.status_code} {created.json()}; errors logged: {len(errors)}")
print(f"before the task's query the pool had handed out {task_saw['taken before its query']} connection"
      " (the request's, given back when its session closed)")
print(f"the task's query on the closed session counted {task_saw['users']} user, on a new connection,"
      f" in a new transaction (in a transaction before: {task_saw['in a transaction before']},"
      f" after: {task_saw['in a transaction after']})")
print(f"after the request and the task: taken {totals['taken']}, returned {totals['returned']}:"
      f" {still_taken} connection still taken, by a session nobody will close")
assert created.status_code == 200 and not errors
assert task_saw == {
    "taken before its query": 1, "in a transaction before": False, "users": 1, "in a transaction after": True
}
assert totals == {"taken": 2, "returned": 1} and still_taken == 1

# %% [markdown]
# The connection stays taken until someone commits, rolls back or closes that session. A task
# that does none of these, like this one, leaves it to the garbage collector. (Here the app's
# lifespan closed the sessions, so nothing leaked out of the cell.) In a real app every such
# request holds one connection until then, and a pool has only so many. SQLAlchemy's
# `QueuePool` (for an asyncio engine, `AsyncAdaptedQueuePool`) keeps `pool_size` connections,
# opens up to `max_overflow` more when those are all taken, and makes a request for one more wait
# `pool_timeout` seconds before it gives up.
#
# **Fact 8.2.** The chapter's engine has such a pool: by default 5 connections, 10 overflow and
# a 30 s timeout. With a pool of 2, no overflow and a timeout of half a second, four requests
# like Fact 8.1's, one after the other (each sent once the task before it is done): the first two
# are answered `200`, and their tasks leave both connections taken. The pool has nothing left to
# give, so each later request waits the half second and fails with a `500`: the endpoint's commit
# raised SQLAlchemy's `TimeoutError: QueuePool limit of size 2 overflow 0 reached`.

# %%
defaults = inspect.signature(QueuePool.__init__).parameters
async with temporary_database(Base.metadata) as db:
    default_engine = make_engine(db.url)
    default_pool = type(default_engine.pool).__name__, default_engine.pool.size(), default_engine.pool.timeout()
    await default_engine.dispose()

    POOL_SIZE, POOL_TIMEOUT, REQUESTS = 2, 0.5, 4
    engine = make_engine(db.url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    handed_over = []
    task_done = threading.Semaphore(0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for session in handed_over:
            await session.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def count_users_later(session: AsyncSession) -> None:
        handed_over.append(session)
        await session.scalar(select(func.count()).select_from(User))  # a new connection, never given back
        task_done.release()

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.commit()
        background_tasks.add_task(count_users_later, session)
        return {"created": email}

    answers: list[tuple[int, float]] = []
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        for number in range(REQUESTS):
            sent = time.monotonic()
            code = httpx.post(f"{url}/users", params={"email": f"user{number}@example.com"}, timeout=60).status_code
            answers.append((code, time.monotonic() - sent))
            if code == 200:  # wait until its task has taken its connection
                assert task_done.acquire(timeout=60), "the task did not finish"
        still_taken = connections["taken"] - connections["returned"]
    errors = logged_errors(records)

print(f"by default: {default_pool[0]} of {default_pool[1]} connections, waiting up to {default_pool[2]} s;"
      f" QueuePool's defaults: pool_size={defaults['pool_size'].default},"
      f" max_overflow={defaults['max_overflow'].default}, timeout={defaults['timeout'].default}")
print(f"a pool of {POOL_SIZE}, no overflow, pool_timeout={POOL_TIMEOUT}: the answers, in order: {[c for c, _ in answers]}")
print(f"connections taken by tasks and never given back: {still_taken}")
for error in errors:
    print(f"    {error.type}: {error.message.splitlines()[0]}")
print(f"each failed request waited at least pool_timeout: {all(took >= POOL_TIMEOUT for c, took in answers if c == 500)}")
assert default_pool == ("AsyncAdaptedQueuePool", 5, 30.0)
assert (defaults["pool_size"].default, defaults["max_overflow"].default, defaults["timeout"].default) == (5, 10, 30.0)
assert [code for code, _ in answers] == [200] * POOL_SIZE + [500] * (REQUESTS - POOL_SIZE)
assert still_taken == POOL_SIZE
assert [error.type for error in errors] == ["TimeoutError"] * (REQUESTS - POOL_SIZE)
assert all(error.message.startswith(f"QueuePool limit of size {POOL_SIZE} overflow 0 reached") for error in errors)
assert all(took >= POOL_TIMEOUT for code, took in answers if code == 500)

# %% [markdown]
# **Fact 8.3.** With the default scope on FastAPI 0.163, the task gets the request's session
# still open, and it works. But the request's connection stays taken for as long as the task
# runs, and a dependency that commits in its exit code (`async with sessions.begin()`) commits
# only after the task: the client has its answer while the new user is not yet visible to
# anybody else.

# %%
async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    task_running = threading.Event()
    cell_has_looked = threading.Event()
    task_saw = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session_in_a_transaction() -> AsyncIterator[AsyncSession]:
        async with sessions.begin() as session:  # commits in the exit code
            yield session

    async def send_welcome_later(session: AsyncSession) -> None:
        task_running.set()
        # A slow mail server, as slow as it takes: the task goes on once the cell has looked at the database.
        await asyncio.to_thread(cell_has_looked.wait, 60)
        task_saw["users"] = await session.scalar(select(func.count()).select_from(User))

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session_in_a_transaction)],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.flush()
        background_tasks.add_task(send_welcome_later, session)
        return {"created": email}

    with serve(app) as url:
        created = httpx.post(f"{url}/users", params={"email": "hal@example.com"})
        assert task_running.wait(timeout=60), "the task did not start"
        visible_during_task = await count_rows(db, "SELECT count(*) FROM users")
        taken_during_task = connections["taken"] - connections["returned"]
        cell_has_looked.set()
    visible_after = await count_rows(db, "SELECT count(*) FROM users")
    taken_after = connections["taken"] - connections["returned"]

print(f"the client had {created.status_code} {created.json()}")
print(f"while the task ran: {visible_during_task} users visible to another connection,"
      f" {taken_during_task} connection taken by the request")
print(f"the task, on the request's session, saw {task_saw['users']} user (its own uncommitted INSERT)")
print(f"after the task and the exit code: {visible_after} user visible, {taken_after} connections taken")
assert created.status_code == 200 and task_saw["users"] == 1
assert visible_during_task == 0 and taken_during_task == 1
assert visible_after == 1 and taken_after == 0

# %% [markdown]
# On FastAPI 0.106.0 to 0.117.0 the default exit code ran before the response (Fact 7.2): there
# this dependency would commit and close the session before the response, and the task would be
# in the situation of Fact 8.1. Code that depends on the exit code's timing changes its behaviour
# with a minor upgrade.
#
# The ORM objects that the request's session loaded or added have a problem of their own. Four
# ideas explain it, one at a time.
#
# **Expired attributes.** When a session commits, SQLAlchemy by default *expires* every attribute
# of every object in that session: it forgets the values, since from now on another transaction
# may change the row. This is the sessionmaker's `expire_on_commit=True`, SQLAlchemy's default.
#
# **Lazy loads.** Reading an attribute that is not loaded, such as an expired `user.email`, makes
# SQLAlchemy fetch it from the database there and then, inside the attribute access. That is a
# *lazy load*, and it needs the object's session and a connection.
#
# **`MissingGreenlet`.** Under asyncio, SQLAlchemy can wait for the driver only inside a call that
# you `await` (which runs its code in the greenlet of Fact 1.3). A plain attribute access is not
# awaited, so a lazy load there cannot wait for the database, and it raises `MissingGreenlet`.
#
# **Detached instances.** Once its session is closed, an object is *detached*: it belongs to no
# session, so nothing can load its attributes, and a lazy load raises `DetachedInstanceError`.
#
# The course's `make_sessionmaker` sets `expire_on_commit=False`: the object keeps the values it
# had at the commit, and reading them needs no database. It keeps only those values; an attribute
# that is not loaded still needs a lazy load.
#
# **Fact 8.4.** An endpoint commits a `User` and hands the object itself to a task, which reads
# `user.email`:
#
# 1. `expire_on_commit=True`, session still open (the default scope): the lazy load raises
#    `MissingGreenlet: greenlet_spawn has not been called; can't call await_() here. Was IO
#    attempted in an unexpected place?`. On PostgreSQL (asyncpg) it arrives as it is. On SQLite,
#    aiosqlite meets it in the middle of running the statement, so it arrives wrapped, as
#    `StatementError: (sqlalchemy.exc.MissingGreenlet) ...`, and Python then warns about a
#    coroutine that was never awaited.
# 2. `expire_on_commit=True`, session closed (`scope="function"`): `DetachedInstanceError:
#    Instance <User at 0x...> is not bound to a Session; attribute refresh operation cannot
#    proceed`.
# 3. `expire_on_commit=False`, the default scope: the read works, and gives the address as the
#    request committed it.
# 4. `expire_on_commit=False`, session closed, but the endpoint expired `email` after the commit
#    (`session.expire(user, ["email"])`): `DetachedInstanceError` again, as in case 2.
#
# The first cell builds the app, one endpoint for each case; the second runs it.

# %%
GREETING_CASES = {  # case: (expire_on_commit, the dependency's scope, expire email after the commit)
    "expire_on_commit=True,  default scope                ": (True, "request", False),
    'expire_on_commit=True,  scope="function"             ': (True, "function", False),
    "expire_on_commit=False, default scope                ": (False, "request", False),
    'expire_on_commit=False, scope="function", expire()   ': (False, "function", True),
}


def greeting_app(engine: AsyncEngine, reads: dict[str, str]) -> FastAPI:
    """`POST /case/<n>` commits a user and hands the ORM object itself to a task that reads `user.email`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def greet(case: str, user: User) -> None:
        try:
            reads[case] = f"read {user.email!r}"
        except Exception as error:
            reads[case] = what_went_wrong(error)

    def add_endpoint(number: int, case: str, expire_on_commit: bool, scope: str, expire_email: bool) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=expire_on_commit)

        async def get_session() -> AsyncIterator[AsyncSession]:
            async with sessions() as session:
                yield session

        @app.post(f"/case/{number}")
        async def create_user(
            email: str, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session, scope=scope)]
        ) -> dict[str, str]:
            user = User(email=email)
            session.add(user)
            await session.commit()
            if expire_email:
                session.expire(user, ["email"])
            background_tasks.add_task(greet, case, user)  # the ORM object itself
            return {"created": email}

    for number, (case, options) in enumerate(GREETING_CASES.items()):
        add_endpoint(number, case, *options)
    return app


# %%
async with temporary_database(Base.metadata) as db:
    reads: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with serve(greeting_app(make_engine(db.url), reads)) as url:
            for number in range(len(GREETING_CASES)):
                httpx.post(f"{url}/case/{number}", params={"email": f"user{number}@example.com"})
        gc.collect()  # the failed reload left objects behind; collect them now, while warnings are caught

for number, case in enumerate(GREETING_CASES, start=1):
    print(f"{number}. {case}: {reads[case]}")
for warning in caught:
    print(f"and, when the failed reload was cleaned up, Python warned: {warning.category.__name__}: {warning.message}")
outcomes = [reads[case] for case in GREETING_CASES]
detached = ("is not bound to a Session; attribute refresh operation cannot proceed"
            " (Background on this error at: https://sqlalche.me/e/21/bhk3)")
assert outcomes[0].startswith(("MissingGreenlet: ", "StatementError: (sqlalchemy.exc.MissingGreenlet) "))
assert "greenlet_spawn has not been called; can't call await_() here." in outcomes[0]
assert outcomes[1].startswith("DetachedInstanceError: Instance <User at 0x") and outcomes[1].endswith(detached)
assert outcomes[2] == "read 'user2@example.com'"
assert outcomes[3].startswith("DetachedInstanceError: Instance <User at 0x") and outcomes[3].endswith(detached)

# %% [markdown]
# What about one session for the whole app, created once, so that it is never closed too early?
# An `AsyncSession` is a single unit of work and must not be used by two tasks at the same time,
# and the tasks of different requests do run at the same time (chapter 1, section 3).
#
# **Fact 8.5.** Two requests whose tasks query one shared, global session at the same moment:
# one query works, the other raises `InvalidRequestError: This session is provisioning a new
# connection; concurrent operations are not permitted`.

# %%
async with temporary_database(Base.metadata) as db:
    shared_session = db.sessions()  # one session for the whole app: the mistake
    both_tasks_running = asyncio.Barrier(2)
    task_outcomes: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await shared_session.close()

    app = FastAPI(lifespan=lifespan)

    async def count_users_now() -> None:
        async with asyncio.timeout(60):  # only ends a wait for a second task that never comes
            await both_tasks_running.wait()  # from here on both tasks run at once
        try:
            users = await shared_session.scalar(select(func.count()).select_from(User))
            task_outcomes.append(f"counted {users} users")
        except Exception as error:
            task_outcomes.append(what_went_wrong(error))

    @app.post("/count")
    async def count(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(count_users_now)
        return {"counting": "later"}

    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await asyncio.gather(client.post("/count"), client.post("/count"))

print(*sorted(task_outcomes), sep="\n")
failed, worked = sorted(task_outcomes)
assert failed.startswith(
    "InvalidRequestError: This session is provisioning a new connection; concurrent operations are not permitted"
)
assert worked == "counted 0 users"

# %% [markdown]
# ## 9. The pattern that always works: pass ids, open a session in the task
#
# What FastAPI's documentation has recommended since 0.106 does not depend on when the exit code
# runs, because the task never touches the request's session: give the task the *id* (and the session factory, or let it use the app's), and let the
# task open its own session and transaction, read what it needs, and commit what it changes.
# (FastAPI's docs: "instead of passing the object from the database as a parameter to the
# background task function, you would pass the ID of that object and then obtain the object again
# inside the background task function.")
#
# **Fact 9.1.** With the request's session from the default scope or from `scope="function"`,
# the same task (id in, `async with sessions.begin()` inside) reads the committed user, commits
# its change, raises nothing, and once it is done no connection is left taken.

# %%
class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    welcomed: Mapped[bool] = mapped_column(default=False)


async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    welcomed_now: list[str] = []
    tasks_done = threading.Semaphore(0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def welcome(member_id: int) -> None:
        async with sessions.begin() as session:  # the task's own session and transaction
            member = await session.get(Member, member_id)
            if member is not None and not member.welcomed:  # harmless to run twice
                welcomed_now.append(member.email)
                member.welcomed = True
        tasks_done.release()

    @app.post("/members/default")
    async def join_default(
        email: str, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, int]:
        member = Member(email=email)
        session.add(member)
        await session.commit()
        background_tasks.add_task(welcome, member.id)  # the id, not the object
        return {"id": member.id}

    @app.post("/members/function")
    async def join_function(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, int]:
        member = Member(email=email)
        session.add(member)
        await session.commit()
        background_tasks.add_task(welcome, member.id)
        return {"id": member.id}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        answers = []
        for scope in ("default", "function"):
            answers.append(httpx.post(f"{url}/members/{scope}", params={"email": f"{scope}@example.com"}))
            # each task done before the next request, so that welcomed_now is in the requests' order
            assert tasks_done.acquire(timeout=60), "a task did not finish"
        taken_after_tasks = connections["taken"] - connections["returned"]
    errors = logged_errors(records)
    async with db.sessions() as session:
        stored = list(await session.execute(select(Member.email, Member.welcomed).order_by(Member.id)))

print("answers:", [answer.status_code for answer in answers], "errors logged:", len(errors))
print("welcomed by the tasks:", welcomed_now)
print("in the database:", [f"{email} welcomed={welcomed}" for email, welcomed in stored])
print(f"connections still taken once the tasks were done: {taken_after_tasks}")
assert [answer.status_code for answer in answers] == [200, 200] and not errors
assert welcomed_now == ["default@example.com", "function@example.com"]
assert [tuple(row) for row in stored] == [("default@example.com", True), ("function@example.com", True)]
assert taken_after_tasks == 0

# %% [markdown]
# The endpoint and its task now share nothing but an integer. The task works whether the
# request's session is open or closed, commits on its own, and can be moved, unchanged, to a
# worker process (chapter 7), where the request's session could never follow it.

# %% [markdown]
# ## 10. The designs side by side
#
# | Design | Left behind after `kill -9` between the response and the undo | Holds a transaction during the slow step | Proof |
# |---|---|---|---|
# | Commit, then undo in a background task | the row, for good | no | sections 2 and 3 |
# | One transaction around both steps | nothing | yes | section 4 |
# | Outbox: the intent in the same transaction, a worker acts on it | nothing lost: the next worker finishes the job | no | section 6 |
#
# Whichever you choose, the undo must be idempotent (section 5), and a task that touches the
# database opens its own session from an id (sections 8 and 9).

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against a real server
# and a real database (SQLite, or the one `DATABASE_URL` names). The tables and the billing
# service come from `bgcourse.checks.ch03_db_compensation`. The reference solutions are in
# `solutions/ch03_db_compensation/`; try first, then compare.
#
# ### Exercise 3.1: undo inside the transaction
#
# Write `make_app(sessions)`, which returns an app with `POST /register?email=...`. In **one**
# transaction it adds a `User` and awaits `create_billing_account(email)`. On success it answers
# `201 Created` with `{"user_id": <the new id>}`; when billing raises `BillingError`, it answers
# `502` with the error's text as the `detail` and leaves no row behind, not even for a moment:
# the check looks at the table from another connection while the billing call runs.

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import FastAPI, HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import BillingError, User, create_billing_account


def make_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()

    @app.post("/register", status_code=status.HTTP_201_CREATED)
    async def register(email: str) -> dict[str, int]:
        try:
            async with sessions.begin() as session:
                user = User(email=email)
                session.add(user)
                await session.flush()
                await create_billing_account(email)
        except BillingError as error:
            raise HTTPException(status_code=status.HTTP_502_BAD_GATEWAY, detail=str(error)) from error
        return {"user_id": user.id}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch03_db_compensation as checks

await checks.ex01(make_app)

# %% [markdown]
# ### Exercise 3.2: a compensation that is harmless to repeat
#
# The tables `Event` (`id`, `name`, `seats_left`) and `Booking` (`id`, `event_id`, `email`).
# Write `async def cancel_booking(sessions, booking_id)`, the compensation for a booking whose
# payment failed: in one transaction of a session of its own, delete the booking and give its
# seat back (`seats_left + 1`). It will run more than once for the same booking (the check's
# endpoint adds it three times: the compensation and two retries), and the later runs must change
# nothing and raise nothing. A hint: `delete(Booking).where(...).returning(Booking.event_id)`
# tells you whether *this* run deleted the booking.

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import Booking, Event


async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
    async with sessions.begin() as session:
        deleted = await session.execute(delete(Booking).where(Booking.id == booking_id).returning(Booking.event_id))
        event_id = deleted.scalar_one_or_none()
        if event_id is not None:
            await session.execute(update(Event).where(Event.id == event_id).values(seats_left=Event.seats_left + 1))
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
await checks.ex02(cancel_booking)

# %% [markdown]
# ### Exercise 3.3: an outbox worker
#
# The tables `User` (`id`, `email`, `status`) and `OutboxMessage` (`id`, `user_id`, `done_at`).
# The check's `POST /register` writes a user with status `"pending"` and a message for it in one
# transaction; its worker loop calls your `process_outbox(sessions, open_account)` every 20 ms.
# For every message that is not done, oldest first: `await open_account(<the user's email>)`,
# then, in one transaction, set the user's status to `"active"` (or `"refused"` if it raised
# `BillingError`) and the message's `done_at` to the current time. If `open_account` raises
# anything else (the billing service is down), that message must stay as it is for the next
# round: let the exception propagate. Return how many messages were carried out.

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
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
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
await checks.ex03(process_outbox)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch03_db_compensation")
quiz.ask("q01")

# %% nbgrader={"grade": false, "grade_id": "q01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q01 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q01", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q01", answer_q01)

# %% nbgrader={"grade": false, "grade_id": "q02_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q02")

# %% nbgrader={"grade": false, "grade_id": "q02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q02 = "C"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q02", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q02", answer_q02)

# %% nbgrader={"grade": false, "grade_id": "q03_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q03")

# %% nbgrader={"grade": false, "grade_id": "q03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q03 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q03", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q03", answer_q03)

# %% nbgrader={"grade": false, "grade_id": "q04_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q04")

# %% nbgrader={"grade": false, "grade_id": "q04_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q04 = "D"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q04", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q04", answer_q04)

# %% nbgrader={"grade": false, "grade_id": "q05_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q05")

# %% nbgrader={"grade": false, "grade_id": "q05_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q05 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", answer_q05)

# %% nbgrader={"grade": false, "grade_id": "q06_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q06")

# %% nbgrader={"grade": false, "grade_id": "q06_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
def schedule_removal(background_tasks, remove_user, user):
    background_tasks.add_task(remove_user, user.id)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", schedule_removal)

# %% [markdown]
# ## Summary
#
# - SQLAlchemy's asyncio API is an `AsyncEngine` per process, an `async_sessionmaker`, and
#   `async with sessions.begin()` for a transaction; the same code runs on SQLite (`aiosqlite`)
#   and PostgreSQL (`asyncpg`), chosen by `DATABASE_URL`. It needs `greenlet`, which SQLAlchemy
#   2.1 installs only with `pip install "sqlalchemy[asyncio]"` (section 1).
# - A compensation in a background task works while the process lives (section 2), and is lost
#   with it: after `kill -9` the row stays for good (section 3).
# - Where you can, put the write and the step that may fail in one transaction: a failure rolls
#   back, and nothing is left to undo (section 4). Make every compensation idempotent: say what
#   the result should be (`DELETE ... WHERE id`) instead of acting on a loaded object (section 5).
# - For work that must survive a crash, write it down in the same transaction (an outbox) and
#   let a worker carry it out at least once (section 6); chapter 7 hands that to a durable queue.
#   Two such workers would take the same message; on PostgreSQL, `FOR UPDATE SKIP LOCKED` makes
#   the second pass over the row the first has locked (section 6).
# - The exit code of a dependency with `yield` ran after the tasks on FastAPI 0.103.2 and
#   0.105.0, before the response on 0.106.0 to 0.117.0, and after the response and the tasks
#   again on 0.118.0, 0.121.0 and the pinned 0.163.2; `scope="function"` (from 0.121.0) chooses
#   the early exit (section 7, measured on each).
# - A task that uses the request's session meets either a closed session, which quietly begins a
#   new transaction on a new connection that stays taken until the session is committed, rolled
#   back or closed (or collected), so that enough such requests empty the pool and the next one
#   fails with `TimeoutError`; or an open one that holds the request's connection and delays its
#   commit. Attributes of the request's ORM objects that are not loaded (expired by the commit, or
#   by `session.expire`) fail with `MissingGreenlet` or `DetachedInstanceError` (with
#   `expire_on_commit=False`, the values loaded before the commit can still be read); a shared
#   global session fails under concurrency (section 8).
# - So: pass ids, and open a session in the task with `async_sessionmaker` (section 9).
#
# Next: chapter 4 orchestrates several tasks: order, retries, and what to do when one fails.
