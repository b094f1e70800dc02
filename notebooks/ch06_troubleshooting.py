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
# # Chapter 6: Troubleshooting `RuntimeError: No response returned.` and friends
#
# Background tasks fail far from the code that scheduled them: after the response, on another
# thread or loop, with a traceback full of framework frames. This chapter takes the errors people
# most often meet, reproduces each one on a real server, finds where its message is written in
# the library, and fixes it. As in every chapter, each fact is followed by a cell that proves it
# on the pinned versions.
#
# **You will learn**
#
# - that a background task's return value is ignored, so returning a response from a task cannot
#   cause `RuntimeError: No response returned.`;
# - where that message really comes from (`BaseHTTPMiddleware`, the class behind
#   `@app.middleware("http")`), the two causes that still produce it, and the fix for each;
# - which causes belonged to older Starlette versions only, and where they were reported and fixed;
# - a gallery of errors around background tasks: a failing task, `TestClient` re-raising it,
#   `coroutine ... was never awaited`, `MissingGreenlet` and `DetachedInstanceError`, an asyncio
#   lock "bound to a different event loop", and event-loop errors in a notebook;
# - a debugging method to reuse on the next message: read the innermost frame, find where the
#   library writes the message, reproduce it minimally.

# %% [markdown]
# ## 0. Set-up: the versions, and the course's helpers
#
# Behaviour changes between releases, and this chapter is about exactly such changes, so the
# versions matter more than usual.

# %%
import platform
from importlib.metadata import version

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "sqlalchemy": "2.1.9",
    "aiosqlite": "0.22.1",
    "nest-asyncio": "1.6.0",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:12} {installed}{note}")
print(f"{'python':12} {platform.python_version()}")

# %% [markdown]
# Besides `serve` and `capture_logs` from chapter 1, this chapter uses three helpers made for
# troubleshooting:
#
# - `logged_errors(records)` turns the log records a server wrote into short descriptions: the
#   exception's type, its message, and its **innermost frame**, the line where it was raised.
# - `find_in_source(package, text)` searches every `.py` file of an installed package for a piece
#   of text and returns each place as `file:line in function`, with `.excerpt()` to show the lines
#   around it.
# - `version_table(...)` shows what `make versions` measured on older releases (section 5).

# %%
import asyncio
import functools
import gc
import inspect
import linecache
import logging
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response
from tqdm.auto import tqdm

from bgcourse import (
    capture_logs,
    find_in_source,
    load_quiz,
    logged_errors,
    run_in_fresh_kernel,
    serve,
    shows_error,
    version_table,
)

# %% [markdown]
# ## 1. A popular explanation, tested: a task that returns a response
#
# A widely shared explanation says that `RuntimeError: No response returned.` comes from
# returning a response object from a background task. Let us do exactly that, and behind an
# `@app.middleware("http")`, since (section 2 shows why) every app that meets the message has a
# `BaseHTTPMiddleware`, and that decorator is the commonest way to get one.
#
# **Fact 6.1.** A background task that returns a `JSONResponse` changes nothing: the client gets
# the endpoint's response, the task's response goes nowhere, and the server logs no error.

# %%
app = FastAPI()
produced: list[Response] = []


