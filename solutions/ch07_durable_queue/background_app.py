"""A BackgroundTasks app to run as a real uvicorn process: chapter 7 stops it with signals, and times it.

Each job appends one line to the file named by ``$TASK_LOG`` when it ends (``done 3``) or is
cancelled (``cancelled 3``), and the lifespan notes how it ended, so that the lines left in the
file tell what stopping the server did.  ``POST /stamps/{number}`` schedules a trivial job that
notes when it was scheduled and when it started, for the measurements.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, status


def note(line: str) -> None:
    with Path(os.environ["TASK_LOG"]).open("a", encoding="utf-8") as log:
        log.write(line + "\n")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
        note("lifespan shutdown ran")  # only when uvicorn sends the lifespan "shutdown" event
    finally:
        note("lifespan finally ran")  # whenever the lifespan ends, cancelled or not


app = FastAPI(lifespan=lifespan)


async def job(number: int, seconds: float) -> None:
    try:
        await asyncio.sleep(seconds)  # the work
    except asyncio.CancelledError:
        note(f"cancelled {number}")
        raise
    note(f"done {number}")


@app.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
async def schedule(
    background_tasks: BackgroundTasks, count: int = 1, seconds: float = 0.5, first: int = 0
) -> dict[str, int]:
    """Schedule ``count`` jobs of ``seconds`` each; they run one after another, after the response."""
    for number in range(first, first + count):
        background_tasks.add_task(job, number, seconds)
    return {"scheduled": count}


def stamp(number: int, scheduled_at: float) -> None:
    note(f"stamp {number} {scheduled_at} {time.time()}")


@app.post("/stamps/{number}", status_code=status.HTTP_202_ACCEPTED)
async def schedule_stamp(number: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(stamp, number, time.time())
    return {"scheduled": 1}
