"""Checks for chapter 5's exercises, run against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from anyio.from_thread import start_blocking_portal
from starlette.types import ASGIApp

from bgcourse.helpers._feedback import exercise_check
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._server import serve

__all__ = ["ex01", "ex02", "ex03"]

T = TypeVar("T")


@exercise_check("5.1")
def ex01(app: ASGIApp, rendered: list[str]) -> str:
    """Exercise 5.1: reports render in the background while ``/ping`` keeps answering.

    The check compares events, not latencies with a fixed number: a busy machine can make any
    request slow, but it cannot make the 0.5 s render end before a response that came first.
    """
    rendered.clear()

    async def scenario(url: str) -> tuple[httpx.Response, list[str], httpx.Response, float, list[str]]:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/reports/q3")
            rendered_at_response = list(rendered)  # the render takes 0.5 s: it cannot be done yet
            sent = time.perf_counter()
            ping = await client.get("/ping")
            ping_seconds = time.perf_counter() - sent
            rendered_at_ping = list(rendered)  # a loop blocked by the render answers only after it
        return response, rendered_at_response, ping, ping_seconds, rendered_at_ping

    with serve(app) as url:  # leaving the block waits for the background task
        response, rendered_at_response, ping, ping_seconds, rendered_at_ping = _in_own_loop(scenario, url)
    assert response.status_code == 202, f"expected 202 Accepted, got {response.status_code}: {response.text}"
    assert response.json() == {"report": "q3", "status": "rendering"}, (
        f"expected the body {{'report': 'q3', 'status': 'rendering'}}, got {response.json()}"
    )
    assert not rendered_at_response, (
        "the report was already rendered when the response to POST /reports arrived: "
        "render the report in a background task, after the response"
    )
    assert ping.status_code == 200, f"GET /ping must answer 200, got {ping.status_code}: {ping.text}"
    assert not rendered_at_ping, (
        f"a GET /ping sent while the report rendered was answered only after the render had finished (it "
        f"waited {ping_seconds:.2f} s): the blocking call runs on the event loop. Make the task a def function "
        "(Starlette runs it on a worker thread) or await run_in_threadpool(...)"
    )
    assert rendered == ["q3"], f"after the task ran, rendered was {rendered}; expected ['q3']"
    return (
        f"Exercise 5.1 solved: 202 before the report was rendered, and /ping answered while it rendered "
        f"(in {ping_seconds:.3f} s)."
    )


@exercise_check("5.2")
def ex02(app: ASGIApp, events: list[tuple[str, int]]) -> str:
    """Exercise 5.2: at most two exports at once, with a semaphore that survives a restart of the app."""
    peaks: list[int] = []
    for start in ("first", "second"):
        events.clear()
        with capture_logs("uvicorn.error") as records:
            with serve(app) as url:
                statuses = _in_own_loop(_post_all, url, [f"/exports/{number}" for number in range(1, 7)])
            failures = [record.exc_info[1] for record in records if record.exc_info and record.exc_info[1]]
        assert statuses == [202] * 6, f"expected six 202 Accepted, got {statuses}"
        loop_errors = [error for error in failures if "bound to a different event loop" in str(error)]
        assert not loop_errors, (
            f"when the app was started a {start} time, a task raised {type(loop_errors[0]).__name__}: "
            f"{loop_errors[0]}. A semaphore made at import time belongs to the first loop that waits on it; "
            "create it in the lifespan and keep it on app.state"
        )
        assert not failures, f"a task raised {type(failures[0]).__name__}: {failures[0]}"
        missing = [
            event for number in range(1, 7) for event in (("start", number), ("end", number)) if event not in events
        ]
        assert not missing, f"after the {start} start, events lacks {missing}; it was {events}"
        running = peak = 0
        for kind, _ in events:
            running += 1 if kind == "start" else -1
            peak = max(peak, running)
        peaks.append(peak)
    assert max(peaks) <= 2, f"{max(peaks)} exports ran at once; the semaphore must allow two at most"
    # In either start: on a busy machine, six requests sent at once may still reach the server one by one.
    assert 2 in peaks, "the exports ran one at a time; allow two at once (asyncio.Semaphore(2))"
    return "Exercise 5.2 solved: never more than two exports at once, and the app starts twice."


@exercise_check("5.3")
def ex03(app: ASGIApp, outcomes: list[str], calls: list[str]) -> str:
    """Exercise 5.3: a task that stops waiting for a blocking call after 0.3 s.

    "As soon as the deadline passes" is checked as an order of events: ``"timed out"`` must be
    recorded before ``fetch_rates`` (1 s) has finished, not within a fixed time.
    """
    outcomes.clear()
    calls.clear()
    with serve(app) as url, httpx.Client(base_url=url) as client:
        started = time.perf_counter()
        response = client.post("/refresh")
        assert response.status_code == 202, f"expected 202 Accepted, got {response.status_code}: {response.text}"
        assert response.json() == {"status": "refreshing"}, (
            f"expected {{'status': 'refreshing'}}, got {response.json()}"
        )
        while not outcomes and time.perf_counter() - started < 10:  # only ends a wait that would never end
            time.sleep(0.01)
        recorded_after = time.perf_counter() - started
        seen, calls_when_recorded = list(outcomes), list(calls)
    # A thread cannot be stopped: wait until it has finished, so that it is not left running.
    while not calls and time.perf_counter() - started < 15:
        time.sleep(0.02)
    assert seen, "nothing was appended to outcomes within 10 s: append 'ok' or 'timed out' in the task"
    assert seen == ["timed out"], (
        f"outcomes was {seen} after {recorded_after:.2f} s; fetch_rates takes 1 s, so with a deadline of 0.3 s "
        "the task should record 'timed out'. anyio.fail_after cannot stop waiting for run_in_threadpool "
        "(AnyIO shields that wait); use asyncio.timeout, or anyio.to_thread.run_sync(..., abandon_on_cancel=True)"
    )
    assert not calls_when_recorded, (
        f"'timed out' was recorded {recorded_after:.2f} s after the request, when fetch_rates had already "
        "finished: the task waited for the thread; it should give up as soon as the 0.3 s deadline passes"
    )
    # A lower bound, safe on a busy machine: a deadline never passes early (0.25 leaves room for clock resolution).
    assert recorded_after > 0.25, f"'timed out' came after {recorded_after:.2f} s, before the 0.3 s deadline"
    assert calls == ["fetched"], f"fetch_rates should still have run to its end (calls is {calls})"
    return f"Exercise 5.3 solved: the task gave up after {recorded_after:.2f} s; the thread ran on to its end."


async def _post_all(url: str, paths: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=url) as client:
        responses = await asyncio.gather(*(client.post(path) for path in paths))
    return [response.status_code for response in responses]


def _in_own_loop(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """Run an async client on an event loop of its own: a notebook's loop is already running."""
    with start_blocking_portal() as portal:
        return portal.call(func, *args)
