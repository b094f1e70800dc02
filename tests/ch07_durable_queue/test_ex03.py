"""Exercise 7.3's reference solution passes its check, and plausible wrong relays are caught."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from bgcourse.checks import ch07_durable_queue as checks
from solutions.ch07_durable_queue import ex03


def test_solution_passes() -> None:
    assert "solved" in checks.ex03(ex03.relay_outbox)


def relay(*, condition: str, mark_first: bool = False, mark: bool = True) -> Callable[..., int]:
    """A relay with the given row condition, marking before or after the enqueue (or never)."""

    def relay_outbox(engine: Engine, enqueue: Callable[[int], object], *, stale_after: float) -> int:
        with engine.connect() as connection:
            query = text(f"select id, order_id from outbox where {condition} order by id")
            rows = connection.execute(query, {"cutoff": time.time() - stale_after}).all()
        if mark_first:
            with engine.begin() as connection:
                for row in rows:
                    connection.execute(text("update outbox set enqueued_at = :now where id = :id"),
                                       {"now": time.time(), "id": row.id})  # fmt: skip
        for row in rows:
            enqueue(row.order_id)
            if mark and not mark_first:
                with engine.begin() as connection:
                    connection.execute(text("update outbox set enqueued_at = :now where id = :id"),
                                       {"now": time.time(), "id": row.id})  # fmt: skip
        return len(rows)

    return relay_outbox


STALE = "enqueued_at is null or (done_at is null and enqueued_at < :cutoff)"


def test_the_check_accepts_a_relay_written_in_sql() -> None:
    assert "solved" in checks.ex03(relay(condition=STALE))


def test_forgetting_the_stale_rows_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"enqueued orders \[101, 105\]"):
        checks.ex03(relay(condition="enqueued_at is null"))


def test_re_sending_done_rows_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"enqueued orders \[101, 102, 104, 105\]"):
        checks.ex03(relay(condition="enqueued_at is null or enqueued_at < :cutoff"))


def test_not_marking_the_rows_is_caught() -> None:
    with pytest.raises(AssertionError, match="enqueued_at is still NULL"):
        checks.ex03(relay(condition=STALE, mark=False))


def test_marking_before_enqueueing_is_caught() -> None:
    with pytest.raises(AssertionError, match="a row marked before its enqueue succeeded is lost"):
        checks.ex03(relay(condition=STALE, mark_first=True))


def test_a_wrong_answer_is_judged_not_solved_from_its_observation() -> None:
    seen = checks.ex03.observation(relay(condition="enqueued_at is null"))
    assert seen["enqueued"] == [101, 105]
    decided = checks.ex03.decide(seen)
    assert not decided.solved
    assert "enqueued orders [101, 105]" in decided


@pytest.mark.parametrize("seen", [{}, {"enqueued": [101, 102, 105], "count": 3, "now": "later", "marks": {}}])
def test_a_record_of_the_wrong_shape_is_not_solved(seen: dict[str, object]) -> None:
    assert not checks.ex03.decide(seen).solved
