"""Exercise 1.2: an audit dependency and the endpoint share one BackgroundTasks."""

from fastapi import BackgroundTasks, Depends, FastAPI, Request

app = FastAPI()
audit_log: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(audit_log.append, f"{request.method} {request.url.path}")


@app.get("/items/{item_id}", dependencies=[Depends(audit)])
def read_item(item_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(audit_log.append, f"cache {item_id}")
    return {"item_id": item_id}
