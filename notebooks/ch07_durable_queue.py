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
# # Chapter 7: When `BackgroundTasks` is not enough: shutdown, lost tasks, a durable queue
#
# A background task lives in the memory of the server process that accepted the request. This
# chapter stops that process in every way production stops processes (a deploy's SIGTERM, a
# developer's Ctrl-C twice, a `kill -9`) and counts what each one costs. Then it moves the work
# into a durable queue, [huey](https://huey.readthedocs.io/), whose jobs are rows in a SQLite file
# (or keys in Redis) that outlive every process, and counts again.
#
# Everything here runs for real: `python -m uvicorn` and `huey_consumer` as child processes of
# this notebook, signals sent with `os.kill`, a throwaway `redis-server` when one is installed.
#
# **You will learn**
#
# - what uvicorn does with running and queued background tasks on SIGTERM, on Ctrl-C, on a
#   second Ctrl-C, with `--timeout-graceful-shutdown`, and on SIGKILL;
# - how a durable queue keeps a job: huey on SQLite (no server) or on Redis (`QUEUE_URL`), an
#   API process that enqueues, a consumer that runs, results read back;
# - that jobs survive the death of the API process, and how retries are configured;
# - what happens to a job that is *running* when its worker dies, and why jobs must be idempotent;
# - how chapter 3's outbox completes the picture: no job is lost, and no receipt is sent twice;
# - what each option costs in enqueue-to-start latency, and how to choose.

# %% [markdown]
# ## 0. Set-up: the versions, and the course's helpers
#
# Behaviour changes between releases, so each chapter prints the versions it was proved on.

# %%
import asyncio
import contextlib
import inspect
import os
import platform
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "huey": "3.5.4",
    "redis": "8.1.0",
    "sqlalchemy": "2.1.9",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown]
# This chapter's helpers from `bgcourse`, each a `with` block that leaves nothing behind:
#
# - `uvicorn_process(app, *options, env=...)` runs `python -m uvicorn app` as a child process on a
#   free port, waits until it answers, and gives you its `url`, `send_signal()`, `wait()` and
#   `output`; `huey_consumer_process(huey, *options, env=...)` does the same for huey's consumer.
#   Both kill the child when the block ends, whatever happened.
# - `temporary_queue(name)` gives a fresh huey queue: a SQLite file in a temporary folder, or
#   Redis if the `QUEUE_URL` environment variable says `redis://...`. `run_consumer(huey)` runs
#   huey's own consumer in threads of this notebook.
# - `throwaway_redis()` starts a real `redis-server` on a free port, in a temporary folder.
# - `read_module_source(name)` shows the code of a module a child process runs.

# %%
import httpx
import uvicorn
from fastapi import BackgroundTasks, FastAPI, status
from huey.consumer import Consumer
from huey.exceptions import TaskException
from IPython.display import Markdown
from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, create_engine, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from huey.exceptions import ConfigurationError
from tqdm.auto import tqdm

from bgcourse import (
    NotebookFigure,
    capture_logs,
    find_in_source,
    find_redis_server,
    huey_consumer_process,
    load_quiz,
    make_huey,
    read_module_source,
    run_consumer,
    serve,
    shows_error,
    temporary_queue,
    throwaway_redis,
    uvicorn_process,
    wait_until,
)

redis_program = find_redis_server()
if redis_program is None:
    print("redis-server: not installed here; the Redis cells say so and skip (apt-get install redis-server)")
else:
    about = subprocess.run([redis_program, "--version"], capture_output=True, text=True, check=True).stdout
    print(f"redis-server {about.split()[2].removeprefix('v=')}: found, the Redis cells run")

# %% [markdown]
# ## 1. What stopping the server does to `BackgroundTasks`
#
# To see what a signal does, the server must be a process of its own: uvicorn installs its
# signal handlers only in the main thread (`Server.capture_signals`), so the servers that
# `serve()` runs in a notebook thread never see one. Here is the app that runs as
# `python -m uvicorn solutions.ch07_durable_queue.background_app:app`. One `POST /jobs` schedules
# four jobs, which run one after another; each job writes a line to a file when it ends or is
# cancelled, and the lifespan notes how it ended.

# %%
print(read_module_source("solutions.ch07_durable_queue.background_app"))

# %% [markdown]
# The experiment, used by every cell of this section: start the app, send two requests (eight
# jobs: two running, six queued behind them), send the signals, wait for the process to exit,
# count the lines. The jobs take 0.5 s each where the server waits for all of them, and 3 s
# where it is stopped early, so that the first jobs are surely still running when it stops,
# however busy the machine. A second signal is sent once uvicorn has logged that it is shutting
# down, as a person pressing Ctrl-C again would.

# %%
BACKGROUND_APP = "solutions.ch07_durable_queue.background_app:app"
JOBS = 8  # two requests, four jobs each


@dataclass
class Stopped:
    how: str
    done: int
    cancelled: int
    never_ran: int
    lifespan: str
    exit_status: int
    seconds: float  # from the first signal to the process's exit
    lived: float  # from the first request to the process's exit
    server_log: str
    refused_while_running: bool  # a new connection was refused while the process still ran


def stop_server(how: str, *signals: int, options: tuple[str, ...] = (), job_seconds: float = 0.5) -> Stopped:
    with tempfile.TemporaryDirectory() as folder:
        task_log = Path(folder) / "tasks.log"
        with uvicorn_process(BACKGROUND_APP, *options, env={"TASK_LOG": str(task_log)}) as server:
            requested = time.monotonic()
            with httpx.Client(base_url=server.url) as client:
                for first in (0, 4):
                    params = {"count": 4, "seconds": job_seconds, "first": first}
                    client.post("/jobs", params=params).raise_for_status()
            signalled = time.monotonic()
            for number, signum in enumerate(signals):
                if number:  # again, once uvicorn has taken the first one in
                    server.wait_for_output("Shutting down", timeout=60)
                server.send_signal(signum)
            wait_until(lambda: refuses_connections(server.url), timeout=60, what="new connections refused")
            refused_while_running = server.returncode is None
            exit_status = server.wait(timeout=120)
            seconds, lived = time.monotonic() - signalled, time.monotonic() - requested
            server_log = server.output
        lines = task_log.read_text().splitlines() if task_log.exists() else []
    done = sum(line.startswith("done") for line in lines)
    cancelled = sum(line.startswith("cancelled") for line in lines)
    if "lifespan shutdown ran" in lines:
        lifespan = "shutdown ran"
    elif "lifespan finally ran" in lines:
        lifespan = "only `finally` ran"
    else:
        lifespan = "nothing ran"
    return Stopped(how, done, cancelled, JOBS - done - cancelled, lifespan, exit_status, seconds, lived, server_log,
                   refused_while_running)


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        # Refused outright, or accepted into the backlog just before the listener closed and
        # then dropped without an answer: either way the server no longer takes requests.
        return True
    return False


def uvicorn_said(stopped: Stopped) -> list[str]:
    """uvicorn's own lines about shutting down, without the request log and the tracebacks."""
    return [line for line in stopped.server_log.splitlines()
            if line.startswith(("INFO:", "ERROR:")) and re.search(r"Shutting|Waiting for [bc]|Cancel|shutdown", line)]


def report(stopped: Stopped) -> None:
    print(f"{stopped.how}: {stopped.done} of {JOBS} jobs done, {stopped.cancelled} cancelled, "
          f"{stopped.never_ran} never ran; lifespan: {stopped.lifespan}; exit status {stopped.exit_status}, "
          f"{stopped.seconds:.1f} s after the first signal")


