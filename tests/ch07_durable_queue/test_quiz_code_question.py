"""The quiz's code question rejects plausible wrong answers, with a message that says why."""

from __future__ import annotations

from typing import Any

import pytest

from bgcourse import WrongAnswer, load_quiz


def test_retries_without_a_delay_are_rejected() -> None:
    def make_task(huey: Any) -> Any:
        @huey.task(retries=3)  # type: ignore[untyped-decorator]
        def charge(order_id: str) -> str:
            return f"charged {order_id}"

        return charge

    with pytest.raises(WrongAnswer, match="expected 2"):
        load_quiz("ch07_durable_queue").check("q06", make_task)


def test_forgetting_to_return_the_task_is_rejected() -> None:
    def make_task(huey: Any) -> Any:
        return None

    with pytest.raises(WrongAnswer, match="must return the task"):
        load_quiz("ch07_durable_queue").check("q06", make_task)
