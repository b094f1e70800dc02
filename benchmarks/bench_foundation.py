"""Print the foundation's timings: set-up on a warm environment, each notebook, serve() start/stop.

Run with `make bench`. Figures, not pass/fail: a busy machine makes them slower, not wrong.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import nbformat
from fastapi import FastAPI
from nbclient import NotebookClient
from traitlets.config import Config

from bgcourse import serve

ROOT = Path(__file__).resolve().parents[1]


def warm_setup_seconds() -> float:
    """`make test` first checks that .venv is ready; on a warm environment that is all the set-up."""
    started = time.perf_counter()
    subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), ".venv/.ready"], check=True, capture_output=True)
    return time.perf_counter() - started


def notebook_seconds(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})
        client = NotebookClient(notebook, kernel_name="python3", timeout=300, config=config)
        started = time.perf_counter()
        client.execute(cwd=str(path.parent))
        return time.perf_counter() - started


def serve_start_stop_ms(runs: int = 30) -> tuple[list[float], list[float], list[float]]:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"pong": True}

    starts, stops, round_trips = [], [], []
    for _ in range(runs):
        began = time.perf_counter()
        with serve(app) as url:
            started = time.perf_counter()
            with httpx.Client(base_url=url) as client:
                before = time.perf_counter()
                client.get("/ping")
                round_trips.append(1000 * (time.perf_counter() - before))
            stopping = time.perf_counter()
        ended = time.perf_counter()
        starts.append(1000 * (started - began))
        stops.append(1000 * (ended - stopping))
    return starts, stops, round_trips


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms   max {max(values):6.1f} ms"


def main() -> None:
    print(f"set-up of `make test` on a warm environment: {warm_setup_seconds():.2f} s")
    starts, stops, round_trips = serve_start_stop_ms()
    print(f"serve() start (30 runs, target < 100 ms): {describe(starts)}")
    print(f"serve() stop  (30 runs, target < 100 ms): {describe(stops)}")
    print(f"first GET /ping over loopback:            {describe(round_trips)}")
    for path in sorted((ROOT / "notebooks").glob("ch*.ipynb")):
        print(f"notebook {path.stem}: {notebook_seconds(path):.1f} s")


if __name__ == "__main__":
    main()