def stop_servers(experiments: dict[str, dict[str, Any]]) -> list[Stopped]:
    """Run ``stop_server(how, **arguments)`` for each experiment, with a progress bar: each takes seconds."""
    return [stop_server(how, *arguments.pop("signals"), **arguments)
            for how, arguments in tqdm(experiments.items(), desc="stopping uvicorn processes", unit="process")]


stops: list[Stopped] = []

# %% [markdown]
# **Fact 7.1.** On SIGTERM (what `kill` sends; `docker stop` and Kubernetes send it too, say
# their documentation) and on SIGINT (Ctrl-C), uvicorn stops accepting connections, then waits
# for every running *and queued* background task, then runs the lifespan shutdown, then exits.
# It waits without a time limit: `timeout_graceful_shutdown` is `None` unless `--timeout-graceful-shutdown` is given, and
# `Server.shutdown` passes it to `asyncio.wait_for`. After a SIGTERM the exit status is `-15`:
# uvicorn re-raises the signal once it has shut down, so a supervisor sees "ended by SIGTERM";
# after SIGINT the re-raised signal becomes a `KeyboardInterrupt` that `uvicorn.run` catches,
# and the status is `0`.

# %%
default = inspect.signature(uvicorn.Config).parameters["timeout_graceful_shutdown"].default
graceful = stop_servers({"SIGTERM": {"signals": [signal.SIGTERM]},
                         "Ctrl-C (SIGINT)": {"signals": [signal.SIGINT]}})
stops += graceful
print("uvicorn's default timeout_graceful_shutdown:", default)
for stopped in graceful:
    report(stopped)
print("new connections refused while the tasks were finishing:", [s.refused_while_running for s in graceful])
print("uvicorn said:", *uvicorn_said(graceful[-1]), sep="\n  ")
assert default is None
for stopped, expected_status in zip(graceful, (-signal.SIGTERM, 0)):
    assert stopped.refused_while_running, "the listening socket closes first"
    assert stopped.done == JOBS, "every running and queued task ran to the end"
    assert stopped.lifespan == "shutdown ran"
    # A lower bound made of sleeps, which never end early: a request's four tasks of 0.5 s, one after another.
    assert stopped.lived >= 4 * 0.5, "the process lived until the 2 s of one request's tasks had passed"
    assert stopped.exit_status == expected_status

# %% [markdown]
# The process waits for the tasks, however long they take. A supervisor usually does not: Docker's
# documentation of `docker stop` says it sends SIGKILL after a grace period (10 s by default),
# and Kubernetes's pod lifecycle documentation gives 30 s (`terminationGracePeriodSeconds`).
# What SIGKILL does is Fact 7.4.
#
# **Fact 7.2.** `--timeout-graceful-shutdown 1` bounds the wait: 1 s after shutdown begins,
# uvicorn cancels the tasks still running ("Cancel 2 running task(s), timeout graceful shutdown
# exceeded"); the tasks queued behind them never start; the lifespan shutdown still runs.

# %%
[stopped] = stop_servers({"SIGTERM, --timeout-graceful-shutdown 1": {
    "signals": [signal.SIGTERM], "options": ("--timeout-graceful-shutdown", "1"), "job_seconds": 3}})
stops.append(stopped)
report(stopped)
print("uvicorn said:", *uvicorn_said(stopped), sep="\n  ")
assert stopped.cancelled >= 1, "the tasks running at the deadline were cancelled"
assert stopped.done + stopped.cancelled < JOBS, "the tasks queued behind them never started"
assert stopped.lifespan == "shutdown ran"

# %% [markdown]
# **Fact 7.3.** A second Ctrl-C while uvicorn waits forces the exit: the running tasks are
# cancelled, the queued ones never run, and the lifespan shutdown is skipped: the code after
# `yield` in the lifespan does not run, but a `finally:` around the `yield` does (the lifespan is
# cancelled, not shut down). Only SIGINT does this: a second SIGTERM changes nothing. Here is
# the reason, in uvicorn's `Server.handle_exit`:

# %%
(force_exit,) = find_in_source("uvicorn", "self.force_exit = True")
print(force_exit.file)
print(force_exit.excerpt(before=3, after=2))

# %%
twice_int, twice_term = stop_servers({
    "Ctrl-C twice": {"signals": [signal.SIGINT, signal.SIGINT], "job_seconds": 3},
    "SIGTERM twice": {"signals": [signal.SIGTERM, signal.SIGTERM]},
})
stops += [twice_int, twice_term]
report(twice_int)
report(twice_term)
assert twice_int.cancelled >= 1 and twice_int.never_ran >= 1
assert twice_int.lifespan == "only `finally` ran"
assert twice_term.done == JOBS and twice_term.lifespan == "shutdown ran"

# %% [markdown]
# **Fact 7.4.** SIGKILL (`kill -9`; the Linux kernel's out-of-memory killer sends the same
# signal, see `mm/oom_kill.c`) ends the process at once, with no chance to run any code: every
# pending task is lost, the lifespan does not end, and uvicorn logs nothing about it. The tasks
# existed only in that process's memory, so any death that runs no more Python code (a
# segmentation fault in a C extension, `os._exit()`) ends them the same way.

# %%
[stopped] = stop_servers({"SIGKILL": {"signals": [signal.SIGKILL], "job_seconds": 3}})
stops.append(stopped)
report(stopped)
print(f"tasks lost: {stopped.never_ran} of {JOBS}; uvicorn said about it: {uvicorn_said(stopped) or 'nothing'}")
assert stopped.done == 0 and stopped.never_ran == JOBS
assert stopped.lifespan == "nothing ran" and stopped.exit_status == -signal.SIGKILL
assert uvicorn_said(stopped) == []

# %% [markdown]
# All six ways of stopping, side by side:

# %%
rows = [f"| {s.how} | {s.done} | {s.cancelled} | {s.never_ran} | {s.lifespan} | {s.exit_status} |" for s in stops]
Markdown("\n".join(["| how the server was stopped | done | cancelled | never ran | lifespan | exit status |",
                    "|---|---|---|---|---|---|", *rows]))

# %% [markdown]
# So a background task is safe only as long as the process is: a deploy that waits long enough
# loses nothing, a supervisor that runs out of patience, a second Ctrl-C, a `kill -9`, an
# out-of-memory kill or a crash lose every task that had not finished, and the client was told
# "accepted" long ago. If the work must happen, it needs a record outside the process.

# %% [markdown]
# ## 2. A durable queue: huey on SQLite
#
# A durable queue writes the job down before the endpoint answers. huey is a small task queue
# with several storages: `SqliteHuey` keeps the jobs in one SQLite file (nothing to install or
# run), `RedisHuey` in a Redis server; the task code is the same. `make_huey(name)` (and
# `temporary_queue(name)`) choose by configuration: `QUEUE_URL=redis://host:6379/0` gives
# `RedisHuey`, `QUEUE_URL=sqlite:////path/queue.db` or no `QUEUE_URL` gives `SqliteHuey`.
#
# A task is a plain function decorated with `@huey.task()`. The app below enqueues a report:

# %%
def reports_app(huey: Any) -> FastAPI:
    app = FastAPI()

    @huey.task()
    def build_report(month: str) -> str:
        time.sleep(0.2)  # the work
        return f"report for {month}: 12 pages"

    @app.post("/reports/{month}", status_code=status.HTTP_202_ACCEPTED)
    def request_report(month: str) -> dict[str, str]:  # def: enqueueing writes to a file, so not on the loop
        return {"job_id": build_report(month).id}  # stores the call in the queue, returns at once

    return app


