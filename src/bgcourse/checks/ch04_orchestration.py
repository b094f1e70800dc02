"""Checks for chapter 4's exercises, run against real servers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, Header, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation
from bgcourse.helpers._server import serve

__all__ = ["ex01", "ex02", "ex03"]

_EXPORT = "order,total\n1,9.50\n2,12.00\n"
# What wait_exponential(multiplier=0.05, max=0.5) waits before the 2nd, 3rd, 4th and 5th attempt.
_WAITS = (0.05, 0.1, 0.2, 0.4)
# How long the shop's server waits for the payment tasks when it stops: only a task that never
# stops retrying needs that long (the solution's five attempts wait 0.75 s in all).
_GRACEFUL_SECONDS = 10
# A busy machine adds its delays to every attempt, so the bound on a whole retry sequence is
# loose: many times the waits asked for. It still catches waits of the wrong order (seconds).
_SLACK_FACTOR = 5


class _Provider:
    """The payment provider of the chapter's section 4: it refuses, loses answers, honours keys."""

    def __init__(self, *, outage: dict[str, int], lost_answers: dict[str, int], declined: frozenset[str]) -> None:
        self.outage = dict(outage)
        self.lost_answers = dict(lost_answers)
        self.declined = declined
        self.requests: list[tuple[float, str, str | None]] = []  # (when, order, idempotency key)
        self.charges: list[tuple[str, int]] = []  # (order, amount)
        self._charge_for_key: dict[str, int] = {}
        self.app = FastAPI()
        self.app.post("/charges")(self.create_charge)

    async def create_charge(
        self, order_id: str, amount: int, response: Response, idempotency_key: str | None = Header(default=None)
    ) -> dict[str, int | str]:
        self.requests.append((time.perf_counter(), order_id, idempotency_key))
        if self.outage.get(order_id, 0) > 0:
            self.outage[order_id] -= 1
            response.status_code = 503
            return {"error": "service unavailable, try again"}
        if order_id in self.declined:
            response.status_code = 402
            return {"error": "card declined"}
        if idempotency_key is not None and idempotency_key in self._charge_for_key:
            return {"charge": self._charge_for_key[idempotency_key], "replayed": "yes"}
        self.charges.append((order_id, amount))
        if idempotency_key is not None:
            self._charge_for_key[idempotency_key] = len(self.charges)
        if self.lost_answers.get(order_id, 0) > 0:
            self.lost_answers[order_id] -= 1
            response.status_code = 504  # charged, but the answer is lost on its way back
            return {"error": "gateway timeout"}
        return {"charge": len(self.charges)}


# The judgement reads the provider's books from the record: requests as [when, order, key],
# charges as [order, amount] (JSON has lists, not tuples).
def _attempts(requests: list[list[Any]], order_id: str) -> list[list[Any]]:
    return [request for request in requests if request[1] == order_id]


def _charged(charges: list[list[Any]], order_id: str) -> list[Any]:
    return [amount for order, amount in charges if order == order_id]


