"""Timeline: events from client, server and tasks, in the right order, and a picture of them."""

from __future__ import annotations

import asyncio
import inspect
import time

import httpx
import numpy
import pytest
from fastapi import BackgroundTasks, FastAPI

from bgcourse import Event, NotebookFigure, Timeline, TimelineMiddleware, plot_timeline, serve
from bgcourse.helpers._timeline import (
    REQUEST_RECEIVED,
    REQUEST_SENT,
    RESPONSE_RECEIVED,
    RESPONSE_SENT,
    TASK_CANCELLED,
    TASK_END,
    TASK_RAISED,
    TASK_START,
)

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def traced_app(timeline: Timeline) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TimelineMiddleware, timeline=timeline)

    async def async_task() -> None:
        await asyncio.sleep(0.05)

    def sync_task() -> None:
        time.sleep(0.05)

    @app.get("/work")
    def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(timeline.track("A: first", async_task))
        background_tasks.add_task(timeline.track("A: second", sync_task))
        return {"ok": True}

    return app


def test_events_come_in_the_order_they_happened() -> None:
    timeline = Timeline()
    with serve(traced_app(timeline)) as url, httpx.Client(base_url=url) as client:
        response = timeline.request(client, "GET", "/work", lane="A")
        assert response.status_code == 200, response.text
    order = [(event.lane, event.what) for event in timeline.events]
    # "response received" (client) may come before or after "task start" (server): a real race.
    order.remove(("A", "response received"))
    assert order == [
        ("A", "request sent"),
        ("A", "request received"),
        ("A", "response sent"),
        ("A: first", "task start"),
        ("A: first", "task end"),
        ("A: second", "task start"),
        ("A: second", "task end"),
    ]
    assert timeline.at("A", "response received") < timeline.at("A: first", "task end")
    assert timeline.find("A: first", "task start").thread.startswith("uvicorn-")
    assert timeline.find("A: second", "task start").thread == "AnyIO worker thread"
    assert timeline.lanes == ["A", "A: first", "A: second"]


def test_track_keeps_a_function_sync_or_async_and_records_failures() -> None:
    timeline = Timeline()

    async def async_work() -> int:
        return 1

    def failing_work() -> None:
        raise ValueError("boom")

    tracked_async = timeline.track("x", async_work)
    tracked_sync = timeline.track("y", failing_work)
    assert inspect.iscoroutinefunction(tracked_async)
    assert not inspect.iscoroutinefunction(tracked_sync)
    assert tracked_sync.__name__ == "failing_work"
    assert asyncio.run(tracked_async()) == 1
    with pytest.raises(ValueError, match="boom"):
        tracked_sync()
    assert [(event.lane, event.what) for event in timeline.events] == [
        ("x", "task start"),
        ("x", "task end"),
        ("y", "task start"),
        ("y", "task raised"),
        ("y", "task end"),
    ]


def test_track_records_a_cancelled_coroutine_as_cancelled() -> None:
    timeline = Timeline()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def cancel_it() -> None:
        task = asyncio.create_task(timeline.track("z", forever)())
        await asyncio.sleep(0)  # let it start
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert [event.what for event in timeline.events] == ["task start", "task cancelled", "task end"]


def test_requests_without_a_lane_header_get_method_and_path() -> None:
    timeline = Timeline()
    with serve(traced_app(timeline)) as url:
        httpx.get(f"{url}/work")
    assert timeline.find("GET /work", "request received").thread.startswith("uvicorn-")


def test_find_names_what_was_recorded_when_it_misses() -> None:
    timeline = Timeline()
    timeline.record("A", "request sent")
    with pytest.raises(KeyError, match=r"no 'task start' in lane 'A'; recorded so far: \[\('A', 'request sent'\)\]"):
        timeline.find("A", "task start")


def test_clear_forgets_events() -> None:
    timeline = Timeline()
    timeline.record("A", "request sent")
    timeline.clear()
    assert timeline.events == []


def test_plot_draws_one_lane_per_request_and_task() -> None:
    timeline = Timeline()
    with serve(traced_app(timeline)) as url, httpx.Client(base_url=url) as client:
        timeline.request(client, "GET", "/work", lane="A")
    figure = timeline.plot("one request, two tasks")
    assert isinstance(figure, NotebookFigure)
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["A: second", "A: first", "A"]
    assert axes.get_title() == "one request, two tasks"
    assert figure._repr_png_().startswith(b"\x89PNG")


def test_plot_of_nothing_says_so() -> None:
    assert Timeline().plot().axes[0].get_title() == "nothing recorded yet"


def test_every_mark_is_in_the_legend_and_the_servers_two_moments_never_coincide() -> None:
    # A request whose server side took 0.5 ms: at one point on a 1 s axis.
    events = [
        Event(0.0, "POST /x", REQUEST_SENT, "MainThread"),
        Event(0.0010, "POST /x", REQUEST_RECEIVED, "uvicorn"),
        Event(0.0015, "POST /x", RESPONSE_SENT, "uvicorn"),
        Event(0.0030, "POST /x", RESPONSE_RECEIVED, "MainThread"),
        Event(0.0020, "task ok", TASK_START, "uvicorn"),
        Event(1.0, "task ok", TASK_END, "uvicorn"),
        Event(0.0020, "task failed", TASK_START, "AnyIO worker thread"),
        Event(0.1, "task failed", TASK_RAISED, "AnyIO worker thread"),
        Event(0.1, "task failed", TASK_END, "AnyIO worker thread"),
        Event(0.0020, "task cancelled", TASK_START, "uvicorn"),
        Event(0.1, "task cancelled", TASK_CANCELLED, "uvicorn"),
        Event(0.1, "task cancelled", TASK_END, "uvicorn"),
        Event(0.5, "task running", TASK_START, "uvicorn"),
    ]
    figure = plot_timeline(events)
    axes = figure.axes[0]
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert sorted(labels) == sorted(
        [
            "client waits for response",
            "server received request",
            "server sent response",
            "client has the response",
            "background task runs",
            "task that raised",
            "task that was cancelled",
            "task still running when drawn",
        ]
    )
    labelled = [bars for bars in axes.containers if not str(bars.get_label()).startswith("_")]
    colours = {str(bars.patches[0].get_facecolor()) for bars in labelled}  # type: ignore[attr-defined]
    assert len(labelled) == len(colours) == 5, "the request and each kind of task bar have a colour of their own"
    marks = {str(line.get_label()): line for line in axes.get_lines() if not str(line.get_label()).startswith("_")}
    received, sent = marks["server received request"], marks["server sent response"]
    assert received.get_marker() != sent.get_marker()
    assert received.get_color() != sent.get_color()
    heights = [float(numpy.asarray(mark.get_ydata(), dtype=float)[0]) for mark in (received, sent)]
    assert heights[0] - heights[1] >= 0.5, "received on the bar's top edge, sent on its bottom edge"
