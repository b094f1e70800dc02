"""Chapter 3's tests run on SQLite and on a real PostgreSQL server that the test run starts itself."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgcourse import DATABASE_URL_VARIABLE, PostgresServer, find_postgres_bin, throwaway_postgres

# Read before any test points `tempfile` at its tmp_path (below): the PostgreSQL cluster cannot live
# under tmp_path, whose parents only root may enter, and the server runs as the `postgres` user.
SYSTEM_TEMP = Path(tempfile.gettempdir())
_database_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def temporary_files_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite files, child-process logs and the like go under the test's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test run: a skip on a laptop without one, a failure in CI."""
    if find_postgres_bin() is None:
        problem = "PostgreSQL's server programs were not found (/usr/lib/postgresql/*/bin, or initdb on PATH)."
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{problem} CI must test chapter 3 on PostgreSQL: install the server (.ci/run does).", pytrace=False
            )
        pytest.skip(f"{problem} Install PostgreSQL (apt-get install postgresql) to run the PostgreSQL variants too.")
    with throwaway_postgres(parent=SYSTEM_TEMP) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty database on the test run's server, named by DATABASE_URL for the length of the test."""
    name = f"course_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    monkeypatch.setenv(DATABASE_URL_VARIABLE, url)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test twice: on SQLite (no DATABASE_URL), and on PostgreSQL (DATABASE_URL set)."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    else:
        monkeypatch.delenv(DATABASE_URL_VARIABLE, raising=False)
    return str(request.param)
