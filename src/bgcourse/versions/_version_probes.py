"""The course's version-dependent facts, measured on whatever FastAPI / Starlette stack runs this file.

``python _version_probes.py`` prints one JSON object: each probe's name and what it saw, in words.
It runs in an environment of its own for each stack (``bgcourse versions`` makes them), so it
imports nothing of the course, only the stack: Starlette, uvicorn, httpx and AnyIO, and FastAPI when
the stack has it.  Every probe runs a real uvicorn server on a free port and talks HTTP to it.

The probes decide from the order of events, not from durations: a task that "never runs" is one
that has not run when uvicorn's shutdown, which waits for every request and its background tasks,
is over.  Only the keep-alive probe needs a deadline, for a reply that does not come; it is many
times the same client's first round trip, so a slow machine does not turn "at once" into "waits".
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import json
import logging
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

try:
    import fastapi
except ImportError:  # a Starlette-only stack
    fastapi = None  # type: ignore[assignment]

__all__ = ["PROBES", "main"]

NOT_APPLICABLE = "n/a"
NESTED_LAYERS, HANG_UPS = 5, 10


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[BaseException]:
        return [record.exc_info[1] for record in self.records if record.exc_info and record.exc_info[1]]


@contextlib.contextmanager
def _served(
    app: ASGIApp, on_start: Callable[[uvicorn.Server], None] | None = None
) -> Iterator[tuple[str, _LogRecords]]:
    """Run ``app`` on a free port; on leaving, stop it the way uvicorn stops (waiting for the tasks).

    ``on_start`` is handed the server before it starts, for a probe that watches its connections.
    """
    records = _LogRecords()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(records)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    if on_start is not None:
        on_start(server)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", records
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        logger.removeHandler(records)


def _get_and_hang_up(url: str, path: str, *, read_reply: bool) -> None:
    """Send a GET on a connection of its own and close it, after reading the reply or at once."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        if read_reply:
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.endswith(b"ok"):
                chunk = connection.recv(4096)
                if not chunk:
                    break
                reply += chunk


def _described(error: BaseException) -> str:
    chain: list[str] = []
    seen = error.__context__
    while seen is not None and len(chain) < 3:
        chain.append(type(seen).__name__)
        seen = seen.__context__
    where = f", raised during {' < '.join(chain)}" if chain else ""
    return f"{type(error).__name__}: {error}{where}"


def _has_scope_parameter() -> bool:
    return fastapi is not None and "scope" in inspect.signature(fastapi.Depends).parameters


def _order_recorder(app: ASGIApp, order: list[str]) -> ASGIApp:
    """Wrap ``app`` to note, in ``order``, when the response's start and its last chunk leave it."""

    async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
        async def noting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                order.append("response started")
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                order.append("response ended")
            await send(message)

        await app(scope, receive, noting_send)

    return recorded


# --- FastAPI -------------------------------------------------------------------------------------


def _yield_exit(scope: str | None) -> str:
    """When the exit code of a dependency with ``yield`` runs: before or after the response, and the tasks."""
    if fastapi is None or (scope is not None and not _has_scope_parameter()):
        return NOT_APPLICABLE
    order: list[str] = []

    async def resource() -> AsyncIterator[str]:
        yield "resource"
        order.append("exit code")

    app = fastapi.FastAPI()
    depends: dict[str, Any] = {} if scope is None else {"scope": scope}

    @app.get("/")
    async def endpoint(
        tasks: fastapi.BackgroundTasks, held: str = fastapi.Depends(resource, **depends)
    ) -> dict[str, str]:
        tasks.add_task(order.append, "task")
        return {"held": held}

    with _served(_order_recorder(app, order)) as (url, _):
        httpx.get(f"{url}/")
    exit_at = order.index("exit code")
    if exit_at < order.index("response started"):
        return "before the response (and the tasks)"
    if exit_at < order.index("task"):
        return "after the response, before the tasks"
    return "after the response and the tasks"


def _task_after_yield(scope: str | None) -> str:
    """Does a task added in a dependency's exit code (after ``yield``) run? And one added before it?"""
    if fastapi is None or (scope is not None and not _has_scope_parameter()):
        return NOT_APPLICABLE
    ran: list[str] = []

    async def adds_a_task_on_exit(tasks: fastapi.BackgroundTasks) -> AsyncIterator[None]:
        tasks.add_task(ran.append, "added before yield")
        yield
        tasks.add_task(ran.append, "added after yield")

    app = fastapi.FastAPI()
    depends: dict[str, Any] = {} if scope is None else {"scope": scope}

    # A parameter, as chapter 3 writes its session dependency.
    @app.get("/")
    async def endpoint(
        tasks: fastapi.BackgroundTasks, held: None = fastapi.Depends(adds_a_task_on_exit, **depends)
    ) -> dict[str, bool]:
        tasks.add_task(ran.append, "added by the endpoint")
        return {"ok": True}

    with _served(app) as (url, _):
        httpx.get(f"{url}/")
    after = "runs" if "added after yield" in ran else "never runs"
    before = "runs" if "added before yield" in ran else "never runs"
    return f"{after} (one added before `yield` {before})"


