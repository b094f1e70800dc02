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
# # Chapter 5: Performance: blocking, the thread pool, limits, timeouts
#
# Chapter 1 showed (section 4) that one `time.sleep` in an `async def` task makes another
# client's `/ping` wait. This chapter measures how much, and what to do about it. Every figure
# below is measured live on your machine while the cell runs, so the numbers differ from run to
# run; the `assert`s only check what holds on a busy two-core laptop as well as on a big server.
#
# **You will learn**
#
# - how long other requests wait while a task blocks the event loop, and how `def` tasks and
#   `run_in_threadpool` avoid it (with a price for CPU-bound work: the GIL);
# - that `def` endpoints, `def` dependencies and `def` tasks share one limiter of 40 worker
#   threads per event loop, what happens to the 41st, and how to raise the limit and what that
#   costs;
# - how splitting a long job into batches keeps the server responsive and its progress visible;
#   how a semaphore bounds a kind of work across requests, and the "bound to a different event
#   loop" trap;
# - what `asyncio.timeout` and `anyio.fail_after` can cancel, and why neither can stop a thread;
# - how a process pool runs CPU-bound work on several cores while the server stays responsive.

# %% [markdown]
# ## 0. Set-up: the versions, the machine, and the course's helpers
#
# Performance depends on the machine, so the cell also prints how many CPU cores Python sees.

# %%
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version

PINNED = {"fastapi": "0.163.2", "starlette": "1.10.0", "uvicorn": "0.54.0", "httpx": "0.28.1", "anyio": "4.16.0"}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")
print(f"{'CPU cores':10} {os.cpu_count()}")

# %% [markdown]
# Besides `serve(app)` and `Timeline` from chapter 1, this chapter measures with a few small
# helpers from `bgcourse`:
#
# - `await probe_latency(client, "/ping", count=8, every=0.1)` sends eight `GET /ping`, one every
#   0.1 s, *without waiting for the previous answer* (as eight different clients would), and
#   returns for each one when it was sent, how long its answer took, and the body; its `sent`
#   and `answered` are the same two moments as readings of `time.perf_counter()`, a clock the
#   server's code in this process can read too;
# - `process_status()` reads how many threads this process runs and how much memory it holds
#   (its resident set size, from `/proc/self/status`);
# - `count_primes(limit)` is a fixed amount of pure-Python CPU work, and
#   `cpu_time_of(func, *args)` calls `func(*args)` and returns its result with the CPU time the
#   calling thread spent on it.
#
# Remember that the server runs in a thread of this notebook's process, so the notebook (the
# client) and the server share one process: its threads, its memory and its GIL.

# %%
import anyio
import anyio.to_thread
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool

from bgcourse import (
    NotebookFigure,
    Timeline,
    capture_logs,
    count_primes,
    cpu_time_of,
    find_in_source,
    load_quiz,
    peak_overlap,
    poll_json,
    probe_latency,
    process_status,
    run_in_fresh_kernel,
    serve,
)

# %% [markdown]
# ## 1. A blocking call in `async def` stalls every request
#
# The event loop runs one piece of code at a time; `await` is where it may switch to another.
# A call that blocks without `await` (`time.sleep`, a CPU loop, a synchronous HTTP or database
# client) keeps the loop until it returns. Starlette runs an `async def` task on the loop, and a
# `def` task on a worker thread through `run_in_threadpool` (chapter 1, section 4); an
# `async def` task can also hand its blocking part to a thread itself with
# `await run_in_threadpool(func, *args)`.
#
# **Fact 1.1.** While an `async def` task blocks for 0.8 s, with `time.sleep` or with a CPU
# loop, every request that arrives meanwhile waits until the task ends: a `/ping` sent 0.1 s
# into the task waits about 0.7 s, one sent at 0.5 s waits about 0.3 s, and not one is answered
# before the task ends. The same work as a `def` task, or awaited through `run_in_threadpool`,
# leaves the loop free: pings are answered while the task still works.
#
# To tell "before" from "after", a second task notes the moment the work ended (a response's
# tasks run one after another), and the cell compares it with each ping's `sent` and
# `answered`. Comparing moments, rather than a latency with a fixed number, is what a busy
# machine cannot turn around: it can hold up requests for a while, a few of them or most, so for
# the free variants the cell asks only that some ping is answered before the task ends, which a
# blocked loop cannot do: it answers none.

# %%
from tqdm.auto import tqdm

BLOCK_SECONDS = 0.8


