"""Exercise 7.1: put a receipt job in a durable queue (202), and report the job's status and result."""

from typing import Any

from fastapi import FastAPI, status


def make_app(huey: Any) -> FastAPI:
    app = FastAPI()

    @huey.task()  # type: ignore[untyped-decorator]
    def send_receipt(order_id: str) -> str:
        return f"receipt sent for {order_id}"

    @app.post("/receipts/{order_id}", status_code=status.HTTP_202_ACCEPTED)
    def queue_receipt(order_id: str) -> dict[str, str]:
        return {"job_id": send_receipt(order_id).id}

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        result = huey.result(job_id, preserve=True)
        if result is None:
            return {"status": "pending"}
        return {"status": "done", "result": result}

    return app