def _background_argument() -> str:
    """An endpoint adds an injected task and returns a response with a ``background`` of its own."""
    if fastapi is None:
        return NOT_APPLICABLE
    ran: list[str] = []
    app = fastapi.FastAPI()

    @app.get("/")
    async def endpoint(tasks: fastapi.BackgroundTasks) -> JSONResponse:
        tasks.add_task(ran.append, "injected")
        return JSONResponse({"ok": True}, background=BackgroundTask(ran.append, "the response's own"))

    with _served(app) as (url, _):
        httpx.get(f"{url}/")
    if ran == ["the response's own"]:
        return "only the response's own"
    return " and ".join(ran) or "none"


def _failing_task() -> str:
    """Three tasks, the second raises: what the client gets, and whether the third runs."""
    if fastapi is None:
        return NOT_APPLICABLE
    ran: list[str] = []

    def fails() -> None:
        raise ValueError("the second task fails")

    app = fastapi.FastAPI()

    @app.get("/")
    async def endpoint(tasks: fastapi.BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(ran.append, "first")
        tasks.add_task(fails)
        tasks.add_task(ran.append, "third")
        return {"ok": True}

    with _served(app) as (url, records):
        status = httpx.get(f"{url}/").status_code
    logged = [type(error).__name__ for error in records.errors()]
    third = "the third runs" if "third" in ran else "the third never runs"
    return f"{status}; {third}; logged: {', '.join(logged) or 'nothing'}"


def _test_client() -> str:
    """Does ``TestClient`` wait for the tasks, and raise a task's exception in the test?"""
    if fastapi is None:
        return NOT_APPLICABLE
    ran: list[str] = []

    async def slow_task() -> None:
        await anyio.sleep(0.2)
        ran.append("task")

    def fails() -> None:
        raise ValueError("the task fails")

    app = fastapi.FastAPI()

    @app.get("/slow")
    async def slow(tasks: fastapi.BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(slow_task)
        return {"ok": True}

    @app.get("/fails")
    async def failing(tasks: fastapi.BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(fails)
        return {"ok": True}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer Starlette asks for httpx2; the behaviour is the same
        client = TestClient(app)
        client.get("/slow")
        waits = "waits for the tasks" if ran else "returns before the tasks"
        try:
            raised = f"returns {client.get('/fails').status_code}"
        except ValueError:
            raised = "raises the task's ValueError"
    return f"{waits}; {raised}"


def _asgi_transport() -> str:
    """Does ``httpx.ASGITransport`` raise a task's exception, and give the 200 when told not to?"""
    if fastapi is None:
        return NOT_APPLICABLE

    def fails() -> None:
        raise ValueError("the task fails")

    app = fastapi.FastAPI()

    @app.get("/")
    async def endpoint(tasks: fastapi.BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(fails)
        return {"ok": True}

    async def ask(raise_app_exceptions: bool) -> str:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            try:
                return f"returns {(await client.get('/')).status_code}"
            except ValueError:
                return "raises the task's ValueError"

    return f"{anyio.run(ask, True)}; with raise_app_exceptions=False {anyio.run(ask, False)}"


# --- Starlette: BaseHTTPMiddleware ---------------------------------------------------------------


async def _passes_on(request: Request, call_next: Callable[[Request], Any]) -> Response:
    response: Response = await call_next(request)
    return response


def _behind_middleware(routes: list[Any], layers: int = 1) -> Starlette:
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=_passes_on)] * layers)


def _middleware_keep_alive() -> str:
    """Behind a BaseHTTPMiddleware, with a task still running: the client's body, then its next request."""
    release = threading.Event()

    async def held_task() -> None:
        await anyio.to_thread.run_sync(release.wait, 60)

    async def with_task(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(held_task))

    async def quick(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = _behind_middleware([Route("/task", with_task), Route("/quick", quick)])
    with _served(app) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        began = time.monotonic()
        client.get("/quick")  # opens the keep-alive connection: the baseline round trip
        baseline = time.monotonic() - began
        first = threading.Thread(target=client.get, args=("/task",))
        first.start()
        first.join(timeout=max(3.0, 50 * baseline))
        # The task cannot end before `release` is set below: a reply that came by now came before it.
        body = "the body at once" if not first.is_alive() else "the body after the task"
        answered = threading.Event()

        def ask_again() -> None:
            client.get("/quick")
            answered.set()

        second = threading.Thread(target=ask_again)
        second.start()
        answered.wait(timeout=max(3.0, 50 * baseline))
        at_once = answered.is_set()
        release.set()
        first.join(timeout=60)
        second.join(timeout=60)
    nxt = "the next request at once" if at_once else "the next request on the connection after the task"
    return f"{body}; {nxt}"


def _middleware_failing_task(read_reply: bool) -> str:
    """A failing task behind a BaseHTTPMiddleware: does the server log it?

    With ``read_reply=False`` the client reads the reply and hangs up, and the task fails only once
    the server has seen it go (uvicorn drops a connection from its list when the connection is
    lost). Failing at once would race the hang-up: on Starlette 0.27.0 a disconnect seen first
    cancels the response that would have raised the task's error, and on a busy machine the task
    at times failed first (1 run in 20 beside two CPU hogs).
    """
    servers: list[uvicorn.Server] = []

    def fails() -> None:
        deadline = time.monotonic() + 30
        while not read_reply and servers[0].server_state.connections:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not see the client hang up within 30 s")
            time.sleep(0.005)
        raise ValueError("the task fails")

    async def with_failing_task(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(fails))

    app = _behind_middleware([Route("/", with_failing_task)])
    with _served(app, on_start=servers.append) as (url, records):
        if read_reply:  # the client stays connected until the server closes the connection at shutdown
            client = httpx.Client(base_url=url)
            client.get("/")
        else:  # the client reads the reply and hangs up, as a browser tab closed at once does
            _get_and_hang_up(url, "/", read_reply=True)
    if read_reply:
        client.close()
    logged = [type(error).__name__ for error in records.errors()]
    return f"logged: {', '.join(logged)}" if logged else "nothing logged"


def _task_set_in_dispatch() -> str:
    """A dispatch that sets ``background`` on the response ``call_next`` gave it: does the task run?"""
    ran: list[str] = []

    async def adds_task(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.background = BackgroundTask(ran.append, "set in dispatch")
        return response

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=adds_task)])
    with _served(app) as (url, _):
        httpx.get(f"{url}/")
    return "runs" if ran else "never runs"


