"""The course's database helpers: SQLite by default, DATABASE_URL when set, and nothing left behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bgcourse import (
    DATABASE_URL_VARIABLE,
    DatabaseNotEmptyError,
    PostgresServer,
    database_url,
    make_engine,
    make_sessionmaker,
    temporary_database,
)


def notes_metadata() -> MetaData:
    metadata = MetaData()
    Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(100)))
    return metadata


def test_without_database_url_it_is_a_sqlite_file_in_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    assert database_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'course.db'}"
    fresh = database_url()
    assert fresh.startswith(f"sqlite+aiosqlite:///{tmp_path}")  # a new folder, in the temporary directory


def test_database_url_wins_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_VARIABLE, "postgresql+asyncpg://someone@db.example/course")
    assert database_url(tmp_path) == "postgresql+asyncpg://someone@db.example/course"


def test_engines_pool_unless_told_not_to() -> None:
    pooled, unpooled = make_engine("sqlite+aiosqlite://"), make_engine("sqlite+aiosqlite://", pooled=False)
    assert not isinstance(pooled.pool, NullPool)
    assert isinstance(unpooled.pool, NullPool)
    assert make_sessionmaker(pooled).kw["expire_on_commit"] is False
    asyncio.run(pooled.dispose())
    asyncio.run(unpooled.dispose())


def test_a_temporary_sqlite_database_is_gone_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)

    async def scenario() -> Path:
        async with temporary_database(notes_metadata()) as db:
            async with db.engine.begin() as connection:
                await connection.execute(text("INSERT INTO notes (text) VALUES ('hello')"))
            file = Path(db.engine.url.database or "")
            assert file.is_file()
        return file

    assert not asyncio.run(scenario()).exists()


def test_on_postgresql_tables_made_in_the_block_are_dropped(postgres_url: str) -> None:
    async def tables() -> set[str]:
        engine = create_async_engine(postgres_url, poolclass=NullPool)
        async with engine.connect() as connection:
            names = await connection.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            found = set(names)
        await engine.dispose()
        return found

    async def scenario() -> None:
        async with temporary_database(notes_metadata()) as db:
            assert db.url == postgres_url
            async with db.engine.begin() as connection:  # as a child process of the notebook would
                await connection.execute(text("CREATE TABLE made_by_a_child (id integer PRIMARY KEY)"))
            assert await tables() == {"notes", "made_by_a_child"}
        assert await tables() == set()

    asyncio.run(scenario())


def test_on_postgresql_an_existing_table_is_never_touched(postgres_url: str, postgres_server: PostgresServer) -> None:
    async def scenario() -> None:
        engine = create_async_engine(postgres_url, poolclass=NullPool)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE notes (id integer PRIMARY KEY, text varchar(100))"))
            await connection.execute(text("INSERT INTO notes VALUES (1, 'somebody''s data')"))
        with pytest.raises(DatabaseNotEmptyError, match=r"already has the table\(s\) \['notes'\]"):
            async with temporary_database(notes_metadata()):
                pass
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT text FROM notes")) == "somebody's data"
        await engine.dispose()

    asyncio.run(scenario())


def test_database_names_are_checked(postgres_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="not a plain lower-case database name"):
        postgres_server.create_database("x; DROP DATABASE postgres")
