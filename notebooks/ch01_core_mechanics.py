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
# # Chapter 1: Core mechanics of FastAPI background tasks
#
# **Start here.** This is the first chapter of the course. Run the cells from top to bottom
# (Shift+Enter, or *Run → Run All Cells*). Every statement of fact is followed by a cell that
# proves it: it starts a real server, sends real HTTP requests over the loopback interface,
# prints what happened and `assert`s it. If an assertion ever fails on your machine, the course
# is wrong, not you.
#
# **You will learn**
#
# - when a background task runs: after the response has been sent, in the same process;
# - in which order: the tasks of one request run one after another, the tasks of different
#   requests overlap;
# - where: a `def` task on a worker thread, an `async def` task on the event loop's thread;
# - how a task list reaches your code: one `BackgroundTasks` object per request, shared by the
#   endpoint and its dependencies;
# - why `TestClient` and `httpx.ASGITransport` cannot show you this timing;
# - what a failing task does to the tasks after it;
# - why a notebook needs a server in a thread rather than `uvicorn.run()`.
#
# The chapters that follow: 2 registration with a welcome e-mail, 3 database compensation,
# 4 orchestration, 5 performance, 6 troubleshooting, 7 when `BackgroundTasks` is not enough.

# %% [markdown]
# ## 0. Set-up: the versions, and the course's helpers
#
# Behaviour changes between releases, so each chapter prints the versions it was proved on. The
# course was proved on the versions pinned in `pyproject.toml`; the cell says so if yours differ.

# %%
import asyncio
import platform
import threading
import time
from importlib.metadata import version

PINNED = {"fastapi": "0.163.2", "starlette": "1.10.0", "uvicorn": "0.54.0", "httpx": "0.28.1"}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown]
# The course's helper package `bgcourse` gives every chapter three tools:
#
# - `serve(app)`: a `with` block that runs a real uvicorn server for `app` in a background
#   thread, on `127.0.0.1` and a free port, and gives you its URL. When the block ends, the server
#   has stopped and its port is free again (section 8 explains why a thread is needed).
# - `Timeline`: one clock for what the client, the server and the tasks did. `TimelineMiddleware`
#   records when a request arrived and when its response was sent; `timeline.track(lane, func)`
#   records when a task started and ended and on which thread; `timeline.request(...)` records
#   when the client sent a request and when it had the whole response. `timeline.plot()` draws it.
# - `load_quiz(...)`: the quiz at the end of the chapter.
#
# And for readers on older releases, `version_table(...)` shows what `make versions` measured on
# each of them (section 7).

# %%
import fastapi.background
import httpx
import starlette.background
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.testclient import TestClient
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

# %% [markdown]
# ## 1. The response leaves first, then the task runs
#
# An endpoint adds a task with `background_tasks.add_task(func, *args)` and returns. The task
# does not run yet: FastAPI attaches the task list to the response (`fastapi/routing.py`, and
# only if that response has no `background` of its own: chapter 4, section 9 shows what happens
# to the tasks otherwise), and Starlette's
# `Response.__call__` (in `starlette/responses.py`) first sends the status line, the headers and
# the whole body, then awaits the tasks. So:
#
# **Fact 1.1.** The server sends the complete response *before* the first task starts, and the
# client has that response while the task is still running.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def send_welcome_email(address: str) -> None:
    await asyncio.sleep(0.5)  # stands in for a slow mail server


