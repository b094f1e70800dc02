"""Checks for chapter 6's exercises, run against a real server, and the shop models they use."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import ForeignKey, create_engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import NullPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation, json_or_none
from bgcourse.helpers._server import ServerStartError, serve
from bgcourse.helpers._tracebacks import logged_errors

__all__ = ["Order", "ShopBase", "User", "ex01", "ex02", "ex03"]


class ShopBase(DeclarativeBase):
    """The shop of chapter 6: users and their orders."""


class User(ShopBase):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    orders: Mapped[list[Order]] = relationship(back_populates="user")  # loaded lazily, on first access


class Order(ShopBase):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    item: Mapped[str]
    user: Mapped[User] = relationship(back_populates="orders")


def _errors(records: list[logging.LogRecord]) -> list[str]:
    """``"Type: message"`` for each logged exception.  Reading them releases their frames; a failed lazy
    load leaves aiosqlite's ``Connection.cursor`` coroutine un-awaited, and its warning is not news here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        errors = [f"{error.type}: {error.message}" for error in logged_errors(records)]
        gc.collect()
    return errors


def _leave_before_the_response(url: str, path: str) -> None:
    """Send a request and hang up at once, as a browser tab closed mid-request does."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def _long_poll(left: list[str]) -> ASGIApp:
    """An app that waits for news; a client that gives up first gets nothing, as nobody is there to read it."""

    async def wait_for_news(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        left.append("the client left")

    return wait_for_news


# Only ends a wait that would otherwise never end (a long poll that never hears its client left):
# generous, because a busy machine may take seconds to deliver the disconnect.
_PATIENCE_SECONDS = 30.0


def _wait_until(condition: Callable[[], bool], timeout: float = _PATIENCE_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def _answer(response: httpx.Response) -> Observation:
    """A response as the record keeps it: status, text, and the JSON body if it has one."""
    return {"status": response.status_code, "text": response.text, "body": json_or_none(response)}


@exercise_check("6.1")
def ex01(middleware_class: Callable[[ASGIApp], ASGIApp]) -> Observation:
    """Exercise 6.1: a pure ASGI middleware adds ``x-process-time``; a client that leaves breaks nothing."""
    lifespan_ran: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lifespan_ran.append(True)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        await asyncio.sleep(0.1)
        return {"hello": "world"}

    left: list[str] = []
    app.mount("/poll", _long_poll(left))
    app.add_middleware(middleware_class)
    start_error: str | None = None
    response: httpx.Response | None = None
    heard: bool | None = None
    with capture_logs("uvicorn.error") as records:
        try:
            with serve(app) as url:
                response = httpx.get(f"{url}/hello")
                _leave_before_the_response(url, "/poll/news")
                heard = _wait_until(lambda: bool(left))
        except ServerStartError as exc:
            # Not an error of the check: the learner's middleware stopped the app from starting.
            # Nothing was sent then; the judgement fails on this first.
            start_error = repr(exc.__cause__)
    greeting: Observation | None = None  # stays None if the app did not start
    if response is not None:
        greeting = _answer(response) | {
            "process_time": response.headers.get("x-process-time"),
            "header_names": sorted(response.headers),
        }
    return {
        "start_error": start_error,
        "heard": heard,
        "lifespan_ran": bool(lifespan_ran),
        "errors": _errors(records),
        "hello": greeting,
    }


@ex01.judgement
def _ex01(seen: Observation) -> str:
    start_error = seen["start_error"]
    assert start_error is None, _(
        "the app did not start with your middleware ({error}): pass every scope that is "
        "not 'http' (such as 'lifespan') straight to the app"
    ).format(error=start_error)
    assert seen["heard"], _("the long poll behind your middleware never heard that its client left: pass `receive` on")
    assert seen["lifespan_ran"], _(
        "the app's lifespan never ran: pass every scope that is not 'http' (such as 'lifespan') straight to the app"
    )
    errors = seen["errors"]
    assert not any("No response returned" in error for error in errors), _(
        "a client that left before the response made the server log 'RuntimeError: No response returned.': "
        "that message comes from BaseHTTPMiddleware (what @app.middleware('http') uses); write a pure ASGI "
        "middleware class instead"
    )
    assert not errors, _("the server logged {errors}").format(errors=errors)
    hello = seen["hello"]
    assert hello["status"] == 200, _("expected 200 from GET /hello, got {status}: {text}").format(
        status=hello["status"], text=hello["text"]
    )
    assert hello["body"] == {"hello": "world"}, _("the body changed on the way: {text}").format(text=hello["text"])
    header = hello["process_time"]
    assert header is not None, _("no x-process-time header in the response; it had {headers}").format(
        headers=hello["header_names"]
    )
    try:
        seconds = float(header)
    except ValueError:
        raise AssertionError(
            _("x-process-time should be a number of seconds, got {header!r}").format(header=header)
        ) from None
    assert seconds >= 0.09, _(
        "x-process-time was {seconds} s, but the endpoint took 0.1 s: start the clock before calling the app "
        "and read it when the response starts"
    ).format(seconds=seconds)
    return _("Exercise 6.1 solved: x-process-time {seconds:.2f} s, and a client that left caused no error.").format(
        seconds=seconds
    )


@exercise_check("6.2")
def ex02(create_app: Callable[[async_sessionmaker[AsyncSession], list[str]], FastAPI]) -> Observation:
    """Exercise 6.2: the summary task opens its own session instead of using the request's objects."""
    summaries: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bgcourse-ch06-") as folder:
        database = Path(folder) / "shop.db"
        setup = create_engine(f"sqlite:///{database}", poolclass=NullPool)
        ShopBase.metadata.create_all(setup)
        with Session(setup) as session:
            session.add_all(
                [User(id=1, name="Ada", orders=[Order(item="book"), Order(item="pen")]), User(id=2, name="Grace")]
            )
            session.commit()
        setup.dispose()
        # NullPool: every session opens its own connection on the loop that uses it, and closes it.
        engine = create_async_engine(f"sqlite+aiosqlite:///{database}", poolclass=NullPool)
        app = create_app(async_sessionmaker(engine, expire_on_commit=False), summaries)
        # A connection each: after a task fails, uvicorn closes the connection it came on (chapter 1).
        with capture_logs("uvicorn.error") as records, serve(app) as url:
            ada, grace, nobody = (httpx.post(f"{url}/users/{user_id}/summary") for user_id in (1, 2, 99))
    return {
        "errors": _errors(records),
        "ada": _answer(ada),
        "grace": _answer(grace),
        "nobody": _answer(nobody),
        "summaries": list(summaries),
    }


