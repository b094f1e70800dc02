"""Checks for chapter 5's exercises, run against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from anyio.from_thread import start_blocking_portal
from starlette.types import ASGIApp

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation, json_or_none
from bgcourse.helpers._server import serve

__all__ = ["ex01", "ex02", "ex03"]

T = TypeVar("T")


@exercise_check("5.1")
def ex01(app: ASGIApp, rendered: list[str]) -> Observation:
    """Exercise 5.1: reports render in the background while ``/ping`` keeps answering.

    The check compares events, not latencies with a fixed number: a busy machine can make any
    request slow, but it cannot make the 0.5 s render end before a response that came first.
    """
    rendered.clear()

    async def scenario(url: str) -> Observation:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/reports/q3")
            rendered_at_response = list(rendered)  # the render takes 0.5 s: it cannot be done yet
            sent = time.perf_counter()
            ping = await client.get("/ping")
            ping_seconds = time.perf_counter() - sent
            rendered_at_ping = list(rendered)  # a loop blocked by the render answers only after it
        return {
            "status": response.status_code,
            "text": response.text,
            "body": json_or_none(response),
            "rendered_at_response": rendered_at_response,
            "ping_status": ping.status_code,
            "ping_text": ping.text,
            "ping_seconds": ping_seconds,
            "rendered_at_ping": rendered_at_ping,
        }

    with serve(app) as url:  # leaving the block waits for the background task
        seen = _in_own_loop(scenario, url)
    return seen | {"rendered": list(rendered)}


@ex01.judgement
def _ex01(seen: Observation) -> str:
    assert seen["status"] == 202, _("expected 202 Accepted, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    assert seen["body"] == {"report": "q3", "status": "rendering"}, _(
        "expected the body {{'report': 'q3', 'status': 'rendering'}}, got {body}"
    ).format(body=seen["body"])
    assert seen["rendered_at_response"] == [], _(
        "the report was already rendered when the response to POST /reports arrived: "
        "render the report in a background task, after the response"
    )
    assert seen["ping_status"] == 200, _("GET /ping must answer 200, got {status}: {text}").format(
        status=seen["ping_status"], text=seen["ping_text"]
    )
    ping_seconds = float(seen["ping_seconds"])
    assert seen["rendered_at_ping"] == [], _(
        "a GET /ping sent while the report rendered was answered only after the render had finished (it "
        "waited {seconds:.2f} s): the blocking call runs on the event loop. Make the task a def function "
        "(Starlette runs it on a worker thread) or await run_in_threadpool(...)"
    ).format(seconds=ping_seconds)
    rendered = seen["rendered"]
    assert rendered == ["q3"], _("after the task ran, rendered was {rendered}; expected ['q3']").format(
        rendered=rendered
    )
    return _(
        "Exercise 5.1 solved: 202 before the report was rendered, and /ping answered while it rendered "
        "(in {seconds:.3f} s)."
    ).format(seconds=ping_seconds)


# Exercise 5.2 starts the app twice: a semaphore made at import time fails only the second time.
_STARTS = ("first", "second")


@exercise_check("5.2")
def ex02(app: ASGIApp, events: list[tuple[str, int]]) -> Observation:
    """Exercise 5.2: at most two exports at once, with a semaphore that survives a restart of the app."""
    starts: Observation = {}
    for start in _STARTS:  # the second start is made even if the first went wrong: it does not depend on it
        events.clear()
        with capture_logs("uvicorn.error") as records:
            with serve(app) as url:
                statuses = _in_own_loop(_post_all, url, [f"/exports/{number}" for number in range(1, 7)])
            failures = [record.exc_info[1] for record in records if record.exc_info and record.exc_info[1]]
        starts[start] = {
            "statuses": statuses,
            "failures": [{"type": type(error).__name__, "message": str(error)} for error in failures],
            "events": list(events),
        }
    return {"starts": starts}


def _peak(events: list[tuple[object, ...]]) -> int:
    """How many exports ran at once at most, from the order of their start and end events."""
    running = peak = 0
    for kind, _number in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    return peak


@ex02.judgement
def _ex02(seen: Observation) -> str:
    peaks: list[int] = []
    for start in _STARTS:
        ordinal = _("first") if start == "first" else _("second")  # the start, in the learner's language
        record = seen["starts"][start]
        statuses = record["statuses"]
        assert statuses == [202] * 6, _("expected six 202 Accepted, got {statuses}").format(statuses=statuses)
        failures = record["failures"]
        loop_errors = [error for error in failures if "bound to a different event loop" in error["message"]]
        assert not loop_errors, _(
            "when the app was started a {ordinal} time, a task raised {error_type}: "
            "{error_message}. A semaphore made at import time belongs to the first loop that waits on "
            "it; create it in the lifespan and keep it on app.state"
        ).format(ordinal=ordinal, error_type=loop_errors[0]["type"], error_message=loop_errors[0]["message"])
        assert not failures, _("a task raised {error_type}: {error_message}").format(
            error_type=failures[0]["type"], error_message=failures[0]["message"]
        )
        # Back to tuples: JSON made them lists, and the learner's list (and the message) holds tuples.
        events = [tuple(event) for event in record["events"]]
        missing = [
            event for number in range(1, 7) for event in (("start", number), ("end", number)) if event not in events
        ]
        assert not missing, _("after the {ordinal} start, events lacks {missing}; it was {events}").format(
            ordinal=ordinal, missing=missing, events=events
        )
        peaks.append(_peak(events))
    assert max(peaks) <= 2, _("{peak} exports ran at once; the semaphore must allow two at most").format(
        peak=max(peaks)
    )
    # In either start: on a busy machine, six requests sent at once may still reach the server one by one.
    assert 2 in peaks, _("the exports ran one at a time; allow two at once (asyncio.Semaphore(2))")
    return _("Exercise 5.2 solved: never more than two exports at once, and the app starts twice.")


@exercise_check("5.3")
def ex03(app: ASGIApp, outcomes: list[str], calls: list[str]) -> Observation:
    """Exercise 5.3: a task that stops waiting for a blocking call after 0.3 s.

    "As soon as the deadline passes" is checked as an order of events: ``"timed out"`` must be
    recorded before ``fetch_rates`` (1 s) has finished, not within a fixed time.
    """
    outcomes.clear()
    calls.clear()
    outcomes_seen: list[str] | None = None
    calls_when_recorded: list[str] | None = None
    recorded_after: float | None = None
    with serve(app) as url, httpx.Client(base_url=url) as client:
        started = time.perf_counter()
        response = client.post("/refresh")
        # Only an accepted request scheduled the task whose outcome is waited for; otherwise the
        # judgement fails on the status, and waiting up to 15 s for nothing would only delay it.
        accepted = response.status_code == 202
        if accepted:
            while not outcomes and time.perf_counter() - started < 10:  # only ends a wait that would never end
                time.sleep(0.01)
            recorded_after = time.perf_counter() - started
            outcomes_seen, calls_when_recorded = list(outcomes), list(calls)
    # A thread cannot be stopped: wait until it has finished, so that it is not left running.
    while accepted and not calls and time.perf_counter() - started < 15:
        time.sleep(0.02)
    return {
        "status": response.status_code,
        "text": response.text,
        "body": json_or_none(response),
        "outcomes": outcomes_seen,
        "calls_when_recorded": calls_when_recorded,
        "recorded_after": recorded_after,
        "calls": list(calls),
    }


@ex03.judgement
def _ex03(seen: Observation) -> str:
    assert seen["status"] == 202, _("expected 202 Accepted, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    assert seen["body"] == {"status": "refreshing"}, _("expected {{'status': 'refreshing'}}, got {body}").format(
        body=seen["body"]
    )
    outcomes = seen["outcomes"]
    assert outcomes, _("nothing was appended to outcomes within 10 s: append 'ok' or 'timed out' in the task")
    recorded_after = float(seen["recorded_after"])
    assert outcomes == ["timed out"], _(
        "outcomes was {outcomes} after {seconds:.2f} s; fetch_rates takes 1 s, so with a deadline of 0.3 s "
        "the task should record 'timed out'. anyio.fail_after cannot stop waiting for run_in_threadpool "
        "(AnyIO shields that wait); use asyncio.timeout, or anyio.to_thread.run_sync(..., abandon_on_cancel=True)"
    ).format(outcomes=outcomes, seconds=recorded_after)
    assert seen["calls_when_recorded"] == [], _(
        "'timed out' was recorded {seconds:.2f} s after the request, when fetch_rates had already "
        "finished: the task waited for the thread; it should give up as soon as the 0.3 s deadline passes"
    ).format(seconds=recorded_after)
    # A lower bound, safe on a busy machine: a deadline never passes early (0.25 leaves room for clock resolution).
    assert recorded_after > 0.25, _("'timed out' came after {seconds:.2f} s, before the 0.3 s deadline").format(
        seconds=recorded_after
    )
    calls = seen["calls"]
    assert calls == ["fetched"], _("fetch_rates should still have run to its end (calls is {calls})").format(
        calls=calls
    )
    return _("Exercise 5.3 solved: the task gave up after {seconds:.2f} s; the thread ran on to its end.").format(
        seconds=recorded_after
    )


async def _post_all(url: str, paths: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=url) as client:
        responses = await asyncio.gather(*(client.post(path) for path in paths))
    return [response.status_code for response in responses]


def _in_own_loop(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run an async client on an event loop of its own: a notebook's loop is already running."""
    with start_blocking_portal() as portal:
        return portal.call(func, *args)
