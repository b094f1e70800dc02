"""Exercise 1.2's reference solution passes its check, and a wrong order is caught."""

from __future__ import annotations

import pytest
from fastapi import BackgroundTasks, FastAPI

from bgcourse.checks import ch01_core_mechanics as checks
from solutions.ch01_core_mechanics import ex02


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.app, ex02.audit_log)


def test_tasks_in_the_wrong_order_are_caught() -> None:
    audit_log: list[str] = []
    app = FastAPI()

    @app.get("/items/{item_id}")
    def read_item(item_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(audit_log.append, f"cache {item_id}")
        background_tasks.add_task(audit_log.append, f"GET /items/{item_id}")
        return {"item_id": item_id}

    with pytest.raises(AssertionError, match="the dependency's task runs first"):
        checks.ex02(app, audit_log)