@app.middleware("http")
async def add_timing_header(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["x-process-time"] = f"{time.perf_counter() - started:.4f}"
    return response


def task_that_returns_a_response() -> Response:
    response = JSONResponse({"error": "from the task"}, status_code=418)
    produced.append(response)
    return response


@app.post("/orders")
async def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(task_that_returns_a_response)
    return {"status": "accepted"}


with capture_logs("uvicorn.error") as records, serve(app) as url:
    response = httpx.post(f"{url}/orders")

print(f"the client received {response.status_code} {response.json()}")
print(f"the task ran and returned a {type(produced[0]).__name__} with status {produced[0].status_code}")
print(f"errors the server logged: {logged_errors(records)}")
assert response.status_code == 200 and response.json() == {"status": "accepted"}
assert len(produced) == 1 and produced[0].status_code == 418
assert records == []

# %% [markdown]
# **Fact 6.2.** The return value is dropped by design: Starlette's `BackgroundTask.__call__`
# (`starlette/background.py`) awaits the function, or runs it in a thread, and keeps nothing.

# %%
source = inspect.getsource(BackgroundTask.__call__)
print(source)
assert "return" not in source, "nothing the function returns is passed on"

# %% [markdown]
# So the explanation is wrong. The next section finds where the message really comes from.

# %% [markdown]
# ## 2. Where the message comes from
#
# An error message is a string in somebody's source code. Search the installed packages for it.
#
# **Fact 6.3.** On the pinned versions, `No response returned` is written in exactly one place:
# `starlette/middleware/base.py`, in `call_next`, the function that `BaseHTTPMiddleware.__call__`
# hands to your `dispatch`. FastAPI and uvicorn never raise it.

# %%
found = {package: find_in_source(package, "No response returned") for package in ("fastapi", "starlette", "uvicorn")}
for package, hits in found.items():
    print(f"{package}: {len(hits)} place(s)", *hits, sep="\n    ")
[origin] = found["starlette"]
assert origin.file == "starlette/middleware/base.py"
assert origin.function == "BaseHTTPMiddleware.__call__.<locals>.call_next"
assert found["fastapi"] == found["uvicorn"] == []

# %% [markdown]
# Read the code around it, in three steps. Two terms first:
#
# - a *task*, here, is an AnyIO task: a coroutine that runs alongside the one that started it,
#   in the same event loop;
# - a *memory stream* is AnyIO's queue inside one process, with two ends: `send_stream` and
#   `recv_stream`. Closing the sending end tells the receiver that nothing more will come: a
#   `receive()` on an empty stream whose sending end is closed raises `anyio.EndOfStream`.
#
# **Step 1.** `call_next` runs your app (everything inside the middleware) in a task of its own,
# the nested function `coro`. The app gets `send_no_error` as its `send`, which puts each message
# the app sends into the memory stream. When the app returns, `with send_stream:` closes the
# sending end; an exception the app raised is kept in `app_exc`.

# %%
[run_the_app] = find_in_source("starlette", "await self.app(scope, receive_or_disconnect, send_no_error)")
print(run_the_app.excerpt(before=5, after=2))
assert run_the_app.function == f"{origin.function}.<locals>.coro"

# %% [markdown]
# **Step 2.** `call_next` then waits for the app's first message, `recv_stream.receive()`: it
# should be `http.response.start`. If the sending end is closed before any message came, that
# wait raises `anyio.EndOfStream`, caught here:

# %%
[end_of_stream] = [hit for hit in find_in_source("starlette", "except anyio.EndOfStream:") if hit.file == origin.file]
print(end_of_stream.excerpt(before=9, after=0))
assert end_of_stream.function == origin.function
assert "message = await recv_stream.receive()" in end_of_stream.excerpt(before=9, after=0)

# %% [markdown]
# **Step 3.** In that `except` there are two cases: the app raised, and its exception is raised
# again; or it did not, and `call_next` raises the message.

# %%
print(origin.excerpt(before=1, after=0))
assert "raise app_exc" in origin.excerpt(before=1, after=0)

# %% [markdown]
# So the message means: **the app inside a `BaseHTTPMiddleware` finished without sending
# `http.response.start`, and without raising.** Which middleware is a `BaseHTTPMiddleware`? Every
# class that subclasses `starlette.middleware.base.BaseHTTPMiddleware` (many third-party
# middlewares do), and every `@app.middleware("http")`: FastAPI's decorator
# (`FastAPI.middleware`, in `fastapi/applications.py`) registers the function as the `dispatch`
# of a `BaseHTTPMiddleware`. What follows holds for both.
#
# **Fact 6.4.** The app of section 1 has one `BaseHTTPMiddleware`, made from `add_timing_header`.

# %%
print([(layer.cls.__name__, layer.kwargs["dispatch"].__name__) for layer in app.user_middleware])
assert app.user_middleware[0].cls is BaseHTTPMiddleware
assert app.user_middleware[0].kwargs["dispatch"] is add_timing_header

# %% [markdown]
# Two situations make an app finish without sending a response. Sections 3 and 4 reproduce each
# on the pinned versions.

# %% [markdown]
# ## 3. Cause 1: the app inside the middleware returns without a response
#
# A hand-written ASGI middleware or a mounted ASGI app can simply `return` without sending
# anything, typically on a path that means to refuse the request. Here is an API-key gate with
# that bug, inside the timing middleware of section 1 (the middleware added last is the outermost,
# so the gate is added first).
#
# **Fact 6.5.** A request that the gate turns away gets `500 Internal Server Error`, and the
# server logs `RuntimeError: No response returned.`, raised in `call_next` of
# `starlette/middleware/base.py`.

# %%
class RequireApiKey:
    """A pure ASGI middleware that turns away requests without the right key: with a bug."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (b"x-api-key", b"secret") not in scope["headers"]:
            return  # the bug: it refuses by returning, and never sends a response
        await self.app(scope, receive, send)


def shop_app(gate, *, timing: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/report")
    async def report() -> dict[str, int]:
        return {"orders": 3}

    app.add_middleware(gate)
    if timing:
        app.middleware("http")(add_timing_header)  # the BaseHTTPMiddleware of section 1
    return app


app = shop_app(RequireApiKey, timing=True)
with capture_logs("uvicorn.error") as records, serve(app) as url:
    refused = httpx.get(f"{url}/report")
    allowed = httpx.get(f"{url}/report", headers={"x-api-key": "secret"})
errors = logged_errors(records)
print("middleware, outermost first:", [layer.cls.__name__ for layer in app.user_middleware])
print(f"without the key: {refused.status_code} {refused.text!r}")
print(f"with the key:    {allowed.status_code} {allowed.json()}")
print("the server logged:", *errors, sep="\n  ")
assert refused.status_code == 500 and allowed.status_code == 200
assert [(error.type, error.message) for error in errors] == [("RuntimeError", "No response returned.")]
assert (errors[0].file, errors[0].function) == ("starlette/middleware/base.py", "call_next")

# %% [markdown]
# A test sees it too: `TestClient` raises the app's exception in the test (more in section 6.2).
#
# **Fact 6.6.** With `TestClient`, the same request raises the same `RuntimeError` in the test,
# with an `ExceptionGroup` from AnyIO's task groups in its chain. (The cell catches it to show it:
# IPython prints an exception with an `ExceptionGroup` in its chain as plain text, not as an
# error, see `InteractiveShell.showtraceback` in `IPython/core/interactiveshell.py`.)

# %%
with TestClient(shop_app(RequireApiKey, timing=True)) as test_client:
    try:
        test_client.get("/report")
    except RuntimeError as exc:
        raised = f"{type(exc).__name__}: {exc}"
        chained = type(exc.__context__).__name__
print(f"TestClient raised {raised}, during the handling of an {chained}")
assert raised == "RuntimeError: No response returned." and chained == "ExceptionGroup"

# %% [markdown]
# The middleware is only the messenger. Without it the same bug is still there, reported by the
# server in its own words.
#
# **Fact 6.7.** Without `@app.middleware("http")`, uvicorn logs `ASGI callable returned without
# starting response.` and answers 500 itself (`RequestResponseCycle.run_asgi` in
# `uvicorn/protocols/http/h11_impl.py`, shown below). Note its condition: `not
# self.disconnected`. uvicorn does not complain when the client has already gone; section 4
# comes back to that.

# %%
with capture_logs("uvicorn.error") as records, serve(shop_app(RequireApiKey, timing=False)) as url:
    refused = httpx.get(f"{url}/report")
messages = [record.getMessage() for record in records]
[h11_check] = [hit for hit in find_in_source("uvicorn", "returned without starting response")
               if hit.file == "uvicorn/protocols/http/h11_impl.py"]
print(f"without the key: {refused.status_code} {refused.text!r}; the server logged {messages}")
print(h11_check, h11_check.excerpt(before=1, after=2), sep="\n")
assert refused.status_code == 500
assert messages == ["ASGI callable returned without starting response."]

# %% [markdown]
# **The fix: every path through an ASGI app sends a response.** A gate that refuses sends a
# `401` (any Starlette `Response` is itself an ASGI app, so it can be awaited with the same
# `scope, receive, send`).
#
# **Fact 6.8.** The fixed gate answers `401` without the key and `200` with it, behind the same
# timing middleware, and the server logs nothing.

# %%
class RequireApiKeyFixed(RequireApiKey):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (b"x-api-key", b"secret") not in scope["headers"]:
            refusal = JSONResponse({"detail": "missing or wrong API key"}, status_code=401)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


with capture_logs("uvicorn.error") as records, serve(shop_app(RequireApiKeyFixed, timing=True)) as url:
    refused = httpx.get(f"{url}/report")
    allowed = httpx.get(f"{url}/report", headers={"x-api-key": "secret"})
print(f"without the key: {refused.status_code} {refused.json()}")
print(f"with the key:    {allowed.status_code} {allowed.json()}, x-process-time: {'x-process-time' in allowed.headers}")
assert refused.status_code == 401 and allowed.status_code == 200 and "x-process-time" in allowed.headers
assert records == []

# %% [markdown]
# ## 4. Cause 2: the client leaves before the app has answered
#
# Some apps are written to wait: a long poll waits for news and answers when there is some. When
# the client gives up first, the server tells the app with an `http.disconnect` message, and the
# natural reaction is to stop and return: nobody is there to read an answer.
#
# **Fact 6.9.** Behind `@app.middleware("http")`, a long poll that returns when its client leaves
# makes the server log `RuntimeError: No response returned.` (the 500 that follows goes nowhere:
# the client has gone). Without the middleware the same app logs nothing, because uvicorn expects
# no response for a client that has left (Fact 6.7).

# %%
left: list[str] = []


async def wait_for_news(scope, receive, send):
    """A long poll in plain ASGI. (A real one would also wait on a news feed and answer with the news.)"""
    while (await receive())["type"] != "http.disconnect":
        pass
    left.append("the client left")  # nobody to answer, so: return


def news_app(long_poll, *, timing: bool) -> FastAPI:
    app = FastAPI()
    app.mount("/news", long_poll)
    if timing:
        app.middleware("http")(add_timing_header)
    return app


def leave_early(url: str, path: str) -> None:
    """Send a GET request and hang up at once, as a browser tab closed mid-request does."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def wait_until(condition, timeout: float = 30.0) -> bool:
    """Poll until ``condition()`` holds; the deadline only ends a wait for something that never happens."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


logged: dict[str, list] = {}
for timing in (True, False):
    left.clear()
    with capture_logs("uvicorn.error") as records, serve(news_app(wait_for_news, timing=timing)) as url:
        leave_early(url, "/news/")
        assert wait_until(lambda: left), "the long poll never heard that the client left"
    logged["behind @app.middleware('http')" if timing else "without it"] = logged_errors(records) + [
        record.getMessage() for record in records if not record.exc_info
    ]
for where, what in logged.items():
    print(f"{where}: the client left; the server logged", *(what or ["nothing"]), sep="\n  ")
[error] = logged["behind @app.middleware('http')"]
assert (error.type, error.message, error.function) == ("RuntimeError", "No response returned.", "call_next")
assert logged["without it"] == []

# %% [markdown]
# **Fix A: answer anyway.** Sending to a client that has gone is harmless: uvicorn's `send`
# returns without writing when the connection is closed (`if self.disconnected: return` in
# `h11_impl.py`), and every layer in between sees a complete response.
#
# **Fact 6.10.** A long poll that answers `204 No Content` when its client leaves causes no error
# behind the same middleware.

# %%
async def wait_for_news_fixed(scope, receive, send):
    while (await receive())["type"] != "http.disconnect":
        pass
    left.append("the client left")
    await Response(status_code=204)(scope, receive, send)  # nobody reads it; every layer sees an answer


left.clear()
with capture_logs("uvicorn.error") as records, serve(news_app(wait_for_news_fixed, timing=True)) as url:
    leave_early(url, "/news/")
    assert wait_until(lambda: left), "the long poll never heard that the client left"
print(f"{left[0]}; the server logged {logged_errors(records) or 'nothing'}")
assert records == []

# %% [markdown]
# **Fix B: do not use `BaseHTTPMiddleware` for work a plain ASGI middleware can do.** A timing
# header only needs to wrap `send`; a pure ASGI middleware passes messages through and has no
# opinion about apps that do not answer. Exercise 6.1 asks you to write it.
#
# What does *not* cause the error on the pinned versions: a client that leaves while an ordinary
# FastAPI endpoint is working. An endpoint always returns a response, and FastAPI sends it, so
# `call_next` always gets its first message.
#
# **Fact 6.11.** Under five nested `@app.middleware("http")` layers, clients that hang up on a slow
# endpoint and on a `StreamingResponse` (five times each) cause no error. The slow endpoint still
# runs to the end each time; the stream stops early, because `StreamingResponse` listens for the
# disconnect.

# %%
app = FastAPI()
finished: list[str] = []
stream_lengths: list[int] = []


@app.get("/slow")
async def slow() -> dict[str, bool]:
    await asyncio.sleep(0.3)
    finished.append("slow endpoint returned")
    return {"late": True}


async def ticks():
    sent = 0
    try:
        for n in range(100):  # two seconds of ticks, if the client stays
            yield f"tick {n}\n"
            sent += 1
            await asyncio.sleep(0.02)
    finally:
        stream_lengths.append(sent)


@app.get("/ticks")
async def tick_stream() -> StreamingResponse:
    return StreamingResponse(ticks(), media_type="text/plain")


for _ in range(5):
    app.middleware("http")(add_timing_header)

with capture_logs("uvicorn.error") as records, serve(app) as url:
    for _ in range(5):
        leave_early(url, "/slow")
        leave_early(url, "/ticks")
    # Wait for the server to have handled all ten; leaving now would drop connections not yet accepted.
    assert wait_until(lambda: len(finished) == 5 and len(stream_lengths) == 5), (finished, stream_lengths)
print(f"{len(app.user_middleware)} BaseHTTPMiddleware layers, 10 clients that left early")
print(f"slow endpoints that ran to the end: {len(finished)} of 5")
print(f"streams that stopped early: {sum(length < 100 for length in stream_lengths)} of 5")
print(f"errors logged: {logged_errors(records) or 'none'}")
assert len(app.user_middleware) == 5 and all(length < 100 for length in stream_lengths)
assert records == []

# %% [markdown]
# ## 5. Causes that belonged to older Starlette versions
#
# The message is old, and for a while it also had causes that were bugs in Starlette itself. Two
# of those histories the course measures: `make versions` installs older releases, each in an
# environment of its own, and runs small apps on a real uvicorn server there (FastAPI 0.103.2,
# the release the article this course answers was written for, comes with Starlette 0.27.0). What
# it recorded is shown below with `version_table`; a test of the course measures it again.
#
# **Nested middleware and clients that hang up.** Issue #2516 (reported on Starlette 0.37.1)
# describes a race: several `BaseHTTPMiddleware` nested, and a client that disconnects before the
# endpoint has answered. Starlette 0.38.3 fixed it (PR #2620, "Don't poll for disconnects in
# BaseHTTPMiddleware via StreamingResponse"). Section 4 ran that experiment on the pinned
# version: five layers, ten clients that hang up on a slow endpoint (Fact 6.11).
#
# **Fact 6.12.** The experiment of Fact 6.11 logged `No response returned.` for all ten clients on
# Starlette 0.28.0, 0.29.0, 0.31.1 and 0.38.2, and for none on 0.27.0 (the FastAPI 0.103 to 0.106
# rows) or from 0.38.3 on. An app that returns no response (the gate of section 3) gave a `500`
# and the message on every release; the exception it was raised during was AnyIO's `EndOfStream`
# up to Starlette 0.29.0 (AnyIO 3) and an `ExceptionGroup` from 0.31.1 (AnyIO 4).

# %%
message_history = version_table("nested_middleware_hang_ups", "gate_without_response")
raced = {stack.name for stack, (hang_ups, _) in message_history.rows if not hang_ups.endswith(" 0 of 10")}
assert raced == {"Starlette 0.28.0", "Starlette 0.29.0", "Starlette 0.31.1", "Starlette 0.38.2"}
assert all(gate.startswith("500; RuntimeError: No response returned.") for _, (_, gate) in message_history.rows)
assert message_history.outcome("FastAPI 0.163.2", "nested_middleware_hang_ups").endswith(" 0 of 10")  # Fact 6.11
message_history

# %% [markdown]
# An older cause is cited, not measured: on Starlette 0.15.0 to 0.20.4 a client that disconnected just as a `StreamingResponse` began could
# produce the message even though the app was responding (issue #1634, "seemingly random";
# fixed by PR #1715 in 0.21.0).
#
# **Background tasks behind `BaseHTTPMiddleware`** have their own history, which may be how tasks
# and this message got mixed up. Three experiments, each with a task behind one middleware:
#
# - a task still running (it waits for the experiment to release it): does the client get its
#   body, and is its *next* request on the same keep-alive connection answered?
# - a task that raises: is it logged, when the client keeps its connection open, and when the
#   client has read the reply and hung up before the task raises?
# - a `dispatch` that sets `response.background` on the response `call_next` gave it: does that
#   task run?
#
# **Fact 6.13.** On Starlette 0.27.0 and 0.28.0 the client had its body at once, but its next
# request on the same connection was answered only after the task ended (0.29.0 changed this,
# PR #2194). A failing task was logged there only while the client kept its connection; on
# 0.29.0 to 0.45.3 (and 0.38.5, the FastAPI 0.115.0 row) it was not logged at all; from 0.46.0
# (PR #2812) it is logged in both cases. A task set in `dispatch` never ran on 0.38.3 and 0.38.4
# (restored in 0.38.5, PR #2688).

# %%
task_history = version_table(
    "middleware_keep_alive", "middleware_failing_task_kept_alive", "middleware_failing_task_hung_up",
    "task_set_in_dispatch",
)  # fmt: skip
rows = {stack.name: outcomes for stack, outcomes in task_history.rows}
waited = {name for name, (keep_alive, *_) in rows.items() if keep_alive.endswith("after the task")}
silent = {name for name, (_, kept, hung_up, _) in rows.items() if kept == hung_up == "nothing logged"}
dropped = {name for name, (*_, dispatch) in rows.items() if dispatch == "never runs"}
assert waited == {"FastAPI 0.103.2", "FastAPI 0.105.0", "FastAPI 0.106.0", "Starlette 0.28.0"}
assert all(outcomes[0].startswith("the body at once") for outcomes in rows.values())
assert silent == {"FastAPI 0.115.0", "Starlette 0.29.0", "Starlette 0.31.1", "Starlette 0.38.2",
                  "Starlette 0.38.3", "Starlette 0.38.4", "Starlette 0.45.3"}  # fmt: skip
assert dropped == {"Starlette 0.38.3", "Starlette 0.38.4"}
assert rows["FastAPI 0.163.2"][1] == rows["FastAPI 0.163.2"][2] == "logged: ValueError"
task_history

# %% [markdown]
# On the pinned version you can see what replaced the old behaviour: inside `call_next`, a
# disconnect reaches the app as a message (`receive_or_disconnect`), and the response that
# `BaseHTTPMiddleware` streams on to the server does not listen for disconnects at all; only
# Starlette's public `StreamingResponse` does.
#
# **Fact 6.14.** On Starlette 1.10.0, `starlette/middleware/base.py` turns a disconnect into an
# `http.disconnect` message in `receive_or_disconnect`, and contains no `listen_for_disconnect`.

# %%
disconnect_messages = [hit for hit in find_in_source("starlette", '{"type": "http.disconnect"}')
                       if hit.file == "starlette/middleware/base.py"]
listeners = {hit.file for hit in find_in_source("starlette", "listen_for_disconnect")}
print(*disconnect_messages, sep="\n")
print(f"files that listen for disconnects: {sorted(listeners)}")
assert any(hit.function.endswith("receive_or_disconnect") for hit in disconnect_messages)
assert "starlette/middleware/base.py" not in listeners

# %% [markdown]
# ## 6. A gallery of errors around background tasks
#
# Each entry reproduces an error on a real server, explains it, and fixes it in the next cell.
# Chapter 1 met the first two already; they are here so that the gallery is complete.
#
# ### 6.1 A task raises: the tasks after it are skipped
#
# **Fact 6.15.** Of three tasks, the second raises `ValueError`: the third never runs, the client
# already has its `200`, and uvicorn logs `Exception in ASGI application` with the `ValueError`
# (chapter 1, section 7).

# %%
done: list[str] = []


def record(name: str) -> None:
    done.append(name)


def fail(name: str) -> None:
    raise ValueError(f"{name}: the mail server said no")


def fragile_app(wrap=lambda func: func) -> FastAPI:
    app = FastAPI()

    @app.post("/fragile")
    def fragile(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(wrap(record), "first")
        background_tasks.add_task(wrap(fail), "second")
        background_tasks.add_task(wrap(record), "third")
        return {"status": "accepted"}

    return app


done.clear()
with capture_logs("uvicorn.error") as records, serve(fragile_app()) as url:
    response = httpx.post(f"{url}/fragile")
errors = logged_errors(records)
print(f"the client got {response.status_code}; tasks that ran: {done}")
print(f"uvicorn logged {records[0].getMessage().strip()!r}:", *errors, sep="\n  ")
assert response.status_code == 200 and done == ["first"]
assert [(error.type, error.function) for error in errors] == [("ValueError", "fail")]

# %% [markdown]
# **Fix:** make each task catch and log its own failure, so the loop that runs the tasks goes on.
# (Chapter 1's exercise 1.3 builds the full version, which keeps `async def` functions async;
# chapter 4 adds retries.)
#
# **Fact 6.16.** With every task wrapped, the third task runs, the failure is logged with its
# traceback on the `tasks` logger, and uvicorn logs nothing.

# %%
task_log = logging.getLogger("tasks")


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:
            task_log.exception("background task %s failed", func.__name__)
            return None

    return wrapper


done.clear()
with (
    capture_logs("uvicorn.error") as server_records,
    capture_logs("tasks") as task_records,
    serve(fragile_app(logged)) as url,
):
    response = httpx.post(f"{url}/fragile")
print(f"tasks that ran: {done}")
print(f"the 'tasks' logger: {task_records[0].getMessage()!r}, with", *logged_errors(task_records), sep="\n  ")
assert done == ["first", "third"] and server_records == []
assert len(task_records) == 1 and task_records[0].exc_info is not None

# %% [markdown]
# ### 6.2 `TestClient` re-raises a task's exception
#
# `TestClient` runs the app in the test's process and, by default, raises in the test whatever
# the app raised, a background task's exception included. That is a feature: it is how a test
# notices a failing task.
#
# **Fact 6.17.** Against the unwrapped tasks of 6.1, `test_client.post(...)` raises the task's
# `ValueError` in the calling cell.

# %%
with shows_error(ValueError) as raised, TestClient(fragile_app()) as test_client:
    test_client.post("/fragile")
assert type(raised.error) is ValueError

# %% [markdown]
# **Fix:** fix the app, not the test. With the tasks wrapped as in 6.1, the same test passes and
# can assert on the log. (`TestClient(app, raise_server_exceptions=False)` silences the exception
# instead; chapter 1, section 7 shows it. Use it to test what the client sees, not to hide a bug.)
#
# **Fact 6.18.** With the wrapped tasks, `TestClient` returns the `200`, and the failure is in
# the `tasks` log.

# %%
done.clear()
with capture_logs("tasks") as task_records, TestClient(fragile_app(logged)) as test_client:
    response = test_client.post("/fragile")
print(f"{response.status_code} {response.json()}; tasks that ran: {done}; failures logged: {len(task_records)}")
assert response.status_code == 200 and done == ["first", "third"] and len(task_records) == 1

# %% [markdown]
# ### 6.3 `RuntimeWarning: coroutine '...' was never awaited`
#
# Calling an `async def` function does not run it: it creates a coroutine object, and only
# `await` runs it. A plain `def` cannot `await`, so a sync wrapper that calls an async function
# creates the coroutine and drops it. Nothing is sent, no exception is raised, and when the
# object is garbage-collected Python emits a `RuntimeWarning`. (The cell records the warning
# with `warnings.catch_warnings`, so that it does not leak into this notebook's output.)
#
# **Fact 6.19.** A `def` task that calls `send_email(address)` without `await` sends nothing; the
# request gets its `200`; Python warns `coroutine 'send_email' was never awaited`, pointing at the
# line of the call.

# %%
sent: list[str] = []


async def send_email(address: str) -> None:
    await asyncio.sleep(0.01)  # a mail server
    sent.append(address)


def notify(address: str) -> None:
    send_email(address)  # the bug: creates a coroutine and drops it


app = FastAPI()


@app.post("/notify")
def post_notify(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(notify, "ada@example.com")
    return {"status": "accepted"}


sent.clear()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        response = httpx.post(f"{url}/notify")
    gc.collect()
never_awaited = [w for w in caught if "was never awaited" in str(w.message)]
print(f"{response.status_code}; e-mails sent: {sent}; exceptions logged: {len(records)}")
for w in never_awaited:
    print(f"{w.category.__name__}: {w.message}\n    at: {linecache.getline(w.filename, w.lineno).strip()}")
assert response.status_code == 200 and sent == [] and records == []
assert [str(w.message) for w in never_awaited] == ["coroutine 'send_email' was never awaited"]
assert never_awaited[0].category is RuntimeWarning
assert linecache.getline(never_awaited[0].filename, never_awaited[0].lineno).strip().startswith("send_email(address)")

# %% [markdown]
# **Fix:** give `add_task` the `async def` function itself; Starlette awaits it on the event loop.
# If a `def` task must call async code (it also does blocking work, say), run the coroutine on
# the server's loop with `anyio.from_thread.run(...)`: a `def` task runs on an AnyIO worker
# thread, which knows its loop.
#
# **Fact 6.20.** Both fixes send the e-mail, and no warning is recorded.

# %%
def notify_from_thread(address: str) -> None:
    anyio.from_thread.run(send_email, address)  # runs on the server's loop; this thread waits


app = FastAPI()


@app.post("/notify")
def post_notify_fixed(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(send_email, "ada@example.com")  # the async function itself
    background_tasks.add_task(notify_from_thread, "grace@example.com")
    return {"status": "accepted"}


sent.clear()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        response = httpx.post(f"{url}/notify")
    gc.collect()
print(f"{response.status_code}; e-mails sent: {sent}; warnings: {[str(w.message) for w in caught]}")
assert sent == ["ada@example.com", "grace@example.com"] and caught == [] and records == []

# %% [markdown]
# ### 6.4 `MissingGreenlet` and `DetachedInstanceError`: an ORM object from the request
#
# An endpoint loads a user with the request's database session and hands the **object** to a
# task, which then reads `user.orders`, a relationship SQLAlchemy loads lazily, on first access.
# Chapter 3 treats this at length (sections 7 to 9: when the session closes, what goes wrong, and
# the pattern that always works); here is the short version, for the gallery. The shop's models
# live in `bgcourse.checks.ch06_troubleshooting`, so that exercise 6.2's check can use them too:
# `User(id, name, orders)` and `Order(id, user_id, item)`. The database is a SQLite file in a
# temporary folder, removed at the end of 6.4.

# %%
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
from sqlalchemy.pool import NullPool

from bgcourse.checks.ch06_troubleshooting import Order, ShopBase, User

shop_folder = tempfile.TemporaryDirectory(prefix="bgcourse-ch06-")
# NullPool: each session opens its own connection on the loop that uses it (this notebook's loop
# here, the server's loop below) and closes it again.
engine = create_async_engine(f"sqlite+aiosqlite:///{Path(shop_folder.name) / 'shop.db'}", poolclass=NullPool)
async with engine.begin() as connection:
    await connection.run_sync(ShopBase.metadata.create_all)
sessions = async_sessionmaker(engine, expire_on_commit=False)
async with sessions() as session:
    session.add(User(id=1, name="Ada", orders=[Order(item="book"), Order(item="pen")]))
    await session.commit()
print("a shop with one user and two orders, in shop.db in a temporary folder")

# %% [markdown]
# When is the request's session closed? FastAPI 0.163 lets a `yield` dependency choose
# (`Depends(..., scope=...)`): with the default `"request"` scope its exit code runs after the
# response **and its background tasks** (`request_response` in `fastapi/routing.py` awaits the
# response, tasks included, inside the dependency's exit stack); with `scope="function"` it runs
# before the response is sent.
#
# **Fact 6.21.** With the default scope the session is still open when the task reads
# `user.orders`, and the read fails with `MissingGreenlet` (which SQLAlchemy wraps in a
# `StatementError`): a lazy load is a plain attribute access that needs I/O, and under asyncio
# SQLAlchemy can only do I/O inside its own greenlet, which `await session...` calls set up and an
# attribute access does not. The failed load also leaves aiosqlite's `Connection.cursor`
# coroutine never awaited.
#
# **Fact 6.22.** With `scope="function"` the session is closed before the task runs, the object
# is detached, and the read fails with `DetachedInstanceError`.

# %%
def summary_app(scope: str, summaries: list[str], events: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        try:
            async with sessions() as session:
                yield session
        finally:
            events.append("session closed")

    async def summarize(user: User) -> None:
        events.append("task started")
        summaries.append(f"{user.name}: {len(user.orders)} orders")  # user.orders: a lazy load

    @app.post("/users/{user_id}/summary", status_code=202)
    async def summary(
        user_id: int,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope=scope)],
    ) -> dict[str, str]:
        user = await session.get(User, user_id)
        background_tasks.add_task(summarize, user)  # the bug: the object, bound to the request's session
        return {"queued": user.name}

    return app


outcomes = {}
for scope in ("request", "function"):
    summaries, events = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture_logs("uvicorn.error") as records, serve(summary_app(scope, summaries, events)) as url:
            response = httpx.post(f"{url}/users/1/summary")
        errors = logged_errors(records)  # releases the traceback, and with it the coroutine it held
        gc.collect()
    outcomes[scope] = (response, summaries, events, errors, [f"{w.category.__name__}: {w.message}" for w in caught])

for scope, (response, summaries, events, errors, warned) in outcomes.items():
    print(f'scope="{scope}": {response.status_code} {response.json()}; order of events: {events}; '
          f"summaries: {summaries}")
    print(*errors, *warned, sep="\n  ", end="\n\n")
    assert response.status_code == 202 and summaries == []
[missing_greenlet], warned = outcomes["request"][3:]
[detached], _ = outcomes["function"][3:]
assert warned == ["RuntimeWarning: coroutine 'Connection.cursor' was never awaited"]
assert outcomes["request"][2] == ["task started", "session closed"], "default scope: closed after the task"
assert outcomes["function"][2] == ["session closed", "task started"], "function scope: closed before the task"
assert missing_greenlet.type == "StatementError" and "(sqlalchemy.exc.MissingGreenlet)" in missing_greenlet.message
assert detached.type == "DetachedInstanceError" and "lazy load operation of attribute 'orders'" in detached.message

# %% [markdown]
# Where versions differ: on FastAPI 0.106.0 to 0.117.0 the exit code of a `yield` dependency ran
# before the response by default, as `scope="function"` does above; before 0.106.0 and from
# 0.118.0 it runs after the tasks (chapter 3, Fact 7.2, measured on each). So with either timing
# one of the two failures above is waiting: the object is the problem, not the version.
#
# **Fix:** hand the task plain data, not ORM objects. Either load what the task needs in the
# endpoint and pass the values (below), or pass the id and let the task open a session of its own
# (exercise 6.2).
#
# **Fact 6.23.** With the orders loaded in the endpoint (`selectinload`) and the task given the
# name and the items, both scopes produce the summary and nothing is logged or warned.

# %%
def summary_app_fixed(scope: str, summaries: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def summarize(name: str, items: list[str]) -> None:
        summaries.append(f"{name}: {len(items)} orders")

    @app.post("/users/{user_id}/summary", status_code=202)
    async def summary(
        user_id: int,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope=scope)],
    ) -> dict[str, str]:
        user = await session.scalar(select(User).where(User.id == user_id).options(selectinload(User.orders)))
        background_tasks.add_task(summarize, user.name, [order.item for order in user.orders])  # values
        return {"queued": user.name}

    return app


fixed = {}
for scope in ("request", "function"):
    summaries = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture_logs("uvicorn.error") as records, serve(summary_app_fixed(scope, summaries)) as url:
            response = httpx.post(f"{url}/users/1/summary")
        gc.collect()
    fixed[scope] = (response.status_code, summaries, logged_errors(records), [str(w.message) for w in caught])
for scope, (status_code, summaries, errors, warned) in fixed.items():
    print(f'scope="{scope}": {status_code}; summaries: {summaries}; errors: {errors}; warnings: {warned}')
    assert status_code == 202 and summaries == ["Ada: 2 orders"] and errors == [] and warned == []

await engine.dispose()
shop_folder.cleanup()
assert not Path(shop_folder.name).exists()

# %% [markdown]
# ### 6.5 `RuntimeError: ... is bound to a different event loop`
#
# An asyncio `Lock` belongs to the first event loop that has to wait on it
# (`_LoopBoundMixin._get_loop` in `asyncio/mixins.py`, section 7 shows the line), and so do
# `Semaphore`, `Event`, `Condition` and `Queue`, which share that method. An object made once, at
# import time or in a notebook cell, and used by two loops therefore breaks on the second. Every
# `serve(app)` runs a loop of its own, so a test suite that serves the same app twice meets this,
# as does a notebook whose server cell is run again without the cell that made the lock.
#
# **Fact 6.24.** A lock made once and shared by the tasks of one app: served the first time, two
# overlapping e-mails go out one after the other; served a second time, the task that has to wait
# fails with `RuntimeError: <asyncio.locks.Lock object at 0x... [locked]> is bound to a different
# event loop`, and only one e-mail is sent.

# %%
mail_lock = asyncio.Lock()  # made once, outside any loop: like a module-level global
arrived: list[int] = []
sent: list[str] = []


async def send_in_turn(lock: asyncio.Lock, n: int) -> None:
    arrived.append(n)
    async with lock:  # the second task has to wait here, and waiting binds the lock to this loop
        deadline = time.monotonic() + 30  # only so that a mistake cannot hang the cell for ever
        while len(arrived) < 2 and time.monotonic() < deadline:  # hold on until the other task waits
            await asyncio.sleep(0.01)
        sent.append(f"e-mail {n}")


mailer = FastAPI()


@mailer.post("/emails/{n}")
async def queue_email(n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(send_in_turn, mail_lock, n)
    return {"queued": n}


def serve_twice(app: FastAPI) -> dict[str, tuple[list[str], list]]:
    """Serve the same app twice, one server after the other; two requests each time."""
    results = {}
    for run in ("first", "second"):
        arrived.clear()
        sent.clear()
        with capture_logs("uvicorn.error") as records, serve(app) as url:
            httpx.post(f"{url}/emails/1")
            httpx.post(f"{url}/emails/2")
        results[run] = (list(sent), logged_errors(records))
    return results


results = serve_twice(mailer)
for run, (sent_then, errors) in results.items():
    print(f"{run} server: sent {sent_then}", *errors, sep="\n  ")
assert results["first"] == (["e-mail 1", "e-mail 2"], [])
second_sent, [bound_error] = results["second"]
assert second_sent == ["e-mail 1"]
assert bound_error.type == "RuntimeError" and bound_error.message.endswith("is bound to a different event loop")
assert (bound_error.file, bound_error.function) == ("asyncio/mixins.py", "_get_loop")
assert all(cls._get_loop is asyncio.Lock._get_loop for cls in (asyncio.Semaphore, asyncio.Event, asyncio.Condition, asyncio.Queue))

# %% [markdown]
# **Fix:** make the lock on the loop that uses it, in the app's lifespan, which runs on each
# server's loop every time it starts; the tasks get it from `request.app.state`.
#
# **Fact 6.25.** With the lock made in the lifespan, both servers send both e-mails.

# %%
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.mail_lock = asyncio.Lock()  # on this server's loop, each time it starts
    yield


mailer = FastAPI(lifespan=lifespan)


@mailer.post("/emails/{n}")
async def queue_email_fixed(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(send_in_turn, request.app.state.mail_lock, n)
    return {"queued": n}


results = serve_twice(mailer)
for run, (sent_then, errors) in results.items():
    print(f"{run} server: sent {sent_then}; errors: {errors or 'none'}")
assert all(outcome == (["e-mail 1", "e-mail 2"], []) for outcome in results.values())

# %% [markdown]
# ### 6.6 In a notebook: `Cannot run the event loop while another loop is running`
#
# A Jupyter kernel runs an event loop in its main thread, and asyncio allows one running loop per
# thread, so anything that starts a loop in a cell fails: `uvicorn.run(app)`, `asyncio.run(...)`,
# `loop.run_until_complete(...)`. Chapter 1 (section 8) showed `uvicorn.run` failing and what
# `nest_asyncio` does. Here is all of it in one place; because `nest_asyncio.apply()` patches the
# interpreter for good, it runs in a fresh kernel of its own (`run_in_fresh_kernel`).
#
# **Fact 6.26.** In a notebook, `uvicorn.run`, `asyncio.run` and `run_until_complete` all fail.
# After `nest_asyncio.apply()`, `asyncio.run` and `run_until_complete` work, and `uvicorn.run`
# still fails. On Python 3.11, uvicorn's failure reads `RuntimeError: Cannot run the event loop
# while another loop is running` before the patch and `RuntimeError: Runner.run() cannot be
# called from a running event loop` after it (uvicorn starts its loop with `asyncio.Runner`,
# which `nest_asyncio` does not patch); on 3.12 and 3.13 the messages differ (chapter 1, Fact 8.3).

# %%
probe = '''
import asyncio
import nest_asyncio
import uvicorn
from fastapi import FastAPI


def attempt(what, start):
    coroutine = asyncio.sleep(0, "it ran")
    try:
        print(f"-> {what}: {start(coroutine)}")
    except Exception as exc:
        print(f"-> {what}: {type(exc).__name__}: {exc}")
    finally:
        coroutine.close()  # if it never ran, close it, or Python warns that it was never awaited


def run_uvicorn(coroutine):
    return uvicorn.run(FastAPI(), host="127.0.0.1", port=0, log_config=None)


def all_three(when):
    attempt(f"{when}, uvicorn.run(app)", run_uvicorn)
    attempt(f"{when}, asyncio.run(...)", asyncio.run)
    attempt(f"{when}, loop.run_until_complete(...)", asyncio.get_event_loop().run_until_complete)


all_three("without nest_asyncio")
nest_asyncio.apply()
all_three("after nest_asyncio.apply()")
'''
with tqdm(total=1, desc="running the probe in a fresh kernel") as progress:
    outcome = run_in_fresh_kernel(probe, timeout=60)
    progress.update()
lines = [line.removeprefix("-> ") for line in outcome.output.splitlines() if line.startswith("-> ")]
print(*lines, sep="\n")
assert not outcome.error and len(lines) == 6, outcome
before, after = lines[:3], lines[3:]
assert all("Error" in line for line in before), "in a notebook, all three fail"
assert after[1].endswith(": it ran") and after[2].endswith(": it ran"), "nest_asyncio lets these two nest"
assert "Error" in after[0], "but uvicorn.run still fails"
if sys.version_info[:2] == (3, 11):
    assert before[0].endswith("RuntimeError: Cannot run the event loop while another loop is running")
    assert after[0].endswith("RuntimeError: Runner.run() cannot be called from a running event loop")

# %% [markdown]
# **Fix:** in a notebook, `await` coroutines at the top level of a cell (every cell of this course
# does), and run servers on a thread of their own, which has its own loop: `with serve(app) as
# url:`. Keep `nest_asyncio` for third-party code that insists on calling `asyncio.run()` itself.

# %% [markdown]
# ## 7. A debugging method you can reuse
#
# Every entry above was solved the same way, in three steps.
#
# 1. **Read the innermost frame.** The last frame of a traceback is where the exception was
#    raised; the frames above it are only how the program got there. `logged_errors` prints it for
#    a server's log; in your own code, `traceback.extract_tb(exc.__traceback__)[-1]` (the quiz's
#    last question).
# 2. **Find where the library writes the message.** Search the installed package for a fragment
#    of the message that fits on one line (messages are often split over two string literals, or
#    formatted): `find_in_source(package, text)`. It gives the line of the text itself, which can
#    be a line or two below the line a traceback names: a traceback names the line where the
#    `raise` statement begins, and a message written on the next line of the same statement
#    is found there. Then read the code around it: the condition in front of the `raise` is the
#    real explanation. With the exact message and your versions, the
#    project's issue tracker and release notes tell you whether it is a bug, and which version
#    fixed it (that is how section 5 was written).
# 3. **Reproduce it minimally**: the smallest app that shows the error on a real server, as every
#    cell above does. If it does not reproduce, the explanation was wrong (section 1).
#
# **Fact 6.27.** Every message of this chapter is found this way, with the function that writes
# it. `coroutine ... was never awaited` is in `warnings.py`: the interpreter calls
# `warnings._warn_unawaited_coroutine` when it destroys a coroutine that never ran.

# %%
messages = [
    ("starlette", "No response returned"),
    ("uvicorn", "ASGI callable returned without starting response"),
    ("warnings", "was never awaited"),
    ("sqlalchemy", "greenlet_spawn has not been called"),
    ("sqlalchemy", "lazy load operation of attribute"),
    ("asyncio", "is bound to a different event loop"),
    ("asyncio", "Cannot run the event loop while another loop is running"),
]
where = {text: find_in_source(package, text) for package, text in messages}
assert all(where.values()), "every message is found"
for text, hits in where.items():
    more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
    print(f"{text!r}\n    {hits[0].file}:{hits[0].line} in {hits[0].function}{more}")
print(where["was never awaited"][0].excerpt(before=3, after=0))
assert where["was never awaited"][0].function == "_warn_unawaited_coroutine"

# %% [markdown]
# A note on step 1 and memory: a traceback keeps every local variable of every frame alive. The
# failed lazy load of 6.4 left an un-awaited coroutine in one of those frames; had its traceback
# stayed in the `records` list, the `RuntimeWarning` would have appeared whenever the garbage
# collector happened to run, in some unrelated later cell. `logged_errors` therefore clears the
# frames once it has read them (`traceback.clear_frames`).

# %% [markdown]
# ## Exercises
#
# Each exercise has a code cell for your answer and a cell that checks it against a real server.
# The reference solutions are in `solutions/ch06_troubleshooting/`; try first, then compare.
#
# ### Exercise 6.1: a timing header without `BaseHTTPMiddleware`
#
# Write `ProcessTimeMiddleware`, a **pure ASGI** middleware class (`__init__(self, app)` and
# `async __call__(self, scope, receive, send)`) that adds a header `x-process-time` to every HTTP
# response: the seconds from the moment the request reached the middleware to the moment the
# response starts, as a number (`"0.100123"`). Pass every scope that is not `"http"` (such as
# `"lifespan"`) straight to the app. The check adds it to an app with a 0.1 s endpoint and the long
# poll of section 4, and hangs up on the long poll: nothing may be logged.
# (`starlette.datastructures.MutableHeaders(scope=message)` edits the headers of a
# `http.response.start` message.)

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ProcessTimeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websocket pass straight through
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("x-process-time", f"{time.perf_counter() - started:.6f}")
            await send(message)

        await self.app(scope, receive, send_with_time)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch06_troubleshooting as checks

checks.ex01(ProcessTimeMiddleware)

# %% [markdown]
# ### Exercise 6.2: hand the task an id
#
# Write `create_app(sessions, summaries)`, returning an app with `POST /users/{user_id}/summary`.
# The endpoint loads the user with a session from a `yield` dependency (`async with sessions() as
# session: yield session`); for an unknown id it answers `404`; otherwise it answers `202` with
# `{"queued": <the user's name>}` and adds a background task. The task gets the user's **id**,
# opens a session of its own, loads the user with their orders, and appends
# `"<name>: <number of orders> orders"` to the list `summaries`. Use the models of section 6.4
# (`from bgcourse.checks.ch06_troubleshooting import User`); the check seeds a database with
# them in a temporary folder.

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bgcourse.checks.ch06_troubleshooting import User


def create_app(sessions: async_sessionmaker[AsyncSession], summaries: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def write_summary(user_id: int) -> None:
        async with sessions() as session:
            user = await session.scalar(select(User).where(User.id == user_id).options(selectinload(User.orders)))
            if user is not None:
                summaries.append(f"{user.name}: {len(user.orders)} orders")

    @app.post("/users/{user_id}/summary", status_code=status.HTTP_202_ACCEPTED)
    async def summary(
        user_id: int, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, str]:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        background_tasks.add_task(write_summary, user.id)  # the id, not the object
        return {"queued": user.name}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(create_app)

# %% [markdown]
# ### Exercise 6.3: two at a time, on any loop
#
# The mail server accepts two connections at once. Write `create_app(log)`, returning an app with
# `POST /emails/{n}` (an `int`) that answers `202` with `{"queued": n}` and adds a task that
# sends e-mail `n`: it appends `"start <n>"` to `log`, waits 0.2 s (`await asyncio.sleep(0.2)`),
# and appends `"end <n>"`. Never more than two e-mails may be in progress at once, and the check
# serves **the same app twice**, as a test suite would, with four requests at a time. (An
# `asyncio.Semaphore(2)` limits to two; where must it be made?)

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status


async def send_email(slots: asyncio.Semaphore, n: int, log: list[str]) -> None:
    async with slots:
        log.append(f"start {n}")
        await asyncio.sleep(0.2)  # a slow mail server
        log.append(f"end {n}")


def create_app(log: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mail_slots = asyncio.Semaphore(2)  # made on each server's own loop, every time it starts
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails/{n}", status_code=status.HTTP_202_ACCEPTED)
    async def queue_email(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(send_email, request.app.state.mail_slots, n, log)
        return {"queued": n}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(create_app)

# %% [markdown]
# ## Quiz
#
# Each question shows itself in a cell; answer in the cell below it; the cell after that says
# whether you are right. A right answer comes with the explanation; a wrong one with a hint
# that does not give the answer away (`quiz.explain("q01")` shows the explanation of q01 at
# any time, if you would rather read it).

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch06_troubleshooting")
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
def raised_in(exc):
    import traceback

    return traceback.extract_tb(exc.__traceback__)[-1].name
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", raised_in)

# %% [markdown]
# ## Summary
#
# - A background task's return value is ignored; returning a response from a task changes
#   nothing and raises nothing (section 1).
# - `RuntimeError: No response returned.` is raised in one place, `call_next` in
#   `starlette/middleware/base.py`: the app inside a `BaseHTTPMiddleware` (every
#   `@app.middleware("http")`) finished without sending a response and without raising
#   (section 2).
# - On the pinned versions it has two causes: an ASGI app or middleware that returns without
#   answering (fix: always send a response), and an app that returns when its client leaves
#   (fix: answer anyway, or use a pure ASGI middleware). A FastAPI endpoint always answers, so on
#   the pinned versions a client leaving it early causes nothing (sections 3 and 4).
# - Older Starlette releases had more causes: measured, a race between nested
#   `BaseHTTPMiddleware` and a client that hangs up on 0.28.0 to 0.38.2 (not on 0.27.0; fixed
#   in 0.38.3, PR #2620); cited, a disconnect as a streaming response began on 0.15.0 to 0.20.4
#   (fixed in 0.21.0, PR #1715). Tasks behind `BaseHTTPMiddleware` also changed: a held
#   keep-alive connection up to 0.28.0, failures not logged on 0.29.0 to 0.45.3, tasks set in
#   `dispatch` dropped on 0.38.3 and 0.38.4 (section 5).
# - The gallery (section 6): a failing task skips the tasks after it (wrap each task);
#   `TestClient` re-raises it (fix the app, not the test); a sync call of an async function is
#   "never awaited" (add the async function itself, or `anyio.from_thread.run`); ORM objects from
#   the request fail in tasks with `MissingGreenlet` or `DetachedInstanceError` (pass values or
#   ids); asyncio primitives are "bound to a different event loop" when made once and used by two
#   loops (make them in the lifespan); a notebook cannot start a second loop in its thread
#   (`await`, or a server on its own thread; `nest_asyncio` does not rescue `uvicorn.run`).
# - The method: innermost frame, `find_in_source`, minimal reproduction on a real server
#   (section 7).
#
# Next: chapter 7, when `BackgroundTasks` is not enough.
