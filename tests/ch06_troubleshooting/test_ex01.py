"""Exercise 6.1's reference solution passes; a BaseHTTPMiddleware, a missing header and a broken lifespan do not."""

from __future__ import annotations

import asyncio

import pytest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bgcourse.checks import ch06_troubleshooting as checks
from solutions.ch06_troubleshooting import ex01


def test_solution_passes() -> None:
    assert "solved" in checks.ex01(ex01.ProcessTimeMiddleware)


def test_the_same_header_from_base_http_middleware_is_caught() -> None:
    class TimingWithBaseHTTPMiddleware(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            started = asyncio.get_running_loop().time()
            response = await call_next(request)
            response.headers["x-process-time"] = f"{asyncio.get_running_loop().time() - started:.6f}"
            return response

    with pytest.raises(AssertionError, match="No response returned"):
        checks.ex01(TimingWithBaseHTTPMiddleware)


def test_a_middleware_that_forgets_the_header_is_caught() -> None:
    class PassThrough:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    with pytest.raises(AssertionError, match="no x-process-time header"):
        checks.ex01(PassThrough)


def test_a_middleware_that_only_expects_http_is_caught() -> None:
    class HttpOnly(ex01.ProcessTimeMiddleware):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                raise TypeError(f"unexpected scope {scope['type']}")
            await super().__call__(scope, receive, send)

    with pytest.raises(AssertionError, match="straight to the app"):
        checks.ex01(HttpOnly)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"start_error": None, "heard": True, "lifespan_ran": True, "errors": [], "hello": None},
        {
            "start_error": None,
            "heard": True,
            "lifespan_ran": True,
            "errors": [],
            "hello": {"status": 200, "text": "", "body": {"hello": "world"}, "process_time": [1.0]},
        },
    ],
    ids=["empty", "no-response", "process-time-a-list"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex01.decide(seen).solved


def test_the_observation_of_a_wrong_solution_is_judged_not_solved() -> None:
    class PassThrough:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    seen = checks.ex01.observation(PassThrough)
    assert seen["hello"]["process_time"] is None  # plain data: what the server did, no verdict
    decided = checks.ex01.decide(seen)
    assert not decided.solved
    assert "no x-process-time header" in decided