@ex02.judgement
def _ex02(seen: Observation) -> str:
    errors = seen["errors"]
    assert not any("MissingGreenlet" in error or "DetachedInstanceError" in error for error in errors), _(
        "the task failed: {errors}. It used an object loaded by the request's session; pass the user's id "
        "and let the task open a session of its own"
    ).format(errors=errors)
    assert not errors, _("the server logged {errors}").format(errors=errors)
    for answer, name in ((seen["ada"], "Ada"), (seen["grace"], "Grace")):
        assert answer["status"] == 202, _("expected 202 Accepted, got {status}: {text}").format(
            status=answer["status"], text=answer["text"]
        )
        assert answer["body"] == {"queued": name}, _("expected {{'queued': {name!r}}}, got {body}").format(
            name=name, body=answer["body"]
        )
    nobody = seen["nobody"]["status"]
    assert nobody == 404, _("for a user that does not exist expected 404, got {status}").format(status=nobody)
    summaries = seen["summaries"]
    assert sorted(summaries) == ["Ada: 2 orders", "Grace: 0 orders"], _(
        "summaries was {summaries}; expected 'Ada: 2 orders' and 'Grace: 0 orders'"
    ).format(summaries=summaries)
    return _("Exercise 6.2 solved: the endpoint hands over an id; the task reads what it needs in its own session.")