def spin(seconds: float) -> None:
    """Keep the CPU busy for `seconds`: a stand-in for parsing, resizing or hashing."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def sleep_in_async_def() -> None:
    time.sleep(BLOCK_SECONDS)  # blocks the event loop


async def spin_in_async_def() -> None:
    spin(BLOCK_SECONDS)  # so does CPU work


def sleep_in_def() -> None:
    time.sleep(BLOCK_SECONDS)  # a def task: Starlette runs it on a worker thread


def spin_in_def() -> None:
    spin(BLOCK_SECONDS)


async def sleep_through_threadpool() -> None:
    await run_in_threadpool(time.sleep, BLOCK_SECONDS)  # async def, with the blocking part on a thread


VARIANTS = {
    "async def + time.sleep": sleep_in_async_def,
    "async def + CPU loop": spin_in_async_def,
    "def + time.sleep": sleep_in_def,
    "def + CPU loop": spin_in_def,
    "async def + run_in_threadpool": sleep_through_threadpool,
}
BLOCKING = ["async def + time.sleep", "async def + CPU loop"]
work_ended: dict[str, float] = {}  # when each variant's work ended, on time.perf_counter()'s clock


async def note_the_end(variant: str) -> None:  # async def and instant: it runs as soon as the work has ended
    work_ended[variant] = time.perf_counter()


app = FastAPI()


@app.post("/work/{variant}")
async def start_work(variant: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(VARIANTS[variant])
    background_tasks.add_task(note_the_end, variant)  # runs after the first task, when its work is done
    return {"started": variant}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


probes: dict[str, list] = {}
for variant in tqdm(VARIANTS, desc="a server for each variant"):
    with serve(app) as url:  # a fresh server for each variant; leaving the block waits for the task
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post(f"/work/{variant}")
            probes[variant] = await probe_latency(client, "/ping", count=8, every=0.1)

during: dict[str, list] = {}  # the pings sent while the work still ran
for variant, samples in probes.items():
    during[variant] = [s for s in samples if s.sent < work_ended[variant]]
    in_time = [s for s in during[variant] if s.answered < work_ended[variant]]
    print(f"{variant:30} {len(in_time)} of the {len(during[variant])} pings sent during the task "
          f"were answered before it ended (median wait {statistics.median(s.seconds for s in samples):.2f} s)")
for variant in BLOCKING:
    assert during[variant], f"{variant}: no ping was sent while the task ran"
    assert all(s.answered > work_ended[variant] for s in during[variant]), f"{variant}: every ping waited for the end"
for variant in ["def + time.sleep", "def + CPU loop", "async def + run_in_threadpool"]:
    in_time = [s for s in during[variant] if s.answered < work_ended[variant]]
    # Some, not most: a busy machine may stall most requests for a while; a blocked loop answers none.
    assert in_time, f"{variant}: the loop stayed free while the task worked"

figure = NotebookFigure(figsize=(9, 4), layout="constrained")
axes = figure.subplots()
for variant, samples in probes.items():
    style = "-o" if variant in BLOCKING else "--s"
    axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], style, label=variant)
axes.set_xlabel("when the /ping was sent (seconds after the task started)")
axes.set_ylabel("how long /ping took (s)")
axes.set_title("/ping while a background task works for 0.8 s")
axes.legend(fontsize=8)
axes.grid(alpha=0.3)
figure

# %% [markdown]
# The two blocking lines fall from about 0.8 s to about 0.1 s: each ping waited for the rest of
# the task, however early or late it came. The other three stay near the bottom; the `def` CPU
# loop may show bumps, and the next paragraph says why.
#
# A `def` task leaves the loop free, but for CPU-bound work that is not the whole story: the
# loop's thread needs the GIL to run Python code, and a thread busy with Python code hands it
# over only every `sys.getswitchinterval()` seconds. Section 5 runs eight such threads at once,
# measures what that does to `/ping`, and moves the work into other processes, which have GILs
# of their own. So `def` is the cure for blocking I/O; for CPU-bound work it is a relief, not a
# cure.

# %% [markdown]
# ## 2. The thread pool: one limiter of 40 tokens, shared
#
# `run_in_threadpool` is `anyio.to_thread.run_sync(func)`, and every call takes a token from
# one `CapacityLimiter`, AnyIO's *default thread limiter*, before it gets a thread, and gives
# it back when the function returns. FastAPI calls `run_in_threadpool` for `def` endpoints
# (`fastapi/routing.py`, `run_endpoint_function`) and for `def` dependencies
# (`fastapi/dependencies/utils.py`, `solve_dependencies`); Starlette calls it for `def` tasks.
# So they all draw on the same tokens.
#
# The limiter is created the first time it is needed *in each event loop*
# (`anyio/_backends/_asyncio.py` keeps it in a `RunVar`, a per-loop variable), which is why
# `anyio.to_thread.current_default_thread_limiter()` only works inside a running loop: in an
# async endpoint, or in the app's lifespan, as here.
#
# **Fact 2.1.** Inside a running server the default limiter has 40 tokens. Each event loop has
# its own: two servers running at the same time have two limiters, and raising one (in its
# lifespan) leaves the other at 40. Called where no event loop runs (at import time, or, as
# here, in a plain thread), it raises `NoEventLoopError`.

# %%
def pool_app(tokens: int | None = None) -> tuple[FastAPI, list[tuple[float, float]], threading.Event]:
    """An app with a slow def task; `tokens` raises the thread limit in the lifespan."""
    runs: list[tuple[float, float]] = []  # (start, end) of every job's 0.5 s of work, on one clock
    go = threading.Event()  # the jobs' starting signal (see below)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if tokens is not None:  # here the loop is running: this is the server's own limiter
            anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
        yield

    app = FastAPI(lifespan=lifespan)

    def slow_job() -> None:  # a def task: it needs a token, then a worker thread
        go.wait(timeout=30)  # holds its token and thread until the client gives the signal
        started = time.perf_counter()
        time.sleep(0.5)
        runs.append((started, time.perf_counter()))

    @app.post("/jobs")
    async def add_job(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(slow_job)
        return {"queued": True}

    @app.get("/limiter")
    async def limiter_stats() -> dict[str, int]:  # async def: needs no token, answers at once
        limiter = anyio.to_thread.current_default_thread_limiter()
        here = process_status()
        return {
            "total_tokens": int(limiter.total_tokens),
            "borrowed": limiter.borrowed_tokens,
            "waiting": limiter.statistics().tasks_waiting,
            "limiter_id": id(limiter),
            "threads": here.threads,
            "rss_bytes": here.rss_bytes,
        }

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    @app.get("/sync-ping")
    def sync_ping() -> dict[str, bool]:  # a def endpoint: needs a token
        return {"pong": True}

    def sync_dependency() -> bool:  # a def dependency: needs a token too
        return True

    @app.get("/async-with-sync-dependency")
    async def with_sync_dependency(ok: bool = Depends(sync_dependency)) -> dict[str, bool]:
        return {"pong": ok}

    return app, runs, go


default_app, _, _ = pool_app()
raised_app, _, _ = pool_app(tokens=100)
with serve(default_app) as default_url, serve(raised_app) as raised_url:
    default_limiter = httpx.get(f"{default_url}/limiter").json()
    raised_limiter = httpx.get(f"{raised_url}/limiter").json()

outside: list[Exception] = []


def limiter_without_a_loop() -> None:
    try:
        anyio.to_thread.current_default_thread_limiter()
    except Exception as error:
        outside.append(error)


plain_thread = threading.Thread(target=limiter_without_a_loop)
plain_thread.start()
plain_thread.join()
print(f"server with the default limit: {default_limiter['total_tokens']} tokens")
print(f"server whose lifespan set 100: {raised_limiter['total_tokens']} tokens")
print(f"two servers, two limiter objects: {default_limiter['limiter_id'] != raised_limiter['limiter_id']}")
print(f"in a thread without an event loop: {type(outside[0]).__name__}: {outside[0]}")
assert default_limiter["total_tokens"] == 40 and raised_limiter["total_tokens"] == 100
assert default_limiter["limiter_id"] != raised_limiter["limiter_id"]
assert type(outside[0]).__name__ == "NoEventLoopError"

# %% [markdown]
# Now 60 requests at once, each adding a `def` task that works for 0.5 s. All 60 responses come
# back at once (the tasks run after them). So that what follows does not depend on how fast a
# busy machine sends 60 requests, each task first waits for a starting signal (a
# `threading.Event`) while holding its token and thread, as a task stuck on a slow call would.
# Before giving the signal, the client asks the server, from an `async def` endpoint, how busy
# its limiter is; then it sends three more requests: an `async def` `/ping`, a `def` endpoint,
# and an `async def` endpoint with a `def` dependency.

# %% [markdown]
# The experiment is one function, `sixty_jobs(tokens)`, because Fact 2.3 repeats it with a
# raised limit. It starts a fresh `pool_app(tokens)`, reads the idle limiter (`idle`), and then
# takes three steps:
#
# 1. it sends the 60 `POST /jobs` and waits until the limiter counts all 60 tasks, each holding
#    a token (`borrowed`) or waiting for one (`waiting`); that reading is `busy`;
# 2. while every task still waits for the signal, it sends the three *probes* (`/ping`, the `def`
#    endpoint, the endpoint with the `def` dependency), and waits until the limiter counts the
#    two `def` probes as waiting too (or until both are answered, which would disprove the fact);
#    that reading is `queued`;
# 3. it gives the signal (`go.set()`, at the moment `signal`) and collects the probes' answers.
#
# It returns these readings, the moments the probes were answered, and every job's `(start,
# end)` (`runs`). Three helpers from `bgcourse` do the waiting and the counting:
#
# - `await poll_json(client, "/limiter", until=condition)` asks `/limiter` again and again until
#   `condition(answer)` is true, and returns that answer. The requests sent just before may still
#   be on their way, and no fixed sleep would be long enough on every machine.
# - `probe_latency(client, path, count=1)` (section 0) sends one request; its `answered` is the
#   moment the answer came, on the same clock as `signal`.
# - `peak_overlap(runs)` is the largest number of the `(start, end)` intervals in `runs` that
#   were running at the same moment.

# %%
DEF_PROBES = ("/sync-ping", "/async-with-sync-dependency")  # a def endpoint, a def dependency


async def sixty_jobs(tokens: int | None) -> dict:
    app, runs, go = pool_app(tokens)
    threads_before_server = process_status().threads
    with serve(app) as url:
        # 70 connections: 60 for the jobs plus the probes, all open at the same time.
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=70)) as client:
            try:
                idle = (await client.get("/limiter")).json()
                # Step 1: the 60 jobs.
                await asyncio.gather(*(client.post("/jobs") for _ in range(60)))
                busy = await poll_json(
                    client, "/limiter", until=lambda stats: stats["borrowed"] + stats["waiting"] == 60
                )
                # Step 2: the probes, while every job holds or waits for a token.
                (ping,) = await probe_latency(client, "/ping", count=1)
                def_probes = [asyncio.create_task(probe_latency(client, path, count=1)) for path in DEF_PROBES]
                queued = await poll_json(
                    client, "/limiter", until=lambda stats: stats["waiting"] == 22 or all(p.done() for p in def_probes)
                )
            finally:
                # Step 3: the signal (also if a step failed, so that the jobs and the server can end).
                signal = time.perf_counter()
                go.set()
            (def_endpoint,), (def_dependency,) = await asyncio.gather(*def_probes)
    assert [probe.status_code for probe in (ping, def_endpoint, def_dependency)] == [200] * 3
    # Leaving serve() waited for the last jobs; the server's worker threads now exit.
    deadline = time.monotonic() + 30
    while process_status().threads > threads_before_server and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return {
        "runs": sorted(runs), "idle": idle, "busy": busy, "queued": queued, "signal": signal,
        "ping": ping.answered, "def endpoint": def_endpoint.answered, "def dependency": def_dependency.answered,
        "threads after": process_status().threads, "threads before server": threads_before_server,
    }


# %% [markdown]
# **Fact 2.2.** With the default limit, 40 tasks hold all the tokens and the other 20 wait for
# one; the `def` endpoint and the `def` dependency queue behind them (22 waiting), while the
# `async def` `/ping` is answered at once. After the signal, at most 40 tasks run at once: the
# other 20 start only as the first ones end, so the 60 finish in two waves, 1 s after the
# signal instead of 0.5 s, and the `def` endpoint and dependency are answered only after the
# first wave has ended.
#
# In the evidence, `runs` holds each job's `(start, end)` in order of start, so `runs[40]` is
# the 41st job to start; every moment is printed in seconds after the signal.

# %%
default_run = await sixty_jobs(tokens=None)
runs, signal = default_run["runs"], default_run["signal"]
first_end = min(end for _, end in runs)
print(f"all 60 requests answered; the limiter said: {default_run['busy']['borrowed']} tokens borrowed, "
      f"{default_run['busy']['waiting']} tasks waiting")
print(f"the async def /ping was answered while all tokens were taken: {default_run['ping'] < signal}")
print(f"after a def endpoint and a def dependency were asked for: {default_run['queued']['waiting']} waiting")
print(f"after the signal, tasks running at once, at most: {peak_overlap(runs)}")
print(f"first wave: {sum(start < first_end for start, _ in runs)} tasks, from {runs[0][0] - signal:.2f} s to "
      f"{first_end - signal:.2f} s after the signal; the 41st task started at {runs[40][0] - signal:.2f} s; "
      f"all done at {max(end for _, end in runs) - signal:.2f} s")
for probe in ("def endpoint", "def dependency"):
    print(f"the {probe} was answered {default_run[probe] - signal:.2f} s after the signal")
assert default_run["busy"]["borrowed"] == 40 and default_run["busy"]["waiting"] == 20
assert default_run["queued"]["waiting"] == 22, "the def endpoint and the def dependency wait for tokens"
assert default_run["ping"] < signal, "an async def endpoint needs no token"
assert peak_overlap(runs) == 40
assert runs[40][0] >= first_end, "the 41st task waited for a token"
# A lower bound, safe on a busy machine too: a sleep never ends early, and no task starts before the signal.
assert max(end for _, end in runs) - signal >= 1.0, "two waves of 0.5 s"
assert default_run["def endpoint"] >= first_end and default_run["def dependency"] >= first_end

# %% [markdown]
# To the limiter, a slow `def` task and a slow `def` endpoint are the same: either can use up
# the tokens the other needs, while `async def` endpoints need none.
#
# The limit is a property of the loop, so it is raised where the loop runs: in the lifespan
# (`pool_app(tokens=100)` above does
# `anyio.to_thread.current_default_thread_limiter().total_tokens = 100`).
#
# **Fact 2.3.** With 100 tokens all 60 tasks start at once and finish in one wave, and the `def`
# endpoint and dependency are answered at once, before the signal: 40 tokens are still free.
# The price is 60 worker threads instead of 40, each with its own stack; the cell counts the
# threads of this process and its resident memory at the peak. When the server stops, its
# worker threads end, and the next server starts with 40 tokens again.

# %%
raised_run = await sixty_jobs(tokens=100)
next_app, _, _ = pool_app()
with serve(next_app) as next_url:  # the limit was raised in the other server's loop only
    next_limiter = httpx.get(f"{next_url}/limiter").json()
for name, run in (("40 tokens (default)", default_run), ("100 tokens", raised_run)):
    jobs = run["runs"]
    extra_threads = run["busy"]["threads"] - run["idle"]["threads"]
    print(f"{name:20} at most {peak_overlap(jobs)} at once, all done {max(end for _, end in jobs) - run['signal']:.2f} s "
          f"after the signal; {extra_threads} more threads while the jobs held their tokens")
    print(f"{'':20} resident memory {run['idle']['rss_bytes'] / 2**20:.1f} MB before the jobs, "
          f"{run['busy']['rss_bytes'] / 2**20:.1f} MB with them")
    print(f"{'':20} threads in this process after the server stopped: {run['threads after']} "
          f"(before it started: {run['threads before server']})")
    assert run["threads after"] <= run["threads before server"], "the server's worker threads have ended"
print("with 100 tokens, the def endpoint and dependency were answered before the signal: "
      f"{max(raised_run['def endpoint'], raised_run['def dependency']) < raised_run['signal']}")
print(f"a server started after it has {next_limiter['total_tokens']} tokens again")
assert next_limiter["total_tokens"] == 40
assert raised_run["busy"]["total_tokens"] == 100 and raised_run["busy"]["borrowed"] == 60
assert peak_overlap(raised_run["runs"]) == 60
assert raised_run["runs"][-1][0] < min(end for _, end in raised_run["runs"]), "all started before any ended"
assert max(raised_run["def endpoint"], raised_run["def dependency"]) < raised_run["signal"]
assert raised_run["busy"]["threads"] - raised_run["idle"]["threads"] >= 60
assert default_run["busy"]["threads"] - default_run["idle"]["threads"] >= 40

figure = NotebookFigure(figsize=(9, 4), layout="constrained")
panels = figure.subplots(1, 2, sharex=True, sharey=True)
for panel, (name, run) in zip(panels, (("40 tokens (default)", default_run), ("100 tokens", raised_run))):
    panel.barh(range(60), [end - start for start, end in run["runs"]],
               left=[start - run["signal"] for start, _ in run["runs"]], height=0.8, color="#dd8452")
    panel.set_title(f"60 def tasks of 0.5 s, {name}", fontsize=10)
    panel.set_xlabel("seconds after the signal")
    panel.invert_yaxis()
    panel.grid(axis="x", alpha=0.3)
panels[0].set_ylabel("task, in order of start")
figure

# %% [markdown]
# The picture makes the waves plain: each bar is one task's 0.5 s of work. The thread count is
# exact. The memory figure is what the operating system reports as resident, and it is noisy:
# a thread's stack counts only with the pages it has touched, and memory freed by ended threads
# is often kept for reuse, so a second run in the same process may show less growth. More
# threads also means more work running at once against whatever those tasks use (a database's
# connection pool, a rate-limited API), and more threads competing for one GIL. Raise the limit
# when your `def` tasks and endpoints mostly *wait* and 40 is measurably too few; otherwise
# bound the work instead, as the next section does.

# %% [markdown]
# ## 3. Batches and semaphores: bounding long and parallel work
#
# A long job on the loop can be split into batches with an `await` between them. Between the
# batches the loop serves whatever has arrived, and the job can publish how far it has got.
#
# **Fact 3.1.** A job of 40 batches of 20 ms of CPU work, run in one piece in an `async def`
# task, makes every `/progress` request wait until the end (and they all see "40 of 40"). With
# `await asyncio.sleep(0)` after each batch, `/progress` is answered while the job runs (the
# cell asks that most requests are), and shows it advancing. A request needs
# several turns of the loop (read, parse, run the endpoint, write), and the job runs one batch
# between turns, so the wait is a few batches, not one. As in section 1, `note_the_end` notes
# when each job ended.

# %%
BATCHES, BATCH_SECONDS = 40, 0.02
progress = {"done": 0, "of": BATCHES}


async def job_in_one_piece() -> None:
    progress["done"] = 0
    for _ in range(BATCHES):
        spin(BATCH_SECONDS)
        progress["done"] += 1


async def job_in_batches() -> None:
    progress["done"] = 0
    for _ in range(BATCHES):
        spin(BATCH_SECONDS)
        progress["done"] += 1
        await asyncio.sleep(0)  # let the loop serve what has arrived


JOB_KINDS = {"in one piece": job_in_one_piece, "in batches": job_in_batches}
app = FastAPI()


@app.post("/job/{how}")
async def start_job(how: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(JOB_KINDS[how])
    background_tasks.add_task(note_the_end, how)
    return {"started": how}


@app.get("/progress")
async def get_progress() -> dict[str, int]:
    return progress


seen: dict[str, list] = {}
for how in JOB_KINDS:
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post(f"/job/{how}")
            seen[how] = await probe_latency(client, "/progress", count=8, every=0.1)

in_time: dict[str, list] = {}  # the requests sent during the job and answered before it ended
for how, samples in seen.items():
    done = [json.loads(sample.body)["done"] for sample in sorted(samples, key=lambda s: s.answered)]
    during[how] = [s for s in samples if s.sent < work_ended[how]]
    in_time[how] = [s for s in during[how] if s.answered < work_ended[how]]
    print(f"job {how:12}: {len(in_time[how])} of the {len(during[how])} requests sent during the job were "
          f"answered before it ended (median wait {statistics.median(s.seconds for s in samples) / BATCH_SECONDS:.0f} "
          f"batches); they saw {done}")
whole = [json.loads(s.body)["done"] for s in seen["in one piece"]]
batched = [json.loads(s.body)["done"] for s in seen["in batches"]]
assert during["in one piece"] and not in_time["in one piece"], "in one piece, every request waited for the end"
assert whole == [BATCHES] * 8, "so every request saw the job done"
assert len(in_time["in batches"]) > len(during["in batches"]) / 2, "in batches, the loop answered while the job ran"
assert len({done for done in batched if done < BATCHES}) >= 3, "progress was visible while the job ran"

figure = NotebookFigure(figsize=(9, 3.5), layout="constrained")
latency_axes, progress_axes = figure.subplots(1, 2)
for how, samples in seen.items():
    latency_axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], "-o", label=f"job {how}")
    progress_axes.plot([s.sent_at + s.seconds for s in samples], [json.loads(s.body)["done"] for s in samples],
                       "o", label=f"job {how}")
latency_axes.set(xlabel="when /progress was sent (s)", ylabel="how long it took (s)", title="waiting")
progress_axes.set(xlabel="when the answer came (s)", ylabel="batches done", title="what the client saw")
for axes in (latency_axes, progress_axes):
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
figure

# %% [markdown]
# Batches help a job that must run on the loop; a job that can run elsewhere (a thread for
# blocking I/O, a process for CPU work, section 5) should.
#
# Splitting a job into many small tasks of one request does *not* by itself do what batches do.
# The request's tasks run one after another in one loop, `for task in self.tasks: await task()`
# (chapter 1, section 2), and awaiting an `async def` task that never awaits anything itself does
# not give the loop a turn: forty such tasks hold it as long as one task doing all forty pieces.
# (And a piece that raises skips all the pieces after it, chapter 1, Fact 7.1.) Splitting frees the
# loop only when each piece gives it a turn: an `async def` piece that awaits (a real I/O call, or
# `await asyncio.sleep(0)`), or a `def` piece, which Starlette runs on a worker thread while the
# loop waits for it; or when the pieces are separate requests, or jobs of a queue (chapter 7).
#
# **Fact 3.2.** One request adds 40 tasks of 20 ms of CPU work each. A `/ping` sent once the
# first piece has started is answered only after all 40 when the pieces are `async def` and
# never await; it is answered while pieces are still left when each piece ends with
# `await asyncio.sleep(0)`, or when the pieces are `def`.

# %%
PIECES = 40
pieces_done: list[int] = [0]
first_piece_started = threading.Event()
all_pieces_done = threading.Event()


def piece_of_work() -> None:
    first_piece_started.set()
    spin(BATCH_SECONDS)
    pieces_done[0] += 1
    if pieces_done[0] == PIECES:
        all_pieces_done.set()


async def async_piece() -> None:
    piece_of_work()


async def async_piece_that_awaits() -> None:
    piece_of_work()
    await asyncio.sleep(0)  # give the loop a turn


PIECE_KINDS = {"async def, never awaits": async_piece, "async def, awaits": async_piece_that_awaits,
               "def": piece_of_work}
app = FastAPI()


@app.post("/split/{how}")
async def split_job(how: str, background_tasks: BackgroundTasks) -> dict[str, int]:
    for _ in range(PIECES):
        background_tasks.add_task(PIECE_KINDS[how])
    return {"pieces": PIECES}


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pieces done": pieces_done[0]}


pieces_seen: dict[str, int] = {}  # how -> how many pieces were done when /ping was answered
for how in PIECE_KINDS:
    pieces_done[0] = 0
    first_piece_started.clear()
    all_pieces_done.clear()
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.post(f"/split/{how}")
        assert first_piece_started.wait(timeout=60), "the first piece did not start"
        pieces_seen[how] = client.get("/ping").json()["pieces done"]
        assert all_pieces_done.wait(timeout=60), "the pieces did not all run"
for how, seen_done in pieces_seen.items():
    print(f"pieces {how:24}: /ping answered when {seen_done} of {PIECES} pieces were done")
assert pieces_seen["async def, never awaits"] == PIECES, "the loop had no turn until every piece was done"
assert pieces_seen["async def, awaits"] < PIECES and pieces_seen["def"] < PIECES, "the loop had turns in between"

# %% [markdown]
# The opposite problem: many requests, each starting the same heavy work. Nothing stops 60 of
# them from taking all 40 thread tokens (section 2). An `asyncio.Semaphore(3)` lets three run
# and makes the rest wait, *without* holding a token or a thread while they wait. An asyncio
# primitive belongs to one event loop (Fact 3.4 shows what happens otherwise), so create it
# when the loop runs, in the lifespan, and keep it on `app.state`.
#
# **Fact 3.3.** Nine requests, each adding a task that does 0.25 s of blocking work through
# `run_in_threadpool` under a semaphore of 3 created in the lifespan: never more than 3 run at
# once, so they finish in three waves, and meanwhile a `def` endpoint is answered while the
# exports run, because 37 tokens stay free. (As in section 2, the tasks wait for a starting
# signal, here an `asyncio.Event` from the lifespan, so that all nine compete for the semaphore
# however slowly a busy machine sends the requests.)

# %%
timeline = Timeline()


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.exports = asyncio.Semaphore(3)  # created inside the server's running loop
    app.state.go = asyncio.Event()  # so is the starting signal
    yield


app = FastAPI(lifespan=lifespan)
running = {"now": 0, "peak": 0}


def export_report() -> None:
    time.sleep(0.25)  # blocking work: a slow PDF library


async def bounded_export(number: int, exports: asyncio.Semaphore, go: asyncio.Event) -> None:
    await go.wait()
    async with exports:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await run_in_threadpool(timeline.track(f"export {number}", export_report))
        running["now"] -= 1
    work_ended["exports"] = time.perf_counter()  # the last export to end writes last


@app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(bounded_export, number, request.app.state.exports, request.app.state.go)
    return {"export": number}


@app.post("/go")
async def give_the_signal(request: Request) -> dict[str, bool]:
    request.app.state.go.set()
    return {"go": True}


@app.get("/sync-ping")
def sync_ping() -> dict[str, bool]:
    return {"pong": True}


with serve(app) as url:
    async with httpx.AsyncClient(base_url=url) as client:
        await asyncio.gather(*(client.post(f"/exports/{number}") for number in range(1, 10)))
        await client.post("/go")
        sync_pings = await probe_latency(client, "/sync-ping", count=5, every=0.1)

starts = sorted(timeline.at(f"export {n}", "task start") for n in range(1, 10))
ends = sorted(timeline.at(f"export {n}", "task end") for n in range(1, 10))
while_exporting = [s for s in sync_pings if s.answered < work_ended["exports"]]
print(f"exports running at once, at most: {running['peak']}")
print(f"all nine were done {ends[-1] - starts[0]:.2f} s after the first started (nine at once would take 0.25 s)")
print(f"a def endpoint, asked {len(sync_pings)} times meanwhile, answered {len(while_exporting)} times "
      f"while the exports still ran (median wait {statistics.median(s.seconds for s in sync_pings):.3f} s)")
assert running["peak"] == 3
assert ends[-1] - starts[0] >= 0.7, "three waves of 0.25 s"
# Most, not all: a busy machine may delay an answer, and the last ask comes only 0.35 s before the exports can end.
assert len(while_exporting) > len(sync_pings) / 2, "the def endpoint found a free token while the exports ran"
timeline.plot("nine exports, at most three at a time")

# %% [markdown]
# Now the trap. A semaphore made at import time, at the top of a module, is created before any
# loop runs. It binds itself to the loop in which something first has to wait on it, and after
# that it refuses every other loop. An app runs on a new event loop each time it is started:
# here, in a second `serve()`.
#
# **Fact 3.4.** A module-level `asyncio.Semaphore` works in the first server. In a second server
# the first request still gets through, but the first one that has to wait raises
# `RuntimeError: ... is bound to a different event loop`, in the task, after its client has
# been told `202`; only the server log sees it. (Each server gets two exports; the first holds
# the semaphore until the second has arrived, so the second always has to wait.)

# %%
module_level_semaphore = asyncio.Semaphore(1)  # created at import time, outside any loop

app = FastAPI()
arrived: list[str] = []
finished: list[str] = []


async def export_with_module_semaphore(name: str) -> None:
    arrived.append(name)
    async with module_level_semaphore:
        server = name.rsplit(" ", 1)[0]  # "first server" or "second server"
        deadline = time.monotonic() + 30  # only ends a wait that would otherwise never end
        while sum(other.startswith(server) for other in arrived) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # hold the semaphore until this server's other export has arrived
    finished.append(name)


@app.post("/exports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def start_export_module(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(export_with_module_semaphore, name)
    return {"export": name}


statuses = []
with capture_logs("uvicorn.error") as records:
    for server in ("first server", "second server"):
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                responses = await asyncio.gather(*(client.post(f"/exports/{server} {n}") for n in (1, 2)))
                statuses += [response.status_code for response in responses]

errors = [record.exc_info[1] for record in records if record.exc_info]
print(f"clients were told: {statuses}")
print(f"exports that finished: {finished}")
for error in errors:
    *_, caller, raiser = traceback.extract_tb(error.__traceback__)
    module = "/".join(raiser.filename.split(os.sep)[-2:])
    print(f"the server logged: {type(error).__name__}: {error}")
    print(f"raised by {raiser.name}() in {module}, called as `{caller.line}` in {caller.name}()")
assert statuses == [202, 202, 202, 202]
assert sorted(finished)[:2] == ["first server 1", "first server 2"] and len(finished) == 3, "one export failed"
assert len(errors) == 1 and "is bound to a different event loop" in str(errors[0])
arrived.clear()
finished.clear()

# %% [markdown]
# The fix is the pattern of Fact 3.3: create the semaphore in the lifespan, where each start of
# the app has its running loop, and reach it through `request.app.state`.
#
# **Fact 3.5.** With the semaphore created in the lifespan, the same two servers run all four
# exports, and nothing is logged.

# %%
@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.exports = asyncio.Semaphore(1)  # one per start of the app, in that start's loop
    yield


app = FastAPI(lifespan=lifespan)


async def export_with_app_semaphore(name: str, exports: asyncio.Semaphore) -> None:
    async with exports:
        await asyncio.sleep(0.05)
    finished.append(name)


@app.post("/exports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def start_export_app(name: str, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(export_with_app_semaphore, name, request.app.state.exports)
    return {"export": name}


with capture_logs("uvicorn.error") as records:
    for server in ("first server", "second server"):
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                await asyncio.gather(*(client.post(f"/exports/{server} {n}") for n in (1, 2)))

print(f"exports that finished: {sorted(finished)}")
print(f"log records with an exception: {sum(1 for record in records if record.exc_info)}")
assert sorted(finished) == ["first server 1", "first server 2", "second server 1", "second server 2"]
assert not [record for record in records if record.exc_info]
finished.clear()

# %% [markdown]
# ## 4. Timeouts: what they can cancel, and what they cannot
#
# `asyncio.timeout(seconds)` (Python 3.11+) and AnyIO's `anyio.fail_after(seconds)` both raise
# `TimeoutError` when the block takes too long. They work by *cancelling* what the block is
# awaiting: a `CancelledError` is thrown into the coroutine at its current `await`.
#
# **Fact 4.1.** Around async work (here `await asyncio.sleep(0.8)`), both give up after 0.2 s:
# the work receives `CancelledError` at its `await`, and the code after it never runs.

# %%
DEADLINE, WORK_SECONDS = 0.2, 0.8
outcomes: dict[str, dict] = {}
work_done: dict[str, float] = {}
work_cancelled: list[str] = []


async def async_work(name: str) -> None:
    try:
        await asyncio.sleep(WORK_SECONDS)
    except asyncio.CancelledError:
        work_cancelled.append(name)
        raise
    work_done[name] = time.perf_counter()


def blocking_work(name: str) -> None:
    time.sleep(WORK_SECONDS)
    work_done[name] = time.perf_counter()


async def with_asyncio_timeout(name: str, work) -> None:
    async with asyncio.timeout(DEADLINE):
        await work(name)


async def with_fail_after(name: str, work) -> None:
    with anyio.fail_after(DEADLINE):
        await work(name)


async def timed_task(name: str, guard, work) -> None:
    started = time.perf_counter()
    try:
        await guard(name, work)
        outcome = "returned normally"
    except TimeoutError:
        outcome = "TimeoutError"
    outcomes[name] = {"started": started, "ended": time.perf_counter(), "outcome": outcome}


def run_blocking_in_thread(name: str):
    return run_in_threadpool(blocking_work, name)


def run_blocking_abandoning(name: str):
    return anyio.to_thread.run_sync(blocking_work, name, abandon_on_cancel=True)


async def run_blocking_then_checkpoint(name: str) -> None:
    await run_in_threadpool(blocking_work, name)
    await anyio.sleep(0)  # one more await in the block: a checkpoint


EXPERIMENTS = {
    "asyncio.timeout, async work": (with_asyncio_timeout, async_work),
    "anyio.fail_after, async work": (with_fail_after, async_work),
    "asyncio.timeout, run_in_threadpool": (with_asyncio_timeout, run_blocking_in_thread),
    "anyio.fail_after, run_in_threadpool": (with_fail_after, run_blocking_in_thread),
    "anyio.fail_after, run_sync(abandon_on_cancel=True)": (with_fail_after, run_blocking_abandoning),
    "anyio.fail_after, run_in_threadpool, checkpoint": (with_fail_after, run_blocking_then_checkpoint),
}
app = FastAPI()


@app.post("/timed/{name}")
async def start_timed(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    guard, work = EXPERIMENTS[name]
    background_tasks.add_task(timed_task, name, guard, work)
    return {"started": name}


async def run_experiments(names: list[str], *, threads: bool) -> None:
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await asyncio.gather(*(client.post(f"/timed/{name}") for name in names))
    # Leaving serve() waited for the tasks; a thread that a task stopped waiting for may still run.
    deadline = time.monotonic() + 30  # only ends a wait that would otherwise never end
    while threads and any(name not in work_done for name in names):
        assert time.monotonic() < deadline, "the thread did not finish"
        await asyncio.sleep(0.05)


def report(names: list[str]) -> None:
    print(f"{'':52} {'the await ended':>16}   {'with':18} {'the work finished':>18}")
    for name in names:
        result = outcomes[name]
        done = work_done.get(name)
        finished_text = f"after {done - result['started']:.2f} s" if done else "never"
        print(f"{name:52} {'after':>7} {result['ended'] - result['started']:.2f} s   {result['outcome']:18} "
              f"{finished_text:>18}")


async_names = list(EXPERIMENTS)[:2]
await run_experiments(async_names, threads=False)
report(async_names)
# A deadline's timer reads the event loop's clock, whose resolution may be coarser than perf_counter's.
CLOCK_SLACK = 0.02
for name in async_names:
    assert outcomes[name]["outcome"] == "TimeoutError"
    assert outcomes[name]["ended"] - outcomes[name]["started"] >= DEADLINE - CLOCK_SLACK, "not before the deadline"
    assert name not in work_done, "the await gave up without waiting for the work, and the work never finished"
assert sorted(work_cancelled) == sorted(async_names), "the work itself received the cancellation"

# %% [markdown]
# A thread cannot be cancelled: Python has no way to stop another thread from the outside. What
# a timeout can do is stop *waiting* for the thread. Whether it does depends on two things: which
# timeout it is, and how the wait for the thread was started.
#
# AnyIO's timeouts (`anyio.fail_after`, `anyio.move_on_after`) are *cancel scopes*: `with`
# blocks that, once their deadline has passed, cancel the code inside them at its next `await`
# (more precisely, at its next *checkpoint*, explained after Fact 4.2).
# A cancel scope can also be *shielded*, `CancelScope(shield=True)`: then a cancellation by any
# AnyIO scope around it does not reach the code inside until the shielded block has ended.
#
# `run_in_threadpool(func)` is `anyio.to_thread.run_sync(func)`, whose `abandon_on_cancel`
# parameter is `False` unless you pass it. AnyIO then waits for the thread inside a shielded
# scope: `CancelScope(shield=not abandon_on_cancel)`. So an AnyIO timeout around the call cannot
# interrupt the wait, which lasts until the thread returns. With `abandon_on_cancel=True` the
# scope is not shielded: the timeout interrupts the wait, the call gives up on the thread (it
# *abandons* it), and the thread runs on.
#
# `asyncio.timeout` is not an AnyIO cancel scope: it cancels the asyncio task directly. The
# shield holds back AnyIO's own cancellations only, so it does not stop that one.
#
# The next cell shows the lines of source this rests on, in the pinned Starlette and AnyIO;
# Fact 4.2 then shows what they do.

# %%
(starlette_call,) = find_in_source("starlette", "return await anyio.to_thread.run_sync(func)")
(shielded_wait,) = find_in_source("anyio", "CancelScope(shield=not abandon_on_cancel)")
(default_abandon,) = [hit for hit in find_in_source("anyio", "abandon_on_cancel: bool = False")
                      if hit.file == "anyio/to_thread.py"]
for hit in (starlette_call, default_abandon, shielded_wait):
    print(hit)
assert starlette_call.function == "run_in_threadpool" and "abandon_on_cancel" not in starlette_call.code
assert default_abandon.function == "run_sync"
assert shielded_wait.function.endswith("run_sync_in_worker_thread")

# %% [markdown]
# **Fact 4.2.** Around `run_in_threadpool` of 0.8 s of blocking work:
# `asyncio.timeout(0.2)` gives up after 0.2 s with `TimeoutError`, and the thread runs on and
# finishes its work at 0.8 s. `anyio.fail_after(0.2)` does not give up at all: the await
# returns normally after 0.8 s and, when that await is the last one in the block, no
# `TimeoutError` is raised. `anyio.to_thread.run_sync(..., abandon_on_cancel=True)` under
# `anyio.fail_after` gives up after 0.2 s, and again the thread finishes at 0.8 s.
#
# The rule behind the missing `TimeoutError`: a cancelled AnyIO scope delivers its cancellation
# at the next *checkpoint* inside it (an `await` that can suspend), and `fail_after` raises
# `TimeoutError` on leaving the scope only if a cancellation was delivered and caught there. The
# wait for the thread, being shielded, is no such checkpoint; any later `await` in the block is.
# So with one `await anyio.sleep(0)` after the thread call, `fail_after` does raise
# `TimeoutError`: late, once the thread's 0.8 s are over.

# %%
thread_names = list(EXPERIMENTS)[2:]
await run_experiments(thread_names, threads=True)
report(thread_names)
gave_up = ["asyncio.timeout, run_in_threadpool", "anyio.fail_after, run_sync(abandon_on_cancel=True)"]
for name in thread_names:
    result = outcomes[name]
    assert work_done[name] - result["started"] >= WORK_SECONDS, f"{name}: the thread ran to the end"
    if name == "anyio.fail_after, run_in_threadpool, checkpoint":
        assert result["outcome"] == "TimeoutError", "the checkpoint delivered the cancellation"
        assert result["ended"] >= work_done[name], "late: only after the thread had finished"
    elif name in gave_up:
        assert result["outcome"] == "TimeoutError"
        assert result["ended"] - result["started"] >= DEADLINE - CLOCK_SLACK, "not before the deadline"
        assert result["ended"] < work_done[name], "the await gave up before the thread finished"
    else:
        assert result["outcome"] == "returned normally"
        assert result["ended"] - result["started"] >= WORK_SECONDS
outcomes.clear()
work_done.clear()
work_cancelled.clear()

# %% [markdown]
# Giving up on a thread has a second cost. The thread-token limit of section 2 counts *calls*
# that hold a token, and an abandoned call gives its token back at once, while its thread runs
# on. Calls abandoned by a timeout therefore do not count against the limit: more threads run
# than the limit allows.
#
# **Fact 4.3.** With a limiter of 1 token, four calls of `anyio.to_thread.run_sync(...,
# abandon_on_cancel=True)`, each abandoned after 0.05 s, leave four threads running at once and
# the limiter's one token free. `asyncio.timeout` around `run_in_threadpool` does the same to
# the default limiter, set to 1 token. The same calls without `abandon_on_cancel`, under AnyIO's
# own timeout, each hold the token until their thread has returned: never more than one thread
# runs. (The experiment runs on an event loop of its own, so that this notebook's limiter is left
# alone.)


# %%
async def four_calls_limited_to_one(how: str) -> dict[str, int]:
    limiter = anyio.to_thread.current_default_thread_limiter()  # this new loop's own
    limiter.total_tokens = 1
    abandon = how != "anyio.move_on_after, abandon_on_cancel=False"
    lock, running, most = threading.Lock(), [0], [0]
    release = threading.Event()  # abandoned threads wait for it; the others return after 0.1 s

    def blocking() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if abandon:
            release.wait(timeout=60)
        else:
            time.sleep(0.1)
        with lock:
            running[0] -= 1

    for _ in range(4):
        if how == "asyncio.timeout, run_in_threadpool":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await run_in_threadpool(blocking)
        else:
            with anyio.move_on_after(0.05):  # AnyIO's timeout
                await anyio.to_thread.run_sync(blocking, abandon_on_cancel=abandon)
    for _ in range(6000 if abandon else 0):  # abandoned threads may still be starting: wait (bounded) for all 4
        if running[0] == 4:
            break
        await anyio.sleep(0.01)
    seen = {"threads running": running[0], "most at once": most[0], "tokens borrowed": limiter.borrowed_tokens}
    release.set()
    while running[0]:  # let every thread finish before the loop closes
        await anyio.sleep(0.01)
    return seen


HOWS = (
    "anyio.move_on_after, abandon_on_cancel=True",
    "asyncio.timeout, run_in_threadpool",
    "anyio.move_on_after, abandon_on_cancel=False",
)
limits = {how: await asyncio.to_thread(anyio.run, four_calls_limited_to_one, how) for how in HOWS}
for how, seen in limits.items():
    print(f"{how:44}: {seen}")
for how in HOWS[:2]:
    assert limits[how] == {"threads running": 4, "most at once": 4, "tokens borrowed": 0}, f"{how}: no limit"
assert limits[HOWS[2]]["most at once"] == 1, "held tokens: one thread at a time"

# %% [markdown]
# Three lessons. A timeout on work that runs in a thread limits how long *you wait*, not how
# long the work runs: the thread stays busy until the function returns. To really bound such
# work, bound it inside: give the blocking client its own timeout (most HTTP and database
# clients take one) or check a flag between steps. And know which kind of timeout you hold:
# with AnyIO's, `abandon_on_cancel=True` stops the waiting, and with it the thread limit's hold
# on that thread (Fact 4.3); without it, the limit holds and you wait for the thread.

# %% [markdown]
# ## 5. CPU-bound work: a process pool
#
# Threads share one GIL, so pure-Python CPU work in several threads takes as long as in one,
# and slows the loop's thread down while it runs (section 1). Processes each have their own
# interpreter and GIL. `concurrent.futures.ProcessPoolExecutor` keeps a few worker processes;
# from async code, `await loop.run_in_executor(pool, func, *args)` sends `func` and its
# arguments to a worker (pickled: a function travels as a reference to its module and name) and
# awaits the result without blocking the loop.
#
# How a worker process starts matters in a notebook and in a server. `fork` copies the parent
# process as it is, in the middle of whatever its other threads are doing; Python's
# documentation warns against forking a process that runs threads, and this one does (the
# kernel's and the servers'). `spawn` starts a fresh interpreter that imports what it needs.
# The default depends on the platform and the Python version (the cell below prints this
# machine's); the course asks for `spawn` explicitly, so the cells behave the same everywhere.
#
# **Fact 5.1.** The default start method on this machine is printed below. With `spawn`, a
# function defined in a notebook cannot be run in the pool: the worker cannot find it in its
# own `__main__`, fails to unpickle it and dies, and the pool is broken. (This runs in a fresh
# kernel, so that this one stays clean.) That is why `count_primes` lives in a module.

# %%
print(f"default start method here: {multiprocessing.get_start_method()}; "
      f"threads in this process: {threading.active_count()}")
NOTEBOOK_FUNCTION_IN_A_SPAWN_POOL = """
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor


