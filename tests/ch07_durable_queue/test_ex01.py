"""Exercise 7.1's reference solution passes its check, on SQLite and on Redis, and the check can fail."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI, status

from bgcourse import QUEUE_URL_VARIABLE, RedisServer
from bgcourse.checks import ch07_durable_queue as checks
from solutions.ch07_durable_queue import ex01

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def test_solution_passes_on_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(QUEUE_URL_VARIABLE, raising=False)
    assert "solved" in checks.ex01(ex01.make_app)


def test_solution_passes_on_redis(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    monkeypatch.setenv(QUEUE_URL_VARIABLE, redis_server.url)
    assert "solved" in checks.ex01(ex01.make_app)


def test_background_tasks_instead_of_the_queue_are_caught() -> None:
    def make_app(huey: Any) -> FastAPI:
        app = FastAPI()

        def send_receipt(order_id: str) -> str:
            return f"receipt sent for {order_id}"

        @app.post("/receipts/{order_id}", status_code=status.HTTP_202_ACCEPTED)
        def queue_receipt(order_id: str, background_tasks: BackgroundTasks) -> dict[str, str]:
            background_tasks.add_task(send_receipt, order_id)
            return {"job_id": "in-memory"}

        return app

    with pytest.raises(AssertionError, match="0 jobs wait in the queue"):
        checks.ex01(make_app)


def test_a_result_read_without_preserve_is_caught() -> None:
    def make_app(huey: Any) -> FastAPI:
        app = FastAPI()

        @huey.task()  # type: ignore[untyped-decorator]
        def send_receipt(order_id: str) -> str:
            return f"receipt sent for {order_id}"

        @app.post("/receipts/{order_id}", status_code=status.HTTP_202_ACCEPTED)
        def queue_receipt(order_id: str) -> dict[str, str]:
            return {"job_id": send_receipt(order_id).id}

        @app.get("/jobs/{job_id}")
        def job_status(job_id: str) -> dict[str, Any]:
            result = huey.result(job_id)  # reads, and deletes
            return {"status": "pending"} if result is None else {"status": "done", "result": result}

        return app

    with pytest.raises(AssertionError, match="pass preserve=True"):
        checks.ex01(make_app)


def test_a_wrong_status_code_is_caught() -> None:
    def make_app(huey: Any) -> FastAPI:
        app = FastAPI()

        @huey.task()  # type: ignore[untyped-decorator]
        def send_receipt(order_id: str) -> str:
            return f"receipt sent for {order_id}"

        @app.post("/receipts/{order_id}")
        def queue_receipt(order_id: str) -> dict[str, str]:
            return {"job_id": send_receipt(order_id).id}

        return app

    with pytest.raises(AssertionError, match="expected 202 Accepted, got 200"):
        checks.ex01(make_app)


@pytest.mark.parametrize("seen", [{}, {"status": 202, "text": "", "body": [], "job_id": ["j"]}])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex01.decide(seen).solved