MONTHS = ("2026-09", "2026-10", "2026-11")

# %% [markdown]
# **Fact 7.5.** Calling a huey task does not run it: it stores the call (the task's name and its
# arguments, pickled) in the queue and returns a `Result` handle. With no consumer running, the
# jobs wait, on SQLite as rows of the `task` table in the queue's file, and they are still there
# after the server that enqueued them has stopped.

# %%
with temporary_queue("ch07-reports") as queue:
    with serve(reports_app(queue.huey)) as url, httpx.Client(base_url=url) as client:
        responses = [client.post(f"/reports/{month}") for month in MONTHS]
    print("answers:", [response.status_code for response in responses])
    print(f"the server has stopped; jobs waiting in the queue: {queue.huey.pending_count()}")
    if queue.url.startswith("sqlite"):
        with sqlite3.connect(queue.url.removeprefix("sqlite:///")) as connection:
            (rows,) = connection.execute("select count(*) from task").fetchone()
        connection.close()
        print(f"rows in the task table of {Path(queue.url).name}: {rows}")
        assert rows == len(MONTHS)
    assert [response.status_code for response in responses] == [202] * len(MONTHS)
    assert queue.huey.pending_count() == len(MONTHS)

# %% [markdown]
# **Fact 7.6.** A consumer takes the jobs out of the queue and runs them, and stores each
# result back in the queue's storage, where any process can read it by the job's id. Here the
# consumer is huey's own `Consumer` running in threads of this notebook (`run_consumer`); the
# next section runs it as a separate `huey_consumer` process. Reading a result *removes* it,
# unless you pass `preserve=True`.

# %%
with temporary_queue("ch07-reports") as queue:
    with serve(reports_app(queue.huey)) as url, httpx.Client(base_url=url) as client:
        job_ids = [client.post(f"/reports/{month}").json()["job_id"] for month in MONTHS]
    with run_consumer(queue.huey, workers=2):
        results = [queue.huey.result(job_id, blocking=True, timeout=20, preserve=True) for job_id in job_ids]
    print("results:", results)
    print("waiting in the queue now:", queue.huey.pending_count())
    first_read = queue.huey.result(job_ids[0])
    second_read = queue.huey.result(job_ids[0])
    print(f"read without preserve=True: first {first_read!r}, then {second_read!r}")
assert results == [f"report for {month}: 12 pages" for month in MONTHS]
assert first_read == results[0] and second_read is None

# %% [markdown]
# **Fact 7.7.** huey refuses `async def` tasks: the decorator raises `ConfigurationError`. Its
# workers are threads (or processes, or greenlets) that call plain functions.

# %%
with shows_error(ConfigurationError) as raised, temporary_queue("ch07-async") as queue:

    @queue.huey.task()
    async def build_report_async(month: str) -> str:
        return f"report for {month}"

assert type(raised.error) is ConfigurationError

# %% [markdown]
# An async client library can still be used inside a task: the task is a plain function, and it
# runs the coroutine with `asyncio.run()` on its worker thread, which has no event loop of its own.

# %%
async def fetch_exchange_rate(currency: str) -> float:
    await asyncio.sleep(0.05)  # stands in for an async HTTP call
    return 1.08 if currency == "USD" else 1.0


with temporary_queue("ch07-async") as queue:

    @queue.huey.task()
    def convert(amount: float, currency: str) -> float:
        return round(amount * asyncio.run(fetch_exchange_rate(currency)), 2)

    converted = convert(100.0, "USD")
    with run_consumer(queue.huey):
        value = converted.get(blocking=True, timeout=20)
print("100 EUR in USD, computed by the worker:", value)
assert value == 108.0

# %% [markdown]
# ## 3. Jobs outlive the API process
#
# From here on the API and the consumer are separate processes, as in production. They import
# the same module, `solutions/ch07_durable_queue/jobs.py`: the API to enqueue, the consumer to
# run. Which storage they share is the environment variable `QUEUE_URL`.

# %%
print(read_module_source("solutions.ch07_durable_queue.jobs"))
print("-" * 100)
print(read_module_source("solutions.ch07_durable_queue.jobs_api"))

# %% [markdown]
# **Fact 7.8.** Jobs enqueued by an API process are still in the queue after that process is
# killed with SIGKILL; a consumer started afterwards, in a process of its own
# (`huey_consumer solutions.ch07_durable_queue.jobs.huey --workers 2`), runs every one of them;
# and a new API process reports their results. Nothing is lost, because nothing lived only in
# the API's memory.

# %%
JOBS_API = "solutions.ch07_durable_queue.jobs_api:app"
JOBS_HUEY = "solutions.ch07_durable_queue.jobs.huey"


def job_lines(job_log: Path, prefix: str) -> list[str]:
    lines = job_log.read_text().splitlines() if job_log.exists() else []
    return [line for line in lines if line.startswith(prefix)]


def survive_an_api_kill(queue: Any, count: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, tqdm(total=3, desc="enqueue, then kill the API") as progress:
        job_log = Path(folder) / "jobs.log"
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            job_ids = httpx.post(f"{api.url}/jobs", params={"count": count, "seconds": 0.05}).json()["job_ids"]
            api.send_signal(signal.SIGKILL)  # the API dies before any consumer has seen a job
            api_status = api.wait(timeout=30)
        waiting = queue.huey.pending_count()
        progress.set_description("a consumer process runs the jobs")
        progress.update()
        with huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env) as consumer:
            wait_until(lambda: len(job_lines(job_log, "done")) == count, timeout=120, what=f"{count} jobs done")
            consumer.send_signal(signal.SIGINT)  # huey's consumer stops gracefully on SIGINT
            consumer_status = consumer.wait(timeout=60)
        progress.set_description("a new API process reads the results")
        progress.update()
        with uvicorn_process(JOBS_API, env=env) as api, httpx.Client(base_url=api.url) as client:
            answers = [client.get(f"/jobs/{job_id}").json() for job_id in job_ids]
        progress.update()
    return {"enqueued": len(job_ids), "api_status": api_status, "waiting": waiting,
            "consumer_status": consumer_status, "done": sum(answer["status"] == "done" for answer in answers),
            "results": sorted(answer["result"] for answer in answers)}


with temporary_queue("ch07-jobs") as queue:
    outcome = survive_an_api_kill(queue)
print(f"the API accepted {outcome['enqueued']} jobs and was killed (exit status {outcome['api_status']})")
print(f"jobs waiting in the queue afterwards: {outcome['waiting']}")
print(f"a consumer process ran them and stopped on Ctrl-C (exit status {outcome['consumer_status']})")
print(f"a new API process reports {outcome['done']} of {outcome['enqueued']} jobs done")
assert outcome["api_status"] == -signal.SIGKILL
assert outcome["waiting"] == outcome["enqueued"] == outcome["done"] == 20
assert outcome["results"] == list(range(20))

# %% [markdown]
# ## 4. Retries
#
# `@huey.task(retries=2, retry_delay=1)`: if the function raises, huey runs the job again, up to
# twice more, no sooner than 1 s after each failure. The retry is a new entry in the queue's
# *schedule*, which the consumer's scheduler reads once a second, so on an idle machine the
# measured gap is between 1 s and about 2 s (a busy machine can only make it longer).
#
# **Fact 7.9.** A job that fails twice and then succeeds runs three times, each retry at least
# `retry_delay` after the failure, and its result is the third attempt's.
#
# **Fact 7.10.** With huey's default `store_intermediate_errors=True`, the error of a failed
# attempt is stored as the job's result while a retry is still to come: a reader sees a
# `TaskException` although the job will succeed. `store_intermediate_errors=False` keeps a
# failure back until the last retry has failed too.