def square(x):  # defined in the notebook, that is in its __main__
    return x * x


# A worker reports its own error on its stderr; point that at a file so as to show it here.
with tempfile.TemporaryFile("w+") as worker_stderr:
    kernel_stderr = os.dup(2)
    os.dup2(worker_stderr.fileno(), 2)  # a worker process inherits file descriptor 2
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                pool.submit(square, 3).result(timeout=60)
            except Exception as error:
                print(f"the notebook: {type(error).__name__}: {error}")
    finally:
        os.dup2(kernel_stderr, 2)
        os.close(kernel_stderr)
    worker_stderr.seek(0)
    print(f"the worker:   {worker_stderr.read().strip().splitlines()[-1]}")
"""
print("running that in a fresh kernel (this takes a few seconds) ...", flush=True)
fresh = run_in_fresh_kernel(NOTEBOOK_FUNCTION_IN_A_SPAWN_POOL, timeout=90)
print(fresh.output.strip())
assert not fresh.error, fresh.error
assert "the notebook: BrokenProcessPool" in fresh.output
assert "the worker:   AttributeError: Can't get attribute 'square'" in fresh.output

# %% [markdown]
# The pool belongs in the lifespan: starting worker processes takes time, so it is done once,
# at start-up, and the workers are waited for before the first request. A `spawn`ed worker
# imports a module when it first unpickles a function from it (here `bgcourse`, which brings
# FastAPI and uvicorn along); the pool's `initializer` runs once in each worker as it starts,
# so passing `count_primes` there does that import at start-up rather than in the first job.
# Shutting the pool down waits for the workers to exit, so the lifespan does it on a thread,
# not on the loop.
#
# **Fact 5.2.** Eight jobs of `count_primes(100_000)`, started at once from a background task.
# Through `run_in_threadpool` (eight threads, one GIL) they never keep more than one core busy,
# so they take as long as one after another. Through the process pool, with one worker per core
# (two at least, four at most), they keep as many cores busy as the machine gives them, and
# take correspondingly less time. Each job reports the CPU time it got (`cpu_time_of`), and CPU
# time over wall time is the number of cores at work, so the cell can tell whether the workers
# got the cores they asked for. Other programs on your machine may take them (and a one-core
# machine has none to give), so the speed-up is asserted only when the workers got 1.5 cores or
# more, and the picture's heading says which case your machine was in. Asserted always: the
# threads used at most 1.2 cores; the server's own process spent less than a third of the CPU
# time on the pool's rounds than on the threads' (the work ran in other processes, so its GIL
# stayed free); and the `/ping`s sent while the pool worked waited less (the median) than while
# the eight threads worked, when the loop's thread has to wait for the GIL.

# %%
# The cores this process may run on (a container or `taskset` may allow fewer than the machine has).
USABLE_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = min(max(USABLE_CORES, 2), 4)  # one per usable core; two at least, so that there is work to share
JOBS, PRIMES_BELOW = 8, 100_000  # eight small jobs: a worker that is slowed down takes fewer
ROUNDS = 3  # each way three times, and the fastest counts: other programs may take a core for a while
ENOUGH_CORES = 1.5  # the speed-up is asserted when the workers got at least this many cores


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = ProcessPoolExecutor(
        max_workers=WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=count_primes,  # runs once in each worker: imports bgcourse there, at start-up
        initargs=(10,),
    )
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        pids: set[int] = set()
        while len(pids) < WORKERS:  # wait until every worker has started and answered once
            pids.update(await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(WORKERS))))
            await asyncio.sleep(0.01)
        app.state.pool, app.state.pids, app.state.startup = pool, pids, time.perf_counter() - started
        yield
    finally:
        await anyio.to_thread.run_sync(pool.shutdown)  # waits for the workers to exit


app = FastAPI(lifespan=lifespan)
took: dict[str, list[tuple[float, float]]] = {"threads": [], "processes": []}  # (wall, CPU) seconds per round
server_cpu: dict[str, list[float]] = {"threads": [], "processes": []}  # CPU seconds of this process per round


async def crunch_in_threads() -> None:
    started, own_cpu = time.perf_counter(), time.process_time()  # process_time: every thread of this process
    jobs = [run_in_threadpool(cpu_time_of, count_primes, PRIMES_BELOW) for _ in range(JOBS)]
    cpu = sum(seconds for _, seconds in await asyncio.gather(*jobs))
    work_ended["threads"] = time.perf_counter()
    server_cpu["threads"].append(time.process_time() - own_cpu)
    took["threads"].append((work_ended["threads"] - started, cpu))


async def crunch_in_processes(pool: ProcessPoolExecutor) -> None:
    loop = asyncio.get_running_loop()
    started, own_cpu = time.perf_counter(), time.process_time()
    jobs = [loop.run_in_executor(pool, cpu_time_of, count_primes, PRIMES_BELOW) for _ in range(JOBS)]
    cpu = sum(seconds for _, seconds in await asyncio.gather(*jobs))
    work_ended["processes"] = time.perf_counter()
    server_cpu["processes"].append(time.process_time() - own_cpu)
    took["processes"].append((work_ended["processes"] - started, cpu))


@app.post("/crunch/{how}")
async def crunch(how: str, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    if how == "threads":
        background_tasks.add_task(crunch_in_threads)
    else:
        background_tasks.add_task(crunch_in_processes, request.app.state.pool)
    return {"started": how}


@app.get("/pids")
async def pids_of(request: Request) -> dict[str, list[int]]:
    return {"server": [os.getpid()], "pool": sorted(request.app.state.pids)}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


pings: dict[str, list] = {"threads": [], "processes": []}  # the pings sent while the jobs ran, all rounds
progress_bar = tqdm(total=1 + 2 * ROUNDS, desc=f"starting {WORKERS} worker processes")
with serve(app, start_timeout=100) as url:  # starting processes can take many seconds on a busy machine
    progress_bar.update()
    # uvicorn closes a connection after 5 s without a request, and httpx keeps idle ones for 5 s:
    # on a slow machine a request could be sent on a connection that is just being closed.
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(keepalive_expiry=1.0)) as client:
        pids = (await client.get("/pids")).json()
        for round_number in range(1, ROUNDS + 1):
            for how in ("threads", "processes"):
                progress_bar.set_description(f"round {round_number} of {ROUNDS}: {JOBS} jobs in {how}")
                runs_so_far = len(took[how])
                await client.post(f"/crunch/{how}")
                samples = await probe_latency(client, "/ping", count=8, every=0.05)
                deadline = time.monotonic() + 60  # only ends a wait that would otherwise never end
                while len(took[how]) == runs_so_far:  # the jobs run after the response; wait for them
                    assert time.monotonic() < deadline, f"the jobs in {how} did not finish"
                    await asyncio.sleep(0.02)
                pings[how] += [s for s in samples if s.sent < work_ended[how]]
                progress_bar.update()
    startup = app.state.startup
progress_bar.close()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    return True


best = {how: min(rounds) for how, rounds in took.items()}  # the fastest round of each
cores = {how: cpu / wall for how, (wall, cpu) in best.items()}
speed_up = best["threads"][0] / best["processes"][0]
median_ping = {how: statistics.median(s.seconds for s in samples) for how, samples in pings.items()}
got_the_cores = cores["processes"] >= ENOUGH_CORES
print(f"this process may use {USABLE_CORES} of the {os.cpu_count()} CPU cores; pool workers: {WORKERS}; "
      f"starting them took {startup:.2f} s")
print(f"server process {pids['server'][0]}, worker processes {pids['pool']}")
for how in ("threads", "processes"):
    print(f"{JOBS} jobs in {how:9}: {best[how][0]:.2f} s (best of {ROUNDS}), keeping {cores[how]:.1f} cores busy; "
          f"median wait of a /ping meanwhile {median_ping[how]:.3f} s")
print(f"the pool's workers got {cores['processes']:.1f} cores, and took {1 / speed_up:.0%} of the threads' time "
      f"(the speed-up is asserted from {ENOUGH_CORES} cores on)")
print(f"/ping waited {median_ping['threads'] / median_ping['processes']:.0f} times less while the pool worked "
      "than while the threads did")
own = {how: min(rounds) for how, rounds in server_cpu.items()}
print(f"this process's own CPU time per round: {own['threads']:.2f} s with threads, {own['processes']:.2f} s with "
      "the pool")
print(f"worker processes still running after the server stopped: {[p for p in pids['pool'] if is_running(p)]}")
assert pids["server"][0] not in pids["pool"] and len(pids["pool"]) == WORKERS
assert not [pid for pid in pids["pool"] if is_running(pid)], "the lifespan shut the pool down"
assert max(cpu / wall for wall, cpu in took["threads"]) < 1.2, "one GIL: the threads never use much more than a core"
assert pings["threads"] and pings["processes"], "some pings were sent while the jobs ran"
# CPU time, not waiting time: other programs cannot make it larger, so a ratio with a wide margin is safe.
assert own["processes"] < own["threads"] / 3, "the work ran in the pool's processes, not in this one"
assert median_ping["processes"] < median_ping["threads"], "the loop is more responsive while the pool works"
if got_the_cores:
    assert speed_up > 1.2, "the workers had the cores, so the work was faster"

figure = NotebookFigure(figsize=(9, 3.8), layout="constrained")
time_axes, ping_axes = figure.subplots(1, 2)
bars = time_axes.bar(["threads (one GIL)", f"process pool ({WORKERS} workers)"],
                     [best["threads"][0], best["processes"][0]], color=["#4c72b0", "#55a868"])
time_axes.bar_label(bars, [f"{cores[how]:.1f} cores busy" for how in ("threads", "processes")], fontsize=8)
time_axes.set(ylabel=f"seconds for {JOBS} jobs (best of {ROUNDS})", title="the same CPU work")
for how, samples in pings.items():
    ping_axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], "o", label=f"jobs in {how}")
ping_axes.set(xlabel="when /ping was sent (s after the jobs began)", ylabel="/ping took (s)",
              title="the loop meanwhile (all rounds)")
ping_axes.legend(fontsize=8)
ping_axes.grid(alpha=0.3)
if got_the_cores:
    verdict = (f"Your machine gave the pool's {WORKERS} workers {cores['processes']:.1f} cores,\n"
               f"so the pool was {speed_up:.1f} times as fast as the threads.")
else:  # the picture alone would contradict the section's heading: say why
    verdict = (f"Your machine gave the pool's {WORKERS} workers only {cores['processes']:.1f} cores (other programs "
               "held the rest, or it has no more),\n"
               f"so here it ran at {speed_up:.1f} times the threads' speed; with {WORKERS} free cores it would be up "
               f"to {WORKERS} times as fast.")
figure.suptitle(verdict, fontsize=10)
figure

# %% [markdown]
# The speed-up is the number of cores the workers kept busy, and that depends on what else the
# machine is doing: on two free cores it is close to 2; when other programs keep the cores busy,
# the "cores busy" figure above drops, and the speed-up with it, which the picture's heading then
# says. The threads' figure never rises much above 1: that is the GIL. Two more costs to know:
# arguments and results travel between processes pickled, so send small inputs (a file name, an
# id) rather than large objects; and each worker is a whole Python process with its own memory.

# %% [markdown]
# ## 6. The common advice, checked
#
# | Advice | Verdict | Proof |
# |---|---|---|
# | "Never block in `async def`" | True: every request waits for the whole blocking call | Fact 1.1 |
# | "Use `def` for blocking work" | True: a `def` task leaves the loop free, even running a CPU loop (Fact 1.1); but CPU-bound threads share the GIL with the loop, so `/ping` waits longer beside eight of them than beside a process pool (Fact 5.2) | Facts 1.1, 5.2 |
# | "FastAPI runs `def` code in a thread pool" | True, with 40 tokens per loop, shared by endpoints, dependencies and tasks | Facts 2.1, 2.2 |
# | "Raise the thread limit if tasks queue" | Works (in the lifespan); costs threads and memory | Fact 2.3 |
# | "A module-level semaphore limits concurrency" | Only within one loop; a second start fails | Facts 3.3, 3.4 |
# | "Wrap slow calls in a timeout" | Stops the wait, never the thread; `fail_after` does not even stop the wait around `run_in_threadpool` | Facts 4.1, 4.2 |
# | "Use processes for CPU-bound work" | True: faster when several cores are free, and the loop stays free | Fact 5.2 |

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against a real server.
# The reference solutions are in `solutions/ch05_performance/`; try first, then compare.
#
# ### Exercise 5.1: render without stalling
#
# `render_report(name)` stands for a blocking PDF library: it sleeps 0.5 s, then appends `name`
# to `rendered`. Write an app with `POST /reports/{name}` that answers `202 Accepted` with
# `{"report": name, "status": "rendering"}` at once and renders the report in a background
# task, and `GET /ping` (`async def`), which must keep answering while reports render: the
# check sends a `/ping` right after the response and expects its answer before the report is
# rendered.

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
rendered: list[str] = []


def render_report(name: str) -> None:
    time.sleep(0.5)  # a blocking PDF library
    rendered.append(name)


@app.post("/reports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def create_report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(render_report, name)  # a def function: it runs on a worker thread
    return {"report": name, "status": "rendering"}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch05_performance as checks

checks.ex01(app, rendered)

# %% [markdown]
# ### Exercise 5.2: at most two exports at a time
#
# Write an app whose lifespan creates `app.state.exports`, an `asyncio.Semaphore` that lets two
# exports run at once. `POST /exports/{number}` (an `int`) answers `202` with
# `{"export": number}` and adds an `async def` task that, while holding the semaphore, appends
# `("start", number)` to `events`, waits `await asyncio.sleep(0.2)` (the export), and appends
# `("end", number)`. The check sends six requests at once, and starts your app twice.

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status

events: list[tuple[str, int]] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.exports = asyncio.Semaphore(2)  # created in the running loop, once per start
    yield


app = FastAPI(lifespan=lifespan)


async def export(number: int, exports: asyncio.Semaphore) -> None:
    async with exports:
        events.append(("start", number))
        await asyncio.sleep(0.2)
        events.append(("end", number))


@app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(export, number, request.app.state.exports)
    return {"export": number}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(app, events)

# %% [markdown]
# ### Exercise 5.3: a deadline for a blocking call
#
# `fetch_rates()` stands for a blocking client of a slow API: it sleeps 1 s, then appends
# `"fetched"` to `calls`. Write an app with `POST /refresh` that answers `202` with
# `{"status": "refreshing"}` and adds a task that runs `fetch_rates` on a worker thread with a
# deadline of 0.3 s: it appends `"ok"` to `outcomes` if the call returned in time, and
# `"timed out"` *as soon as* the deadline passes (it must not wait for the thread). Section 4
# shows which timeouts give up on a thread and which do not (and Fact 4.3 what giving up costs:
# the abandoned thread runs on outside the thread limit).

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import time

from fastapi import BackgroundTasks, FastAPI, status
from fastapi.concurrency import run_in_threadpool

app = FastAPI()
calls: list[str] = []
outcomes: list[str] = []


def fetch_rates() -> None:
    time.sleep(1)  # a blocking client of a slow API
    calls.append("fetched")


async def refresh_rates() -> None:
    try:
        async with asyncio.timeout(0.3):  # cancels the await; the thread runs on
            await run_in_threadpool(fetch_rates)
    except TimeoutError:
        outcomes.append("timed out")
    else:
        outcomes.append("ok")


@app.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(refresh_rates)
    return {"status": "refreshing"}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(app, outcomes, calls)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch05_performance")
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
answer_q02 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q02", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q02", answer_q02)

# %% nbgrader={"grade": false, "grade_id": "q03_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q03")

# %% nbgrader={"grade": false, "grade_id": "q03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q03 = "D"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q03", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q03", answer_q03)

# %% nbgrader={"grade": false, "grade_id": "q04_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q04")

# %% nbgrader={"grade": false, "grade_id": "q04_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q04 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q04", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q04", answer_q04)

# %% nbgrader={"grade": false, "grade_id": "q05_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q05")

# %% nbgrader={"grade": false, "grade_id": "q05_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi.concurrency import run_in_threadpool


async def run_off_loop(func, *args):
    return await run_in_threadpool(func, *args)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", run_off_loop)

# %% [markdown]
# ## Summary
#
# - A blocking call in an `async def` task makes every request that arrives meanwhile wait for
#   the rest of it; a `def` task or `await run_in_threadpool(...)` keeps the loop free, though
#   CPU-bound threads still slow it through the GIL (sections 1 and 5).
# - `def` endpoints, `def` dependencies and `def` tasks share AnyIO's default thread limiter:
#   40 tokens per event loop. The 41st waits, and a slow `def` task can delay a `def` endpoint.
#   Raise the limit in the lifespan with
#   `anyio.to_thread.current_default_thread_limiter().total_tokens = N`, at the price of more
#   threads and memory (section 2).
# - Split long work on the loop into batches with an `await` between them; bound a kind of work
#   across requests with a semaphore created in the lifespan, never at import time (section 3).
# - Timeouts cancel async work; they never stop a thread, and `anyio.fail_after` does not even
#   stop waiting for `run_in_threadpool` (section 4).
# - CPU-bound work belongs in a process pool, started in the lifespan with `spawn`, fed
#   functions from modules (section 5).
#
# Next: chapter 6 troubleshoots `RuntimeError: No response returned.`
