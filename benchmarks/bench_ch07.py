"""Print chapter 7's figures: 1,000 jobs through BackgroundTasks, huey on SQLite, huey on Redis.

For each: the enqueue-to-start latency (median and 95th percentile), the end-to-end throughput of
1,000 jobs each scheduled by its own POST, and what a SIGKILL in the middle of 1,000 queued jobs
loses.  Everything runs as real processes: `python -m uvicorn` for the API and `huey_consumer`
(two worker threads) for huey, as in the chapter.  Redis needs `redis-server`; without it, its
rows say so.  Run with `make bench`.  Figures, not pass/fail: a busy machine makes them slower.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bgcourse import (
    ChildProcess,
    TemporaryQueue,
    find_redis_server,
    huey_consumer_process,
    temporary_queue,
    throwaway_redis,
    uvicorn_process,
    wait_until,
)

JOBS = 1000
BACKGROUND_APP = "solutions.ch07_durable_queue.background_app:app"
JOBS_API = "solutions.ch07_durable_queue.jobs_api:app"
JOBS_HUEY = "solutions.ch07_durable_queue.jobs.huey"
QUIET = ("--log-level", "warning")  # no access-log line per request


@dataclass(frozen=True)
class Figures:
    median_ms: float
    p95_ms: float
    jobs_per_second: float
    done_at_kill: int
    waiting_after_kill: int

    @property
    def lost(self) -> int:
        return JOBS - self.done_at_kill - self.waiting_after_kill


def lines(log: Path, prefix: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(prefix)] if log.exists() else []


def processes(stack: contextlib.ExitStack, queue_url: str, env: dict[str, str]) -> ChildProcess:
    """The API (and for huey, a consumer with two worker threads); returns the API."""
    if not queue_url:
        return stack.enter_context(uvicorn_process(BACKGROUND_APP, *QUIET, env=env))
    api = stack.enter_context(uvicorn_process(JOBS_API, *QUIET, env=env))
    stack.enter_context(huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env))
    return api


def latency_and_throughput(queue_url: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        log = Path(folder) / "stamps.log"
        env = {"TASK_LOG": str(log), "JOB_LOG": str(log), "QUEUE_URL": queue_url}
        api = processes(stack, queue_url, env)
        with httpx.Client(base_url=api.url) as client:
            began = time.time()
            for number in range(JOBS):
                client.post(f"/stamps/{number}").raise_for_status()
        wait_until(
            lambda: len(lines(log, "stamp")) == JOBS,
            timeout=600,
            what=f"{JOBS} jobs started",
        )
        stamps = [line.split() for line in lines(log, "stamp")]
    latencies = sorted(float(started) - float(scheduled) for _, _, scheduled, started in stamps)
    last_start = max(float(started) for *_, started in stamps)
    return (
        1000 * latencies[JOBS // 2],
        1000 * latencies[int(0.95 * JOBS)],
        JOBS / (last_start - began),
    )


def kill_mid_run(queue: TemporaryQueue | None) -> tuple[int, int]:
    """Queue 1,000 jobs of 2 ms with one request, SIGKILL the process running them a tenth of the way in."""
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        log = Path(folder) / "jobs.log"
        env = {
            "TASK_LOG": str(log),
            "JOB_LOG": str(log),
            "QUEUE_URL": queue.url if queue else "",
        }
        if queue is None:  # BackgroundTasks: the API process is the worker
            worker = stack.enter_context(uvicorn_process(BACKGROUND_APP, *QUIET, env=env))
            httpx.post(f"{worker.url}/jobs", params={"count": JOBS, "seconds": 0.002}).raise_for_status()
        else:
            with uvicorn_process(JOBS_API, *QUIET, env=env) as api:
                httpx.post(
                    f"{api.url}/jobs",
                    params={"count": JOBS, "seconds": 0.002},
                    timeout=120,
                ).raise_for_status()
            worker = stack.enter_context(huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env))
        wait_until(
            lambda: len(lines(log, "done")) >= JOBS // 10,
            timeout=300,
            what="a tenth of the jobs done",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        done = len(lines(log, "done"))
    waiting: int = queue.huey.pending_count() if queue is not None else 0
    return done, waiting


def measure(queue: TemporaryQueue | None = None) -> Figures:
    median_ms, p95_ms, rate = latency_and_throughput(queue.url if queue else "")
    if queue is not None:
        queue.huey.flush()
    done, waiting = kill_mid_run(queue)
    return Figures(median_ms, p95_ms, rate, done, waiting)


def main() -> None:
    results: dict[str, Figures | None] = {"BackgroundTasks": measure()}
    with (
        tempfile.TemporaryDirectory() as folder,
        temporary_queue("ch07-jobs", url=f"sqlite:///{Path(folder) / 'queue.db'}") as queue,
    ):
        results["huey on SQLite"] = measure(queue)
    if find_redis_server() is None:
        results["huey on Redis"] = None
    else:
        with (
            throwaway_redis() as server,
            temporary_queue("ch07-jobs", url=server.url) as queue,
        ):
            results["huey on Redis"] = measure(queue)

    print(f"chapter 7: {JOBS:,} jobs, each scheduled by its own POST from one client; API and consumer as processes")
    print(f"{'':16} {'median start':>13} {'95th pct':>10} {'jobs/s':>8}   after a SIGKILL with {JOBS:,} jobs queued")
    for name, figures in results.items():
        if figures is None:
            print(f"{name:16} (redis-server is not installed)")
            continue
        print(
            f"{name:16} {figures.median_ms:10.2f} ms {figures.p95_ms:7.2f} ms {figures.jobs_per_second:8.0f}"
            f"   {figures.done_at_kill} done, {figures.waiting_after_kill} still queued, {figures.lost} lost"
        )


if __name__ == "__main__":
    main()
