"""Exercise 1.1: accept an order at once (202), send its receipt after the response."""

import asyncio
import uuid

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
receipts: list[str] = []


async def send_receipt(order_id: str) -> None:
    await asyncio.sleep(0.2)  # a slow mail server
    receipts.append(order_id)


@app.post("/orders", status_code=status.HTTP_202_ACCEPTED)
async def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
    order_id = uuid.uuid4().hex
    background_tasks.add_task(send_receipt, order_id)
    return {"order_id": order_id, "status": "accepted"}
