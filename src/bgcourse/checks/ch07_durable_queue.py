"""Checks for chapter 7's exercises: a real server, a real huey queue, a real SQLite file."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, text

from bgcourse.helpers._feedback import exercise_check
from bgcourse.helpers._processes import wait_until
from bgcourse.helpers._queue import run_consumer, temporary_queue
from bgcourse.helpers._server import serve

__all__ = ["ex01", "ex02", "ex03"]

# Deadlines that only end a wait for something that never happens: generous, since a busy machine
# is slow but gets there.
_PATIENCE_SECONDS = 60.0
# How long a worker inside send waits for the other worker to arrive there too. A right answer
# keeps the other worker out (it waits for the lock), so this is waited in full; a wrong one lets
# it in, and the wait ends as soon as it arrives.
_MEETING_SECONDS = 1.0


@exercise_check("7.1")
def ex01(make_app: Callable[[Any], FastAPI]) -> str:
    """Exercise 7.1: ``POST /receipts/{order_id}`` stores a job in the queue; ``GET /jobs/{id}`` reports it."""
    with temporary_queue("ch07-ex01") as queue:
        app = make_app(queue.huey)
        with serve(app) as url, httpx.Client(base_url=url) as client:
            response = client.post("/receipts/o-42")
            assert response.status_code == 202, f"expected 202 Accepted, got {response.status_code}: {response.text}"
            job_id = response.json().get("job_id")
            assert isinstance(job_id, str), f"expected a 'job_id' string in the body, got {response.json()}"
            waiting = queue.huey.pending_count()
            assert waiting == 1, (
                f"{waiting} jobs wait in the queue, expected 1: call the huey task (`send_receipt(order_id)`) in the "
                "endpoint; that stores the call in the queue. BackgroundTasks or a direct call keep nothing."
            )
            before = client.get(f"/jobs/{job_id}")
            assert before.status_code == 200, f"GET /jobs/{{job_id}} answered {before.status_code}: {before.text}"
            assert before.json() == {"status": "pending"}, (
                f"with no consumer running, GET /jobs/{{job_id}} should say {{'status': 'pending'}}, "
                f"not {before.json()}"
            )
            seen: list[dict[str, Any]] = []

            def reported_done() -> bool:
                seen.append(client.get(f"/jobs/{job_id}").json())
                return seen[-1].get("status") == "done"

            with run_consumer(queue.huey):
                wait_until(reported_done, timeout=_PATIENCE_SECONDS, what="GET /jobs/{job_id} saying 'done'")
            again = client.get(f"/jobs/{job_id}").json()
    expected = {"status": "done", "result": "receipt sent for o-42"}
    assert seen[-1] == expected, f"once the job ran, expected {expected}; got {seen[-1]}"
    assert again == expected, (
        f"the first read said {seen[-1]}, the next one {again}: huey.result(job_id) deletes a result when it "
        "reads it; pass preserve=True so that every GET can see it"
    )
    return "Exercise 7.1 solved: the job waited in the queue until a consumer ran it, and its result stays readable."


@exercise_check("7.2")
def ex02(deliver_once: Callable[[str, str, Callable[[str], None]], bool]) -> str:
    """Exercise 7.2: ``deliver_once`` sends each order's receipt once, whatever the re-deliveries."""
    sent: list[str] = []

    def send(order_id: str) -> None:
        sent.append(order_id)

    def broken_send(order_id: str) -> None:
        raise ConnectionError("the mail server is down")

    # Two workers deliver the same job at once. Each says when it has entered deliver_once; a send
    # waits until both have, and then gives the other worker the chance to reach send too (which a
    # right answer prevents). Events, not a sleep: a busy machine that starts the second worker
    # late cannot let a wrong answer through.
    meeting = threading.Condition()
    entered: list[str] = []
    sending: list[str] = []

    def slow_send(order_id: str) -> None:
        with meeting:
            sending.append(threading.current_thread().name)
            meeting.notify_all()
            meeting.wait_for(lambda: len(entered) == 2, timeout=_PATIENCE_SECONDS)
            meeting.wait_for(lambda: len(sending) == 2, timeout=_MEETING_SECONDS)
        sent.append(order_id)

    with tempfile.TemporaryDirectory(prefix="bgcourse-ex02-") as folder:
        db_path = str(Path(folder) / "deliveries.db")
        first = deliver_once(db_path, "o-1", send)
        assert sent == ["o-1"], f"the first delivery sent {sent}; expected ['o-1']"
        assert first is True, f"the first delivery returned {first!r}; expected True (it sent the receipt)"
        again = deliver_once(db_path, "o-1", send)
        assert sent == ["o-1"], f"the same job delivered twice sent the receipt twice: {sent}"
        assert again is False, f"a repeated delivery should return False (nothing sent), it returned {again!r}"

        try:
            deliver_once(db_path, "o-2", broken_send)
        except ConnectionError:
            pass
        else:
            raise AssertionError("when send raises, let the exception out: that is how huey knows to retry the job")
        retried = deliver_once(db_path, "o-2", send)
        assert sent == ["o-1", "o-2"], (
            f"after a failed send, the retry sent {sent[1:]} and returned {retried!r}: nothing may be recorded "
            "as sent unless send succeeded (record and send in one transaction, or record afterwards)"
        )
        assert retried is True, f"the retry sent the receipt but returned {retried!r}; expected True"

        outcomes: list[object] = []

        def worker() -> None:
            with meeting:
                entered.append(threading.current_thread().name)
                meeting.notify_all()
            try:
                outcomes.append(deliver_once(db_path, "o-3", slow_send))
            except Exception as error:  # noqa: BLE001 - reported below as the learner's error
                outcomes.append(error)

        workers = [threading.Thread(target=worker, name=f"ex02-worker-{n}") for n in (1, 2)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(2 * _PATIENCE_SECONDS)
        errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        assert not errors, f"two workers delivering the same job at once: one raised {errors[0]!r}"
        assert sent.count("o-3") == 1, (
            f"two workers got the same job at once and the receipt was sent {sent.count('o-3')} times: checking "
            "first and recording later leaves a gap; claim the order inside a transaction that holds a write lock "
            "(BEGIN IMMEDIATE) while sending, so that the second worker waits and then finds it taken"
        )
        assert sorted(outcomes, key=repr) == [False, True], f"the two workers returned {outcomes}; expected one True"
    return "Exercise 7.2 solved: one receipt per order, through re-deliveries, failures and a race."


_OUTBOX_DDL = "create table outbox (id integer primary key, order_id integer not null, enqueued_at real, done_at real)"


def _marks(engine: Engine) -> dict[int, tuple[float | None, float | None]]:
    with engine.connect() as connection:
        rows = connection.execute(text("select id, enqueued_at, done_at from outbox")).all()
    return {row.id: (row.enqueued_at, row.done_at) for row in rows}


@exercise_check("7.3")
def ex03(relay_outbox: Callable[..., int]) -> str:
    """Exercise 7.3: the relay enqueues new outbox rows and re-enqueues stale ones, and never loses one."""
    with tempfile.TemporaryDirectory(prefix="bgcourse-ex03-") as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'outbox.db'}")
        try:
            now = time.time()
            rows = [
                (1, 101, None, None),  # new
                (2, 102, now - 600, None),  # enqueued ten minutes ago, never done: its job was lost
                (3, 103, now - 1, None),  # enqueued a second ago: probably running now
                (4, 104, now - 600, now - 590),  # done
                (5, 105, None, None),  # new
            ]
            with engine.begin() as connection:
                connection.execute(text(_OUTBOX_DDL))
                insert = text("insert into outbox values (:id, :order_id, :enqueued_at, :done_at)")
                for row in rows:
                    connection.execute(
                        insert, dict(zip(("id", "order_id", "enqueued_at", "done_at"), row, strict=True))
                    )
            enqueued: list[int] = []
            count = relay_outbox(engine, enqueued.append, stale_after=60)
            assert enqueued == [101, 102, 105], (
                f"the relay enqueued orders {enqueued}; expected [101, 102, 105]: the new rows (enqueued_at is NULL) "
                "and the stale one (not done, enqueued more than stale_after seconds ago), in id order"
            )
            assert count == 3, f"the relay returned {count}; expected the number it enqueued, 3"
            marks = _marks(engine)
            for row_id in (1, 2, 5):
                when = marks[row_id][0]
                assert when is not None, f"row {row_id} was enqueued but its enqueued_at is still NULL"
                assert when >= now, f"row {row_id} was enqueued but its enqueued_at is still the old {when}"
            assert marks[3] == (now - 1, None), f"row 3 (enqueued a second ago) must not change: {marks[3]}"
            assert marks[4] == (now - 600, now - 590), f"row 4 (done) must not change: {marks[4]}"

            again: list[int] = []
            repeat = relay_outbox(engine, again.append, stale_after=60)
            assert again == [], f"a second run at once enqueued {again} again; expected nothing"
            assert repeat == 0, f"a second run enqueued nothing but returned {repeat}; expected 0"

            with engine.begin() as connection:
                connection.execute(text("insert into outbox (id, order_id) values (6, 106), (7, 107)"))

            def queue_down(order_id: int) -> None:
                raise ConnectionError("the queue is unreachable")

            try:
                relay_outbox(engine, queue_down, stale_after=60)
            except ConnectionError:
                pass
            else:
                raise AssertionError("when enqueue raises, let the exception out: the relay's next run retries")
            later: list[int] = []
            relay_outbox(engine, later.append, stale_after=60)
            assert later == [106, 107], (
                f"after the queue was down, the next run enqueued {later}; expected [106, 107]: a row marked before "
                "its enqueue succeeded is lost; enqueue first, then mark"
            )
        finally:
            engine.dispose()
    return "Exercise 7.3 solved: new and stale rows go to the queue, each marked only after its enqueue succeeded."
