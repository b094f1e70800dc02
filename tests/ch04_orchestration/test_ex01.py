"""Exercise 4.1's reference solution passes its check; unsafe, unbounded or silent retries are caught."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_fixed,
    wait_none,
)

from bgcourse.checks import ch04_orchestration as checks
from solutions.ch04_orchestration import ex01

logger = logging.getLogger("tasks")
Charge = Callable[[str, str, int], Awaitable[None]]


def make_charge(key: Callable[[str], str | None], **overrides: Any) -> Charge:
    """A retried charge like the solution's, with one part changed: the key, or a retry setting."""
    settings: dict[str, Any] = {
        "stop": stop_after_attempt(5),
        "wait": wait_exponential(multiplier=0.05, max=0.5),
        "retry": retry_if_exception(ex01.worth_retrying),
        "before_sleep": before_sleep_log(logger, logging.WARNING),
        "reraise": True,
    }
    settings.update(overrides)

    async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
        idempotency_key = key(order_id)
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        async with httpx.AsyncClient(base_url=provider_url) as client:
            response = await client.post("/charges", params={"order_id": order_id, "amount": amount}, headers=headers)
            response.raise_for_status()

    with_retries: Callable[[Charge], Charge] = retry(**settings)
    return with_retries(charge_order)


def per_order(order_id: str) -> str:
    return f"charge-{order_id}"


def test_solution_passes() -> None:
    assert "solved" in checks.ex01(ex01.charge_order)


def test_a_def_task_with_a_sync_client_passes_too() -> None:
    @retry(
        stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        retry=retry_if_exception(ex01.worth_retrying),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )
    def charge_order(provider_url: str, order_id: str, amount: int) -> None:
        response = httpx.post(
            f"{provider_url}/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"order {order_id}"},
        )
        response.raise_for_status()

    assert "solved" in checks.ex01(charge_order)


def test_no_retry_is_caught() -> None:
    async def charge_once(provider_url: str, order_id: str, amount: int) -> None:
        async with httpx.AsyncClient(base_url=provider_url) as client:
            response = await client.post("/charges", params={"order_id": order_id, "amount": amount})
            response.raise_for_status()

    with pytest.raises(AssertionError, match="did not try again"):
        checks.ex01(charge_once)


def test_retrying_every_http_error_is_caught() -> None:
    # Every error status raised by raise_for_status() is an httpx.HTTPError: a declined card too.
    with pytest.raises(
        AssertionError, match=r"order D-4: the provider declined the card \(402\) and your task asked 5"
    ):
        checks.ex01(make_charge(per_order, retry=retry_if_exception_type(httpx.HTTPError)))


def test_the_reference_predicate_sorts_httpx_errors() -> None:
    request = httpx.Request("POST", "http://provider/charges")

    def status(code: int) -> httpx.HTTPStatusError:
        return httpx.HTTPStatusError("status", request=request, response=httpx.Response(code, request=request))

    retried = [code for code in (400, 402, 404, 422, 429, 500, 502, 503, 504) if ex01.worth_retrying(status(code))]
    assert retried == [429, 500, 502, 503, 504]
    assert ex01.worth_retrying(httpx.ConnectError("refused", request=request))
    assert ex01.worth_retrying(httpx.ReadTimeout("slow", request=request))
    assert ex01.worth_retrying(httpx.RemoteProtocolError("hung up", request=request))
    assert not ex01.worth_retrying(httpx.UnsupportedProtocol("ftp://", request=request))
    assert not ex01.worth_retrying(ValueError("a bug"))


def test_a_retry_without_a_key_is_caught() -> None:
    with pytest.raises(AssertionError, match="charged 2 times: send an Idempotency-Key header"):
        checks.ex01(make_charge(lambda order_id: None))


def test_a_new_key_per_attempt_is_caught() -> None:
    with pytest.raises(AssertionError, match="your key changed between attempts"):
        checks.ex01(make_charge(lambda order_id: uuid.uuid4().hex))


def test_too_many_attempts_are_caught() -> None:
    with pytest.raises(AssertionError, match=r"made 8 attempts; make 5 \(stop_after_attempt\(5\)\)"):
        checks.ex01(make_charge(per_order, stop=stop_after_attempt(8), wait=wait_fixed(0.03)))


def test_too_few_attempts_are_caught() -> None:
    with pytest.raises(AssertionError, match="made 3 attempts"):
        checks.ex01(make_charge(per_order, stop=stop_after_attempt(3)))


def test_retrying_at_once_is_caught() -> None:
    with pytest.raises(AssertionError, match="it should wait at least"):
        checks.ex01(make_charge(per_order, wait=wait_none()))


def test_waits_that_do_not_grow_are_caught() -> None:
    # Which gap gives it away depends on the machine: a stall can stretch an early 0.05 s gap past its minimum.
    with pytest.raises(AssertionError, match=r"it should wait at least 0\.[1-5] s"):
        checks.ex01(make_charge(per_order, wait=wait_fixed(0.05)))


def test_silent_retries_are_caught() -> None:
    with pytest.raises(AssertionError, match="log each retry"):
        checks.ex01(make_charge(per_order, before_sleep=lambda state: None))


def test_swallowing_the_last_error_is_caught() -> None:
    with pytest.raises(AssertionError, match="let the error propagate"):
        checks.ex01(make_charge(per_order, reraise=False, retry_error_callback=lambda state: None))


@pytest.mark.parametrize(
    "seen",
    [{}, {"pay_answers": [], "requests": "B-2", "charges": [], "outcomes": {}}],
    ids=["empty", "requests-not-a-list"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, Any]) -> None:
    assert not checks.ex01.decide(seen).solved
