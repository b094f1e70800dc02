"""serve(): a real server that starts, answers, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from bgcourse import ServerStartError, serve

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def make_app(finished: list[str]) -> FastAPI:
    app = FastAPI()

    def sync_task(name: str) -> None:
        time.sleep(0.05)
        finished.append(name)

    @app.get("/hello/{name}")
    def hello(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(sync_task, name)
        return {"hello": name}

    return app


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_serves_real_http_on_loopback() -> None:
    finished: list[str] = []
    with serve(make_app(finished)) as url, httpx.Client(base_url=url) as client:
        response = client.get("/hello/ada")
        assert url.startswith("http://127.0.0.1:")
        assert response.status_code == 200, response.text
        assert response.json() == {"hello": "ada"}
    assert finished == ["ada"], "the block waits for running background tasks before it ends"


def test_port_is_released_after_the_block() -> None:
    with serve(make_app([])) as url:
        port = port_of(url)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as again:  # nothing holds the port: it can be bound at once
        again.bind(("127.0.0.1", port))


def test_two_servers_run_at_once() -> None:
    with serve(make_app([])) as first, serve(make_app([])) as second:
        assert first != second
        assert httpx.get(f"{first}/hello/a").json() == {"hello": "a"}
        assert httpx.get(f"{second}/hello/b").json() == {"hello": "b"}


def test_a_failing_startup_is_a_clear_error() -> None:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        raise OSError("database is not reachable")
        yield  # pragma: no cover

    with pytest.raises(ServerStartError, match=r"did not start.*database is not reachable") as caught:  # noqa: SIM117
        with serve(FastAPI(lifespan=lifespan)):
            pytest.fail("the block must not run when the app fails to start")  # pragma: no cover
    assert isinstance(caught.value.__cause__, OSError)


def test_a_startup_that_hangs_times_out_with_a_clear_error() -> None:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.sleep(1.0)  # longer than start_timeout below
        yield

    with pytest.raises(ServerStartError, match=r"did not start within 0\.2 s"):  # noqa: SIM117
        with serve(FastAPI(lifespan=lifespan), start_timeout=0.2):
            pytest.fail("the block must not run")  # pragma: no cover


def test_a_task_longer_than_the_grace_period_is_cancelled() -> None:
    app = FastAPI()
    outcome: list[str] = []

    async def endless() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @app.post("/endless")
    def start(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(endless)
        return {"started": True}

    with serve(app, graceful_seconds=0.3) as url:
        assert httpx.post(f"{url}/endless").status_code == 200
        stop_started = time.monotonic()
    assert time.monotonic() - stop_started < 10, "the block must end soon after the grace period"
    assert outcome == ["cancelled"]