@app.post("/signup")
async def signup(address: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track("welcome e-mail", send_welcome_email), address)
    return {"status": "signed up"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    response = timeline.request(client, "POST", "/signup", params={"address": "ada@example.com"}, lane="signup")

print(response.status_code, response.json())
sent = timeline.at("signup", "response sent")
received = timeline.at("signup", "response received")
task_start = timeline.at("welcome e-mail", "task start")
task_end = timeline.at("welcome e-mail", "task end")
print(f"the server sent the response {1000 * (task_start - sent):.2f} ms before the task started")
print(f"the client had the response {task_end - received:.2f} s before the task ended")
assert response.status_code == 200
assert sent <= task_start, "the response is sent before the task starts"
assert received < task_end, "the client does not wait for the task"
timeline.plot("POST /signup: the response leaves, then the task runs")

# %% [markdown]
# In the picture the blue bar is the client waiting for its response (a sliver: a few
# milliseconds). On its top edge, the dark downward triangle is the moment the server received
# the request; on its bottom edge, the purple upward triangle is the moment it finished sending
# the response. The orange bar is the task, labelled with the thread it ran on. The dashed line
# marks the client's receipt of the response.

# %% [markdown]
# Fact 1.1 promises two things: the *server* finishes sending before the task starts, and the
# client has the response before the task *ends*. It promises nothing about the client and the
# task's *start*, because "sent" and "received" are two different moments. The server
# hands the last bytes to the operating system and goes straight on to the task; the client's
# thread reads those bytes a moment later. Nothing in the server orders that read against the
# start of the task: which of the two comes first is a *race*, and its winner can change from
# one request to the next.
#
# A race shows only over many tries, so the next cell sends 30 requests whose endpoint adds a
# short `async def` task, then 30 whose endpoint adds a short `def` task. The two kinds start at
# different delays: an `async def` task starts at once on the event loop, a `def` task must first
# be handed to a worker thread (section 4). The cell after it compares, for every request, the
# task's start with two moments, and counts:
#
# - **response sent before the task started**: the server's side, the guarantee of Fact 1.1. The
#   cell asserts that this holds for all 30 requests of each kind.
# - **client had it before the task started**: the client's side, the race. Nothing fixes this
#   count, so the cell only prints it.

# %%
race = Timeline()
race_app = FastAPI()
race_app.add_middleware(TimelineMiddleware, timeline=race)


async def quick_async_task() -> None:
    await asyncio.sleep(0.001)


def quick_def_task() -> None:
    time.sleep(0.001)


@race_app.get("/race/{kind}/{n}")
async def race_endpoint(kind: str, n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    task = quick_async_task if kind == "async" else quick_def_task
    background_tasks.add_task(race.track(f"{kind} task {n}", task))
    return {"n": n}


with serve(race_app) as url, httpx.Client(base_url=url) as client:
    for kind in ("async", "def"):
        for n in range(30):
            race.request(client, "GET", f"/race/{kind}/{n}", lane=f"{kind} request {n}")

# %%
for kind in ("async", "def"):
    lanes = [(f"{kind} request {n}", f"{kind} task {n}") for n in range(30)]
    server_first = sum(race.at(req, "response sent") <= race.at(task, "task start") for req, task in lanes)
    client_first = sum(race.at(req, "response received") < race.at(task, "task start") for req, task in lanes)
    print(f"{kind:5} tasks: response sent before the task started in {server_first} of 30;"
          f" client had it before the task started in {client_first} of 30")
    assert server_first == 30

# %% [markdown]
# What the two counts mean: the first is 30 for both kinds, as Fact 1.1 promises. The second is
# whatever this run's race gave, and nothing guarantees it. So a client must not conclude
# from its response that the task has not started yet. What it can rely on is Fact 1.1: "my
# response came back, and the task was not finished". Never "I waited for the task".

# %% [markdown]
# ## 2. The tasks of one request run one after another, in the order added
#
# The object an endpoint receives is FastAPI's `fastapi.background.BackgroundTasks`, a subclass
# of Starlette's (section 5 checks its class). In the pinned FastAPI 0.163.2 its `__call__`
# (`fastapi/background.py`) is a plain loop, `for task in self.tasks: await task()`, with each
# call inside FastAPI's telemetry `_operation`, which does nothing unless tracing is set up.
#
# **Fact 2.1.** Each task starts only after the previous one has ended, in the order of the
# `add_task` calls, whether the tasks are `def` or `async def`.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def async_step() -> None:
    await asyncio.sleep(0.2)


def sync_step() -> None:
    time.sleep(0.2)


@app.post("/three-steps")
def three_steps(background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(timeline.track("step 1 (async def)", async_step))
    background_tasks.add_task(timeline.track("step 2 (def)", sync_step))
    background_tasks.add_task(timeline.track("step 3 (async def)", async_step))
    return {"steps": 3}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/three-steps", lane="request")

steps = ["step 1 (async def)", "step 2 (def)", "step 3 (async def)"]
for earlier, later in zip(steps, steps[1:]):
    gap = timeline.at(later, "task start") - timeline.at(earlier, "task end")
    print(f"{later} started {1000 * gap:.1f} ms after {earlier} ended")
    assert gap >= 0, f"{later} overlapped {earlier}"
assert [e.lane for e in timeline.events if e.what == "task start"] == steps
timeline.plot("one request, three tasks: strictly one after another")

# %% [markdown]
# ## 3. The tasks of different requests overlap
#
# Each request has its own task list, run by its own ASGI call; the server handles many requests
# at once, so their tasks run at the same time.
#
# **Fact 3.1.** Two requests sent together, each with a 0.5 s task: each task starts before the
# other has ended, so the two run at the same time, and both are done sooner than the two
# durations added up (the 1 s they would take one after the other).

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


@app.post("/report/{name}")
async def report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track(f"{name}: build report", asyncio.sleep), 0.5)
    return {"queued": name}


with serve(app) as url:
    async with httpx.AsyncClient(base_url=url) as client:
        await asyncio.gather(
            timeline.arequest(client, "POST", "/report/A", lane="A"),
            timeline.arequest(client, "POST", "/report/B", lane="B"),
        )

a_start, a_end = timeline.at("A: build report", "task start"), timeline.at("A: build report", "task end")
b_start, b_end = timeline.at("B: build report", "task start"), timeline.at("B: build report", "task end")
overlap = min(a_end, b_end) - max(a_start, b_start)
span = max(a_end, b_end) - min(a_start, b_start)
one_after_the_other = (a_end - a_start) + (b_end - b_start)
print(f"the two tasks ran side by side for {overlap:.2f} s; both were done {span:.2f} s after the first began,"
      f" {one_after_the_other - span:.2f} s sooner than one after the other")
# Run one after the other, B would start only once A had ended (or A once B had): no overlap at all.
assert a_start < b_end and b_start < a_end, "each task started before the other had ended"
assert span < one_after_the_other
timeline.plot("two requests: their tasks overlap")

# %% [markdown]
# ## 4. Which thread runs a task?
#
# Starlette's `BackgroundTask.__call__` looks at the function: an `async def` function is
# awaited on the event loop, anything else goes through `run_in_threadpool`, which runs it on one
# of AnyIO's worker threads.
#
# **Fact 4.1.** A `def` task runs on a thread named `AnyIO worker thread`; an `async def` task
# runs on the event loop's thread, the one that also handles the requests (here it is the
# server's thread, `uvicorn-<port>`).

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
handled_on: dict[str, str] = {}


def def_task() -> None:
    time.sleep(0.05)


async def async_def_task() -> None:
    await asyncio.sleep(0.05)


@app.post("/threads")
async def threads(background_tasks: BackgroundTasks) -> dict[str, str]:
    handled_on["async def endpoint"] = threading.current_thread().name
    background_tasks.add_task(timeline.track("def task", def_task))
    background_tasks.add_task(timeline.track("async def task", async_def_task))
    return {"ok": "yes"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/threads", lane="request")

def_thread = timeline.find("def task", "task start").thread
async_thread = timeline.find("async def task", "task start").thread
print(f"{'async def endpoint':18} ran on {handled_on['async def endpoint']}")
print(f"{'def task':18} ran on {def_thread}")
print(f"{'async def task':18} ran on {async_thread}")
assert def_thread == "AnyIO worker thread"
assert async_thread == handled_on["async def endpoint"] != def_thread

# %% [markdown]
# The consequence: an `async def` task must never block, because while it blocks, nothing else on
# the event loop runs, and that includes every other request.
#
# **Fact 4.2.** While an `async def` task sleeps with `time.sleep(0.5)` (a blocking call), a
# `GET /ping` from another client, sent while the task runs, is answered only after the task has
# ended. The same task written as `def` runs on a worker thread, and `/ping` is answered while
# the task is still running.

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
task_kind = {"async": "async def", "def": "def"}
ping_lane = {kind: f"/ping, {name} task" for kind, name in task_kind.items()}


async def blocking_async_task() -> None:
    time.sleep(0.5)  # blocking call inside async def: the event loop stops for 0.5 s


def blocking_def_task() -> None:
    time.sleep(0.5)  # the same call in a def task: only a worker thread waits


@app.post("/work/{kind}")
async def start_work(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task = blocking_async_task if kind == "async" else blocking_def_task
    background_tasks.add_task(timeline.track(f"{task_kind[kind]} task", task))
    return {"started": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


with serve(app) as url, httpx.Client(base_url=url) as client, httpx.Client(base_url=url) as other_client:
    for kind in ("async", "def"):
        client.post(f"/work/{kind}")  # returns at once; the task starts right after
        timeline.request(other_client, "GET", "/ping", lane=ping_lane[kind])

for kind, lane in ping_lane.items():
    answered, task_end = timeline.at(lane, "response sent"), timeline.at(f"{task_kind[kind]} task", "task end")
    when = "after" if answered > task_end else "before"
    print(f"/ping sent while a blocking {task_kind[kind]:9} task ran: answered {abs(answered - task_end):.2f} s"
          f" {when} the task ended")
waits = {kind: timeline.at(lane, "response received") - timeline.at(lane, "request sent")
         for kind, lane in ping_lane.items()}
print(f"/ping waited {waits['async'] / waits['def']:.0f} times as long while the async def task held the loop")
assert timeline.at(ping_lane["async"], "request sent") < timeline.at("async def task", "task end"), (
    "the /ping was sent while the async def task was running"
)
assert timeline.at(ping_lane["async"], "response sent") > timeline.at("async def task", "task end"), (
    "the blocked loop could not answer /ping"
)
assert timeline.at(ping_lane["def"], "response sent") < timeline.at("def task", "task end"), (
    "a def task leaves the loop free"
)

# %% [markdown]
# Chapter 5 measures this further: the thread pool's limit, and how to run blocking or CPU-bound
# work without stalling the server.

# %% [markdown]
# ## 5. Where `BackgroundTasks` comes from
#
# You never create `BackgroundTasks` yourself: declaring a parameter of that type is enough.
# FastAPI creates **one** object per request (in `fastapi/dependencies/utils.py`,
# `solve_dependencies`) and passes the same object to the endpoint and to every dependency that
# asks for it, however deep. After the endpoint returns, FastAPI attaches it to the response
# (`fastapi/routing.py`), whose `__call__` runs it.
#
# **Fact 5.1.** A dependency, a sub-dependency and the endpoint see the same object within one
# request; the next request gets a new one. A request's tasks run in the order they were added,
# so a dependency's task runs before the endpoint's.
#
# The cell checks each request's own order, not an order between the two requests. These tasks
# (`ran.append`) are plain functions, which Starlette runs on worker threads (section 4), and the
# client sends request 2 as soon as it has request 1's response, before request 1's tasks are
# done (section 1): the two requests' tasks can run side by side.

# %%
app = FastAPI()
seen: list[tuple[str, int, int]] = []  # (who, request number, id of the object)
ran: list[str] = []
kinds: set[type] = set()  # the class of the object the endpoint received


def sub_dependency(request_number: int, background_tasks: BackgroundTasks) -> None:
    seen.append(("sub-dependency", request_number, id(background_tasks)))
    background_tasks.add_task(ran.append, f"sub-dependency task, request {request_number}")


def dependency(
    request_number: int, background_tasks: BackgroundTasks, _: None = Depends(sub_dependency)
) -> None:
    seen.append(("dependency", request_number, id(background_tasks)))
    background_tasks.add_task(ran.append, f"dependency task, request {request_number}")


@app.get("/shared/{request_number}", dependencies=[Depends(dependency)])
def shared(request_number: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    seen.append(("endpoint", request_number, id(background_tasks)))
    kinds.add(type(background_tasks))
    background_tasks.add_task(ran.append, f"endpoint task, request {request_number}")
    return {"tasks": len(background_tasks.tasks)}


with serve(app) as url, httpx.Client(base_url=url) as client:
    first = client.get("/shared/1").json()
    second = client.get("/shared/2").json()

for who, request_number, object_id in seen:
    print(f"request {request_number}: {who:14} got BackgroundTasks object {object_id:#x}")
in_order = {n: [task for task in ran if task.endswith(f"request {n}")] for n in (1, 2)}
for request_number, tasks in in_order.items():
    print(f"request {request_number}'s tasks ran in this order: " + ", ".join(tasks))
(kind,) = kinds
print(f"its class: {kind.__module__}.{kind.__qualname__}, a subclass of {kind.__mro__[1].__module__}.BackgroundTasks")
assert kind is fastapi.background.BackgroundTasks
assert issubclass(kind, starlette.background.BackgroundTasks)
ids = {request_number: {object_id for _, number, object_id in seen if number == request_number} for request_number in (1, 2)}
assert len(ids[1]) == 1 and len(ids[2]) == 1, "one object per request"
assert first == second == {"tasks": 3}
for request_number, tasks in in_order.items():
    assert tasks == [f"{who} task, request {request_number}" for who in ("sub-dependency", "dependency", "endpoint")]

# %% [markdown]
# (The two requests may even show the same address: the first object was freed before the second
# was made, and Python reused the memory. What matters is that within a request there is one.)

# %% [markdown]
# ## 6. Tests that hide the timing: `TestClient` and `httpx.ASGITransport`
#
# Starlette's `TestClient` and httpx's `ASGITransport` do not use a network: they call the ASGI
# app directly and return when the app's coroutine returns, and that coroutine includes the
# background tasks. A test written with them therefore sees the response only *after* the tasks.
# That is convenient (the side effects are there to assert) but it can never show the timing a
# real client sees.
#
# **Fact 6.1.** With a 0.5 s task, a real server's answer reaches the client before the task has
# ended; `TestClient` and `ASGITransport` return only after the task has ended, so they take at
# least the task's 0.5 s.

# %%
timeline = Timeline()
app = FastAPI()


@app.post("/slow-task")
async def slow_task(caller: str, background_tasks: BackgroundTasks) -> dict[str, bool]:
    background_tasks.add_task(timeline.track(f"{caller}: task", asyncio.sleep), 0.5)
    return {"accepted": True}


callers = ["real server + httpx.Client", "TestClient", "httpx.ASGITransport"]
with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/slow-task", params={"caller": callers[0]}, lane=callers[0])

with TestClient(app) as test_client:
    timeline.request(test_client, "POST", "/slow-task", params={"caller": callers[1]}, lane=callers[1])

async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as asgi_client:
    await timeline.arequest(asgi_client, "POST", "/slow-task", params={"caller": callers[2]}, lane=callers[2])

returned = {how: timeline.at(how, "response received") for how in callers}
task_end = {how: timeline.at(f"{how}: task", "task end") for how in callers}
waited = {how: returned[how] - timeline.at(how, "request sent") for how in callers}
for how in callers:
    when = "before" if returned[how] < task_end[how] else "after"
    print(f"{how:28} returned {abs(returned[how] - task_end[how]):.2f} s {when} its task ended")
assert returned["real server + httpx.Client"] < task_end["real server + httpx.Client"]
assert returned["TestClient"] >= task_end["TestClient"] and waited["TestClient"] >= 0.5
assert returned["httpx.ASGITransport"] >= task_end["httpx.ASGITransport"] and waited["httpx.ASGITransport"] >= 0.5

# %% [markdown]
# Use `TestClient` to test *what* a task did; use a real server (as `serve` does) to test *when*.
#
# One more thing about `TestClient` on the pinned Starlette (1.10): it is built on `httpx2`, the
# successor of `httpx`, and falls back to `httpx` with a warning when `httpx2` is not installed
# (`starlette/testclient.py`). The course installs both, so you never see that warning here; your
# own project, with `httpx` alone, would.
#
# **Fact 6.2.** In a kernel where `httpx2` cannot be imported, importing `starlette.testclient`
# issues a `StarletteDeprecationWarning` that says using `httpx` with `starlette.testclient` is
# deprecated and to install `httpx2` instead, and `TestClient` then works on `httpx`. (In a fresh
# kernel of its own, so that this notebook keeps its `httpx2`.)

# %%
with tqdm(total=1, desc="TestClient without httpx2, in a fresh kernel") as progress:
    without_httpx2 = run_in_fresh_kernel(
        """import sys, warnings
sys.modules["httpx2"] = None  # as if it were not installed: importing it raises ModuleNotFoundError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from starlette.testclient import TestClient
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
from fastapi import FastAPI
app = FastAPI()
app.get("/")(lambda: {"ok": True})
with TestClient(app) as client:
    print("TestClient on", type(client).__mro__[1].__module__.split(".")[0], "answered", client.get("/").status_code)
"""
    )
    progress.update()
print(without_httpx2.output.strip())
assert not without_httpx2.error, without_httpx2.error
assert (
    "StarletteDeprecationWarning: Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead."
    in without_httpx2.output
)
assert "TestClient on httpx answered 200" in without_httpx2.output

# %% [markdown]
# ## 7. When a task fails
#
# The task loop of section 2 has no `try`: an exception in one task ends the loop.
#
# **Fact 7.1.** If the second of three tasks raises, the third never runs. The client already has
# its `200`; the server logs the traceback (uvicorn's `Exception in ASGI application`, on the
# `uvicorn.error` logger); another request's tasks are not affected.

# %%
app = FastAPI()
done: list[str] = []


def record(name: str) -> None:
    done.append(name)


def fail(name: str) -> None:
    raise ValueError(f"{name} could not reach the mail server")


@app.post("/fragile")
def fragile(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(record, "first")
    background_tasks.add_task(fail, "second")
    background_tasks.add_task(record, "third")
    return {"status": "accepted"}


@app.post("/other")
def other(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(record, "other request's task")
    return {"status": "accepted"}


with capture_logs("uvicorn.error") as records, serve(app) as url:
    fragile_response = httpx.post(f"{url}/fragile")
    other_response = httpx.post(f"{url}/other")

print(f"/fragile answered {fragile_response.status_code} {fragile_response.json()}")
# Each request's own order: /other's task runs on a worker thread too, and may come before "first".
fragile_ran = [name for name in done if name in ("first", "second", "third")]
other_ran = [name for name in done if name not in fragile_ran]
print(f"/fragile's tasks that ran: {fragile_ran}; /other's: {other_ran}")
for log_record in records:
    print(f"uvicorn logged: {log_record.getMessage().strip()!r} with {log_record.exc_info[0].__name__}")
assert fragile_response.status_code == 200 and other_response.status_code == 200
assert fragile_ran == ["first"], "'third' was skipped"
assert other_ran == ["other request's task"], "another request's tasks are not affected"
assert any(r.exc_info and r.exc_info[0] is ValueError for r in records)

# %% [markdown]
# Nobody but the log hears of the failure: the client was told "accepted". Chapter 4 shows the
# remedies (a wrapper that logs and carries on, retries, separate tasks for independent work);
# exercise 1.3 below builds the simplest one.
#
# There is a second, quieter effect. HTTP/1.1 clients keep a connection open and reuse it for
# the next request. When a task raises, uvicorn can no longer send an error response (one was
# already sent), so it closes the connection. A client that sends its next request on that
# connection at the wrong moment gets `httpx.RemoteProtocolError: Server disconnected without
# sending a response`, for a request that had nothing to do with the failure.
#
# **Fact 7.2.** After a response whose task raised, the server closes the connection: a next
# request sent on it gets no answer. After a response whose tasks succeeded, it keeps the
# connection open, and the next request on it is answered.
#
# To send that next request only once the first request's tasks are over, the cell waits for
# what they leave behind: uvicorn's log record of the failure (uvicorn logs it just before it
# closes the connection), or the successful task's entry in `done`.

# %%
import http.client
from collections.abc import Callable


def next_request_after(path: str, server_url: str, tasks_over: Callable[[], bool]) -> str:
    """Send one request on a keep-alive connection, wait until its tasks are over, then send a second one on it."""
    host, port = server_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path)
        first = connection.getresponse()
        first.read()
        wait_until(tasks_over, timeout=10, what=f"the end of the tasks of POST {path}")
        try:
            connection.request("POST", "/other")  # on the same connection: http.client reuses it
            second = connection.getresponse()
            second.read()
        except ConnectionError:  # RemoteDisconnected, a reset or a broken pipe: the server had closed it
            return f"{first.status}, then the next request on the connection got no answer: the server had closed it"
    finally:
        connection.close()
    return f"{first.status}, then the next request on the same connection got {second.status}"


done.clear()
with capture_logs("uvicorn.error") as records, serve(app) as url:
    after_failure = next_request_after("/fragile", url, lambda: bool(records))
    after_success = next_request_after("/other", url, lambda: "other request's task" in done)
print("task raised:    ", after_failure)
print("tasks succeeded:", after_success)
assert after_failure == "200, then the next request on the connection got no answer: the server had closed it"
assert after_success == "200, then the next request on the same connection got 200"

# %% [markdown]
# In tests the failure is loud instead: `TestClient` re-raises the task's exception in the test,
# unless it is created with `raise_server_exceptions=False`.
#
# The cell below lets that happen. `shows_error(ValueError)` (from the course's helpers) catches
# the error it expects, shows its type, message and the lines that matter, folds the full
# traceback (dozens of frames, through Starlette and AnyIO) underneath, and lets the notebook go on:
# the cells below still run.

# %%
with shows_error(ValueError) as raised, TestClient(app) as test_client:
    test_client.post("/fragile")
assert str(raised) == "ValueError: second could not reach the mail server"

# %% [markdown]
# That was the real `ValueError` from `fail`, raised in the test, after the response was built.
# Told not to re-raise, the same call returns the `200` the client received:

# %%
with TestClient(app, raise_server_exceptions=False) as test_client:
    quiet = test_client.post("/fragile")
print(quiet.status_code, quiet.json())
assert quiet.status_code == 200

# %% [markdown]
# `httpx.ASGITransport` behaves the same way: it calls the app directly and re-raises what the
# app raised, a task's exception included, unless it is created with `raise_app_exceptions=False`.
#
# **Fact 7.3.** Through `httpx.ASGITransport`, the same request raises the task's `ValueError`;
# with `raise_app_exceptions=False` it returns the `200`.


# %%
async def post_fragile_in_process(raise_app_exceptions: bool) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
        return await client.post("/fragile")


with shows_error(ValueError) as raised:
    await post_fragile_in_process(raise_app_exceptions=True)
quiet = await post_fragile_in_process(raise_app_exceptions=False)
print("raise_app_exceptions=False:", quiet.status_code, quiet.json())
assert str(raised) == "ValueError: second could not reach the mail server"
assert quiet.status_code == 200

# %% [markdown]
# Do these results depend on the FastAPI version? `make versions` ran the same experiments (three
# tasks of which the second raises, on a real server; a slow task and a failing task under
# `TestClient` and `httpx.ASGITransport`) on each FastAPI release below, each installed in an
# environment of its own with the Starlette and uvicorn of its day.
#
# **Fact 7.4.** On all eight releases measured, from 0.103.2 (the release the article this course
# answers was written for) to the pinned 0.163.2, the results were the same as in this section:
# the client had its `200`, the third task never ran and the server logged the `ValueError`;
# `TestClient` waited for the tasks and raised the task's exception; `httpx.ASGITransport` raised
# it unless told not to.

# %%
failure_history = version_table("failing_task", "test_client", "asgi_transport")
releases = [stack.name for stack, _ in failure_history.rows]
assert len(releases) == 8 and releases[0] == "FastAPI 0.103.2" and releases[-1] == "FastAPI 0.163.2"
assert len({outcomes for _, outcomes in failure_history.rows}) == 1, "the same on every release measured"
assert failure_history.outcome("FastAPI 0.163.2", "failing_task").startswith("200; the third never runs")
failure_history

# %% [markdown]
# ## 8. Why a server in a thread, and what `nest_asyncio` can and cannot do
#
# `uvicorn.run(app)` cannot run in a notebook cell: it wants to start an event
# loop in the cell's thread, where the kernel's loop is already running. That is why the
# course's `serve(app)` runs uvicorn on a thread of its own, which has its own loop.
#
# `nest_asyncio.apply()`, often suggested instead, lets `asyncio.run()` start inside a running
# loop. That helps third-party code that calls `asyncio.run()` itself, but it does not make
# `uvicorn.run()` work. Facts 8.1 to 8.3 below prove each of these statements in turn.

# %% [markdown]
# Two things to know first. A Jupyter kernel runs an event loop in its main thread: that is why
# `await` works at the top of a cell. And asyncio allows one running loop per thread.
# `uvicorn.run(app)` starts a new loop in the thread that calls it and runs the server on that
# loop until you stop it.
#
# **Fact 8.1.** `uvicorn.run(app)` in a notebook cell fails at once with a `RuntimeError`.
#
# The message depends on the Python version, because uvicorn 0.54 starts its loop in two ways
# (`uvicorn/_compat.py`). On Python 3.12 and later it calls `asyncio.run(..., loop_factory=...)`,
# which refuses at once: `RuntimeError: asyncio.run() cannot be called from a running event
# loop`. Python 3.11's `asyncio.run` has no `loop_factory` parameter, so there uvicorn uses
# `with asyncio.Runner(...) as runner: runner.run(...)`. A `Runner` is a `with` block that owns
# a new loop, runs coroutines on it, and closes it when the block ends.
#
# On 3.11 two errors happen one after the other, and the one that reaches you is the second:
#
# 1. `Runner.run()` sees the kernel's running loop and refuses: `RuntimeError: Runner.run()
#    cannot be called from a running event loop`.
# 2. That error leaves the `with` block, which calls `Runner.close()`. Closing runs the Runner's
#    loop once more, to shut it down, and that fails too: `RuntimeError: Cannot run the event
#    loop while another loop is running`. This second error is the one raised.
#
# Python keeps the first error as the second one's `__context__` (the exception that was being
# handled when the new one was raised). The cell prints both.

# %% [markdown]
# The proof runs in a fresh kernel of its own, for a reason. The failed start leaves coroutines
# behind that never ran, and Python warns about each (`RuntimeWarning: coroutine 'Server.serve'
# was never awaited`) whenever it gets round to collecting them: in whatever cell happens to run
# then. So that no such stray warning lands in a later cell of yours, the cell collects them on
# purpose (`gc.collect()`), in a kernel that is then shut down.
#
# `bgcourse.run_in_fresh_kernel(code)` starts that kernel, runs `code` there as one cell, shuts
# the kernel down, and reports what the cell printed (`.output`) and the error it ended with
# (`.error`). Starting a kernel takes a few seconds; the progress bar shows it at work.

# %%
import sys

from bgcourse import run_in_fresh_kernel

with tqdm(total=1, desc="uvicorn.run in a fresh kernel") as progress:
    uvicorn_in_a_cell = run_in_fresh_kernel(
        """import gc, warnings, uvicorn
from fastapi import FastAPI
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        uvicorn.run(FastAPI(), host="127.0.0.1", port=0, log_config=None)
    except RuntimeError as error:
        print(f"{type(error).__name__}: {error}")
        if error.__context__ is not None:  # Python 3.11: the error that came first
            print(f"  raised while handling {type(error.__context__).__name__}: {error.__context__}")
    gc.collect()  # collect what the failed start left behind, so its warnings show here
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
"""
    )
    progress.update()
print(uvicorn_in_a_cell.output)
assert "coroutine 'Server.serve' was never awaited" in uvicorn_in_a_cell.output
if sys.version_info < (3, 12):
    assert uvicorn_in_a_cell.output.startswith(
        "RuntimeError: Cannot run the event loop while another loop is running\n"
        "  raised while handling RuntimeError: Runner.run() cannot be called from a running event loop\n"
    )
else:
    assert uvicorn_in_a_cell.output.startswith("RuntimeError: asyncio.run() cannot be called from a running event loop\n")

# %% [markdown]
# That is the failure `serve(app)` avoids, by running the server on a thread of its own.
#
# Now `nest_asyncio`. `nest_asyncio.apply()` patches `asyncio.run` and the event loop class so
# that a running loop can be re-entered: `asyncio.run()` then runs its coroutine on the loop that
# is already running, instead of refusing. That helps with code that calls `asyncio.run()` from
# inside a running loop, such as a library's synchronous wrapper around its async API. The patch
# stays for the life of the kernel, so these proofs run in fresh kernels too.
#
# **Fact 8.2.** In a notebook, `asyncio.run(...)` fails; after `nest_asyncio.apply()` it works.

# %%
fresh_kernel_code = {
    "no patch": "import asyncio\nasyncio.run(asyncio.sleep(0))",
    "patched": "import asyncio, nest_asyncio\nnest_asyncio.apply()\nprint(asyncio.run(asyncio.sleep(0, 'it ran')))",
}
runs = {name: run_in_fresh_kernel(code) for name, code in tqdm(fresh_kernel_code.items(), desc="fresh kernels")}
without_patch, with_patch = runs["no patch"], runs["patched"]
print("asyncio.run, no patch:  ", without_patch.error)
print("asyncio.run, patched:   ", with_patch.output.strip())
assert "cannot be called from a running event loop" in without_patch.error
assert with_patch.output.strip() == "it ran" and not with_patch.error

# %% [markdown]
# **Fact 8.3.** `nest_asyncio` does not make `uvicorn.run()` work in a cell, whether it is
# applied before or after uvicorn is imported. Why depends on the Python version:
#
# - On 3.11 uvicorn starts its loop with `asyncio.Runner`, which `nest_asyncio` does not patch:
#   `RuntimeError: Runner.run() cannot be called from a running event loop`, for both orders.
#   This time that is the error you see, not one from `Runner.close()`: the patched loop class
#   lets `close()` run the Runner's loop inside the running one, so the first error is not
#   replaced.
# - On 3.12 and 3.13 uvicorn calls the `asyncio.run` it found when it was imported. Imported
#   before `apply()`, that is the original, which refuses to run inside a running loop
#   (`RuntimeError: asyncio.run() cannot be called from a running event loop`). Imported after,
#   it is `nest_asyncio`'s replacement, which has no `loop_factory` parameter (`TypeError: ...
#   got an unexpected keyword argument 'loop_factory'`).
#
# The cell prints what your Python does.

# %%
run_uvicorn = "from fastapi import FastAPI\nuvicorn.run(FastAPI(), host='127.0.0.1', port=0)"
orders = {
    "uvicorn imported, then apply()": "import uvicorn, nest_asyncio\nnest_asyncio.apply()\n" + run_uvicorn,
    "apply(), then uvicorn imported": "import nest_asyncio\nnest_asyncio.apply()\nimport uvicorn\n" + run_uvicorn,
}
outcomes = {order: run_in_fresh_kernel(code, timeout=30) for order, code in tqdm(orders.items(), desc="fresh kernels")}
for order, outcome in outcomes.items():
    print(f"{order}: {outcome.error}")
    assert outcome.error.startswith(("RuntimeError", "TypeError")), outcome
if sys.version_info < (3, 12):
    for outcome in outcomes.values():
        assert outcome.error == "RuntimeError: Runner.run() cannot be called from a running event loop", outcome
else:
    imported_first, applied_first = outcomes.values()
    assert imported_first.error == "RuntimeError: asyncio.run() cannot be called from a running event loop"
    assert applied_first.error.startswith("TypeError")
    assert "unexpected keyword argument 'loop_factory'" in applied_first.error

# %% [markdown]
# In a notebook, prefer `await` at the top level of a cell for your own async code, a server on
# its own thread for servers, and `nest_asyncio` only for third-party code that insists on
# calling `asyncio.run()` itself. Chapter 6 returns to these errors.

# %% [markdown]
# ## 9. The common explanation, checked
#
# Many tutorials describe background tasks with a handful of claims. Here is each one against
# what the cells above showed on the pinned versions.
#
# | Claim | Verdict | Proof |
# |---|---|---|
# | The task runs after the response is sent | True: the server finishes sending before the task starts | section 1 |
# | Tasks run in the order they were added | True, and strictly one after another | section 2 |
# | `BackgroundTasks` arrives by dependency injection | True: one object per request, shared with dependencies | section 5 |
# | Tasks "run in the background" of the whole app | Partly: tasks of different requests overlap, but a blocking `async def` task stalls every request | sections 3 and 4 |
# | "A failing task does not affect the rest" | **False** for the same request: the later tasks are skipped. True for other requests. | section 7 |
# | You can see the timing in your tests | **False** with `TestClient`/`ASGITransport`: they wait for the tasks | section 6 |

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against a real server.
# The reference solutions are in `solutions/ch01_core_mechanics/`; try first, then compare.
#
# ### Exercise 1.1: accept now, send the receipt later
#
# Write an app with `POST /orders` that answers `202 Accepted` with a body
# `{"order_id": <a new id string>, "status": "accepted"}` at once, and then, in a background task,
# waits 0.2 s (a slow mail server) and appends the order id to the list `receipts`.

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import uuid

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
receipts: list[str] = []


async def send_receipt(order_id: str) -> None:
    await asyncio.sleep(0.2)  # a slow mail server
    receipts.append(order_id)


@app.post("/orders", status_code=status.HTTP_202_ACCEPTED)
async def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
    order_id = uuid.uuid4().hex
    background_tasks.add_task(send_receipt, order_id)
    return {"order_id": order_id, "status": "accepted"}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch01_core_mechanics as checks

checks.ex01(app, receipts)

# %% [markdown]
# ### Exercise 1.2: an audit dependency
#
# Write an app with `GET /items/{item_id}` (an `int`) that returns `{"item_id": item_id}`. A
# dependency `audit` adds a task that appends `"<METHOD> <path>"` (for example `"GET /items/7"`)
# to `audit_log`; the endpoint adds a task that appends `"cache <item_id>"`. Which runs first?

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import BackgroundTasks, Depends, FastAPI, Request

app = FastAPI()
audit_log: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(audit_log.append, f"{request.method} {request.url.path}")


@app.get("/items/{item_id}", dependencies=[Depends(audit)])
def read_item(item_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(audit_log.append, f"cache {item_id}")
    return {"item_id": item_id}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(app, audit_log)

# %% [markdown]
# ### Exercise 1.3: keep going after a failure
#
# Write `keep_going(func)`, which returns a wrapper around a task function that calls it, and if
# it raises, logs the failure with its traceback on the logger named `"tasks"` (use
# `logger.exception`, and name the function in the message) and returns `None`, so that the
# request's later tasks still run. Keep the kind of function: an `async def` function must give
# an `async def` wrapper (awaited on the loop), a `def` function a `def` wrapper (run in a
# thread). Keep the name with `functools.wraps`.

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("tasks")


def keep_going(func: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception:
                logger.exception("background task %s failed", func.__name__)
                return None

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            logger.exception("background task %s failed", func.__name__)
            return None

    return wrapper
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(keep_going)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch01_core_mechanics")
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
def schedule(background_tasks, log):
    background_tasks.add_task(log.append, "first")
    background_tasks.add_task(log.append, "second")
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", schedule)

# %% [markdown]
# ## Summary
#
# - A background task runs in the same process, after the server has sent the whole response:
#   the client is never made to wait for it (section 1).
# - The tasks of one request run strictly one after another, in the order added; the tasks of
#   different requests run at the same time (sections 2 and 3).
# - `def` tasks run on AnyIO's worker threads; `async def` tasks run on the event loop and must
#   not block it (section 4).
# - Declare `background_tasks: BackgroundTasks` wherever you need it: the endpoint and its
#   dependencies share one object per request (section 5).
# - `TestClient` and `ASGITransport` return after the tasks: good for testing what a task did,
#   blind to when (section 6).
# - A task that raises skips the request's later tasks and is reported only in the server log
#   (section 7).
# - In a notebook, run the server on a thread of its own; `nest_asyncio` lets `asyncio.run` nest,
#   but does not make `uvicorn.run` work in a cell (section 8).
#
# Next: chapter 2 builds a registration endpoint that sends a real welcome e-mail.
