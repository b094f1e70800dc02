"""Exercise 5.2: at most two exports at a time, with a semaphore created in the lifespan."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status

events: list[tuple[str, int]] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.exports = asyncio.Semaphore(2)  # created in the running loop, once per start
    yield


app = FastAPI(lifespan=lifespan)


async def export(number: int, exports: asyncio.Semaphore) -> None:
    async with exports:
        events.append(("start", number))
        await asyncio.sleep(0.2)
        events.append(("end", number))


@app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(export, number, request.app.state.exports)
    return {"export": number}
