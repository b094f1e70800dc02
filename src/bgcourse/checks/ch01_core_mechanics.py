"""Checks for chapter 1's exercises, run against a real server."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation, json_or_none
from bgcourse.helpers._server import serve

__all__ = ["ex01", "ex02", "ex03"]

# Exercise 1.1's task waits this long before it appends the receipt.
_RECEIPT_DELAY_SECONDS = 0.2


def _watch_receipts(app: ASGIApp, receipts: list[str]) -> tuple[ASGIApp, list[tuple[float, int]]]:
    """Wrap ``app``: note when each response had been sent (before its tasks start) and how many receipts there were."""
    at_response: list[tuple[float, int]] = []

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_look(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                at_response.append((time.perf_counter(), len(receipts)))

        await app(scope, receive, send_and_look if scope["type"] == "http" else send)

    return watched, at_response


@exercise_check("1.1")
def ex01(app: ASGIApp, receipts: list[str]) -> Observation:
    """Exercise 1.1: ``POST /orders`` answers 202 at once; the receipt is sent afterwards."""
    receipts.clear()
    watched, at_response = _watch_receipts(app, receipts)
    with serve(watched) as url, httpx.Client(base_url=url) as client:
        response = client.post("/orders", json={"item": "book"})
        seen_after_response = list(receipts)
        seen_at = time.perf_counter()
    return {
        "status": response.status_code,
        "text": response.text,
        "body": json_or_none(response),
        "receipts_at_response": at_response[0][1] if at_response else None,
        "seen_after_response": seen_after_response,
        "looked_after": seen_at - at_response[0][0] if at_response else None,
        "receipts": list(receipts),
    }


@ex01.judgement
def _ex01(seen: Observation) -> str:
    assert seen["status"] == 202, _("expected 202 Accepted, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    body = seen["body"]
    assert isinstance(body, dict), _("expected the body to say status 'accepted', got {body}").format(body=body)
    assert body.get("status") == "accepted", _("expected the body to say status 'accepted', got {body}").format(
        body=body
    )
    order_id = body.get("order_id")
    assert isinstance(order_id, str), _("expected an 'order_id' string in the body, got {body}").format(body=body)
    assert seen["receipts_at_response"] == 0, _(
        "the receipt was already in `receipts` when the response was sent: send it from a background task "
        "that first waits 0.2 s (a slow mail server), not from the endpoint"
    )
    # The server notes the response before the task starts, so a receipt that the check saw less than
    # 0.2 s after that moment came from a task that did not wait.  (A check that looked later, on a
    # busy machine, cannot tell, and lets it pass.)
    looked_after = float(seen["looked_after"])
    assert not (seen["seen_after_response"] and looked_after < _RECEIPT_DELAY_SECONDS), _(
        "the receipt was already in `receipts` {seconds:.2f} s after the response was sent: the task must "
        "first wait 0.2 s (a slow mail server), then append it"
    ).format(seconds=looked_after)
    receipts = seen["receipts"]
    assert receipts == [order_id], _("after the task ran, receipts was {receipts}; expected [{order_id!r}]").format(
        receipts=receipts, order_id=order_id
    )
    return _("Exercise 1.1 solved: 202 first, receipt for order {order_id} afterwards.").format(order_id=order_id)


@exercise_check("1.2")
def ex02(app: ASGIApp, audit_log: list[str]) -> Observation:
    """Exercise 1.2: a dependency's task and the endpoint's task share one BackgroundTasks, in order."""
    audit_log.clear()
    with serve(app) as url, httpx.Client(base_url=url) as client:
        response = client.get("/items/7")
    return {
        "status": response.status_code,
        "text": response.text,
        "body": json_or_none(response),
        "audit_log": list(audit_log),
    }


@ex02.judgement
def _ex02(seen: Observation) -> str:
    assert seen["status"] == 200, _("expected 200, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    assert seen["body"] == {"item_id": 7}, _("expected the body {{'item_id': 7}}, got {body}").format(body=seen["body"])
    assert seen["audit_log"] == ["GET /items/7", "cache 7"], _(
        "audit_log was {audit_log}; expected ['GET /items/7', 'cache 7']: the dependency's task runs first "
        "because the dependency adds it before the endpoint body runs"
    ).format(audit_log=seen["audit_log"])
    return _("Exercise 1.2 solved: one BackgroundTasks per request, dependency's task first.")


@exercise_check("1.3")
def ex03(keep_going: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Observation:
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
    seen: Observation = {
        "sync_became_async": inspect.iscoroutinefunction(wrapped[0]),
        "async_stayed_async": inspect.iscoroutinefunction(wrapped[1]),
        "async_name": getattr(wrapped[1], "__name__", None),
    }
    app = FastAPI()

    @app.post("/jobs")
    def jobs(background_tasks: BackgroundTasks) -> dict[str, int]:
        for task in wrapped:
            background_tasks.add_task(task)
        return {"tasks": len(wrapped)}

    with capture_logs("tasks") as records, serve(app) as url:
        response = httpx.post(f"{url}/jobs")
    failures = [record for record in records if record.levelno >= logging.ERROR]
    return seen | {
        "status": response.status_code,
        "text": response.text,
        "ran": ran,
        "threads": threads,
        "failures": [{"message": f.getMessage(), "has_traceback": f.exc_info is not None} for f in failures],
    }


@ex03.judgement
def _ex03(seen: Observation) -> str:
    assert not seen["sync_became_async"], _("keep_going turned a def function into an async one")
    assert seen["async_stayed_async"], _("keep_going must return an async function for an async one")
    assert seen["async_name"] == "record_async", _("use functools.wraps so logs keep the task's own name")
    assert seen["status"] == 200, _("expected 200 OK, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    ran = seen["ran"]
    assert ran == ["async", "sync"], _("after the failing task, these ran: {ran}; expected ['async', 'sync']").format(
        ran=ran
    )
    threads = seen["threads"]
    assert threads["sync"] != threads["async"], _("the def task should still run in a worker thread")
    failures = seen["failures"]
    assert failures, _("nothing was logged at ERROR on the 'tasks' logger; use logger.exception(...)")
    assert failures[0]["has_traceback"], _("log the traceback too: logger.exception(...) does that")
    assert "explode" in failures[0]["message"], _("name the failing task in the message (func.__name__)")
    return _("Exercise 1.3 solved: the failure is logged with its traceback and the later tasks run.")
