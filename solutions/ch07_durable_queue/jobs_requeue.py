"""The same jobs, plus a handler that puts a job back in the queue when its consumer is stopped mid-job.

Run it as ``huey_consumer solutions.ch07_durable_queue.jobs_requeue.huey``.  huey sends the
``SIGNAL_INTERRUPTED`` signal for each job still running when the consumer stops without waiting
for it (SIGTERM by default).  A SIGKILL gives the consumer no chance to send anything.
"""

from __future__ import annotations

import logging
from typing import Any

from huey.signals import SIGNAL_INTERRUPTED  # type: ignore[import-untyped]

from solutions.ch07_durable_queue.jobs import huey, process

__all__ = ["huey", "process", "requeue_interrupted"]

logger = logging.getLogger("huey")


@huey.signal(SIGNAL_INTERRUPTED)  # type: ignore[untyped-decorator]
def requeue_interrupted(signal: str, task: Any) -> None:
    logger.warning("job %s was interrupted; putting it back in the queue", task.id)
    huey.enqueue(task)  # the same job, same id and arguments: it will run again from the start
