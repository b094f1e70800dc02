"""The chapter's apps as real processes: the API, huey's consumer, on SQLite and on a real redis-server."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from bgcourse import RedisServer, huey_consumer_process, temporary_queue, uvicorn_process, wait_until

BACKGROUND_APP = "solutions.ch07_durable_queue.background_app:app"
JOBS_API = "solutions.ch07_durable_queue.jobs_api:app"
JOBS_HUEY = "solutions.ch07_durable_queue.jobs.huey"
REQUEUE_HUEY = "solutions.ch07_durable_queue.jobs_requeue.huey"


def lines(log: Path, prefix: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(prefix)] if log.exists() else []


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite:///{tmp_path / 'queue.db'}"


def test_jobs_survive_an_api_kill_and_a_consumer_process_runs_them(queue_url: str, tmp_path: Path) -> None:
    job_log = tmp_path / "jobs.log"
    with temporary_queue("ch07-jobs", url=queue_url) as queue:
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            response = httpx.post(f"{api.url}/jobs", params={"count": 5, "seconds": 0.01})
            assert response.status_code == 202, response.text
            job_ids = response.json()["job_ids"]
            api.send_signal(signal.SIGKILL)
            assert api.wait(timeout=10) == -signal.SIGKILL
        assert queue.huey.pending_count() == 5, "the jobs outlive the API process"
        with huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env) as consumer:
            wait_until(lambda: len(lines(job_log, "done")) == 5, timeout=60, what="5 jobs done")
            consumer.send_signal(signal.SIGINT)
            assert consumer.wait(timeout=30) == 0, consumer.output
        with uvicorn_process(JOBS_API, env=env) as api, httpx.Client(base_url=api.url) as client:
            answers = [client.get(f"/jobs/{job_id}").json() for job_id in job_ids]
    assert answers == [{"status": "done", "result": number} for number in range(5)]


def test_sigterm_with_the_requeue_handler_puts_the_running_job_back(queue_url: str, tmp_path: Path) -> None:
    job_log = tmp_path / "jobs.log"
    with temporary_queue("ch07-jobs", url=queue_url) as queue:
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            httpx.post(f"{api.url}/jobs", params={"count": 2, "seconds": 2.0}).raise_for_status()
        with huey_consumer_process(REQUEUE_HUEY, "--workers", "1", env=env) as consumer:
            wait_until(lambda: lines(job_log, "start 0"), timeout=30, what="the first job to start")
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(timeout=30) == 0, consumer.output
        assert "was interrupted; putting it back in the queue" in consumer.output
        assert lines(job_log, "done") == []
        assert queue.huey.pending_count() == 2, "the interrupted job is back, next to the one still queued"


def test_sigkill_loses_the_running_job_but_not_the_queued_ones(queue_url: str, tmp_path: Path) -> None:
    job_log = tmp_path / "jobs.log"
    with temporary_queue("ch07-jobs", url=queue_url) as queue:
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            httpx.post(f"{api.url}/jobs", params={"count": 3, "seconds": 2.0}).raise_for_status()
        with huey_consumer_process(REQUEUE_HUEY, "--workers", "1", env=env) as consumer:
            wait_until(lambda: lines(job_log, "start 0"), timeout=30, what="the first job to start")
            consumer.send_signal(signal.SIGKILL)
            assert consumer.wait(timeout=30) == -signal.SIGKILL
        assert queue.huey.pending_count() == 2


def test_the_stamp_endpoints_record_when_a_job_started(queue_url: str, tmp_path: Path) -> None:
    job_log = tmp_path / "jobs.log"
    with temporary_queue("ch07-jobs", url=queue_url) as queue:
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api, huey_consumer_process(JOBS_HUEY, env=env):
            assert httpx.post(f"{api.url}/stamps/7").status_code == 202
            wait_until(lambda: lines(job_log, "stamp"), timeout=30, what="the stamp job to run")
    _, number, enqueued_at, started_at = lines(job_log, "stamp")[0].split()
    assert number == "7"
    assert 0 <= float(started_at) - float(enqueued_at) < 30


# Under SIGKILL the jobs last long enough (3 s) that no stall between the request and the kill lets one finish.
@pytest.mark.parametrize(
    ("stop", "seconds", "done", "lifespan"),
    [(signal.SIGTERM, 0.3, 2, "lifespan shutdown ran"), (signal.SIGKILL, 3.0, 0, None)],
    ids=["SIGTERM waits", "SIGKILL loses"],
)
def test_background_app_on_a_signal(
    stop: signal.Signals, seconds: float, done: int, lifespan: str | None, tmp_path: Path
) -> None:
    task_log = tmp_path / "tasks.log"
    with uvicorn_process(BACKGROUND_APP, env={"TASK_LOG": str(task_log)}) as server:
        httpx.post(f"{server.url}/jobs", params={"count": 2, "seconds": seconds}).raise_for_status()
        server.send_signal(stop)
        assert server.wait(timeout=30) == -stop
    assert len(lines(task_log, "done")) == done
    assert (lifespan in lines(task_log, "lifespan")) if lifespan else lines(task_log, "lifespan") == []


def test_background_app_schedules_a_stamp(tmp_path: Path) -> None:
    task_log = tmp_path / "tasks.log"
    with uvicorn_process(BACKGROUND_APP, env={"TASK_LOG": str(task_log)}) as server:
        assert httpx.post(f"{server.url}/stamps/3").status_code == 202
        wait_until(lambda: lines(task_log, "stamp"), timeout=30, what="the stamp task to run")
    assert lines(task_log, "stamp")[0].split()[1] == "3"