# %%
def flaky_charge(huey: Any, attempts: list[float]) -> Any:
    @huey.task(retries=2, retry_delay=1)
    def charge(order_id: str) -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("the payment gateway timed out")
        return f"charged {order_id}"

    return charge


def read_result(store_intermediate_errors: bool) -> tuple[str, int, list[float], int]:
    """What a reader of the job's result gets, after which attempt; the attempts' times; failures logged."""
    with temporary_queue("ch07-retry", store_intermediate_errors=store_intermediate_errors) as queue, \
            capture_logs("huey") as huey_log:
        attempts: list[float] = []
        result = flaky_charge(queue.huey, attempts)("o-7")
        with run_consumer(queue.huey):
            try:
                outcome = result.get(blocking=True, timeout=30)
            except TaskException as error:
                outcome = f"TaskException: {error}"
            read_after = len(attempts)
    return outcome, read_after, attempts, sum(record.levelname == "ERROR" for record in huey_log)


readings = {setting: read_result(store_intermediate_errors=setting)
            for setting in tqdm((True, False), desc="a flaky job, retried", unit="queue")}
(early, early_after, _, _), (final, final_after, attempts, failures) = readings[True], readings[False]
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"store_intermediate_errors=True:  the reader got {early!r} after attempt {early_after}")
print(f"store_intermediate_errors=False: the reader got {final!r} after attempt {final_after}")
print(f"  attempts: {len(attempts)}; gaps between them: " + ", ".join(f"{gap:.1f} s" for gap in gaps))
print(f"  huey logged {failures} failures, each with its traceback")
assert early.startswith("TaskException") and early_after == 1
assert final == "charged o-7" and len(attempts) == 3
assert all(gap >= 1.0 for gap in gaps), f"each retry came at least retry_delay=1 s after its failure: {gaps}"
assert failures == 2

# %% [markdown]
# `make_huey(..., store_intermediate_errors=False)` sets it when the queue is created, as
# `temporary_queue` did above (it is an argument of every `Huey` class). The failures are logged
# on the `huey` logger with their tracebacks (collected here by `capture_logs`; a consumer
# process prints them).

# %% [markdown]
# ## 5. A job running when its worker dies
#
# A queued job is safe in the queue. A *running* job is not: both storages hand a job to a worker
# by removing it from the queue. SQLite deletes its row when a worker takes it (below), Redis
# pops it (`BRPOP`). From then on the job exists only in the worker's memory.

# %%
(take,) = find_in_source("huey", "delete from task where id = ?")
print(take)
print(take.excerpt(before=6, after=2))

# %% [markdown]
# The experiment: three jobs of 2 s in the queue, a consumer with one worker, a signal as soon as
# the first job has started (2 s leave room for a busy machine to be slow to send it); then
# count what was done, what is still waiting, and what is lost.

# %%
@dataclass
class Interrupted:
    how: str
    done: int
    waiting: int
    lost: int
    exit_status: int
    consumer_log: str
    starts_after_restart: int = 0


JOB_SECONDS = 2.0


def stop_consumer(how: str, signum: int, *options: str, huey: str = JOBS_HUEY, restart: bool = False) -> Interrupted:
    with temporary_queue("ch07-jobs") as queue, tempfile.TemporaryDirectory() as folder:
        job_log = Path(folder) / "jobs.log"
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            httpx.post(f"{api.url}/jobs", params={"count": 3, "seconds": JOB_SECONDS}).raise_for_status()
        with huey_consumer_process(huey, "--workers", "1", *options, env=env) as consumer:
            wait_until(lambda: job_lines(job_log, "start 0"), timeout=60, what="the first job to start")
            consumer.send_signal(signum)
            exit_status = consumer.wait(timeout=60)
            consumer_log = consumer.output
        done, waiting = len(job_lines(job_log, "done")), queue.huey.pending_count()
        interrupted = Interrupted(how, done, waiting, 3 - done - waiting, exit_status, consumer_log)
        if restart:  # a new consumer works through what is left
            with huey_consumer_process(huey, "--workers", "2", env=env) as consumer:
                wait_until(lambda: queue.huey.pending_count() == 0 and len(job_lines(job_log, "done")) >= 3,
                           timeout=120, what="the queue to drain")
                consumer.send_signal(signal.SIGINT)
                consumer.wait(timeout=60)
            interrupted.starts_after_restart = len(job_lines(job_log, "start 0"))
    return interrupted


def tell(run: Interrupted) -> None:
    print(f"{run.how}: running job {'finished' if run.done else 'not finished'}; "
          f"{run.waiting} waiting in the queue, {run.lost} lost; consumer exit status {run.exit_status}")


def stop_consumers(experiments: dict[str, dict[str, Any]]) -> list[Interrupted]:
    """Run ``stop_consumer(how, **arguments)`` for each experiment, with a progress bar: each takes seconds."""
    return [stop_consumer(how, arguments.pop("signum"), *arguments.pop("options", ()), **arguments)
            for how, arguments in tqdm(experiments.items(), desc="stopping huey consumers", unit="consumer")]


interruptions: list[Interrupted] = []

# %% [markdown]
# **Fact 7.11.** huey's consumer is graceful on SIGINT: it lets the running job finish and
# leaves the others in the queue. On SIGTERM it does *not* wait, the opposite of uvicorn: it
# exits at once, and the running job is lost, without a warning in its log. On SIGKILL the
# running job is lost too. In every case the queued jobs are safe.

# %%
graceful, term, kill = stop_consumers({how: {"signum": getattr(signal, how)}
                                        for how in ("SIGINT", "SIGTERM", "SIGKILL")})
interruptions += [graceful, term, kill]
for run in (graceful, term, kill):
    tell(run)
assert (graceful.done, graceful.waiting, graceful.lost) == (1, 2, 0)
assert (term.done, term.waiting, term.lost) == (0, 2, 1) and "WARNING" not in term.consumer_log
assert (kill.done, kill.waiting, kill.lost) == (0, 2, 1)

# %% [markdown]
# huey's consumer stops in one of two ways. A *graceful* stop waits for the running job to
# finish, then exits; an *immediate* stop exits at once and interrupts the running job. By
# default SIGINT asks for the first and SIGTERM for the second (Fact 7.11). Two things change
# what an immediate stop costs:
#
# - A handler for huey's `SIGNAL_INTERRUPTED`. This is a *huey signal*, not a Unix one: an event
#   inside huey that calls the functions registered with `@huey.signal(SIGNAL_INTERRUPTED)`.
#   The handler in `jobs_requeue.py` (below) puts the interrupted job back in the queue.
# - Two consumer options: `-g TERM` (`--graceful-signal TERM`) makes SIGTERM the graceful
#   signal, like uvicorn's; `-t SECONDS` (`--shutdown-timeout`) bounds the graceful wait, after
#   which the consumer interrupts the running job after all.
#
# **Fact 7.12.** huey sends `SIGNAL_INTERRUPTED` for every job still running when the consumer
# stops without waiting for it. A handler that puts the job back in the queue turns the SIGTERM
# loss into a re-run: the next consumer runs the job again *from the start*, so whatever it had
# done before the signal is done twice. Against SIGKILL the handler cannot help: a killed process
# runs no code. With `-g TERM`, SIGTERM waits for the running job; with `-t`, a job that outlasts
# the bound is interrupted, and re-enqueued by the handler.