def _described(error: BaseException | None) -> str | None:
    """What a learner's task raised, as the record keeps it: ``"Type: message"``, or ``None`` if it returned."""
    return None if error is None else f"{type(error).__name__}: {error}"


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func`` as Starlette would: await a coroutine function, run anything else in a thread."""
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    return await run_in_threadpool(func, *args)


_WAIT_FOR_THE_OTHER_SECONDS = 3.0  # exercise 4.2: how long a slow service waits for the other's request


@exercise_check("4.1")
def ex01(charge_order: Callable[[str, str, int], Any]) -> Observation:
    """Exercise 4.1: bounded, logged retries with backoff, and exactly one charge per order."""
    provider = _Provider(outage={"B-2": 2, "C-3": 1000}, lost_answers={"A-1": 1}, declined=frozenset({"D-4"}))
    orders = {"A-1": 1999, "B-2": 500, "C-3": 700, "D-4": 300}
    outcomes: dict[str, BaseException | None] = {}

    async def run(provider_url: str, order_id: str, amount: int) -> None:
        try:
            await _call(charge_order, provider_url, order_id, amount)
        except Exception as error:  # noqa: BLE001 - recorded, then judged
            outcomes[order_id] = error
        else:
            outcomes[order_id] = None

    shop = FastAPI()

    @shop.post("/orders/{order_id}/pay")
    async def pay(order_id: str, amount: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(run, request.app.state.provider_url, order_id, amount)
        return {"status": "payment pending"}

    pay_answers: list[dict[str, Any]] = []
    with (
        capture_logs("tasks") as records,
        serve(provider.app) as provider_url,
        serve(shop, graceful_seconds=_GRACEFUL_SECONDS) as url,
    ):
        shop.state.provider_url = provider_url
        for order_id, amount in orders.items():
            response = httpx.post(f"{url}/orders/{order_id}/pay", params={"amount": amount})
            pay_answers.append({"status": response.status_code, "text": response.text})

    # An order missing from "outcomes" had a task still retrying when the shop stopped (it was cancelled).
    return {
        "pay_answers": pay_answers,
        "outcomes": {order_id: _described(error) for order_id, error in outcomes.items()},
        "requests": list(provider.requests),
        "charges": list(provider.charges),
        "order_count": len(orders),
        "warnings": sum(record.levelno == logging.WARNING for record in records),
    }


@ex01.judgement
def _ex01(seen: Observation) -> str:
    for answer in seen["pay_answers"]:
        assert answer["status"] == 200, _("expected 200 OK, got {status}: {text}").format(
            status=answer["status"], text=answer["text"]
        )
    requests, charges, outcomes = seen["requests"], seen["charges"], seen["outcomes"]
    refused = _attempts(requests, "B-2")
    assert len(refused) > 1, _(
        "order B-2: the provider answered 503 and your task did not try again; retry a 5xx (and 429, and "
        "httpx's timeouts and network errors), and call response.raise_for_status() so that an error status raises"
    )
    assert len(refused) == 3, _(
        "order B-2: the provider refused twice, then would have charged; your task gave up after {attempts} "
        "attempts. Allow up to 5 attempts"
    ).format(attempts=len(refused))
    assert _charged(charges, "B-2") == [500], _("order B-2: expected one charge of 500, got {charges}").format(
        charges=_charged(charges, "B-2")
    )
    assert "C-3" in outcomes, _(
        "order C-3: the provider stayed down and your task was still retrying {seconds} s later; "
        "bound it (stop=stop_after_attempt(5)) and keep each wait at most 0.5 s"
    ).format(seconds=_GRACEFUL_SECONDS)
    down = _attempts(requests, "C-3")
    assert len(down) == 5, _("order C-3: your task made {attempts} attempts; make 5 (stop_after_attempt(5))").format(
        attempts=len(down)
    )
    assert outcomes["C-3"] is not None, _(
        "order C-3: after the last attempt your task returned as if all was well; let the error propagate "
        "(reraise=True) so that the failure is logged"
    )
    declined = _attempts(requests, "D-4")
    assert len(declined) == 1, _(
        "order D-4: the provider declined the card (402) and your task asked {attempts} times; a 4xx other "
        "than 429 means the request was understood and refused, and it will be refused again: do not retry it"
    ).format(attempts=len(declined))
    assert outcomes.get("D-4") is not None, _(
        "order D-4: the card was declined and your task returned as if all was well"
    )
    lost = _attempts(requests, "A-1")
    keys = [key for _when, _order, key in lost]
    if len(_charged(charges, "A-1")) > 1:
        hint = (
            _("send an Idempotency-Key header")
            if keys[0] is None
            else _(
                "your key changed between attempts ({keys}): make one key per order, outside the retried code"
            ).format(keys=keys)
        )
        raise AssertionError(
            _("order A-1 was charged {count} times: {hint}").format(count=len(_charged(charges, "A-1")), hint=hint)
        )
    assert _charged(charges, "A-1") == [1999], _("order A-1: expected one charge of 1999, got {charges}").format(
        charges=_charged(charges, "A-1")
    )
    for attempts in (lost, refused, down):
        order = attempts[0][1]
        for number, ((earlier, *_earlier_rest), (later, *_later_rest), wait) in enumerate(
            zip(attempts, attempts[1:], _WAITS, strict=False), start=2
        ):
            gap = later - earlier
            assert gap >= wait - 0.01, _(
                "attempt {number} of order {order} came {gap:.2f} s after the one before; it should wait at least "
                "{wait} s (wait_exponential(multiplier=0.05, max=0.5))"
            ).format(number=number, order=order, gap=gap, wait=wait)
    # An upper bound on each gap would fail whenever the machine stalls once; the whole sequence,
    # against many times its waits, only fails for waits that are far too long.
    span, asked = down[-1][0] - down[0][0], sum(_WAITS)
    assert span <= _SLACK_FACTOR * asked, _(
        "order C-3: your task's 5 attempts took {span:.1f} s, more than {factor} times the {asked:.2f} s "
        "of waiting that wait_exponential(multiplier=0.05, max=0.5) asks for: keep the waits that short"
    ).format(span=span, factor=_SLACK_FACTOR, asked=asked)
    retries = len(lost) + len(refused) + len(down) + len(declined) - seen["order_count"]
    warnings = seen["warnings"]
    assert warnings == retries, _(
        "your task retried {retries} times and logged {warnings} WARNING lines on the 'tasks' logger; "
        "log each retry: before_sleep=before_sleep_log(logger, logging.WARNING)"
    ).format(retries=retries, warnings=warnings)
    return _("Exercise 4.1 solved: {retries} retries, each logged; every order charged at most once.").format(
        retries=retries
    )


def _closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _text_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """``mapping`` with each key that is not a string as its ``repr``.

    JSON would turn a key into ``str(key)``, and an ``httpx.URL`` key would then pass for the URL
    it names; the old check compared keys as they were, so such a key must stay different.
    """
    return {key if isinstance(key, str) else repr(key): value for key, value in mapping.items()}


@exercise_check("4.2")
def ex02(notify_all: Callable[[list[str], dict[str, str]], Awaitable[dict[str, str]]]) -> Observation:
    """Exercise 4.2: concurrent notifications; failures reported and logged, never fatal."""
    if not inspect.iscoroutinefunction(notify_all):
        # Only an `async def` can be judged further: a plain function is not run at all (it would
        # block the shop's event loop), and the judgement stops at this first fact.
        return {"is_async": False}
    received: dict[str, list[Any]] = {"inventory": [], "analytics": []}
    services = FastAPI()

    @services.post("/{service}")
    async def receive(service: str, request: Request) -> Response:
        if service not in received:
            return Response("down for maintenance", status_code=503)
        # The two slow services wait for each other's request (for 3 s at most) before they answer:
        # sent at the same time, both requests come, however slow the machine; one after another,
        # the second is only sent after the first has answered, so the first waits in vain.
        arrived[service] = time.perf_counter()
        if len(arrived) == len(received):
            both_arrived.set()
        try:
            await asyncio.wait_for(both_arrived.wait(), _WAIT_FOR_THE_OTHER_SECONDS)
            met.append(service)
        except TimeoutError:
            pass
        await asyncio.sleep(0.4)
        received[service].append(await request.json())
        return Response(status_code=204)

    results: dict[Any, Any] = {}
    errors: list[BaseException] = []
    seconds: list[float] = []
    arrived: dict[str, float] = {}  # when each slow service got its request
    both_arrived = asyncio.Event()
    met: list[str] = []  # the slow services that got their request while the other one's was there

    async def run(urls: list[str]) -> None:
        started = time.perf_counter()
        try:
            results.update(await notify_all(urls, {"order": "42"}))
        except Exception as error:  # noqa: BLE001 - recorded, then judged
            errors.append(error)
        finally:
            seconds.append(time.perf_counter() - started)

    shop = FastAPI()

    @shop.post("/orders")
    async def place_order(request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(run, request.app.state.urls)
        return {"status": "accepted"}

    with capture_logs("tasks") as records, serve(services) as services_url, serve(shop) as url:
        inventory, email, analytics = (f"{services_url}/{name}" for name in ("inventory", "email", "analytics"))
        unreachable = f"http://127.0.0.1:{_closed_port()}/crm"
        shop.state.urls = [inventory, email, unreachable, analytics]
        response = httpx.post(f"{url}/orders")

    return {
        "is_async": True,
        "status": response.status_code,
        "text": response.text,
        "error": {"type": type(errors[0]).__name__, "message": str(errors[0])} if errors else None,
        "urls": {"inventory": inventory, "email": email, "unreachable": unreachable, "analytics": analytics},
        "results": _text_keys(results),
        "received": received,
        "met": met,
        "seconds": seconds[0] if seconds else None,
        "error_logs": [
            {"message": record.getMessage(), "has_exception": bool(record.exc_info)}
            for record in records
            if record.levelno >= logging.ERROR
        ],
    }


@ex02.judgement
def _ex02(seen: Observation) -> str:
    assert seen["is_async"], _("notify_all must be an `async def` function")
    assert seen["status"] == 200, _("expected 200 OK, got {status}: {text}").format(
        status=seen["status"], text=seen["text"]
    )
    error = seen["error"]
    assert error is None, _(
        "notify_all raised {error_type}: {error_message}. One failing service must stop neither the "
        "others nor the task: asyncio.gather(..., return_exceptions=True), then turn each exception into 'failed'"
    ).format(error_type=error["type"], error_message=error["message"])
    urls = seen["urls"]
    inventory, email, unreachable, analytics = (
        urls[name] for name in ("inventory", "email", "unreachable", "analytics")
    )
    expected = {inventory: "ok", email: "failed", unreachable: "failed", analytics: "ok"}
    results = seen["results"]
    assert results.get(email) != "ok", _("the e-mail service answered 503, a failure: call response.raise_for_status()")
    assert results == expected, _("notify_all returned {results}; expected {expected}").format(
        results=results, expected=expected
    )
    received = seen["received"]
    assert received == {"inventory": [{"order": "42"}], "analytics": [{"order": "42"}]}, _(
        "each working service should have received the event once, as JSON; they received {received}"
    ).format(received=received)
    seconds = seen["seconds"]
    assert sorted(seen["met"]) == ["analytics", "inventory"], _(
        "notify_all took {seconds:.2f} s: the first slow service waited {wait:.0f} s for "
        "the other one's request in vain, which came only after it had answered. Send the notifications at the "
        "same time (asyncio.gather), not one after another"
    ).format(seconds=seconds, wait=_WAIT_FOR_THE_OTHER_SECONDS)
    for failed in (email, unreachable):
        logged = [line for line in seen["error_logs"] if failed in line["message"]]
        assert logged, _("nothing was logged at ERROR on the 'tasks' logger naming {url}; log each failure").format(
            url=failed
        )
        assert logged[0]["has_exception"], _(
            "the log line for {url} has no exception attached: logger.error(..., exc_info=e)"
        ).format(url=failed)
    return _("Exercise 4.2 solved: all four notified in {seconds:.1f} s, two failures reported and logged.").format(
        seconds=seconds
    )


@exercise_check("4.3")
def ex03(app: ASGIApp, events: list[str]) -> Observation:
    """Exercise 4.3: the dependency's audit task and the release task both run, after the CSV is sent."""
    events.clear()
    when_sent: list[list[str]] = []

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_watch(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                when_sent.append(list(events))
            await send(message)

        await app(scope, receive, send_and_watch)

    with serve(watched) as url:
        response = httpx.get(f"{url}/exports/march")
    return {
        "status": response.status_code,
        "text": response.text,
        "content_type": response.headers.get("content-type"),
        "when_sent": when_sent,
        "events": list(events),
    }


@ex03.judgement
def _ex03(seen: Observation) -> str:
    text = seen["text"]
    assert seen["status"] == 200, _("expected 200, got {status}: {text}").format(status=seen["status"], text=text)
    assert text == _EXPORT, _("the body changed: expected {expected!r}, got {text!r}").format(
        expected=_EXPORT, text=text
    )
    # No content-type header at all (None) is a wrong media type too.
    content_type = seen["content_type"] or ""
    assert content_type.startswith("text/csv"), _("keep the media type text/csv")
    when_sent = seen["when_sent"]
    assert when_sent == [[]], _(
        "when the CSV was sent, events already held {events}: add the work as background tasks, "
        "so that it runs after the response"
    ).format(events=when_sent[0])
    events = seen["events"]
    expected = ["audit GET /exports/march", "release march"]
    assert "audit GET /exports/march" in events, _(
        "events is {events}: the dependency's audit task never ran. A response with its own background= "
        "replaces the injected BackgroundTasks; put every task on background_tasks, or pass it as background="
    ).format(events=events)
    assert events == expected, _("events is {events}; expected {expected}").format(events=events, expected=expected)
    return _("Exercise 4.3 solved: one list of tasks, the audit first, the release last.")
