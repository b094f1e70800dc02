"""Exercise 1.1's reference solution passes the check the notebook uses, and the check can fail."""

from __future__ import annotations

import pytest
from fastapi import BackgroundTasks, FastAPI, status

from bgcourse.checks import ch01_core_mechanics as checks
from solutions.ch01_core_mechanics import ex01


def test_solution_passes() -> None:
    assert "solved" in checks.ex01(ex01.app, ex01.receipts)


def test_a_receipt_sent_inside_the_endpoint_is_caught() -> None:
    receipts: list[str] = []
    app = FastAPI()

    @app.post("/orders", status_code=status.HTTP_202_ACCEPTED)
    def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
        receipts.append("o1")
        return {"order_id": "o1", "status": "accepted"}

    with pytest.raises(AssertionError, match="send it from a background task"):
        checks.ex01(app, receipts)


def test_a_wrong_status_is_caught() -> None:
    app = FastAPI()

    @app.post("/orders")
    def place_order() -> dict[str, str]:
        return {"order_id": "o1", "status": "accepted"}

    with pytest.raises(AssertionError, match="expected 202 Accepted, got 200"):
        checks.ex01(app, [])