# %%
print(read_module_source("solutions.ch07_durable_queue.jobs_requeue"))

# %% [markdown]
# The next cell repeats the experiment of Fact 7.11 (three jobs of 2 s, one worker, the signal
# once job 0 has started) four times, with the handler installed each time. What to expect, and
# why, as *done / waiting in the queue / lost*:
#
# | how the consumer is stopped | expected | why |
# |---|---|---|
# | SIGTERM | 0 / 3 / 0 | an immediate stop interrupts job 0, and the handler puts it back beside jobs 1 and 2 |
# | SIGKILL | 0 / 2 / 1 | the process dies without running the handler: job 0 is lost, as in Fact 7.11 |
# | SIGTERM with `-g TERM -t 5` | 1 / 2 / 0 | a graceful stop; job 0's 2 s fit in the 5 s bound, so it finishes |
# | SIGTERM with `-g TERM -t 0.3` | 0 / 3 / 0 | a graceful stop, but job 0 outlasts the 0.3 s bound: it is interrupted, and re-enqueued |
#
# After the first stop, a new consumer works through the queue, and the cell counts how often
# job 0 started in all: twice is expected, once before the SIGTERM and once after the restart.

# %%
REQUEUE_HUEY = "solutions.ch07_durable_queue.jobs_requeue.huey"
handled = stop_consumers({
    "SIGTERM, re-enqueue handler": {"signum": signal.SIGTERM, "huey": REQUEUE_HUEY, "restart": True},
    "SIGKILL, re-enqueue handler": {"signum": signal.SIGKILL, "huey": REQUEUE_HUEY},
    "SIGTERM, -g TERM -t 5": {"signum": signal.SIGTERM, "options": ("-g", "TERM", "-t", "5"), "huey": REQUEUE_HUEY},
    "SIGTERM, -g TERM -t 0.3": {"signum": signal.SIGTERM, "options": ("-g", "TERM", "-t", "0.3"), "huey": REQUEUE_HUEY},
})
interruptions += handled

# %%
for run in handled:
    tell(run)
requeued, killed, term_graceful, term_bounded = handled
said = [re.sub(r"job \S+", "job <id>", line.split(":MainThread:")[-1])
        for line in requeued.consumer_log.splitlines() if "interrupted" in line]
said += [line.split(":MainThread:")[-1] for line in term_bounded.consumer_log.splitlines() if "timeout" in line]
print("the consumer logged:", *said, sep="\n  ")
print(f"after a restart, job 0 had started {requeued.starts_after_restart} times")
assert (requeued.waiting, requeued.lost) == (3, 0) and requeued.starts_after_restart == 2
assert (killed.waiting, killed.lost) == (2, 1)
assert (term_graceful.done, term_graceful.waiting, term_graceful.lost) == (1, 2, 0)
assert (term_bounded.done, term_bounded.waiting, term_bounded.lost) == (0, 3, 0)

# %% [markdown]
# What the output shows: each of the four lines has the expected counts (the cell asserts
# them). The first logged line is the handler at work after the SIGTERM; the second is the
# consumer giving up its graceful wait after 0.3 s. And job 0 started twice: the re-enqueued job
# did not resume where it was stopped, it began again. The table below gathers the seven stops
# of this section.

# %%
rows = [f"| {run.how} | {'finished' if run.done else 'not finished'} | {run.waiting} | {run.lost} | {run.exit_status} |"
        for run in interruptions]
Markdown("\n".join(["| how the consumer was stopped | running job | waiting in the queue | lost | exit status |",
                    "|---|---|---|---|---|", *rows]))

# %% [markdown]
# huey hands a job over *at most once*: once a worker has it, a crash loses it. The other
# design acknowledges a job only after it has finished (late acknowledgement), so a crashed
# worker's job is delivered again: *at least once*. Either way the cure is the same pair:
#
# 1. **idempotent jobs**: running a job twice has the effect of running it once (a re-enqueued
#    job starts again from the beginning, as measured above);
# 2. **a record of what must happen**, outside the queue, from which a lost job can be sent again:
#    chapter 3's outbox (section 7).

# %% [markdown]
# ## 6. The same code on Redis
#
# **Fact 7.13.** With `QUEUE_URL=redis://127.0.0.1:<port>/0` the same `jobs.py`, `jobs_api.py`
# and `huey_consumer` run against a real `redis-server`, and section 3's experiment gives the
# same result.
#
# **Fact 7.14.** Redis keeps the queue in memory. Without persistence (this throwaway server's
# default: no snapshots, no append-only file) a crash of `redis-server` loses every queued job;
# with the append-only file and `appendfsync always` the queued jobs survive the crash.

# %%
def crash_redis(appendonly: bool) -> tuple[int, int]:
    with throwaway_redis(appendonly=appendonly) as server, temporary_queue("ch07-crash", url=server.url) as queue:

        @queue.huey.task()
        def resize_photo(number: int) -> int:
            return number

        for number in range(5):
            resize_photo(number)
        before = queue.huey.pending_count()
        server.kill()  # SIGKILL, as a crash or the out-of-memory killer
        server.start()  # same port, same folder
        return before, queue.huey.pending_count()


if redis_program is None:
    print("redis-server is not installed: Facts 7.13 and 7.14 are not shown on this machine.")
else:
    with throwaway_redis() as redis_server, temporary_queue("ch07-jobs", url=redis_server.url) as redis_queue:
        on_redis = survive_an_api_kill(redis_queue)
    crashes = {appendonly: crash_redis(appendonly) for appendonly in (False, True)}
    print(f"Redis: {on_redis['waiting']} jobs waited after the API was killed; "
          f"{on_redis['done']} of {on_redis['enqueued']} done by the consumer process")
    for appendonly, (before, after) in crashes.items():
        print(f"redis-server {'with' if appendonly else 'without'} the append-only file: "
              f"{before} jobs queued before the crash, {after} after the restart")
    assert on_redis["waiting"] == on_redis["enqueued"] == on_redis["done"] == 20
    assert on_redis["results"] == list(range(20))
    assert crashes == {False: (5, 0), True: (5, 5)}

# %% [markdown]
# ## 7. Chapter 3's outbox, completed
#
# Chapter 3 recorded the *intent* ("send a receipt for order 12") as an outbox row, in the same
# database transaction as the order itself, so that the two are committed together or not at
# all. A relay now hands each outbox row to the durable queue, and the job that sends the
# receipt is idempotent. huey's tasks are plain functions, so this section uses SQLAlchemy's
# synchronous engine (on SQLite), where chapter 3's endpoints used the asyncio one.

# %%
metadata = MetaData()
orders = Table("orders", metadata, Column("id", Integer, primary_key=True), Column("item", String, nullable=False))
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("enqueued_at", Float),  # set by the relay once the job is in the queue
    Column("done_at", Float),  # set by the job itself, in the transaction that does the work
)
receipts = Table("receipts", metadata, Column("order_id", Integer, primary_key=True), Column("sent_at", Float))


def orders_app(engine: Engine) -> FastAPI:
    app = FastAPI()

    @app.post("/orders", status_code=status.HTTP_201_CREATED)
    def place_order(item: str) -> dict[str, int]:
        with engine.begin() as connection:  # one transaction: the order and its outbox row, or neither
            order_id = connection.execute(insert(orders).values(item=item)).inserted_primary_key[0]
            connection.execute(insert(outbox).values(order_id=order_id))
        return {"order_id": order_id}

    return app


