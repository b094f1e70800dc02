"""The durable queue: chosen by QUEUE_URL, temporary when asked, consumed by huey's own consumer in threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from huey import RedisHuey, SqliteHuey  # type: ignore[import-untyped]

from bgcourse import QUEUE_URL_VARIABLE, make_huey, queue_url, run_consumer, temporary_queue

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


@pytest.fixture(autouse=True)
def no_queue_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(QUEUE_URL_VARIABLE, raising=False)


def test_without_queue_url_the_queue_is_a_sqlite_file_in_the_folder(tmp_path: Path) -> None:
    assert queue_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'queue.db'}"
    huey = make_huey("test", folder=tmp_path)
    assert isinstance(huey, SqliteHuey)
    assert huey.storage.filename == str(tmp_path.resolve() / "queue.db")


def test_queue_url_switches_to_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(QUEUE_URL_VARIABLE, "redis://127.0.0.1:6399/2")
    assert queue_url(tmp_path) == "redis://127.0.0.1:6399/2"
    huey = make_huey("test", folder=tmp_path)  # creating it does not connect yet
    assert isinstance(huey, RedisHuey)
    assert huey.storage.pool.connection_kwargs["port"] == 6399


def test_without_queue_url_or_folder_it_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="QUEUE_URL is not set"):
        queue_url()


@pytest.mark.parametrize(("url", "message"), [("mysql://db/queue", "must start with"), ("sqlite:///", "names no file")])
def test_an_unusable_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_huey("test", url)


def test_huey_options_are_passed_on(tmp_path: Path) -> None:
    assert make_huey("test", folder=tmp_path, store_intermediate_errors=False).store_intermediate_errors is False


def test_a_temporary_queue_is_empty_and_leaves_no_file() -> None:
    with temporary_queue("test") as queue:
        assert queue.url.startswith("sqlite:///")
        assert queue.huey.pending_count() == 0
        path = Path(queue.url.removeprefix("sqlite:///"))
        assert path.exists()
    assert not path.parent.exists()


def test_run_consumer_runs_jobs_in_threads_and_stops_them() -> None:
    with temporary_queue("test") as queue:

        @queue.huey.task()  # type: ignore[untyped-decorator]
        def where(number: int) -> str:
            return f"{number} on {threading.current_thread().name}"

        result = where(7)
        assert queue.huey.pending_count() == 1, "calling the task only stores it"
        with run_consumer(queue.huey, workers=2) as consumer:
            assert result.get(blocking=True, timeout=20).startswith("7 on Worker-")
            assert len(consumer.worker_threads) == 2


def test_run_consumer_says_so_when_a_job_does_not_stop() -> None:
    release = threading.Event()
    with temporary_queue("test") as queue:

        @queue.huey.task()  # type: ignore[untyped-decorator]
        def hang() -> None:
            release.wait(30)

        hang()
        started = threading.Event()

        @queue.huey.pre_execute()  # type: ignore[untyped-decorator]
        def note_start(task: object) -> None:
            started.set()

        before = set(threading.enumerate())
        try:
            with (
                pytest.raises(RuntimeError, match=r"did not stop within 0\.2 s: a job hangs"),
                run_consumer(queue.huey, shutdown_timeout=0.2),
            ):
                assert started.wait(20)
        finally:
            release.set()  # let the worker thread end, so that no thread outlives the test
            for thread in set(threading.enumerate()) - before:
                thread.join(30)  # before the queue's folder goes: the job's end still writes to it
