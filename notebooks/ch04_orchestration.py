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
# # Chapter 4: Task orchestration: wrappers, retries, chaining, failures
#
# Chapter 1 showed how one background task runs. Real tasks are wrapped (to log them), retried
# (because the services they call fail now and then), chained and fanned out. Each of these has a
# well-known way to go wrong quietly. As in every chapter, each statement is followed by a cell
# that proves it against a real server and `assert`s it.
#
# **You will learn**
#
# - what the monitoring decorator that is commonly shown (an `async def wrapper` that awaits the
#   function) does to a `def` task: it blocks the server, reports a failure after the work was
#   done, and renames the task `wrapper`;
# - how to write a correct one: `functools.wraps`, `async` functions awaited, `def` functions sent
#   to the thread pool, failures logged with the traceback, typed with `ParamSpec`;
# - what a failing task does and does not do: to the client, to the request's other tasks, to the
#   log, to other requests, and in tests;
# - how to retry with backoff using `tenacity`, bounded and logged, and why a retried task must
#   be idempotent;
# - how to orchestrate: chains that pass results on, fan-out with `asyncio.TaskGroup` or
#   `asyncio.gather` (and how they differ when one part fails), tasks added by dependencies, and
#   the `background=` trap that silently drops tasks.

# %% [markdown]
# ## 0. Set-up: the versions, and the course's helpers
#
# The course was proved on the versions pinned in `pyproject.toml`; the cell says so if yours
# differ. This chapter adds `tenacity`, the retry library.

# %%
import asyncio
import functools
import inspect
import logging
import platform
import threading
import time
from importlib.metadata import version

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "tenacity": "9.2.1",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown]
# The helpers are chapter 1's: `serve(app)` runs a real uvicorn server in a thread and stops it
# (waiting for running tasks) when the block ends; `Timeline` and `TimelineMiddleware` record
# requests and tasks on one clock; `capture_logs(name)` collects what a logger logged, so that a
# cell can print it and assert on it; `run_in_fresh_kernel` runs a snippet in a new kernel;
# `version_table(...)` shows what `make versions` measured on older FastAPI releases.
#
# The tasks of this chapter log on a logger named `"tasks"`. Its start and end lines are `INFO`,
# below Python's default threshold (`WARNING`), so the cell lowers the threshold for this logger.
# `describe` prints a log record as one line.

# %%
import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Header, Request, Response
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from tqdm.auto import tqdm

from bgcourse import (
    Timeline,
    TimelineMiddleware,
    capture_logs,
    load_quiz,
    run_in_fresh_kernel,
    serve,
    shows_error,
    version_table,
    wait_until,
)

logger = logging.getLogger("tasks")
logger.setLevel(logging.INFO)


def describe(record: logging.LogRecord) -> str:
    """One log record as a line: logger, level, the message's first line, and the exception it carries."""
    line = f"{record.name} {record.levelname}: {record.getMessage().splitlines()[0]}"
    if record.exc_info and record.exc_info[1] is not None:
        line += f"  [with the traceback of {type(record.exc_info[1]).__name__}]"
    return line


# %% [markdown]
# ## 1. The monitoring decorator that is commonly shown
#
# Tutorials and answers often suggest wrapping every background task in a decorator like this
# one, to log when it starts, ends and fails:
#
# ```python
# def monitor_task(func):
#     async def wrapper(*args, **kwargs):
#         logger.info(f"Task {func.__name__} started")
#         try:
#             result = await func(*args, **kwargs)
#             logger.info(f"Task {func.__name__} completed")
#             return result
#         except Exception as e:
#             logger.error(f"Task {func.__name__} failed: {e}")
#             raise
#     return wrapper
# ```
#
# On an `async def` task it works (Fact 1.3 shows it). On a `def` task it goes wrong three ways.
# Chapter 1 (Fact 4.1) showed that Starlette decides where a task runs by looking at the function
# it is given: a coroutine function is awaited on the event loop, anything else is sent to a
# worker thread. The decorator hands Starlette `wrapper`, which is always `async def`.
#
# **Fact 1.1.** Wrapped by `monitor_task`, a `def` task no longer runs on a worker thread but on
# the event loop's thread, and its blocking call stops the whole server: a `GET /ping` sent while
# it runs is answered only after the task has ended. The same function added as it is runs on a
# worker thread, and `/ping` is answered while it still runs.

# %%
def monitor_task(func):
    async def wrapper(*args, **kwargs):
        logger.info(f"Task {func.__name__} started")
        try:
            result = await func(*args, **kwargs)
            logger.info(f"Task {func.__name__} completed")
            return result
        except Exception as e:
            logger.error(f"Task {func.__name__} failed: {e}")
            raise

    return wrapper


timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


def build_report(kind: str) -> None:
    time.sleep(0.5)  # blocking work: a synchronous database driver, a file, a CPU-heavy step