def receipt_task(huey: Any, engine: Engine, runs: list[int]) -> Any:
    @huey.task(retries=2, retry_delay=1)
    def send_receipt(order_id: int) -> str:
        runs.append(order_id)
        with engine.begin() as connection:  # the receipt and the "done" mark: one transaction
            # The primary key makes a second receipt for the same order impossible: idempotent.
            new = sqlite_insert(receipts).values(order_id=order_id, sent_at=time.time()).on_conflict_do_nothing()
            sent = connection.execute(new).rowcount == 1
            connection.execute(update(outbox).where(outbox.c.order_id == order_id).values(done_at=time.time()))
        return "sent" if sent else "already sent"

    return send_receipt


def relay_new_rows(engine: Engine, enqueue: Any) -> int:
    with engine.connect() as connection:
        query = select(outbox.c.id, outbox.c.order_id).where(outbox.c.enqueued_at.is_(None)).order_by(outbox.c.id)
        rows = connection.execute(query).all()
    for row in rows:
        enqueue(row.order_id)  # first into the queue...
        with engine.begin() as connection:  # ...then marked: a crash in between re-sends, never loses
            connection.execute(update(outbox).where(outbox.c.id == row.id).values(enqueued_at=time.time()))
    return len(rows)


def count(engine: Engine, *conditions: Any, table: Table = outbox) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()


ITEMS = ("teapot", "cups", "tray", "spoons", "kettle")

# %% [markdown]
# **Fact 7.15.** Each order commits with its outbox row. The relay enqueues a row's job and only
# then marks the row; a relay that dies between the two (here: an exception right after the
# third enqueue) leaves that row unmarked, so its next run enqueues the job again. The job then
# runs twice, and the idempotent task still sends exactly one receipt per order.
#
# What to expect, step by step, for five orders:
#
# 1. Five orders are placed: five outbox rows, none relayed yet.
# 2. The relay enqueues the jobs of rows 1, 2 and 3, and dies right after the third: 3 jobs are
#    in the queue, but only rows 1 and 2 are marked (row 3's mark was to come next).
# 3. Its next run finds rows 3, 4 and 5 unmarked and enqueues all three: 6 jobs in the queue,
#    two of them for the third order.
# 4. A consumer runs the 6 jobs. The third order's job runs twice, but its second run finds the
#    receipt already there (the primary key refuses a second one): 5 receipts, one per order.

# %%
crash_after = [3]  # the relay dies right after enqueueing the third job


def enqueue_then_die(order_id: int) -> None:
    send_receipt(order_id)
    crash_after[0] -= 1
    if crash_after[0] == 0:
        raise ConnectionError("the relay lost its database connection")


with tempfile.TemporaryDirectory() as folder, temporary_queue("ch07-outbox") as queue:
    engine = create_engine(f"sqlite:///{Path(folder) / 'shop.db'}")
    metadata.create_all(engine)
    runs: list[int] = []
    send_receipt = receipt_task(queue.huey, engine, runs)
    with serve(orders_app(engine)) as url, httpx.Client(base_url=url) as client:
        order_ids = [client.post("/orders", params={"item": item}).json()["order_id"] for item in ITEMS]
    not_relayed = count(engine, outbox.c.enqueued_at.is_(None))
    story = [f"{len(order_ids)} orders, {not_relayed} outbox rows not yet relayed"]
    after_the_crash = None  # (jobs in the queue, rows marked) once the relay has died
    try:
        relay_new_rows(engine, enqueue_then_die)
    except ConnectionError as error:
        after_the_crash = (queue.huey.pending_count(), count(engine, outbox.c.enqueued_at.is_not(None)))
        story.append(f"the relay died ({error}) with {after_the_crash[0]} jobs in the queue "
                     f"and {after_the_crash[1]} rows marked")
    relayed, queued = relay_new_rows(engine, send_receipt), queue.huey.pending_count()
    story.append(f"its next run enqueued {relayed} rows; jobs in the queue: {queued}")
    with run_consumer(queue.huey, workers=2):
        wait_until(lambda: count(engine, outbox.c.done_at.is_(None)) == 0 and len(runs) == 6, timeout=60,
                   what="every outbox row done")
    sent = count(engine, table=receipts)
    engine.dispose()
twice = [order_id for order_id, times in Counter(runs).items() if times > 1]
story.append(f"the task ran {len(runs)} times for {len(order_ids)} orders (order {twice} twice); receipts sent: {sent}")
print(*story, sep="\n")
assert len(order_ids) == not_relayed == 5
assert after_the_crash == (3, 2), "3 jobs enqueued, the third one's row not marked"
assert (relayed, queued) == (3, 6), "the next run enqueued the third job again"
assert len(runs) == 6 and twice == [order_ids[2]]
assert sent == len(order_ids)

# %% [markdown]
# The four lines of output are the four steps above, with the counts expected (the cell asserts
# each). The one job that ran twice is the third order's, the row the dying relay had not
# marked; and there are as many receipts as orders. The outbox made sure no receipt was lost,
# and the idempotent task made sure none was sent twice.

# %% [markdown]
# **Fact 7.16.** A job lost from the queue (its worker was killed mid-job as in section 5, or
# Redis crashed without persistence as in section 6) leaves its outbox row *enqueued but never
# done*: the outbox knows exactly which jobs are missing. Here the queue is emptied
# (`huey.flush()`) as a stand-in for those crashes; a consumer started afterwards runs a job
# enqueued after the crash, and nothing else. Exercise 7.3 writes the relay that sends such rows
# again.

# %%
with tempfile.TemporaryDirectory() as folder, temporary_queue("ch07-outbox") as queue:
    engine = create_engine(f"sqlite:///{Path(folder) / 'shop.db'}")
    metadata.create_all(engine)
    runs = []
    send_receipt = receipt_task(queue.huey, engine, runs)
    with serve(orders_app(engine)) as url, httpx.Client(base_url=url) as client:
        for item in ITEMS[:2]:
            client.post("/orders", params={"item": item}).raise_for_status()
    relay_new_rows(engine, send_receipt)
    queue.huey.flush()  # the crash: the two jobs are gone

    @queue.huey.task()
    def after_the_crash() -> str:
        return "ran"

    later = after_the_crash()  # proof that the consumer below did take jobs from this queue
    with run_consumer(queue.huey):
        later_ran = later.get(blocking=True, timeout=60)
    missing = count(engine, outbox.c.enqueued_at.is_not(None), outbox.c.done_at.is_(None))
    engine.dispose()
print(f"a job enqueued after the crash: {later_ran}; receipt jobs run: {len(runs)}; "
      f"outbox rows enqueued but never done: {missing}")
assert later_ran == "ran"
assert runs == [] and missing == 2

