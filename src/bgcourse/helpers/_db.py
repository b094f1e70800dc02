"""The course's database: SQLite in a temporary folder by default, any other through ``DATABASE_URL``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

__all__ = [
    "DATABASE_URL_VARIABLE",
    "Database",
    "DatabaseNotEmptyError",
    "create_tables",
    "database_url",
    "drop_tables",
    "make_engine",
    "make_sessionmaker",
    "temporary_database",
]

#: The environment variable that switches the course to another database, for example
#: ``postgresql+asyncpg://user:password@localhost:5432/course``.
DATABASE_URL_VARIABLE = "DATABASE_URL"


def database_url(folder: str | os.PathLike[str] | None = None) -> str:
    """``$DATABASE_URL`` if it is set; otherwise a SQLite file ``course.db`` in ``folder``.

    Without a ``folder`` the file goes into a new temporary folder (which the caller may remove).
    SQLite is the embedded default: nothing to install, one file, and through the ``aiosqlite``
    driver the same SQLAlchemy asyncio API as PostgreSQL through ``asyncpg``.
    """
    configured = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if configured:
        return configured
    if folder is None:
        folder = tempfile.mkdtemp(prefix="bgcourse-db-")
    return f"sqlite+aiosqlite:///{Path(folder).resolve() / 'course.db'}"


def make_engine(url: str, *, pooled: bool = True, **options: Any) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url``; extra keyword arguments go to ``create_async_engine``.

    ``pooled=False`` opens a connection for each session and closes it afterwards (``NullPool``).
    A pooled connection belongs to the event loop that opened it (asyncpg refuses to be used from
    another one), so an engine that several loops share, such as the notebook's own loop and the
    loop of each server that ``serve()`` runs in a thread, must not pool.  An app that owns its
    engine (created and disposed in its lifespan, on its one loop) pools, as in production.
    """
    if not pooled:
        options.setdefault("poolclass", NullPool)
    return create_async_engine(url, **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for ``engine`` that keep their objects' loaded values after ``commit()``.

    With the default ``expire_on_commit=True`` every attribute of every object is expired by a
    commit, and the next read must load it again from the database.  A plain attribute read
    cannot ``await``, so under asyncio that reload fails (``MissingGreenlet``, or
    ``DetachedInstanceError`` once the session is closed; chapter 3, section 8 shows both).
    Keeping the values is what an endpoint needs to build its response after committing.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, *metadata: MetaData) -> None:
    """Create every table of ``metadata`` that does not exist yet, in one transaction."""
    async with engine.begin() as connection:
        for tables in metadata:
            await connection.run_sync(tables.create_all)


async def drop_tables(engine: AsyncEngine, *metadata: MetaData) -> None:
    """Drop every table of ``metadata`` that exists (dependent tables first), in one transaction."""
    async with engine.begin() as connection:
        for tables in reversed(metadata):
            await connection.run_sync(tables.drop_all)


@dataclass(frozen=True)
class Database:
    """A database for one block of code: its URL, an engine, and a session factory on that engine."""

    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


class DatabaseNotEmptyError(RuntimeError):
    """``DATABASE_URL`` names a database that already has a table the course wants to create."""


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _drop_tables_named(engine: AsyncEngine, names: set[str]) -> None:
    def drop(connection: Connection) -> None:
        tables = MetaData()
        tables.reflect(connection, only=sorted(names))
        tables.drop_all(connection)  # in dependency order, as reflected

    async with engine.begin() as connection:
        await connection.run_sync(drop)


@contextlib.asynccontextmanager
async def temporary_database(*metadata: MetaData) -> AsyncIterator[Database]:
    """A database with the tables of ``metadata``, for the length of an ``async with`` block.

    Without ``DATABASE_URL`` it is a SQLite file in a new temporary folder, removed afterwards.
    With it, the tables are created in that database, and every table created during the block
    (also by a child process) is dropped afterwards; a table that existed before is never
    touched: if one of ``metadata``'s tables already exists, :class:`DatabaseNotEmptyError` says
    so.  The engine does not pool (see :func:`make_engine`): the block may hand it to a server
    that runs on another event loop.
    """
    with tempfile.TemporaryDirectory(prefix="bgcourse-db-") as folder:
        url = database_url(folder)
        engine = make_engine(url, pooled=False)
        try:
            async with engine.connect() as connection:
                existing = await connection.run_sync(_table_names)
            clashes = sorted(existing & {name for tables in metadata for name in tables.tables})
            if clashes:
                raise DatabaseNotEmptyError(
                    f"{engine.url.render_as_string(hide_password=True)} already has the table(s) {clashes}. "
                    "The course creates its tables itself and drops them afterwards; point DATABASE_URL at an "
                    "empty database made for the course (or drop those tables if an interrupted run left them)."
                )
            await create_tables(engine, *metadata)
            try:
                yield Database(url=url, engine=engine, sessions=make_sessionmaker(engine))
            finally:
                async with engine.connect() as connection:
                    created = await connection.run_sync(_table_names) - existing
                if created:
                    await _drop_tables_named(engine, created)
        finally:
            await engine.dispose()
