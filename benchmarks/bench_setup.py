"""Print how long set-up takes: uv (this design) beside pip (the previous one), and `make lab` on a fresh clone.

Run with `make bench`, or `python benchmarks/bench_setup.py [--suite]`. `--suite` also times a warm
`make test` and a fresh clone's `.ci/run` (set-up included), about 15 minutes together.
Figures, not pass/fail: a busy machine makes them slower, not wrong; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def timed(command: list[str], **options: object) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **options)  # type: ignore[call-overload]
    return time.perf_counter() - started


def install_seconds(installer: str) -> float:
    """A new virtual environment with every package of requirements.lock, by pip or by uv."""
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        started = time.perf_counter()
        if installer == "pip":
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "-r", str(LOCK)], check=True)
        else:
            uv = str(ROOT / ".venv" / "bin" / "uv")
            subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
            subprocess.run(
                [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(LOCK)], check=True
            )
        return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_lab_seconds() -> float:
    """A fresh clone, `make lab`, until JupyterLab answers on its port (then it is stopped)."""
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "course"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        port = free_port()
        options = f"--no-browser --port={port} --ServerApp.token=bench"
        started = time.perf_counter()
        lab = subprocess.Popen(
            ["make", "--no-print-directory", "lab", f"LAB_OPTIONS={options}"],
            cwd=clone,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = started + 300
        try:
            while lab.poll() is None and time.perf_counter() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/status?token=bench", timeout=1).status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            raise SystemExit(f"JupyterLab did not answer on port {port} (make lab's exit code: {lab.poll()})")
        finally:
            os.killpg(lab.pid, 15)
            lab.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", action="store_true", help="also time a warm `make test` and a fresh clone's .ci/run")
    options = parser.parse_args()
    print(f"installing requirements.lock into a new environment ({load()}):")
    print(f"  uv  (this design)     {install_seconds('uv'):6.1f} s")
    print(f"  pip (previous design) {install_seconds('pip'):6.1f} s")
    print(f"make lab on a fresh clone until JupyterLab answers: {make_lab_seconds():.1f} s ({load()})")
    if options.suite:
        seconds = timed(["make", "--no-print-directory", "test"], cwd=ROOT)
        print(f"warm make test: {seconds / 60:.1f} min ({load()})")
        with tempfile.TemporaryDirectory() as folder:
            clone = Path(folder) / "course"
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
            seconds = timed(["bash", ".ci/run"], cwd=clone, env={**os.environ, "CI": "true"})
            print(f"a fresh clone's .ci/run, set-up included: {seconds / 60:.1f} min ({load()})")


if __name__ == "__main__":
    main()
