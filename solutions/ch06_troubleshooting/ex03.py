"""Exercise 6.3: at most two e-mails at once, with a semaphore made on the loop of the server that uses it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status


async def send_email(slots: asyncio.Semaphore, n: int, log: list[str]) -> None:
    async with slots:
        log.append(f"start {n}")
        await asyncio.sleep(0.2)  # a slow mail server
        log.append(f"end {n}")


def create_app(log: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mail_slots = asyncio.Semaphore(2)  # made on each server's own loop, every time it starts
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails/{n}", status_code=status.HTTP_202_ACCEPTED)
    async def queue_email(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(send_email, request.app.state.mail_slots, n, log)
        return {"queued": n}

    return app
