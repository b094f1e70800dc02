"""Exercise 7.2's reference solution passes its check, and three plausible wrong answers are caught."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from bgcourse.checks import ch07_durable_queue as checks
from solutions.ch07_durable_queue import ex02

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.deliver_once)


def test_no_record_at_all_is_caught() -> None:
    def deliver_always(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
        send(order_id)
        return True

    with pytest.raises(AssertionError, match="sent the receipt twice"):
        checks.ex02(deliver_always)


def test_recording_before_sending_is_caught() -> None:
    """Claim first, commit, then send: a failed send leaves a claim, and the retry never sends."""

    def claim_then_send(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
        with sqlite3.connect(db_path, timeout=30) as connection:
            connection.execute("create table if not exists sent (order_id text primary key)")
            claimed = connection.execute("insert or ignore into sent values (?)", (order_id,)).rowcount == 1
        connection.close()
        if claimed:
            send(order_id)
        return claimed

    with pytest.raises(AssertionError, match="after a failed send, the retry sent"):
        checks.ex02(claim_then_send)


def test_check_then_send_then_record_is_caught() -> None:
    """Right for one worker at a time; two workers with the same job both see 'not sent yet'."""

    def check_then_send(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
        connection = sqlite3.connect(db_path, timeout=30)
        try:
            connection.execute("create table if not exists sent (order_id text primary key)")
            if connection.execute("select 1 from sent where order_id = ?", (order_id,)).fetchone():
                return False
            send(order_id)
            with connection:
                connection.execute("insert or ignore into sent values (?)", (order_id,))
            return True
        finally:
            connection.close()

    with pytest.raises(AssertionError, match="sent 2 times"):
        checks.ex02(check_then_send)


@pytest.mark.parametrize("seen", [{}, {"sent_after_first": ["o-1"], "first": "True"}])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex02.decide(seen).solved