def _most_at_once(log: list[str]) -> int:
    running = most = 0
    for entry in log:
        running += 1 if entry.startswith("start") else -1
        most = max(most, running)
    return most


def _together(app: ASGIApp, count: int) -> ASGIApp:
    """``app``, with each response's last message held back until ``count`` responses have reached it.

    Then all of them go out in the same turn of the event loop, and so do their background tasks,
    which start right after their response: the tasks meet at the learner's semaphore however busy
    the machine is, because no 0.2 s sleep can end before the loop's next turn. (Timing the requests
    instead fails on a machine that is slow to send four at once.) The wait has a deadline only so
    that an app that never answers one of them cannot hang the check.
    """
    ready: list[asyncio.Event] = []  # made on first use, on the loop of the server that runs it
    reached = [0]

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if not ready:
            ready.append(asyncio.Event())

        async def send_with_the_others(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                reached[0] += 1
                if reached[0] == count:
                    ready[0].set()
                with suppress(TimeoutError):
                    async with asyncio.timeout(_PATIENCE_SECONDS):
                        await ready[0].wait()
            await send(message)

        await app(scope, receive, send_with_the_others)

    return held


def _four_at_once(app: FastAPI, log: list[str]) -> Observation:
    """Serve ``app`` on a new server, send it four requests at once, let their tasks start together: what happened."""
    log.clear()
    with capture_logs("uvicorn.error") as records, serve(_together(app, 4)) as url, ThreadPoolExecutor(4) as pool:
        responses = list(
            pool.map(lambda n: httpx.post(f"{url}/emails/{n}", timeout=2 * _PATIENCE_SECONDS), (1, 2, 3, 4))
        )
    return {"errors": _errors(records), "answers": [_answer(response) for response in responses], "log": list(log)}


@exercise_check("6.3")
def ex03(create_app: Callable[[list[str]], FastAPI]) -> Observation:
    """Exercise 6.3: at most two sends at once, however many times (on however many loops) the app is served."""
    log: list[str] = []
    app = create_app(log)  # one app, served twice: as a test suite or a re-run notebook cell does
    # Their tasks queue at the semaphore: that binds it to a loop. The second serving is observed
    # whatever the first showed; the judgement reads the first one first.
    return {"runs": [_four_at_once(app, log) for _serving in ("first", "second")]}


@ex03.judgement
def _ex03(seen: Observation) -> str:
    for run, served in zip((_("first"), _("second")), seen["runs"], strict=True):
        errors = served["errors"]
        assert not any("different event loop" in error for error in errors), _(
            "the {run} server failed: {errors}. An asyncio semaphore belongs to the first loop that waits on it; "
            "create it in the app's lifespan, which runs on each server's own loop"
        ).format(run=run, errors=errors)
        assert not errors, _("the {run} server logged {errors}").format(run=run, errors=errors)
        for n, answer in zip((1, 2, 3, 4), served["answers"], strict=True):
            assert answer["status"] == 202, _("POST /emails/{n}: expected 202, got {status}").format(
                n=n, status=answer["status"]
            )
            assert answer["body"] == {"queued": n}, _("POST /emails/{n}: expected {{'queued': {n}}}").format(n=n)
        log = served["log"]
        assert sorted(log) == sorted(f"{what} {n}" for what in ("start", "end") for n in (1, 2, 3, 4)), _(
            "{run} server: expected a start and an end for each of the four e-mails, the log was {log}"
        ).format(run=run, log=log)
        most = _most_at_once(log)
        assert most <= 2, _(
            "{run} server: {most} e-mails were being sent at once ({log}); the mail server takes two"
        ).format(run=run, most=most, log=log)
        assert most == 2, _("{run} server: only one e-mail was sent at a time ({log}); two at once are allowed").format(
            run=run, log=log
        )
    return _("Exercise 6.3 solved: two at a time, and the app can be served again and again.")
