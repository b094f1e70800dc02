"""Exercise 5.1: render a report on a worker thread, so that /ping keeps answering."""

import time

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
rendered: list[str] = []


def render_report(name: str) -> None:
    time.sleep(0.5)  # a blocking PDF library
    rendered.append(name)


@app.post("/reports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def create_report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(render_report, name)  # a def function: it runs on a worker thread
    return {"report": name, "status": "rendering"}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}
