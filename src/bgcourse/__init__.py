"""Helpers for the FastAPI background tasks course: a real server, a timeline, and quizzes.

Each name is imported on first use (PEP 562), so that `import bgcourse` stays cheap: a process-pool
worker that unpickles `count_primes` loads `bgcourse.helpers._measure` alone, not SQLAlchemy, matplotlib
and huey.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The one list of where each name lives: type checkers read these imports, and `__getattr__` reads
# them from this file's source.
if TYPE_CHECKING:
    from bgcourse.helpers._db import (
        DATABASE_URL_VARIABLE,
        Database,
        DatabaseNotEmptyError,
        create_tables,
        database_url,
        drop_tables,
        make_engine,
        make_sessionmaker,
        temporary_database,
    )
    from bgcourse.helpers._kernel import KernelRun, run_in_fresh_kernel
    from bgcourse.helpers._logs import capture_logs
    from bgcourse.helpers._measure import (
        LatencySample,
        ProcessStatus,
        count_primes,
        cpu_time_of,
        peak_overlap,
        poll_json,
        probe_latency,
        process_status,
    )
    from bgcourse.helpers._plot import NotebookFigure, plot_timeline
    from bgcourse.helpers._postgres import PostgresNotFoundError, PostgresServer, find_postgres_bin, throwaway_postgres
    from bgcourse.helpers._processes import (
        ChildProcess,
        huey_consumer_process,
        read_module_source,
        uvicorn_process,
        wait_until,
    )
    from bgcourse.helpers._queue import (
        QUEUE_URL_VARIABLE,
        TemporaryQueue,
        make_huey,
        queue_url,
        run_consumer,
        temporary_queue,
    )
    from bgcourse.helpers._quiz import Question, Quiz, QuizFormatError, WrongAnswer, find_quiz_file, load_quiz
    from bgcourse.helpers._race import RaceWindow
    from bgcourse.helpers._redis import RedisNotFoundError, RedisServer, find_redis_server, throwaway_redis
    from bgcourse.helpers._server import ServerStartError, serve
    from bgcourse.helpers._smtp import MailServer, smtp_server
    from bgcourse.helpers._source import SourceHit, find_in_source
    from bgcourse.helpers._timeline import LANE_HEADER, Event, Timeline, TimelineMiddleware
    from bgcourse.helpers._tracebacks import LoggedError, ShownError, logged_errors, shows_error
    from bgcourse.versions._versions import VersionTable, version_table

__all__ = [
    "ChildProcess",
    "DATABASE_URL_VARIABLE",
    "Database",
    "DatabaseNotEmptyError",
    "Event",
    "KernelRun",
    "LANE_HEADER",
    "LatencySample",
    "LoggedError",
    "MailServer",
    "NotebookFigure",
    "PostgresNotFoundError",
    "PostgresServer",
    "ProcessStatus",
    "QUEUE_URL_VARIABLE",
    "Question",
    "Quiz",
    "QuizFormatError",
    "RaceWindow",
    "RedisNotFoundError",
    "RedisServer",
    "ServerStartError",
    "ShownError",
    "SourceHit",
    "TemporaryQueue",
    "Timeline",
    "TimelineMiddleware",
    "VersionTable",
    "WrongAnswer",
    "capture_logs",
    "count_primes",
    "cpu_time_of",
    "create_tables",
    "database_url",
    "drop_tables",
    "find_in_source",
    "find_postgres_bin",
    "find_quiz_file",
    "find_redis_server",
    "huey_consumer_process",
    "load_quiz",
    "logged_errors",
    "make_engine",
    "make_huey",
    "make_sessionmaker",
    "peak_overlap",
    "plot_timeline",
    "poll_json",
    "probe_latency",
    "process_status",
    "queue_url",
    "read_module_source",
    "run_consumer",
    "run_in_fresh_kernel",
    "serve",
    "shows_error",
    "smtp_server",
    "temporary_database",
    "temporary_queue",
    "throwaway_postgres",
    "throwaway_redis",
    "uvicorn_process",
    "version_table",
    "wait_until",
]


@functools.cache
def _where() -> dict[str, str]:
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    return {
        alias.name: node.module or "" for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }


def __getattr__(name: str) -> Any:
    module = _where().get(name) if name in __all__ else None
    if module is None:
        raise AttributeError(f"module 'bgcourse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
