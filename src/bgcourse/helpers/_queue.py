"""A durable job queue with huey: SQLite in a file by default, Redis when ``QUEUE_URL`` says so.

huey ships no type hints, so its names are ``Any`` to mypy here (hence the ``type: ignore``s).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from huey import Huey, RedisHuey, SqliteHuey  # type: ignore[import-untyped]
from huey.consumer import Consumer  # type: ignore[import-untyped]

__all__ = ["QUEUE_URL_VARIABLE", "TemporaryQueue", "make_huey", "queue_url", "run_consumer", "temporary_queue"]

#: The environment variable that switches the queue to Redis: ``redis://127.0.0.1:6379/0``.
#: ``sqlite:////absolute/path/queue.db`` names a SQLite file instead.
QUEUE_URL_VARIABLE = "QUEUE_URL"

_REDIS_SCHEMES = {"redis", "rediss", "unix"}


def queue_url(folder: str | os.PathLike[str] | None = None) -> str:
    """``$QUEUE_URL`` if it is set; otherwise the SQLite file ``queue.db`` in ``folder``.

    SQLite is the embedded default: no server to run, one file that outlives every process.
    """
    configured = os.environ.get(QUEUE_URL_VARIABLE, "").strip()
    if configured:
        return configured
    if folder is None:
        raise ValueError(f"{QUEUE_URL_VARIABLE} is not set: give a folder for the SQLite queue file, or set it")
    return f"sqlite:///{Path(folder).resolve() / 'queue.db'}"


def make_huey(
    name: str, url: str | None = None, *, folder: str | os.PathLike[str] | None = None, **options: Any
) -> Any:
    """A ``Huey`` for ``url`` (default: :func:`queue_url`): ``RedisHuey`` for ``redis://``, else ``SqliteHuey``.

    The same task code runs on either; only the storage differs.  Extra keyword arguments go to
    huey (``results=False``, ``utc=False``...).  Returns a ``huey.Huey`` (typed ``Any``: huey has no hints).
    """
    url = url or queue_url(folder)
    parts = urlsplit(url)
    if parts.scheme in _REDIS_SCHEMES:
        return RedisHuey(name, url=url, **options)
    if parts.scheme == "sqlite":
        filename = url.removeprefix("sqlite:///")
        if not filename:
            raise ValueError(f"{url!r} names no file: use sqlite:////absolute/path/queue.db")
        return SqliteHuey(name, filename=filename, **options)
    raise ValueError(f"{url!r}: the queue URL must start with redis://, rediss://, unix:// or sqlite:///")


class TemporaryQueue(NamedTuple):
    """A queue for one block of code: the ``Huey`` instance and the URL a child process needs to reach it."""

    huey: Any
    url: str


def _release(huey: Huey) -> None:
    storage = huey.storage
    if isinstance(huey, RedisHuey):
        storage.pool.disconnect()
    else:
        storage.close()


@contextlib.contextmanager
def temporary_queue(name: str, url: str | None = None, **options: Any) -> Iterator[TemporaryQueue]:
    """A fresh, empty queue for the length of the block, then nothing left of it.

    Without ``url`` and ``QUEUE_URL`` it is a SQLite file in a new temporary folder, removed
    afterwards.  On Redis it is emptied at the start (a run that was interrupted may have left
    jobs) and at the end.  Pass ``.url`` as ``QUEUE_URL`` to a child process to share the queue.
    Extra keyword arguments go to huey, as in :func:`make_huey`.
    """
    with tempfile.TemporaryDirectory(prefix="bgcourse-queue-") as folder:
        chosen = url or queue_url(folder)
        huey = make_huey(name, chosen, **options)
        try:
            huey.flush()
            yield TemporaryQueue(huey, chosen)
        finally:
            try:
                huey.flush()
            finally:
                _release(huey)


class _ThreadConsumer(Consumer):  # type: ignore[misc]
    """huey's ``Consumer``, minus its signal handlers: only a main thread may install them, and a
    notebook's or a test's Ctrl-C must stay theirs."""

    def _set_signal_handlers(self) -> None:
        pass


@contextlib.contextmanager
def run_consumer(huey: Huey, *, workers: int = 1, shutdown_timeout: float = 10.0, **options: Any) -> Iterator[Any]:
    """Run huey's consumer (its scheduler and ``workers`` worker threads) in this process during the block.

    This is huey's own ``Consumer``, started without taking over the signals.  On the way out it
    stops as huey's consumer does on SIGINT, gracefully: no new job is taken, and the running ones
    may finish within ``shutdown_timeout`` seconds.  Extra keyword arguments go to ``Consumer``
    (``initial_delay``, ``max_delay``, ``periodic``...).  Yields the ``huey.consumer.Consumer``.
    """
    consumer = _ThreadConsumer(huey, workers=workers, shutdown_timeout=shutdown_timeout, **options)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop(graceful=True)
        threads: list[threading.Thread] = [consumer.scheduler, *(thread for _, thread in consumer.worker_threads)]
        stuck = [thread.name for thread in threads if thread.is_alive()]
        if stuck:
            raise RuntimeError(f"huey's consumer threads {stuck} did not stop within {shutdown_timeout} s: a job hangs")
