"""The chapter's durable jobs: one huey instance, chosen by ``$QUEUE_URL``, imported by every process.

The API process imports this module to *enqueue* (``process(3, 0.5)`` stores the call and returns at
once); the consumer process (``huey_consumer solutions.ch07_durable_queue.jobs.huey``) imports it to
*run* the jobs.  ``QUEUE_URL=sqlite:////path/queue.db`` keeps the queue in a SQLite file;
``QUEUE_URL=redis://host:port/0`` keeps it in Redis.  Each job appends ``start N`` and ``done N``
to the file named by ``$JOB_LOG`` in the consumer's environment; ``stamp`` is a trivial job for the
measurements, which notes when it was enqueued and when it started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from huey import RedisHuey, SqliteHuey  # type: ignore[import-untyped]

# The one switch between the two storages; the tasks below do not know which one they use.
QUEUE_URL = os.environ["QUEUE_URL"]
if QUEUE_URL.startswith(("redis://", "rediss://", "unix://")):
    huey = RedisHuey("ch07-jobs", url=QUEUE_URL)
else:
    huey = SqliteHuey("ch07-jobs", filename=QUEUE_URL.removeprefix("sqlite:///"))


def note(line: str) -> None:
    with Path(os.environ["JOB_LOG"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")


@huey.task()  # type: ignore[untyped-decorator]
def process(number: int, seconds: float) -> int:
    note(f"start {number}")
    time.sleep(seconds)  # the work
    note(f"done {number}")
    return number


@huey.task()  # type: ignore[untyped-decorator]
def stamp(number: int, enqueued_at: float) -> None:
    note(f"stamp {number} {enqueued_at} {time.time()}")
