"""Exercise 4.3: every task on the injected BackgroundTasks, and a response without background=."""

from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response

app = FastAPI()
events: list[str] = []
CSV = "order,total\n1,9.50\n2,12.00\n"


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


@app.get("/exports/{name}", dependencies=[Depends(audit)])
def export(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"release {name}")
    return Response(CSV, media_type="text/csv")  # no background=: FastAPI attaches background_tasks
