"""One monotonic clock for what the client, the server and the background tasks did, and when."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    import httpx
    from matplotlib.figure import Figure

__all__ = ["LANE_HEADER", "Event", "Timeline", "TimelineMiddleware"]

P = ParamSpec("P")
R = TypeVar("R")

#: The request header that names a request's lane, so that the server side can file its events
#: under the same lane as the client side.
LANE_HEADER = "x-timeline-lane"

REQUEST_SENT = "request sent"
REQUEST_RECEIVED = "request received"
RESPONSE_SENT = "response sent"
RESPONSE_RECEIVED = "response received"
TASK_START = "task start"
TASK_END = "task end"
# Recorded just before "task end" when a task did not return: so that a picture can tell a task
# that raised, or was cancelled, from one that finished ("task end" is there in every case).
TASK_RAISED = "task raised"
TASK_CANCELLED = "task cancelled"


@dataclass(frozen=True)
class Event:
    """Something that happened: when (seconds since the timeline began), in which lane, on which thread."""

    seconds: float
    lane: str
    what: str
    thread: str


class Timeline:
    """Collects events from the client, the server and the tasks, from any thread.

    All events use ``time.perf_counter``: the server runs in the same process as the client
    (see :func:`serve`), so one clock serves both sides and their events can be compared.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._origin = time.perf_counter()

    def clear(self) -> None:
        """Forget every event and restart the clock."""
        with self._lock:
            self._events.clear()
            self._origin = time.perf_counter()

    def record(self, lane: str, what: str) -> Event:
        """Record that ``what`` happened now in ``lane``, on the current thread."""
        event = Event(time.perf_counter() - self._origin, lane, what, threading.current_thread().name)
        with self._lock:
            self._events.append(event)
        return event

    @property
    def events(self) -> list[Event]:
        """A copy of the events so far, oldest first."""
        with self._lock:
            return sorted(self._events, key=lambda event: event.seconds)

    @property
    def lanes(self) -> list[str]:
        """Lane names in the order they first appeared."""
        return list(dict.fromkeys(event.lane for event in self.events))

    def find(self, lane: str, what: str) -> Event:
        """The first event ``what`` in ``lane``; ``KeyError`` naming what was recorded if there is none."""
        for event in self.events:
            if event.lane == lane and event.what == what:
                return event
        seen = sorted({(event.lane, event.what) for event in self.events})
        raise KeyError(f"no {what!r} in lane {lane!r}; recorded so far: {seen}")

    def at(self, lane: str, what: str) -> float:
        """Seconds since the start of the timeline of the first ``what`` in ``lane``."""
        return self.find(lane, what).seconds

    def track(self, lane: str, func: Callable[P, R]) -> Callable[P, R]:
        """Wrap a task so that its start and end are recorded in ``lane``.

        An ``async def`` function stays a coroutine function and a ``def`` function stays a plain
        function, so Starlette still runs the first on the event loop and the second in a thread.
        The end is recorded even when the task raises; then "task raised" (or, for a cancelled
        coroutine, "task cancelled") is recorded just before it.
        """
        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_tracked(*args: P.args, **kwargs: P.kwargs) -> Any:
                self.record(lane, TASK_START)
                try:
                    return await async_func(*args, **kwargs)
                except BaseException as error:
                    self.record(lane, TASK_CANCELLED if isinstance(error, asyncio.CancelledError) else TASK_RAISED)
                    raise
                finally:
                    self.record(lane, TASK_END)

            return cast(Callable[P, R], async_tracked)

        @functools.wraps(func)
        def tracked(*args: P.args, **kwargs: P.kwargs) -> R:
            self.record(lane, TASK_START)
            try:
                return func(*args, **kwargs)
            except BaseException:
                self.record(lane, TASK_RAISED)
                raise
            finally:
                self.record(lane, TASK_END)

        return tracked

    def request(self, client: httpx.Client, method: str, url: str, *, lane: str, **kwargs: Any) -> httpx.Response:
        """Send a request with ``client`` and record when it left and when its whole body arrived."""
        headers = {**kwargs.pop("headers", {}), LANE_HEADER: lane}
        self.record(lane, REQUEST_SENT)
        response = client.request(method, url, headers=headers, **kwargs)
        self.record(lane, RESPONSE_RECEIVED)
        return response

    async def arequest(
        self, client: httpx.AsyncClient, method: str, url: str, *, lane: str, **kwargs: Any
    ) -> httpx.Response:
        """The ``async`` twin of :meth:`request`, for sending several requests at once."""
        headers = {**kwargs.pop("headers", {}), LANE_HEADER: lane}
        self.record(lane, REQUEST_SENT)
        response = await client.request(method, url, headers=headers, **kwargs)
        self.record(lane, RESPONSE_RECEIVED)
        return response

    def plot(self, title: str | None = None) -> Figure:
        """Draw the events as one lane per request or task (see :func:`plot_timeline`)."""
        from bgcourse.helpers._plot import plot_timeline  # matplotlib is slow to import; only plots need it

        return plot_timeline(self.events, title=title)


class TimelineMiddleware:
    """Pure ASGI middleware that records when each request arrived and when its response was sent.

    "Response sent" is recorded once the last body message has been handed to the server, which
    is the moment Starlette starts the response's background tasks.
    """

    def __init__(self, app: ASGIApp, timeline: Timeline) -> None:
        self.app = app
        self.timeline = timeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lane = _lane_of(scope)
        self.timeline.record(lane, REQUEST_RECEIVED)

        async def send_and_record(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.timeline.record(lane, RESPONSE_SENT)

        await self.app(scope, receive, send_and_record)


def _lane_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == LANE_HEADER.encode("latin-1"):
            return str(value.decode("latin-1"))
    return f"{scope['method']} {scope['path']}"
