"""Exercise 5.3: stop waiting for a blocking call after 0.3 s (the thread itself runs on)."""

import asyncio
import time

from fastapi import BackgroundTasks, FastAPI, status
from fastapi.concurrency import run_in_threadpool

app = FastAPI()
calls: list[str] = []
outcomes: list[str] = []


def fetch_rates() -> None:
    time.sleep(1)  # a blocking client of a slow API
    calls.append("fetched")


async def refresh_rates() -> None:
    try:
        async with asyncio.timeout(0.3):  # cancels the await; the thread runs on
            await run_in_threadpool(fetch_rates)
    except TimeoutError:
        outcomes.append("timed out")
    else:
        outcomes.append("ok")


@app.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(refresh_rates)
    return {"status": "refreshing"}