@app.post("/reports/{kind}")
async def order_report(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task = monitor_task(build_report) if kind == "decorated" else build_report
    background_tasks.add_task(timeline.track(f"build_report, {kind}", task), kind)
    return {"queued": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


# Two clients: the one whose task fails gets its connection closed (chapter 1, Fact 7.2).
with (
    capture_logs("tasks"),
    capture_logs("uvicorn.error"),
    serve(app) as url,
    httpx.Client(base_url=url) as reports,
    httpx.Client(base_url=url) as pings,
):
    for kind in ("plain", "decorated"):
        timeline.request(reports, "POST", f"/reports/{kind}", lane=f"POST /reports/{kind}")
        timeline.request(pings, "GET", "/ping", lane=f"GET /ping while the {kind} task runs")

# When each /ping was sent and answered, against the end of the task it was sent beside.
sent, answered, task_end = {}, {}, {}
for kind, when in (("plain", "before"), ("decorated", "after")):
    lane = f"GET /ping while the {kind} task runs"
    sent[kind], answered[kind] = timeline.at(lane, "request sent"), timeline.at(lane, "response received")
    task_end[kind] = timeline.at(f"build_report, {kind}", "task end")
    thread = timeline.find(f"build_report, {kind}", "task start").thread
    print(
        f"build_report, {kind:9}: /ping answered {abs(task_end[kind] - answered[kind]):.2f} s {when} the task"
        f" ended; the task ran on {thread}"
    )
assert timeline.find("build_report, plain", "task start").thread == "AnyIO worker thread"
assert timeline.find("build_report, decorated", "task start").thread.startswith("uvicorn-")
assert all(sent[kind] < task_end[kind] for kind in sent), "each /ping was sent while its task ran"
assert answered["plain"] < task_end["plain"], "beside the plain task, /ping was answered while the task ran"
assert answered["decorated"] > task_end["decorated"], "beside the decorated task, /ping waited for its end"
timeline.plot("monitor_task moves a def task onto the event loop: /ping waits for it")

# %% [markdown]
# The second `/ping` bar ends only after the task's bar: the server could not even read the
# request until `time.sleep(0.5)` returned. Every request to this server would have waited the
# same way.
#
# Then `wrapper` reaches `await func(*args, **kwargs)`. `func` was not a coroutine function, so
# the call has already *done the work* and returned its result, here `None`; the `await` is
# applied to that result.
#
# **Fact 1.2.** After the report is built, `await None` raises `TypeError` (on Python 3.11:
# `object NoneType can't be used in 'await' expression`). The wrapper logs "failed" for work that
# succeeded, the server logs the exception, and the request's later tasks are skipped (chapter 1,
# Fact 7.1).

# %%
app = FastAPI()
reports_built: list[str] = []
notified: list[str] = []


@monitor_task
def build_monthly_report(month: str) -> None:
    time.sleep(0.1)
    reports_built.append(month)


@app.post("/monthly/{month}")
def order_monthly_report(month: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(build_monthly_report, month)
    background_tasks.add_task(notified.append, f"report {month} is ready")
    return {"queued": month}


with capture_logs("tasks") as task_records, capture_logs("uvicorn.error") as server_records, serve(app) as url:
    response = httpx.post(f"{url}/monthly/march")

print(f"the client got {response.status_code} {response.json()}")
print(f"reports built: {reports_built}")
for record in task_records + server_records:
    print(describe(record))
print(f"the notification task added after it: {'ran' if notified else 'never ran'}")
failure = server_records[0].exc_info[1]
assert response.status_code == 200 and reports_built == ["march"]
assert [record.levelname for record in task_records] == ["INFO", "ERROR"]
assert "failed" in task_records[1].getMessage()
assert isinstance(failure, TypeError) and "NoneType" in str(failure) and "await" in str(failure)
assert notified == []

# %% [markdown]
# The log says the task failed, the report exists, and the notification that depended on it was
# never sent. An on-call engineer who re-runs the "failed" task builds it twice.
#
# The third problem is the name. `wrapper` is a new function, and without `functools.wraps` it
# keeps its own name, qualified name and (empty) docstring. The decorator's own log lines are
# right, because they read `func.__name__` from the closure, but anything that reads the name
# from the task it was given sees `wrapper`.
#
# **Fact 1.3.** Decorated by `monitor_task`, every task is called `wrapper`: a helper that logs
# the name of each task it queues logs `queued wrapper` twice for two different tasks. With
# `@functools.wraps(func)` on the wrapper, the names, docstring and signature are the task's own,
# and nothing else changes: the wrapper is still a coroutine function, and around a `def`
# function it still ends in `TypeError`. (On these `async def` tasks both decorators otherwise
# do their job: the tasks complete.)

# %%
def monitor_task_with_wraps(func):
    @functools.wraps(func)  # the only difference from monitor_task
    async def wrapper(*args, **kwargs):
        logger.info(f"Task {func.__name__} started")
        try:
            result = await func(*args, **kwargs)
            logger.info(f"Task {func.__name__} completed")
            return result
        except Exception as e:
            logger.error(f"Task {func.__name__} failed: {e}")
            raise

    return wrapper


async def send_invoice(customer: str) -> None:
    """E-mail the customer their invoice."""
    await asyncio.sleep(0.01)


async def update_crm(customer: str) -> None:
    """Record the sale in the CRM."""
    await asyncio.sleep(0.01)


def enqueue(background_tasks: BackgroundTasks, func, *args) -> None:
    """A helper many code bases have: queue a task and say so in the log."""
    logger.info("queued %s", func.__name__)
    background_tasks.add_task(func, *args)


app = FastAPI()


@app.post("/sales/{decorator}")
async def record_sale(decorator: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    wrap = monitor_task if decorator == "without-wraps" else monitor_task_with_wraps
    enqueue(background_tasks, wrap(send_invoice), "ada")
    enqueue(background_tasks, wrap(update_crm), "ada")
    return {"recorded": "ada"}


with capture_logs("tasks") as records, serve(app) as url:
    for decorator in ("without-wraps", "with-wraps"):
        httpx.post(f"{url}/sales/{decorator}")

messages = [record.getMessage() for record in records]
queued_lines = [message for message in messages if message.startswith("queued")]
queued = {"without-wraps": queued_lines[:2], "with-wraps": queued_lines[2:]}  # the requests came one by one
completed = sum(message.endswith("completed") for message in messages)
failed = sum(" failed: " in message for message in messages)
print(f"on async def tasks, both decorators work: {completed} tasks completed, {failed} failed")
for decorator, wrap in (("without-wraps", monitor_task), ("with-wraps", monitor_task_with_wraps)):
    wrapped = wrap(send_invoice)
    print(f"{decorator}: the server logged {queued[decorator]}")
    print(
        f"{'':14} __name__={wrapped.__name__!r}, __qualname__={wrapped.__qualname__!r},"
        f" __doc__={wrapped.__doc__!r}, signature={inspect.signature(wrapped)}"
    )
still_async = inspect.iscoroutinefunction(monitor_task_with_wraps(build_report))
with capture_logs("tasks"):
    try:
        await monitor_task_with_wraps(time.sleep)(0.01)
        with_wraps_on_def = "nothing"
    except TypeError as error:
        with_wraps_on_def = f"TypeError: {error}"
print(f"with wraps, monitor_task_with_wraps(build_report) is still a coroutine function: {still_async}")
print(f"with wraps, awaiting it around the def function time.sleep still raises {with_wraps_on_def}")
assert completed == 4 and failed == 0
assert still_async and with_wraps_on_def.startswith("TypeError")
assert queued["without-wraps"] == ["queued wrapper", "queued wrapper"]
assert queued["with-wraps"] == ["queued send_invoice", "queued update_crm"]
assert str(inspect.signature(monitor_task_with_wraps(send_invoice))) == "(customer: str) -> None"

# %% [markdown]
# So `functools.wraps` fixes the name and nothing else: Starlette, seeing a coroutine function,
# still runs a `def` task wrapped by `monitor_task_with_wraps` on the event loop.
#
# The mirror image of this decorator, a plain `def wrapper` around an `async def` task, fails
# more quietly still. Starlette sees a `def` function and runs it in a worker thread; calling the
# `async def` function there only *creates* a coroutine, which nobody awaits. Python reports that
# with a `RuntimeWarning` when the coroutine is thrown away. To keep that warning out of this
# kernel, the demonstration runs in a fresh kernel of its own, which records the warning and
# prints it.
#
# **Fact 1.4.** A `def` wrapper around an `async def` task logs "started" and "completed", the
# task's work never happens, and the only sign of trouble is `RuntimeWarning: coroutine
# 'send_welcome' was never awaited`.

# %%
MIRROR_IMAGE = '''
import asyncio, functools, threading, warnings
import httpx
from fastapi import BackgroundTasks, FastAPI
from bgcourse import serve

sent = []

def log_task(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        print(f"Task {func.__name__} started")
        result = func(*args, **kwargs)
        print(f"Task {func.__name__} completed")
        return result
    return wrapper

@log_task
async def send_welcome(address):
    await asyncio.sleep(0.05)
    sent.append(address)

app = FastAPI()

@app.post("/signup")
def signup(background_tasks: BackgroundTasks):
    background_tasks.add_task(send_welcome, "ada@example.com")
    return {"status": "signed up"}

warned = []
shown = threading.Event()

def record(message, category, filename, lineno, file=None, line=None):
    warned.append(f"{category.__name__}: {message}")
    shown.set()

with warnings.catch_warnings():
    warnings.simplefilter("always")
    warnings.showwarning = record
    with serve(app) as url:
        httpx.post(f"{url}/signup")
    # The thread that lets go of the coroutine last, the event loop's or the worker's, drops it,
    # and that can be after the server has stopped: wait for the warning itself.
    shown.wait(timeout=60)
print(f"welcome e-mails sent: {sent}")
for warning in warned:
    print(f"Python warned: {warning}")
'''
with tqdm(total=1, desc="running the demonstration in a fresh kernel") as progress:
    mirror = run_in_fresh_kernel(MIRROR_IMAGE)
    progress.update()
print(mirror.output.strip())
assert "Task send_welcome completed" in mirror.output
assert "welcome e-mails sent: []" in mirror.output
assert "RuntimeWarning: coroutine 'send_welcome' was never awaited" in mirror.output
assert not mirror.error

# %% [markdown]
# ## 2. A correct monitoring decorator
#
# A wrapper that Starlette must run as a coroutine can still do the right thing for both kinds of
# function, by doing itself what Starlette would have done:
#
# - `@functools.wraps(func)`: the task keeps its name, docstring and signature;
# - an `async def` function is awaited; any other function is sent to the thread pool with
#   `starlette.concurrency.run_in_threadpool`, the very function Starlette's `BackgroundTask`
#   uses for `def` tasks (it calls `anyio.to_thread.run_sync`), so the event loop stays free.
#   "Async" is decided as Starlette decides it (`is_async_callable` in `starlette/_utils.py`): a
#   coroutine function, a `functools.partial` of one, or an object whose `__call__` is one.
#   `inspect.iscoroutinefunction` sees through a partial too, but says no to such an object, and
#   the wrapper would send it to a thread, where calling it only makes a coroutine that nobody
#   awaits;
# - a failure is logged with `logger.exception`, which attaches the traceback, and re-raised, so
#   that the request's later tasks are skipped as they would be without the decorator (section 3;
#   chapter 1's exercise 1.3, `keep_going`, is the variant that lets them run);
# - typed with `ParamSpec`, so that a type checker knows `monitored(build_report)` takes the same
#   arguments as `build_report`. The two `@overload`s say: an `async` function keeps its result
#   type; a plain function's result becomes awaitable.

# %%
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")


def is_async_callable(func: object) -> bool:
    """As Starlette decides it (starlette/_utils.py): unwrap partials, then look at the function or its __call__."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or (callable(func) and inspect.iscoroutinefunction(func.__call__))


@overload
def monitored(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
@overload
def monitored(func: Callable[P, R]) -> Callable[P, Awaitable[R]]: ...
def monitored(func: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
    """Log a task's start, end and failure (with the traceback); run it where it belongs."""
    name = getattr(func, "__qualname__", type(func).__qualname__)
    is_async = is_async_callable(func)

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        logger.info("task %s started", name)
        started = time.perf_counter()
        try:
            if is_async:
                result = await func(*args, **kwargs)
            else:
                result = await run_in_threadpool(func, *args, **kwargs)
        except Exception:
            logger.exception("task %s failed after %.2f s", name, time.perf_counter() - started)
            raise
        logger.info("task %s finished in %.2f s", name, time.perf_counter() - started)
        return result

    return wrapper


# %% [markdown]
# **Fact 2.1.** With `monitored`, the `def` task of section 1 runs on an AnyIO worker thread and
# `/ping` is answered while it runs; the log names the task and says it finished; the task's
# name and signature are its own; an `async def` task is still awaited on the event loop, and a
# return value comes back unchanged. So are a `functools.partial` of an `async def` function and
# an object with an `async def __call__`; `inspect.iscoroutinefunction` recognises the first, not
# the second.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def count_pages(kind: str) -> int:
    await asyncio.sleep(0.05)
    return 12


@app.post("/reports/{kind}")
async def order_report(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track("monitored(build_report)", monitored(build_report)), kind)
    background_tasks.add_task(timeline.track("monitored(count_pages)", monitored(count_pages)), kind)
    return {"queued": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


with (
    capture_logs("tasks") as records,
    serve(app) as url,
    httpx.Client(base_url=url) as reports,
    httpx.Client(base_url=url) as pings,
):
    timeline.request(reports, "POST", "/reports/monitored", lane="POST /reports/monitored")
    timeline.request(pings, "GET", "/ping", lane="GET /ping while the task runs")

ahead = timeline.at("monitored(build_report)", "task end") - timeline.at(
    "GET /ping while the task runs", "response received"
)
print(f"/ping answered {ahead:.2f} s before build_report ended")
for lane in ("monitored(build_report)", "monitored(count_pages)"):
    print(f"{lane:24} ran on {timeline.find(lane, 'task start').thread}")
for record in records:
    print(describe(record))
wrapped = monitored(build_report)
print(f"monitored(build_report): __name__={wrapped.__name__!r}, signature={inspect.signature(wrapped)}")
pages = await monitored(count_pages)("monthly")
print(f"awaiting monitored(count_pages) directly returns {pages}")


class PageCounter:
    async def __call__(self, kind: str) -> int:
        return await count_pages(kind)


seen_as_async = {
    type(odd_one).__name__: (inspect.iscoroutinefunction(odd_one), is_async_callable(odd_one))
    for odd_one in (functools.partial(count_pages, "monthly"), PageCounter())
}
for kind, (by_inspect, by_starlette) in seen_as_async.items():
    print(f"{kind:11} inspect.iscoroutinefunction: {by_inspect!s:5}  is_async_callable: {by_starlette}")
assert seen_as_async == {"partial": (True, True), "PageCounter": (False, True)}
assert await monitored(functools.partial(count_pages, "monthly"))() == 12  # awaited on the loop, not a coroutine
assert await monitored(PageCounter())("monthly") == 12
assert ahead > 0, "/ping was answered while build_report still ran"
assert timeline.find("monitored(build_report)", "task start").thread.startswith("uvicorn-")  # the wrapper
assert [r.getMessage().split(" in ")[0] for r in records] == [
    "task build_report started",
    "task build_report finished",
    "task count_pages started",
    "task count_pages finished",
]
assert wrapped.__name__ == "build_report" and inspect.iscoroutinefunction(wrapped)
assert pages == 12

# %% [markdown]
# The timeline records the *wrapper's* start, which is on the loop's thread (`uvicorn-<port>`);
# the work inside it, `build_report`, went to a worker thread, which is why `/ping` was free.
# This cell shows it from inside the functions:

# %%
ran_on: dict[str, str] = {}


def def_function() -> None:
    ran_on["def function"] = threading.current_thread().name


async def async_def_function() -> None:
    ran_on["async def function"] = threading.current_thread().name


app = FastAPI()


@app.post("/where")
async def where(background_tasks: BackgroundTasks) -> dict[str, bool]:
    ran_on["endpoint"] = threading.current_thread().name
    background_tasks.add_task(monitored(def_function))
    background_tasks.add_task(monitored(async_def_function))
    return {"queued": True}


with capture_logs("tasks"), serve(app) as url:
    httpx.post(f"{url}/where")
for where_from in ("def function", "async def function"):
    print(f"{where_from}, inside monitored, ran on: {ran_on[where_from]}")
print(f"(the endpoint ran on {ran_on['endpoint']}, the event loop's thread)")
assert ran_on["def function"] == "AnyIO worker thread"
assert ran_on["async def function"] == ran_on["endpoint"] != ran_on["def function"]

# %% [markdown]
# What `ParamSpec` buys is visible to a type checker, not at run time. The course installs mypy;
# the cell writes `monitored` (its source, taken from this notebook) and a call with a wrong
# argument into a temporary file and runs `mypy --strict` on it, and then the same call with the
# decorator typed as `Callable[..., Any]`, as in chapter 1's exercise 1.3.
#
# **Fact 2.2.** mypy rejects `background_tasks.add_task(monitored(build_report), 3)`: `build_report`
# takes a `str`. Typed with `Callable[..., Any]`, the same mistake passes.

# %%
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

MONITORED_SOURCE = "".join(
    inspect.getsource(f) for f in [is_async_callable, *typing.get_overloads(monitored), monitored]
)
HEADER = """\
from __future__ import annotations
import functools, inspect, logging, time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload
from fastapi import BackgroundTasks
from starlette.concurrency import run_in_threadpool

logger = logging.getLogger("tasks")
P = ParamSpec("P")
R = TypeVar("R")


def build_report(kind: str) -> None: ...
"""
LOOSELY_TYPED = """
def monitored(func: Callable[..., Any]) -> Callable[..., Any]:
    return func
"""
MISTAKE = """

def order_report(background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(monitored(build_report), 3)
"""


def mypy_says(source: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        module = Path(folder) / "tasks_module.py"
        module.write_text(source, encoding="utf-8")
        command = [sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--cache-dir", f"{folder}/cache"]
        result = subprocess.run(
            [*command, str(module)],
            capture_output=True,
            text=True,
            cwd=folder,
        )
    return result.stdout.replace(str(module), "tasks_module.py").strip()


sources = {"with ParamSpec": HEADER + MONITORED_SOURCE + MISTAKE, "loosely typed": HEADER + LOOSELY_TYPED + MISTAKE}
verdicts = {name: mypy_says(source) for name, source in tqdm(sources.items(), desc="mypy --strict", unit="file")}
with_paramspec, loosely_typed = verdicts["with ParamSpec"], verdicts["loosely typed"]
print("monitored typed with ParamSpec:\n ", with_paramspec.replace("\n", "\n  "))
print("monitored typed as Callable[..., Any]:\n ", loosely_typed.replace("\n", "\n  "))
assert 'incompatible type "int"; expected "str"' in with_paramspec and "Found 1 error" in with_paramspec
assert loosely_typed.startswith("Success")

# %% [markdown]
# ## 3. When a monitored task fails
#
# Chapter 1 (section 7) proved what an exception in a task does. Here it is again with `monitored`
# in place, which re-raises, because the decorator should report a failure, not change what it
# does.
#
# **Fact 3.1.** When a task fails 0.3 s in: the client already has its `200`; the request's
# later task is skipped; the failure is logged twice, by `monitored` (naming the task, with the
# traceback) and by uvicorn (`Exception in ASGI application`); a request sent while the task was
# failing is answered and its own task runs.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
receipts: list[str] = []


@monitored
async def charge_card(order: str) -> None:
    await asyncio.sleep(0.3)
    raise ConnectionError(f"the card processor refused order {order}")


@monitored
async def send_receipt(order: str) -> None:
    receipts.append(order)


@app.post("/orders/{order}")
async def place_order(order: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    if order == "A":
        background_tasks.add_task(timeline.track("order A: charge_card", charge_card), order)
    background_tasks.add_task(timeline.track(f"order {order}: send_receipt", send_receipt), order)
    return {"order": order, "status": "accepted"}


with (
    capture_logs("tasks") as task_records,
    capture_logs("uvicorn.error") as server_records,
    serve(app) as url,
    httpx.Client(base_url=url) as first,
    httpx.Client(base_url=url) as second,
):
    response_a = timeline.request(first, "POST", "/orders/A", lane="POST /orders/A")
    response_b = timeline.request(second, "POST", "/orders/B", lane="POST /orders/B")

ahead = timeline.at("order A: charge_card", "task end") - timeline.at("POST /orders/A", "response received")
print(f"order A: the client had {response_a.status_code} {response_a.json()} {ahead:.2f} s before its task failed")
print(f"order B: answered {response_b.status_code} while order A's task ran")
print(f"receipts sent: {receipts}")
for record in task_records + server_records:
    if record.levelno >= logging.ERROR:
        print(describe(record))
errors = [record for record in task_records if record.levelno >= logging.ERROR]
assert response_a.status_code == response_b.status_code == 200 and ahead > 0, "A's 200 came before its task failed"
assert receipts == ["B"], "A's receipt is skipped, B's is sent"
assert len(errors) == 1 and "charge_card" in errors[0].getMessage()
assert isinstance(errors[0].exc_info[1], ConnectionError)
assert [type(r.exc_info[1]) for r in server_records] == [ConnectionError]
timeline.plot("order A's task fails after its response; order B is not affected")

# %% [markdown]
# Order A's `send_receipt` has no lane in the picture: it never started. Nobody tells the
# client: its `200` left before the task began. If the client must learn the outcome, the task
# has to record it somewhere the client can ask (a status row, a job id); chapter 7's durable
# queue keeps each job's result where any process can read it by the job's id.
#
# **Fact 3.2.** In a test, `TestClient` re-raises the task's exception in the test itself (the
# log lines are still written; `capture_logs` keeps them out of this notebook's output).

# %%
with shows_error(ConnectionError) as raised, capture_logs("tasks"), TestClient(app) as test_client:
    test_client.post("/orders/A")
assert type(raised.error) is ConnectionError

# %% [markdown]
# That is the task's own `ConnectionError`, raised by `test_client.post` after the response was
# built. Created with `raise_server_exceptions=False`, the client returns the `200` a real client
# gets:

# %%
receipts.clear()
with capture_logs("tasks") as records, TestClient(app, raise_server_exceptions=False) as test_client:
    quiet = test_client.post("/orders/A")
print(f"{quiet.status_code} {quiet.json()}; receipts sent: {receipts}; monitored logged:")
for record in records:
    print(" ", describe(record))
assert quiet.status_code == 200 and receipts == []
assert records[-1].levelno == logging.ERROR

# %% [markdown]
# ## 4. Retries with backoff, through `tenacity`
#
# A task that calls another service will meet a refused connection or a `503` now and then.
# Retrying by hand (a loop, a counter, a sleep) is easy to get subtly wrong; `tenacity` is a
# well-kept library that does it from a few declarations:
#
# - `stop=stop_after_attempt(4)`: at most 4 attempts, so a service that stays down cannot keep
#   the task (and the server's shutdown) waiting for ever;
# - `wait=wait_exponential(multiplier=0.05, max=1)`: wait 0.05 s, 0.1 s, 0.2 s... between
#   attempts (kept small here so that the notebook is fast; seconds are usual in production);
# - `retry=retry_if_exception(worth_retrying)`: retry only what another attempt can cure: a
#   request or an answer that did not get through (httpx's timeouts, network errors, a server
#   that hung up), a `5xx`, and `429 Too Many Requests`, once `raise_for_status()` has turned the
#   status into an exception. Not the other `4xx`: the service understood the request and refused
#   it (a declined card, a malformed order), and it will refuse it again (Fact 4.3);
# - `before_sleep=before_sleep_log(logger, logging.WARNING)`: one log line per retry;
# - `reraise=True`: after the last attempt, raise the last error itself rather than tenacity's
#   `RetryError`.
#
# `tenacity.retry` keeps the function's kind (an `async def` function stays a coroutine function;
# the next cell checks it), so `monitored` can sit on top of it and still run the task where it
# belongs: one start and one end line for the task, one warning per retry in between.
#
# The service to retry against is a small payment provider, a FastAPI app on a second real
# server. Two dictionaries script its bad days: `outage[order]` refuses that many requests with
# `503` before doing anything; `lost_answers[order]` charges the card and then answers `504`
# that many times, as a gateway does when the answer times out on its way back; an order in
# `declined` gets `402 Payment Required`, the card declined. It honours an `Idempotency-Key`
# header, as real payment APIs do (section 5).

# %%
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

provider = FastAPI()
provider_requests: list[tuple[float, str, str | None]] = []  # (when, order, idempotency key)
charges: list[str] = []  # one entry per charge made: the order it was for
charge_for_key: dict[str, int] = {}  # idempotency key -> number of the charge it made
outage: dict[str, int] = {}
lost_answers: dict[str, int] = {}
declined: set[str] = set()


@provider.post("/charges")
async def create_charge(
    order_id: str, amount: int, response: Response, idempotency_key: str | None = Header(default=None)
) -> dict[str, int | str]:
    provider_requests.append((time.perf_counter(), order_id, idempotency_key))
    if outage.get(order_id, 0) > 0:
        outage[order_id] -= 1
        response.status_code = 503
        return {"error": "service unavailable, try again"}
    if order_id in declined:
        response.status_code = 402
        return {"error": "card declined"}
    if idempotency_key is not None and idempotency_key in charge_for_key:
        return {"charge": charge_for_key[idempotency_key], "replayed": "yes"}
    charges.append(order_id)
    if idempotency_key is not None:
        charge_for_key[idempotency_key] = len(charges)
    if lost_answers.get(order_id, 0) > 0:
        lost_answers[order_id] -= 1
        response.status_code = 504  # the card was charged; the answer never made it back
        return {"error": "gateway timeout"}
    return {"charge": len(charges), "amount": amount}


def worth_retrying(error: BaseException) -> bool:
    """Could another attempt succeed? Yes if the request or its answer did not get through, or the
    service said "not now" (5xx, 429); no if it understood the request and refused it (other 4xx)."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


with_retries = retry(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.05, max=1),
    retry=retry_if_exception(worth_retrying),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)


@monitored
@with_retries
async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": amount})
        response.raise_for_status()


shop = FastAPI()


@shop.post("/orders/{order_id}/pay")
async def pay(order_id: str, amount: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(charge_order, request.app.state.provider_url, order_id, amount)
    return {"order": order_id, "status": "payment pending"}


def requests_for(order_id: str) -> list[float]:
    return [when for when, order, _ in provider_requests if order == order_id]


def short(message: str) -> str:
    """A log line without the URL and the link that httpx adds to its error messages."""
    return message.split(" for url ")[0]


# %% [markdown]
# **Fact 4.1.** With the provider refusing the first two requests for an order, the task makes
# three requests, logs two retries, and the card is charged once; the waits before the retries
# are at least 0.05 s and 0.1 s.

# %%
outage["order-1"] = 2
with capture_logs("tasks") as records, serve(provider) as provider_url, serve(shop) as url:
    shop.state.provider_url = provider_url  # the shop's configuration: where its payment provider is
    response = httpx.post(f"{url}/orders/order-1/pay", params={"amount": 1999})

attempts = requests_for("order-1")
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"the client got {response.status_code} {response.json()}")
for record in records:
    print(short(describe(record)))
print(f"{len(attempts)} requests reached the provider; gaps between them: {', '.join(f'{g:.2f} s' for g in gaps)}")
print(f"charges made: {charges.count('order-1')}")
print(f"tenacity's wrapper is still a coroutine function: {inspect.iscoroutinefunction(charge_order.__wrapped__)}")
assert inspect.iscoroutinefunction(charge_order.__wrapped__)
assert response.status_code == 200 and len(attempts) == 3 and charges.count("order-1") == 1
assert [r.levelname for r in records] == ["INFO", "WARNING", "WARNING", "INFO"]
assert gaps[0] >= 0.05 and gaps[1] >= 0.1

# %% [markdown]
# **Fact 4.2.** If the provider stays down, the task stops after 4 attempts, with waits of at
# least 0.05, 0.1 and 0.2 s between them (0.35 s of waiting in all), then raises the provider's
# last error, which `monitored` and uvicorn log. Nothing is charged.

# %%
outage["order-2"] = 100
with (
    capture_logs("tasks") as records,
    capture_logs("uvicorn.error") as server_records,
    serve(provider) as provider_url,
    serve(shop) as url,
):
    shop.state.provider_url = provider_url
    httpx.post(f"{url}/orders/order-2/pay", params={"amount": 500})

attempts = requests_for("order-2")
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"{len(attempts)} attempts over {attempts[-1] - attempts[0]:.2f} s, of which 0.35 s were tenacity's waits")
print(f"gaps between them: {', '.join(f'{g:.2f} s' for g in gaps)}")
for record in records + server_records:  # the task's start, its three retries, its failure; then uvicorn's
    print(short(describe(record)))
outage.pop("order-2")
assert len(attempts) == 4 and charges.count("order-2") == 0
assert all(gap >= wait for gap, wait in zip(gaps, (0.05, 0.1, 0.2)))
assert records[-1].levelname == "ERROR" and isinstance(records[-1].exc_info[1], httpx.HTTPStatusError)
assert [type(r.exc_info[1]) for r in server_records] == [httpx.HTTPStatusError]

# %% [markdown]
# **Fact 4.3.** A declined card (`402`) is asked for once with `worth_retrying`, and four times
# when every `httpx.HTTPError` is retried (which includes every error status once
# `raise_for_status()` has raised it); either way the task ends with the `402`.


# %%
async def post_charge(provider_url: str, order_id: str) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": 100})
        response.raise_for_status()


retry_every_http_error = retry(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.05, max=1),
    retry=retry_if_exception_type(httpx.HTTPError),
    reraise=True,
)
declined.add("order-9")
asked: dict[str, tuple[int, int]] = {}  # policy -> (requests for order-9, the status it ended with)
with capture_logs("tasks"), serve(provider) as provider_url:
    for policy, with_policy in (("every httpx.HTTPError", retry_every_http_error), ("worth_retrying", with_retries)):
        before = len(requests_for("order-9"))
        try:
            await with_policy(post_charge)(provider_url, "order-9")
        except httpx.HTTPStatusError as error:
            asked[policy] = (len(requests_for("order-9")) - before, error.response.status_code)
for policy, (requests_made, status) in asked.items():
    print(f"retry on {policy:22}: {requests_made} request(s) for the declined card, ended with {status}")
assert asked == {"every httpx.HTTPError": (4, 402), "worth_retrying": (1, 402)}
assert charges.count("order-9") == 0

# %% [markdown]
# The bound matters twice: a task that retries for ever holds its request's later tasks back
# (they run one after another), and a server that is stopping waits for running tasks (`serve`
# gives them `graceful_seconds`; chapter 7 shows what stopping uvicorn does to them).

# %% [markdown]
# ## 5. Idempotency: what makes a retry safe
#
# A retry repeats the whole attempt. That is harmless if the attempt did nothing before it
# failed (section 4's `503`), but not if it did its work and only the answer was lost: then the
# work is done twice. An operation is *idempotent* if doing it twice has the same effect as
# doing it once. Payment APIs make a charge idempotent with an *idempotency key*: the client
# sends a key with the request, and the provider, seeing a key it already has, returns the first
# result instead of charging again.
#
# The key must name the *operation*, not the attempt: make it once, from something that
# identifies the work (the order id), or make it in the endpoint and pass it to the task.
#
# **Fact 5.1.** The provider charges, then answers `504` once. Retried with no key, the card is
# charged twice; with a new key made inside every attempt, twice; with one key per order, once.

# %%
import uuid


@monitored
@with_retries
async def charge_without_key(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": amount})
        response.raise_for_status()


@monitored
@with_retries
async def charge_with_a_key_per_attempt(provider_url: str, order_id: str, amount: int) -> None:
    key = uuid.uuid4().hex  # made inside the retried function: a new key on every attempt
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges", params={"order_id": order_id, "amount": amount}, headers={"Idempotency-Key": key}
        )
        response.raise_for_status()


@monitored
@with_retries
async def charge_with_a_key_per_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # the same for every attempt
        )
        response.raise_for_status()


variants = {
    "order-3": charge_without_key,
    "order-4": charge_with_a_key_per_attempt,
    "order-5": charge_with_a_key_per_order,
}
shop = FastAPI()


@shop.post("/orders/{order_id}/pay")
async def pay(order_id: str, amount: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(variants[order_id], request.app.state.provider_url, order_id, amount)
    return {"order": order_id, "status": "payment pending"}


with capture_logs("tasks"), serve(provider) as provider_url, serve(shop) as url:
    shop.state.provider_url = provider_url
    for order_id in variants:
        lost_answers[order_id] = 1
        httpx.post(f"{url}/orders/{order_id}/pay", params={"amount": 1999})

for order_id, task in variants.items():
    keys = {key for _, order, key in provider_requests if order == order_id}
    print(
        f"{task.__name__:30} {len(requests_for(order_id))} requests, {len(keys)} distinct key(s):"
        f" the card was charged {charges.count(order_id)} time(s)"
    )
assert [charges.count(order_id) for order_id in variants] == [2, 2, 1]
assert all(len(requests_for(order_id)) == 2 for order_id in variants)

# %% [markdown]
# Every variant retried correctly; only the last one was safe to retry. If the service you call
# has no idempotency keys, keep your own record of what was done, keyed the same way (a row with
# a unique constraint on the order id, written in the same transaction as the effect), and check
# it before acting. Chapter 3 (sections 5 and 6) makes compensations idempotent and keeps an
# outbox of work to do in the database.

# %% [markdown]
# ## 6. Chains: one task calls the next step with the previous result
#
# Tasks added one by one with `add_task` run in order (chapter 1, Fact 2.1), but each gets its
# arguments when it is *added*, before anything ran: the second cannot receive what the first
# produced. When steps depend on each other, write one task that calls them in turn and passes
# each result on. A `def` step inside an `async def` chain goes to the thread pool with
# `run_in_threadpool`, as `monitored` does.
#
# **Fact 6.1.** A chain `fetch_upload → summarise (def, blocking) → store_summary` passes each
# result to the next step; the steps run one after another, the `def` step on a worker thread.
#
# (`summarise` stands in for a blocking call, such as a synchronous client library, with
# `time.sleep`, which releases the GIL while it waits. Real CPU work holds the GIL, so worker
# threads never run more than one piece of it at a time: it belongs in a process pool, as
# chapter 5, section 5 shows.)

# %%
timeline = Timeline()
summaries: dict[str, str] = {}


async def fetch_upload(upload_id: str) -> str:
    await asyncio.sleep(0.05)  # download from object storage
    return "FastAPI runs background tasks after the response. " * 40


def summarise(text: str) -> str:
    time.sleep(0.05)  # a blocking call (a synchronous library): keep it off the event loop
    return f"{len(text.split())} words, starts: {text[:27]!r}"


async def store_summary(upload_id: str, summary: str) -> None:
    await asyncio.sleep(0.05)  # write to the database
    summaries[upload_id] = summary


@monitored
async def process_upload(upload_id: str) -> None:
    text = await timeline.track("1 fetch_upload", fetch_upload)(upload_id)
    summary = await run_in_threadpool(timeline.track("2 summarise", summarise), text)
    await timeline.track("3 store_summary", store_summary)(upload_id, summary)


app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


@app.post("/uploads/{upload_id}")
async def upload(upload_id: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(process_upload, upload_id)
    return {"upload": upload_id, "status": "processing"}


with capture_logs("tasks"), serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/uploads/u-1", lane="POST /uploads/u-1")

steps = ["1 fetch_upload", "2 summarise", "3 store_summary"]
for step in steps:
    print(f"{step:16} ran on {timeline.find(step, 'task start').thread}")
print(f"stored: {summaries}")
assert all(timeline.at(a, "task end") <= timeline.at(b, "task start") for a, b in zip(steps, steps[1:]))
assert timeline.find("2 summarise", "task start").thread == "AnyIO worker thread"
assert summaries["u-1"].startswith("280 words")
timeline.plot("one task, three steps: each result feeds the next")

# %% [markdown]
# A failing step ends the chain there (an exception leaves `process_upload`), which is what a
# chain should do: `store_summary` never runs on a summary that was not made, and `monitored`
# logs the chain's failure as in section 3.

# %% [markdown]
# ## 7. Fan-out inside one task: `asyncio.TaskGroup` or `asyncio.gather`
#
# When the parts of a job are independent (notify the inventory, the e-mail service and the
# analytics service about one order), one task can run them at the same time. Python offers two
# ways, and they differ exactly where it matters, when one part fails:
#
# - `async with asyncio.TaskGroup() as group: group.create_task(...)` (Python 3.11+): if a part
#   raises, the group **cancels the other parts** and raises an `ExceptionGroup` holding the
#   errors. Right when the parts only make sense together.
# - `await asyncio.gather(*parts, return_exceptions=True)`: every part runs to its end; errors
#   come back as values in the result list, and the task decides what to do with them. Right when
#   the parts are independent.
# - `await asyncio.gather(*parts)` without `return_exceptions`: raises the first error at once,
#   but does not cancel the other parts, which keep running with nobody waiting for them.
#
# **Fact 7.1.** Three notifications in one task: the e-mail fails after 0.1 s, and the two others
# go on until 0.2 s after that failure (they wait for it, so that a slow machine cannot let them
# end first and hide the difference). With a
# `TaskGroup` the two others are cancelled and the task raises `ExceptionGroup`; with
# `gather(return_exceptions=True)` both finish and the task gets the error as a value; with plain
# `gather` the task raises the `ConnectionError` after 0.1 s and the two others finish later on
# their own. In all three the parts run at the same time: each of them starts before the first
# of them ends.

# %%
timeline = Timeline()
outcomes: dict[str, str] = {}
task_results: dict[str, str] = {}


async def notify(strategy: str, service: str, failure: asyncio.Event, fails: bool = False) -> str:
    try:
        if fails:
            await asyncio.sleep(0.1)
            outcomes[f"{strategy}: {service}"] = "raised ConnectionError"
            failure.set()
            raise ConnectionError(f"{service} service is down")
        await failure.wait()  # the others are still at work when the e-mail fails...
        await asyncio.sleep(0.2)  # ...and for 0.2 s more: time enough to be cancelled, or to finish
    except asyncio.CancelledError:
        outcomes[f"{strategy}: {service}"] = "cancelled"
        raise
    outcomes[f"{strategy}: {service}"] = "finished"
    return service


def parts(strategy: str) -> list[Coroutine[Any, Any, str]]:
    failure = asyncio.Event()
    return [
        timeline.track(f"{strategy}: inventory", notify)(strategy, "inventory", failure),
        timeline.track(f"{strategy}: e-mail", notify)(strategy, "e-mail", failure, fails=True),
        timeline.track(f"{strategy}: analytics", notify)(strategy, "analytics", failure),
    ]


async def with_task_group() -> None:
    async with asyncio.TaskGroup() as group:
        for part in parts("TaskGroup"):
            group.create_task(part)


async def with_gather_return_exceptions() -> None:
    results = await asyncio.gather(*parts("gather(return_exceptions=True)"), return_exceptions=True)
    task_results["gather(return_exceptions=True)"] = f"returned {results!r}"


async def with_plain_gather() -> None:
    await asyncio.gather(*parts("plain gather"))


strategies = {
    "TaskGroup": with_task_group,
    "gather(return_exceptions=True)": with_gather_return_exceptions,
    "plain gather": with_plain_gather,
}


async def run_strategy(strategy: str) -> None:
    started = time.perf_counter()
    try:
        await strategies[strategy]()
    except BaseException as error:
        task_results[strategy] = f"raised {type(error).__name__}: {error} after {time.perf_counter() - started:.1f} s"
        raise


app = FastAPI()


@app.post("/fan-out/{number}")
async def fan_out(number: int, background_tasks: BackgroundTasks) -> dict[str, str]:
    strategy = list(strategies)[number]
    background_tasks.add_task(run_strategy, strategy)
    return {"strategy": strategy}


def all_parts_done() -> bool:
    return len(outcomes) == 9


with capture_logs("uvicorn.error") as server_records, serve(app) as url:
    for number in range(len(strategies)):
        httpx.post(f"{url}/fan-out/{number}")
    # plain gather's parts outlive its task, so the server does not wait for them: the cell does
    wait_until(all_parts_done, timeout=60, what="all nine parts finished or cancelled")

for strategy in strategies:
    print(f"{strategy}: the task {task_results[strategy]}")
    for service in ("inventory", "e-mail", "analytics"):
        print(f"    {service:9} {outcomes[f'{strategy}: {service}']}")
for record in sorted(server_records, key=describe):  # the two failures come 0.1 s in, in either order
    print(describe(record))
assert [outcomes[f"TaskGroup: {s}"] for s in ("inventory", "analytics")] == ["cancelled", "cancelled"]
assert task_results["TaskGroup"].startswith("raised ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)")
assert [outcomes[f"gather(return_exceptions=True): {s}"] for s in ("inventory", "analytics")] == ["finished"] * 2
assert "ConnectionError('e-mail service is down')" in task_results["gather(return_exceptions=True)"]
assert task_results["plain gather"].startswith("raised ConnectionError")
assert [outcomes[f"plain gather: {s}"] for s in ("inventory", "analytics")] == ["finished", "finished"]
assert sorted(type(r.exc_info[1]).__name__ for r in server_records) == ["ConnectionError", "ExceptionGroup"]
for strategy in strategies:  # concurrent: every part began before the first one ended (one after another: never)
    lanes = [f"{strategy}: {s}" for s in ("inventory", "e-mail", "analytics")]
    assert max(timeline.at(lane, "task start") for lane in lanes) < min(timeline.at(lane, "task end") for lane in lanes)
timeline.plot("one failing part: TaskGroup cancels the rest, gather lets them finish")

# %% [markdown]
# In the picture, the `TaskGroup` bars all stop at 0.1 s: the failing e-mail part in red and
# cross-hatched, the two parts it cancelled in grey and striped. With either `gather`, the e-mail
# part fails at 0.1 s just the same (red), and the other two run on to about 0.3 s (orange: they
# finished). Only
# `gather(return_exceptions=True)` ended its background task normally; the two others raised,
# so uvicorn logged them and any later task of their request would have been skipped.
#
# With plain `gather`, the parts that outlive the task run unsupervised: nothing awaits them any
# more. To handle some of a `TaskGroup`'s errors and not others, Python 3.11 added
# `except* ConnectionError:`.

# %% [markdown]
# ## 8. Tasks added by dependencies
#
# Chapter 1 (section 5) showed that a dependency and its endpoint share one `BackgroundTasks` per
# request. That makes a dependency a good place for tasks every route needs: put it on a router,
# and each route of the router schedules it. Dependencies with `yield` have a catch.
#
# **Fact 8.1.** A dependency on an `APIRouter` adds its task to every route of that router, ahead
# of the route's own task. In a dependency with `yield`, a task added before the `yield` runs; a
# task added after the `yield` never runs and nothing is logged, because on FastAPI 0.163.2 the
# code after the `yield` runs only once the tasks have finished.

# %%
events: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


def unit_of_work(background_tasks: BackgroundTasks):
    background_tasks.add_task(events.append, "task added before the yield")
    yield
    events.append("code after the yield runs")
    background_tasks.add_task(events.append, "task added after the yield")


router = APIRouter(prefix="/admin", dependencies=[Depends(audit)])


@router.post("/users/{user}/disable")
async def disable_user(user: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(events.append, f"revoke the sessions of {user}")
    return {"disabled": user}


@router.post("/cache/clear", dependencies=[Depends(unit_of_work)])
async def clear_cache(background_tasks: BackgroundTasks) -> dict[str, bool]:
    background_tasks.add_task(events.append, "rebuild the cache")
    return {"cleared": True}


app = FastAPI()
app.include_router(router)
with capture_logs("") as records:
    for path in ("/admin/users/ada/disable", "/admin/cache/clear"):
        with serve(app) as url:  # a server per request: it stops only when the request's tasks are done
            httpx.post(f"{url}{path}")

print(*events, sep="\n")
print(f"log records at WARNING or above: {len([r for r in records if r.levelno >= logging.WARNING])}")
assert events == [
    "audit POST /admin/users/ada/disable",
    "revoke the sessions of ada",
    "audit POST /admin/cache/clear",
    "task added before the yield",
    "rebuild the cache",
    "code after the yield runs",
]
assert not [r for r in records if r.levelno >= logging.WARNING]

# %% [markdown]
# When the code after `yield` runs has changed between releases (chapter 3, section 7), and with
# it the fate of a task added there. `make versions` ran the same dependency (a task added after
# `yield`, another added by the endpoint) on a real server for each release below, and looked,
# once the server had stopped (uvicorn's shutdown waits for every request's tasks), whether the
# task added after `yield` had run.
#
# **Fact 8.2.** A task added after `yield` ran on FastAPI 0.106.0 to 0.117.0, where the exit code
# ran before the response, and with `scope="function"` on 0.121.0 and 0.163.2. It never ran on
# 0.103.2 and 0.105.0, nor from 0.118.0 with the default scope: there the exit code runs after the
# tasks. The article this course answers was written for 0.103.2.

# %%
added_after_yield = version_table("task_after_yield", "task_after_yield_function_scope")
runs_by_default = {stack.name for stack, (default, _) in added_after_yield.rows if default.startswith("runs")}
assert runs_by_default == {"FastAPI 0.106.0", "FastAPI 0.115.0", "FastAPI 0.117.0"}
assert added_after_yield.outcome("FastAPI 0.163.2", "task_after_yield").startswith("never runs")  # as above
assert added_after_yield.outcome("FastAPI 0.163.2", "task_after_yield_function_scope").startswith("runs")
assert all(outcome.endswith("before `yield` runs)") for _, outcomes in added_after_yield.rows for outcome in outcomes
           if outcome != "n/a")
added_after_yield

# %% [markdown]
# Code that relies on either behaviour breaks on an upgrade. A task added *before* the `yield`
# ran on every release of the table, with both scopes (the words in brackets): add tasks there.

# %% [markdown]
# ## 9. The `background=` trap
#
# Every Starlette response takes a `background=` argument: one `BackgroundTask`, or a
# `BackgroundTasks`, to run after it is sent. FastAPI uses the same slot for the injected
# `BackgroundTasks`, but only if it is empty. Here is the code, read from the installed FastAPI:

# %%
import fastapi.routing

routing_lines = inspect.getsource(fastapi.routing).splitlines()
start = next(i for i, line in enumerate(routing_lines) if "if isinstance(raw_response, Response):" in line)
print(f"fastapi {version('fastapi')}, fastapi/routing.py, from line {start + 1}:")
indent = len(routing_lines[start]) - len(routing_lines[start].lstrip())
for line in routing_lines[start : start + 4]:
    print("    " + line[indent:])
assert routing_lines[start + 1].strip() == "if raw_response.background is None:"
assert routing_lines[start + 2].strip() == "raw_response.background = solved_result.background_tasks"

# %% [markdown]
# So if the endpoint returns a response that already has a `background`, the injected
# `BackgroundTasks` (with every task the endpoint and its dependencies added to it) is never
# attached to anything, and never runs.
#
# **Fact 9.1.** An endpoint whose dependency and body add tasks to the injected
# `BackgroundTasks`, and which returns `Response(..., background=BackgroundTask(release_lock))`:
# only `release_lock` runs. There is no error, no log line and no warning.

# %%
import warnings

events: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


app = FastAPI()
CSV = "order,total\n1,9.50\n2,12.00\n"


@app.get("/exports/{name}", dependencies=[Depends(audit)])
def export(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    return Response(CSV, media_type="text/csv", background=BackgroundTask(events.append, f"release lock {name}"))


with (
    warnings.catch_warnings(record=True) as caught,
    capture_logs("") as records,
    serve(app) as url,
):
    warnings.simplefilter("always")
    response = httpx.get(f"{url}/exports/march")

print(f"the client got {response.status_code}, {len(response.text)} characters of CSV")
print(f"tasks that ran: {events}")
loud = [r for r in records if r.levelno >= logging.WARNING]
print(f"log records at WARNING or above: {len(loud)}; Python warnings: {len(caught)}")
assert response.status_code == 200 and response.text == CSV
assert events == ["release lock march"]
assert not loud and not caught

# %% [markdown]
# FastAPI's check (`if raw_response.background is None`, above) looks at any `Response`, and
# every response class of Starlette takes `background=`, so the same trap waits with each:

# %%
from starlette import responses

response_classes = [cls for cls in vars(responses).values() if isinstance(cls, type) and issubclass(cls, Response)]
without = [cls.__name__ for cls in response_classes if "background" not in inspect.signature(cls).parameters]
print(f"{len(response_classes)} response classes in starlette.responses; without a `background` parameter: {without}")
assert {"JSONResponse", "FileResponse", "StreamingResponse"} <= {cls.__name__ for cls in response_classes}
assert without == []

# %% [markdown]
#
# There are two fixes, and both keep one list of tasks:
#
# 1. put every task on the injected `BackgroundTasks`, and return a response *without*
#    `background=` (FastAPI then attaches the injected object);
# 2. or pass the injected object itself: `Response(..., background=background_tasks)`.
#
# **Fact 9.2.** With either fix, all three tasks run, in the order they were added: the
# dependency's, the endpoint's, and the lock's release last.

# %%
app = FastAPI()


@app.get("/fix-1/{name}", dependencies=[Depends(audit)])
def export_fix_1(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    background_tasks.add_task(events.append, f"release lock {name}")
    return Response(CSV, media_type="text/csv")


@app.get("/fix-2/{name}", dependencies=[Depends(audit)])
def export_fix_2(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    background_tasks.add_task(events.append, f"release lock {name}")
    return Response(CSV, media_type="text/csv", background=background_tasks)


ran: dict[str, list[str]] = {}
for fix in ("fix-1", "fix-2"):
    events.clear()
    with serve(app) as url:
        httpx.get(f"{url}/{fix}/march")
    ran[fix] = list(events)
for fix, tasks in ran.items():
    print(f"{fix}: {tasks}")
expected = ["audit GET /{fix}/march", "e-mail the march export to accounting", "release lock march"]
assert ran["fix-1"] == [expected[0].format(fix="fix-1"), *expected[1:]]
assert ran["fix-2"] == [expected[0].format(fix="fix-2"), *expected[1:]]

# %% [markdown]
# The trap is not new. `make versions` ran an endpoint that adds an injected task and returns
# `JSONResponse(..., background=BackgroundTask(...))` on a real server for each release below.
#
# **Fact 9.3.** On all eight FastAPI releases measured, from 0.103.2 to 0.163.2, only the
# response's own task ran.

# %%
background_history = version_table("background_argument")
assert len(background_history.rows) == 8
assert {outcome for _, (outcome,) in background_history.rows} == {"only the response's own"}
background_history

# %% [markdown]
# ## 10. The common advice, checked
#
# | Claim | Verdict on the pinned versions | Proof |
# |---|---|---|
# | "Wrap tasks in an `async def` decorator to monitor them" | **Wrong for `def` tasks**: it blocks the server and ends in `TypeError` after the work is done | section 1 |
# | "`functools.wraps` is optional" | It keeps the name, docstring and signature that logs and tools read; it fixes nothing else | Fact 1.3 |
# | "A failed task is retried" | **No**: nothing retries a task unless you say so (for example with `tenacity`) | sections 3, 4 |
# | "Retries are safe" | Only for idempotent work: a lost answer made an unkeyed retry charge twice | Fact 5.1 |
# | "`gather` and `TaskGroup` are interchangeable" | **No**: on a failure one cancels the siblings, the other lets them run | Fact 7.1 |
# | "Returning a response with `background=` adds a task" | It **replaces** the injected tasks, silently | Fact 9.1 |

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against real servers.
# The reference solutions are in `solutions/ch04_orchestration/`; try first, then compare.
#
# ### Exercise 4.1: charge once, however often you retry
#
# Write `charge_order(provider_url, order_id, amount)`, a background task that asks the payment
# provider at `provider_url` to charge an order: `POST {provider_url}/charges` with the query
# parameters `order_id` and `amount`, the API of section 4's provider (which honours an
# `Idempotency-Key` header). With `tenacity`:
#
# - retry what another attempt can cure, and only that (section 4's `worth_retrying`: httpx's
#   timeouts and network errors, a server that hung up, and the statuses `5xx` and `429` once
#   `response.raise_for_status()` has raised them), 5 attempts in all (`stop_after_attempt(5)`), waiting 0.05 s,
#   0.1 s, 0.2 s and 0.4 s before the 2nd to the 5th (`wait_exponential(multiplier=0.05, max=0.5)`);
# - log each retry at `WARNING` on the logger `"tasks"`;
# - after the last attempt, let the error propagate.
#
# And make it safe to retry: however the provider fails, each order is charged at most once. The
# check runs it against a provider that refuses requests, one that loses an answer after
# charging, one that stays down, and one that declines the card.

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import logging

import httpx
from tenacity import before_sleep_log, retry, retry_if_exception, stop_after_attempt, wait_exponential

logger = logging.getLogger("tasks")


def worth_retrying(error: BaseException) -> bool:
    """A request or answer that did not get through, or "not now" (5xx, 429); never another 4xx."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


@retry(
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=0.5),
    retry=retry_if_exception(worth_retrying),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)
async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # one key per order, not per attempt
        )
        response.raise_for_status()
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch04_orchestration as checks

checks.ex01(charge_order)

# %% [markdown]
# ### Exercise 4.2: notify every service, whatever one of them does
#
# Write `async def notify_all(urls, event)` that POSTs the dict `event` as JSON to every URL in
# `urls` *at the same time*, and returns a dict mapping each URL to `"ok"` (a 2xx answer) or
# `"failed"` (an error status, or no answer at all). Log each failure at `ERROR` on the logger
# `"tasks"`, with the URL in the message and the exception attached (`exc_info=`). It must not
# raise because a service failed, and one failure must not stop the other notifications.

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import logging

import httpx

logger = logging.getLogger("tasks")


async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
    async with httpx.AsyncClient() as client:

        async def notify(url: str) -> None:
            response = await client.post(url, json=event)
            response.raise_for_status()

        outcomes = await asyncio.gather(*(notify(url) for url in urls), return_exceptions=True)
    results: dict[str, str] = {}
    for url, outcome in zip(urls, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.error("notifying %s failed", url, exc_info=outcome)
            results[url] = "failed"
        else:
            results[url] = "ok"
    return results
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.ex02(notify_all)

# %% [markdown]
# ### Exercise 4.3: the export that forgot its audit
#
# This app has section 9's bug: the audit task of the dependency never runs.
#
# ```python
# app = FastAPI()
# events: list[str] = []
# CSV = "order,total\n1,9.50\n2,12.00\n"
#
#
# def audit(request: Request, background_tasks: BackgroundTasks) -> None:
#     background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")
#
#
# @app.get("/exports/{name}", dependencies=[Depends(audit)])
# def export(name: str) -> Response:
#     return Response(CSV, media_type="text/csv", background=BackgroundTask(events.append, f"release {name}"))
# ```
#
# Fix it so that, after the CSV has been sent, `events` gets `"audit GET /exports/<name>"` and
# then `"release <name>"`. Keep the URL, the body and the media type.

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response

app = FastAPI()
events: list[str] = []
CSV = "order,total\n1,9.50\n2,12.00\n"


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


@app.get("/exports/{name}", dependencies=[Depends(audit)])
def export(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"release {name}")
    return Response(CSV, media_type="text/csv")  # no background=: FastAPI attaches background_tasks
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(app, events)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch04_orchestration")
quiz.ask("q01")

# %% nbgrader={"grade": false, "grade_id": "q01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q01 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q01", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q01", answer_q01)

# %% nbgrader={"grade": false, "grade_id": "q02_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q02")

# %% nbgrader={"grade": false, "grade_id": "q02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q02 = "C"
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
answer_q05 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", answer_q05)

# %% nbgrader={"grade": false, "grade_id": "q06_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q06")

# %% nbgrader={"grade": false, "grade_id": "q06_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import Response


def respond_with(background_tasks, cleanup):
    background_tasks.add_task(cleanup)
    return Response("done")
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", respond_with)

# %% [markdown]
# ## Summary
#
# - The commonly shown `async def wrapper` decorator runs a `def` task on the event loop (every
#   request waits for it), raises `TypeError` after the work is done, and, without
#   `functools.wraps`, renames every task `wrapper` (section 1).
# - A correct decorator keeps the name with `functools.wraps`, awaits `async` functions, sends the
#   others to the thread pool with `run_in_threadpool`, logs failures with `logger.exception`,
#   and is typed with `ParamSpec` so that a type checker sees the task's real arguments (section 2).
# - A failing task cannot change the response (already sent); it skips its request's later
#   tasks, is logged by the server, leaves other requests alone, and is re-raised by `TestClient`
#   unless `raise_server_exceptions=False` (section 3).
# - Retry with `tenacity`: bounded (`stop_after_attempt`), with backoff (`wait_exponential`),
#   only on errors a retry can cure (transport errors, `5xx`, `429`; never a refusal such as
#   `402`), logged (`before_sleep_log`) (section 4). A retry repeats
#   the attempt, so the work must be idempotent: one idempotency key per operation, made
#   outside the retry (section 5).
# - Chain dependent steps inside one task; fan out independent ones with
#   `gather(return_exceptions=True)`, or with a `TaskGroup` when one failure should cancel the
#   rest (sections 6 and 7).
# - Dependencies can schedule tasks for every route; in a `yield` dependency, add them before the
#   `yield` (section 8).
# - Never return a response with its own `background=` from an endpoint that uses the injected
#   `BackgroundTasks`: put every task on the injected object, or pass it as `background=`
#   (section 9).
#
# Next: chapter 5 measures performance: blocking, the thread pool, limits and timeouts.