def _gate_without_response() -> str:
    """An app inside a BaseHTTPMiddleware returns without a response: the status, and what is logged."""

    async def gate(scope: Scope, receive: Receive, send: Send) -> None:
        return  # turned away, with no answer

    app = _behind_middleware([Mount("/gate", app=gate)])
    with _served(app) as (url, records):
        status = httpx.get(f"{url}/gate/").status_code
    errors = records.errors()
    return f"{status}; {_described(errors[0])}" if errors else f"{status}; nothing logged"


def _nested_middleware_hang_ups() -> str:
    """Clients that hang up on a slow endpoint under nested BaseHTTPMiddleware: errors logged."""
    finished: list[str] = []

    async def slow(request: Request) -> Response:
        await anyio.sleep(0.3)
        finished.append("slow")
        return PlainTextResponse("ok")

    app = _behind_middleware([Route("/slow", slow)], layers=NESTED_LAYERS)
    with _served(app) as (url, records):
        for _ in range(HANG_UPS):
            _get_and_hang_up(url, "/slow", read_reply=False)
        deadline = time.monotonic() + 60
        while len(finished) < HANG_UPS and time.monotonic() < deadline:
            time.sleep(0.01)
    messages = [str(error) for error in records.errors()]
    seen = sum("No response returned." in message for message in messages)
    return f"'No response returned.' {seen} of {HANG_UPS}"


PROBES: dict[str, Callable[[], str]] = {
    "yield_exit": lambda: _yield_exit(None),
    "yield_exit_function_scope": lambda: _yield_exit("function"),
    "task_after_yield": lambda: _task_after_yield(None),
    "task_after_yield_function_scope": lambda: _task_after_yield("function"),
    "background_argument": _background_argument,
    "failing_task": _failing_task,
    "test_client": _test_client,
    "asgi_transport": _asgi_transport,
    "middleware_keep_alive": _middleware_keep_alive,
    "middleware_failing_task_kept_alive": lambda: _middleware_failing_task(read_reply=True),
    "middleware_failing_task_hung_up": lambda: _middleware_failing_task(read_reply=False),
    "task_set_in_dispatch": _task_set_in_dispatch,
    "gate_without_response": _gate_without_response,
    "nested_middleware_hang_ups": _nested_middleware_hang_ups,
}


def main(names: list[str]) -> None:
    versions = {
        name: importlib.metadata.version(name)
        for name in ("fastapi", "starlette", "uvicorn", "httpx", "anyio")
        if name != "fastapi" or fastapi is not None
    }
    results: dict[str, str] = {}
    for name in names or list(PROBES):
        try:
            results[name] = PROBES[name]()
        except Exception as error:  # noqa: BLE001 (a probe that breaks on a stack says so in its cell)
            results[name] = f"probe failed: {''.join(traceback.format_exception_only(error)).strip()}"
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