# %% [markdown]
# ## 8. Measured: enqueue-to-start latency
#
# The same trivial job, 200 times for each contender, in the shape of production: the API is a
# `uvicorn` process and huey's consumer a `huey_consumer` process with two worker threads. The
# three contenders are `BackgroundTasks` (`background_app.py`'s `POST /stamps/{number}`), huey on
# SQLite and huey on Redis (`jobs_api.py`'s `POST /stamps/{number}`, which enqueues `jobs.stamp`).
# All three run at once, and one client sends each of them a `POST` in turn, 200 rounds, so that a
# busy moment of the machine falls on all three alike. Each job writes down when it was scheduled
# and when it started; *enqueue-to-start latency* is the difference.
# (`benchmarks/bench_ch07.py` measures throughput too: 1,000 jobs, one contender at a time.)
#
# **Fact 7.17.** huey on SQLite is the slow starter: its median enqueue-to-start latency is
# more than 10 ms, and above both `BackgroundTasks` (which starts the job in the API process
# right after the response) and huey on Redis. SQLite cannot wake a waiting reader, so huey's
# worker *polls* the file: after an empty poll it sleeps 0.1 s, 15 % longer after each further
# empty poll, up to 10 s (the consumer's `--delay`, `--backoff` and `--max-delay` options). The
# Redis worker waits inside a blocking `BRPOP` and wakes when a job arrives. (A busy machine adds
# scheduling delays to all three, here at the same moments, and can only lengthen the polling
# wait, so the cell asserts the comparison and the 10 ms that the polling alone costs, and prints
# the numbers.)

# %%
defaults = inspect.signature(Consumer.__init__).parameters
print("huey's consumer polls with", {name: defaults[name].default for name in ("initial_delay", "backoff", "max_delay")})
(brpop,) = find_in_source("huey", "self.conn.brpop(")
print("the Redis storage waits in:", brpop)

# %%
SAMPLES = 200


def stamps_in(log: Path) -> list[tuple[float, float]]:
    """(scheduled at, started at) of every job that has started, from its "stamp" line."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(scheduled), float(started))
            for _, _, scheduled, started in (line.split() for line in lines if line.startswith("stamp"))]


def start(processes: contextlib.ExitStack, log: Path, queue_url: str) -> str:
    """One contender's processes, the URL of its API: BackgroundTasks without a queue URL, else huey."""
    env = {"TASK_LOG": str(log), "JOB_LOG": str(log), "QUEUE_URL": queue_url}
    quiet = ("--log-level", "warning")  # no access log line per request
    if not queue_url:
        return processes.enter_context(uvicorn_process(BACKGROUND_APP, *quiet, env=env)).url
    api = processes.enter_context(uvicorn_process(JOBS_API, *quiet, env=env))
    processes.enter_context(huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env))
    return api.url


def all_started(log: Path) -> bool:
    return len(stamps_in(log)) == SAMPLES


with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as processes:
    queue_urls = {"BackgroundTasks": ""}
    queue = processes.enter_context(temporary_queue("ch07-jobs"))
    queue_urls["huey on SQLite" if queue.url.startswith("sqlite") else "huey on QUEUE_URL"] = queue.url
    if redis_program is not None:
        redis_server = processes.enter_context(throwaway_redis())
        queue_urls["huey on Redis"] = processes.enter_context(temporary_queue("ch07-jobs", url=redis_server.url)).url
    logs = {name: Path(folder) / f"{index}.log" for index, name in enumerate(queue_urls)}
    apis = {name: start(processes, logs[name], url) for name, url in queue_urls.items()}
    with httpx.Client() as client:
        for number in tqdm(range(SAMPLES), desc=f"{SAMPLES} rounds, one job to each contender", unit="round"):
            for api in apis.values():  # in turn: a busy moment of the machine falls on all of them
                client.post(f"{api}/stamps/{number}").raise_for_status()
    for name, log in logs.items():
        wait_until(lambda: all_started(log), timeout=120, what=f"every {name} job started")
    latencies = {name: sorted(started - scheduled for scheduled, started in stamps_in(log)) for name, log in logs.items()}

