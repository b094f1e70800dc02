"""Exercise 4.2's reference solution passes its check; fan-outs that stop, serialise or hide failures are caught."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bgcourse.checks import ch04_orchestration as checks
from solutions.ch04_orchestration import ex02

logger = logging.getLogger("tasks")
NotifyAll = Callable[[list[str], dict[str, str]], Awaitable[dict[str, str]]]


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.notify_all)


def test_a_task_group_is_caught() -> None:
    async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
        async with httpx.AsyncClient() as client, asyncio.TaskGroup() as group:
            tasks = [group.create_task(client.post(url, json=event)) for url in urls]
        return {url: "ok" if task.result().is_success else "failed" for url, task in zip(urls, tasks, strict=True)}

    with pytest.raises(AssertionError, match="notify_all raised ExceptionGroup"):
        checks.ex02(notify_all)


def test_plain_gather_is_caught() -> None:
    async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
        async with httpx.AsyncClient() as client:
            responses = await asyncio.gather(*(client.post(url, json=event) for url in urls))
        return {url: "ok" if r.is_success else "failed" for url, r in zip(urls, responses, strict=True)}

    with pytest.raises(AssertionError, match="notify_all raised ConnectError"):
        checks.ex02(notify_all)


def test_one_after_another_is_caught() -> None:
    async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
        results: dict[str, str] = {}
        async with httpx.AsyncClient() as client:
            for url in urls:
                try:
                    (await client.post(url, json=event)).raise_for_status()
                except httpx.HTTPError:
                    logger.exception("notifying %s failed", url)
                    results[url] = "failed"
                else:
                    results[url] = "ok"
        return results

    with pytest.raises(AssertionError, match="not one after another"):
        checks.ex02(notify_all)


def make_notify_all(*, check_status: bool = True, log: bool = True, attach: bool = True) -> NotifyAll:
    async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
        async with httpx.AsyncClient() as client:

            async def notify(url: str) -> None:
                response = await client.post(url, json=event)
                if check_status:
                    response.raise_for_status()

            outcomes = await asyncio.gather(*(notify(url) for url in urls), return_exceptions=True)
        results: dict[str, str] = {}
        for url, outcome in zip(urls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if log:
                    logger.error("notifying %s failed", url, exc_info=outcome if attach else None)
                results[url] = "failed"
            else:
                results[url] = "ok"
        return results

    return notify_all


def test_an_error_status_counted_as_ok_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"call response\.raise_for_status"):
        checks.ex02(make_notify_all(check_status=False))


def test_unlogged_failures_are_caught() -> None:
    with pytest.raises(AssertionError, match="nothing was logged at ERROR"):
        checks.ex02(make_notify_all(log=False))


def test_a_log_line_without_the_exception_is_caught() -> None:
    with pytest.raises(AssertionError, match="no exception attached"):
        checks.ex02(make_notify_all(attach=False))


def test_the_variant_built_for_these_tests_is_right_when_nothing_is_changed() -> None:
    assert "solved" in checks.ex02(make_notify_all())


@pytest.mark.parametrize("seen", [{}, {"is_async": True, "status": 200, "error": "boom"}], ids=["empty", "error-text"])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex02.decide(seen).solved


def test_a_plain_def_is_recorded_without_being_run() -> None:
    def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
        raise AssertionError("the check must not call a plain function")

    seen = checks.ex02.observation(notify_all)
    assert seen == {"is_async": False}
    assert "must be an `async def` function" in checks.ex02.decide(seen)
