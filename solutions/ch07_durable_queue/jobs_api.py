"""The API that enqueues chapter 7's durable jobs: a FastAPI app for a real uvicorn process.

``POST /jobs?count=3&seconds=0.5`` stores three calls of ``process`` in the queue and answers
202 with their ids; it does not run them: a consumer does, in another process.
``GET /jobs/{job_id}`` answers ``pending`` until a consumer has stored the job's result.
``POST /stamps/{number}`` enqueues the trivial ``stamp`` job, for the measurements.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, status

from solutions.ch07_durable_queue.jobs import huey, process, stamp

app = FastAPI()


@app.post("/jobs", status_code=status.HTTP_202_ACCEPTED)
def enqueue(count: int = 1, seconds: float = 0.5, first: int = 0) -> dict[str, list[str]]:
    # A plain `def`: the enqueue is a blocking write to SQLite or Redis, so it runs in the thread pool.
    return {"job_ids": [process(number, seconds).id for number in range(first, first + count)]}


@app.get("/jobs/{job_id}")
def job_status(job_id: str) -> dict[str, Any]:
    result = huey.result(job_id, preserve=True)  # preserve=True: reading must not delete the result
    return {"status": "pending"} if result is None else {"status": "done", "result": result}


@app.post("/stamps/{number}", status_code=status.HTTP_202_ACCEPTED)
def enqueue_stamp(number: int) -> dict[str, int]:
    stamp(number, time.time())
    return {"enqueued": 1}