median = {name: times[len(times) // 2] for name, times in latencies.items()}
# No padded columns: the numbers change from run to run, the text around them must not.
lines = [f"{name}: median {1000 * median[name]:.2f} ms, 95th percentile {1000 * times[int(0.95 * len(times))]:.2f} ms"
         for name, times in latencies.items()]
lines += [f"{name}: median latency {median[name] / median['BackgroundTasks']:.0f} times that of BackgroundTasks"
          for name in latencies if name != "BackgroundTasks"]
print(*lines, sep="\n")
assert all(len(times) == SAMPLES for times in latencies.values())
if "huey on SQLite" in median:
    # A floor set by the design, not by the machine: a worker that found the queue empty sleeps at
    # least 0.1 s, and a busy machine only makes the wait longer.
    assert median["huey on SQLite"] > 0.01, "each job waits for the next poll of the file"
    assert all(median["huey on SQLite"] > median[other] for other in median if other != "huey on SQLite")

# %%
figure = NotebookFigure(figsize=(9, 3.2), layout="constrained")
axes = figure.subplots()
names = list(latencies)
axes.boxplot([[1000 * time for time in latencies[name]] for name in names], orientation="horizontal",
             tick_labels=names, whis=(5, 95), showfliers=False)
axes.set_xscale("log")
axes.xaxis.set_major_formatter("{x:g}")
axes.set_xlabel("enqueue-to-start latency (ms, log scale); box: middle half, whiskers: 5th to 95th percentile")
axes.invert_yaxis()  # the first contender at the top
figure.suptitle(f"{SAMPLES} trivial jobs for each contender, scheduled in turn")
figure

# %% [markdown]
# What a kill costs, from sections 1, 5 and 6:
#
# | | the API process is killed | the worker is killed mid-job | the storage crashes |
# |---|---|---|---|
# | `BackgroundTasks` | every task not yet finished (8 of 8, Fact 7.4) | (the worker *is* the API) | (nothing stored) |
# | huey on SQLite | nothing (Fact 7.8) | the running job (1; Facts 7.11, 7.12) | no server to crash: the jobs are rows in the file (Fact 7.8) |
# | huey on Redis | nothing (Fact 7.13) | the running job | every queued job without persistence; none with the append-only file (Fact 7.14) |

# %% [markdown]
# ## 9. Choosing: a decision guide
#
# The third column describes the distributed task engines as their own documentation does;
# this course did not run them.
#
# | | `BackgroundTasks` | durable queue: huey on SQLite or Redis | distributed engine: Celery, Dramatiq, arq on Redis or RabbitMQ |
# |---|---|---|---|
# | **where the job lives** | the API process's memory | a SQLite file / a Redis server | a broker (RabbitMQ, Redis) |
# | **survives a deploy** | only if the tasks finish before the supervisor's SIGKILL | yes | yes |
# | **survives a crash** | no: every unfinished task is lost | queued jobs yes; the running job is lost (at most once) | with late acknowledgement, the running job is delivered again (at least once): Celery's docs (`task_acks_late`, glossary "late acknowledgment"; its Tasks guide adds that a child killed by a signal is still acknowledged unless `task_reject_on_worker_lost` is set); Dramatiq's docs ("Message Persistence": at-least-once, acknowledged after processing); arq's docs ("pessimistic execution": a job stays in the queue until it succeeds or fails) |
# | **retries** | write your own (chapter 4) | `retries=`, `retry_delay=`, `retry_backoff=` | built in, per their docs |
# | **enqueue-to-start latency** | the lowest: right after the response | Redis: close to it (blocking `BRPOP`); SQLite: the next poll, tens of ms or more | depends on the broker |
# | **runs on** | the API's event loop and thread pool | worker threads/processes you start (`huey_consumer`) | worker processes on any number of machines |
# | **operational cost** | none | one more process; Redis: one more server | a broker and workers to deploy, monitor and upgrade |
# | **choose it when** | losing the task is acceptable (a cache warm-up, a log line) | the job must happen, one machine or a few, modest volume | many machines, high volume, routing, workflows, at-least-once delivery |
#
# Whatever you choose, make jobs idempotent and keep the intent in your own database (the outbox)
# when losing a job is not acceptable: the queue is a transport, the database is the record.

# %% [markdown]
# ## 10. Nothing left behind
#
# **Fact 7.18.** After all these experiments this notebook has no child process left (every
# `uvicorn`, `huey_consumer` and `redis-server` was killed and reaped by its `with` block), and no
# consumer or server thread is running.

# %%
try:
    leftover = os.waitpid(-1, os.WNOHANG)  # a running child would give (0, 0)
except ChildProcessError:
    leftover = None  # "no child processes"
threads = sorted(thread.name for thread in threading.enumerate()
                 if thread.name.startswith(("Worker-", "Scheduler", "uvicorn-")))
print(f"child processes: {'none' if leftover is None else leftover}; consumer or server threads: {threads or 'none'}")
assert leftover is None and threads == []

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against a real server
# and a real queue. The reference solutions are in `solutions/ch07_durable_queue/`; try first.
#
# ### Exercise 7.1: a receipt job and its status
#
# Write `make_app(huey)`, returning a FastAPI app. It defines a huey task `send_receipt(order_id)`
# on the given `huey`, which returns `f"receipt sent for {order_id}"`. `POST /receipts/{order_id}`
# enqueues it and answers `202 Accepted` with `{"job_id": <the job's id>}`. `GET /jobs/{job_id}`
# answers `{"status": "pending"}` until a consumer has run the job, then
# `{"status": "done", "result": <its result>}`, every time it is asked.

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from typing import Any

from fastapi import FastAPI, status


def make_app(huey: Any) -> FastAPI:
    app = FastAPI()

    @huey.task()
    def send_receipt(order_id: str) -> str:
        return f"receipt sent for {order_id}"

    @app.post("/receipts/{order_id}", status_code=status.HTTP_202_ACCEPTED)
    def queue_receipt(order_id: str) -> dict[str, str]:
        return {"job_id": send_receipt(order_id).id}

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        result = huey.result(job_id, preserve=True)
        if result is None:
            return {"status": "pending"}
        return {"status": "done", "result": result}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch07_durable_queue as checks

checks.ex01(make_app)

# %% [markdown]
# ### Exercise 7.2: one receipt, however often the job runs
#
# A re-enqueued job (section 5) or a relay that died between enqueue and mark (section 7) runs a
# job twice, possibly on two workers at the same time. Write
# `deliver_once(db_path, order_id, send) -> bool` that calls `send(order_id)` only if no earlier
# call has sent this order's receipt, keeping its record in the SQLite file `db_path` (create what
# you need). It returns `True` if it sent, `False` if the receipt had been sent already. If `send`
# raises, let the exception out (huey retries the job) and leave no record, so that the retry
# sends. Two calls for the same order at the same time must send once.

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import sqlite3
from collections.abc import Callable


def deliver_once(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
    connection = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        connection.execute("create table if not exists deliveries (order_id text primary key)")
        # BEGIN IMMEDIATE takes SQLite's write lock now: a second worker with the same job
        # waits here until this one has committed (or rolled back), then finds the row.
        connection.execute("begin immediate")
        try:
            claimed = connection.execute("insert or ignore into deliveries values (?)", (order_id,)).rowcount == 1
            if claimed:
                send(order_id)
        except BaseException:
            connection.execute("rollback")  # send failed: no record, so the retry sends
            raise
        connection.execute("commit")
        return claimed
    finally:
        connection.close()
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(deliver_once)

# %% [markdown]
# ### Exercise 7.3: a relay that also re-sends lost jobs
#
# Extend section 7's relay: `relay_outbox(engine, enqueue, *, stale_after) -> int` enqueues (calls
# `enqueue(order_id)`), in `id` order, every outbox row that was never enqueued, and every row
# that was enqueued more than `stale_after` seconds ago but is not done (its job was lost, Fact
# 7.16); it sets `enqueued_at` to the current time for each, and returns how many it enqueued.
# The `outbox` table has the columns `id`, `order_id`, `enqueued_at` and `done_at` (times as
# `time.time()` floats, `NULL` when not yet). If `enqueue` raises, let the exception out, and never
# mark a row whose enqueue did not succeed.

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time
from collections.abc import Callable

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, and_, or_, select, update

metadata = MetaData()
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("enqueued_at", Float),
    Column("done_at", Float),
)


def relay_outbox(engine: Engine, enqueue: Callable[[int], object], *, stale_after: float) -> int:
    cutoff = time.time() - stale_after
    waiting = or_(
        outbox.c.enqueued_at.is_(None),
        and_(outbox.c.done_at.is_(None), outbox.c.enqueued_at < cutoff),
    )
    with engine.connect() as connection:
        rows = connection.execute(select(outbox.c.id, outbox.c.order_id).where(waiting).order_by(outbox.c.id)).all()
    for row in rows:
        enqueue(row.order_id)  # first into the queue...
        with engine.begin() as connection:  # ...then marked: a crash in between re-sends, never loses
            connection.execute(update(outbox).where(outbox.c.id == row.id).values(enqueued_at=time.time()))
    return len(rows)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(relay_outbox)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch07_durable_queue")
quiz.ask("q01")

# %% nbgrader={"grade": false, "grade_id": "q01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q01 = "C"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q01", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q01", answer_q01)

# %% nbgrader={"grade": false, "grade_id": "q02_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q02")

# %% nbgrader={"grade": false, "grade_id": "q02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q02 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q02", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q02", answer_q02)

# %% nbgrader={"grade": false, "grade_id": "q03_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q03")

# %% nbgrader={"grade": false, "grade_id": "q03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q03 = "B"
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
def make_task(huey):
    @huey.task(retries=3, retry_delay=2)
    def charge(order_id):
        return f"charged {order_id}"

    return charge
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", make_task)

# %% [markdown]
# ## Summary
#
# - On SIGTERM or one Ctrl-C, uvicorn waits for every running and queued background task, with
#   no limit unless `--timeout-graceful-shutdown` is set; then it cancels what is left and still
#   runs the lifespan shutdown (section 1).
# - A second Ctrl-C cancels the tasks and skips the lifespan shutdown (its `finally` still runs);
#   a second SIGTERM does nothing more. SIGKILL, an out-of-memory kill or a crash loses every
#   unfinished task, silently (section 1).
# - A durable queue writes the job down before the response: huey keeps it in a SQLite file, or
#   in Redis when `QUEUE_URL` says so, with the same task code. The API enqueues, a consumer runs,
#   anyone reads the result (`preserve=True` to read it more than once) (sections 2, 3, 6).
# - Jobs outlive the API process; retries are `retries=` and `retry_delay=`; set
#   `store_intermediate_errors=False` if readers must not see a failure that a retry may fix
#   (sections 3, 4).
# - huey's consumer is graceful on SIGINT and abrupt on SIGTERM (use `-g TERM -t N`); a running
#   job is lost on SIGTERM and SIGKILL; a `SIGNAL_INTERRUPTED` handler re-enqueues it on SIGTERM,
#   nothing saves it on SIGKILL. Redis without persistence loses the whole queue in a crash
#   (sections 5, 6).
# - Hence idempotent jobs, and the outbox as the record: one transaction for the order and its
#   intent, a relay that enqueues first and marks second, a job that marks itself done, a relay
#   that re-sends what was never done (section 7, exercises 7.2 and 7.3).
# - huey on SQLite starts jobs later than `BackgroundTasks` and huey on Redis, because its worker
#   polls the file; choose by what losing a job costs, not by milliseconds (sections 8, 9).
