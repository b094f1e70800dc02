"""Checks for chapter 1's exercises, run against a real server."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI
from starlette.types import ASGIApp

from bgcourse._logs import capture_logs
from bgcourse._server import serve

__all__ = ["ex01", "ex02", "ex03"]


def ex01(app: ASGIApp, receipts: list[str]) -> str:
    """Exercise 1.1: ``POST /orders`` answers 202 at once; the receipt is sent afterwards."""
    receipts.clear()
    with serve(app) as url, httpx.Client(base_url=url) as client:
        response = client.post("/orders", json={"item": "book"})
        sent_before_response = list(receipts)
    assert response.status_code == 202, f"expected 202 Accepted, got {response.status_code}: {response.text}"
    body = response.json()
    assert body.get("status") == "accepted", f"expected the body to say status 'accepted', got {body}"
    order_id = body.get("order_id")
    assert isinstance(order_id, str), f"expected an 'order_id' string in the body, got {body}"
    assert sent_before_response == [], (
        "the receipt was already in `receipts` when the response arrived: send it from a background task "
        "that first waits 0.2 s (a slow mail server), not from the endpoint"
    )
    assert receipts == [order_id], f"after the task ran, receipts was {receipts}; expected [{order_id!r}]"
    return f"Exercise 1.1 solved: 202 first, receipt for order {order_id} afterwards."


def ex02(app: ASGIApp, audit_log: list[str]) -> str:
    """Exercise 1.2: a dependency's task and the endpoint's task share one BackgroundTasks, in order."""
    audit_log.clear()
    with serve(app) as url, httpx.Client(base_url=url) as client:
        response = client.get("/items/7")
    assert response.status_code == 200, f"expected 200, got {response.status_code}: {response.text}"
    assert response.json() == {"item_id": 7}, f"expected the body {{'item_id': 7}}, got {response.json()}"
    assert audit_log == ["GET /items/7", "cache 7"], (
        f"audit_log was {audit_log}; expected ['GET /items/7', 'cache 7']: the dependency's task runs first "
        "because the dependency adds it before the endpoint body runs"
    )
    return "Exercise 1.2 solved: one BackgroundTasks per request, dependency's task first."


def ex03(keep_going: Callable[[Callable[..., Any]], Callable[..., Any]]) -> str:
    """Exercise 1.3: ``keep_going`` logs a task's failure and lets the later tasks run."""
    ran: list[str] = []
    threads: dict[str, str] = {}

    def explode() -> None:
        raise ValueError("the mail server said no")

    async def record_async() -> None:
        threads["async"] = threading.current_thread().name
        ran.append("async")

    def record_sync() -> None:
        threads["sync"] = threading.current_thread().name
        ran.append("sync")

    wrapped = [keep_going(explode), keep_going(record_async), keep_going(record_sync)]
    assert not inspect.iscoroutinefunction(wrapped[0]), "keep_going turned a def function into an async one"
    assert inspect.iscoroutinefunction(wrapped[1]), "keep_going must return an async function for an async one"
    assert wrapped[1].__name__ == "record_async", "use functools.wraps so logs keep the task's own name"

    app = FastAPI()

    @app.post("/jobs")
    def jobs(background_tasks: BackgroundTasks) -> dict[str, int]:
        for task in wrapped:
            background_tasks.add_task(task)
        return {"tasks": len(wrapped)}

    with capture_logs("tasks") as records, serve(app) as url:
        response = httpx.post(f"{url}/jobs")
    assert response.status_code == 200, response.text
    assert ran == ["async", "sync"], f"after the failing task, these ran: {ran}; expected ['async', 'sync']"
    assert threads["sync"] != threads["async"], "the def task should still run in a worker thread"
    failures = [record for record in records if record.levelno >= logging.ERROR]
    assert failures, "nothing was logged at ERROR on the 'tasks' logger; use logger.exception(...)"
    assert failures[0].exc_info is not None, "log the traceback too: logger.exception(...) does that"
    assert "explode" in failures[0].getMessage(), "name the failing task in the message (func.__name__)"
    return "Exercise 1.3 solved: the failure is logged with its traceback and the later tasks run."
