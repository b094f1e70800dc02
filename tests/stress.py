"""Run every notebook as `make test` does, on a machine made hard on purpose (`make stress`).

The proofs promise to hold on any learner's machine. This harness runs each notebook under nbval
(both runs in one kernel, as in `make test`) in a separate pytest process, in three modes:

- ``one-cpu``: pinned to one CPU, as on a 1-CPU Binder;
- ``cpu-hog``: beside one busy process per CPU, as on a laptop busy with other work;
- ``memory``: the notebook's processes (pytest, its kernel, and their children) capped at 2 GiB
  together, by a memory cgroup (as root; elsewhere the mode says how to get one).

It prints a line per run and a table at the end: runs and failures per mode and notebook, the
slowest run, and the peak memory of the kernel and its children (sampled every 0.1 s).
Usage: ``python tests/stress.py [--mode MODE ...] [--runs N] [--notebook SLUG ...]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MODES = ("one-cpu", "cpu-hog", "memory")
MEMORY_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class Run:
    mode: str
    notebook: str
    passed: bool
    seconds: float
    peak_kernel_bytes: int
    summary: str


def kernel_tree_rss(root: psutil.Process) -> int:
    """Resident memory of every kernel below ``root`` and of everything the kernels started.

    A kernel started by a kernel (a fresh-kernel demonstration) counts once, as its parent's child.
    """
    total = 0
    for child in root.children(recursive=True):
        try:
            if "ipykernel" in " ".join(child.cmdline()) and "ipykernel" not in " ".join(child.parent().cmdline()):
                total += child.memory_info().rss + sum(c.memory_info().rss for c in child.children(recursive=True))
        except (psutil.Error, AttributeError):
            continue  # it ended while we looked (its parent may be gone: None)
    return total


@contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A new memory cgroup (v1 or v2) below this process's own, limited to ``limit`` bytes."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = next((line.split(":", 2)[2] for line in lines if ":memory:" in line), None)
    if v1 is not None:
        folder, limit_file = (
            Path("/sys/fs/cgroup/memory", v1.lstrip("/"), f"stress-{os.getpid()}"),
            "memory.limit_in_bytes",
        )
    else:
        own = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        folder, limit_file = Path("/sys/fs/cgroup", own.lstrip("/"), f"stress-{os.getpid()}"), "memory.max"
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(limit))
    except OSError as error:
        raise SystemExit(
            f"memory mode needs a memory cgroup it may create ({folder}: {error.strerror}). Run as root, or with "
            "cgroup v2 under systemd: systemd-run --user --scope -p MemoryMax=2G python tests/stress.py --mode cpu-hog"
        ) from None
    try:
        yield folder
    finally:
        for _ in range(50):  # the processes in it have ended; the kernel removes it a moment later
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def run_notebook(mode: str, slug: str) -> Run:
    """One pytest process for one notebook, like `make test` runs it, with the mode applied."""
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "--no-header", f"notebooks/{slug}.ipynb"]
    cgroup_for_mode: AbstractContextManager[Path | None] = (
        memory_cgroup(MEMORY_LIMIT) if mode == "memory" else nullcontext()
    )
    with tempfile.TemporaryDirectory() as folder, cgroup_for_mode as cgroup:
        log = Path(folder) / "pytest.log"
        started = time.monotonic()
        with log.open("w") as out:
            process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            watched = psutil.Process(process.pid)
            try:
                if cgroup is not None:
                    (cgroup / "cgroup.procs").write_text(str(process.pid))  # before it starts its kernel
                peak = 0
                while process.poll() is None:
                    with suppress(psutil.Error):
                        peak = max(peak, kernel_tree_rss(watched))
                    time.sleep(0.1)
            finally:  # if we are stopped, or pytest left something running: its kernel starts a session of its own
                with suppress(psutil.Error):
                    for leftover in [*watched.children(recursive=True), watched]:
                        with suppress(psutil.Error):
                            leftover.kill()
                process.wait()
        seconds = time.monotonic() - started
        lines = log.read_text(errors="replace").splitlines()
        summary = next((line for line in reversed(lines) if " passed" in line or " failed" in line), "")
        if process.returncode != 0:
            failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
            kept = Path(tempfile.mkdtemp(prefix=f"stress-{mode}-{slug}-")) / "pytest.log"
            shutil.copy(log, kept)  # the whole story, for after the run
            summary = ("; ".join(failures[:3]) or "\n".join(lines[-15:])) + f"  (log: {kept})"
        return Run(mode, slug, process.returncode == 0, seconds, peak, summary.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, action="append", help="repeatable; default: all three")
    parser.add_argument("--runs", type=int, default=3, help="runs of each notebook in each mode (default 3)")
    parser.add_argument("--notebook", action="append", help="a chapter's slug, repeatable; default: every chapter")
    options = parser.parse_args()
    slugs = options.notebook or [path.stem for path in sorted((ROOT / "notebooks").glob("ch*.ipynb"))]
    cpus = sorted(os.sched_getaffinity(0))
    runs: list[Run] = []
    for mode in options.mode or MODES:
        if mode == "one-cpu":
            os.sched_setaffinity(0, {cpus[0]})  # inherited by pytest, the kernel and what it starts
        print(f"== {mode}: {options.runs} runs of {len(slugs)} notebooks", flush=True)
        with cpu_hogs(len(cpus)) if mode == "cpu-hog" else nullcontext():
            for number in range(1, options.runs + 1):
                for slug in slugs:
                    run = run_notebook(mode, slug)
                    runs.append(run)
                    verdict = "passed" if run.passed else "FAILED"
                    print(
                        f"{mode:8} run {number}  {slug:24} {verdict}  {run.seconds:6.1f} s  "
                        f"kernel peak {run.peak_kernel_bytes / 2**20:6.0f} MiB  {run.summary}",
                        flush=True,
                    )
        os.sched_setaffinity(0, set(cpus))
    print("\nmode     notebook                 runs  failed  slowest   kernel peak")
    for mode in options.mode or MODES:
        for slug in slugs:
            mine = [run for run in runs if run.mode == mode and run.notebook == slug]
            failures = sum(not run.passed for run in mine)
            slowest = max(run.seconds for run in mine)
            peak = max(run.peak_kernel_bytes for run in mine) / 2**20
            print(f"{mode:8} {slug:24} {len(mine):4}  {failures:6}  {slowest:6.1f} s  {peak:7.0f} MiB")
    failed = [run for run in runs if not run.passed]
    print(f"\n{len(runs) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the hogs and cgroups are cleaned up
    sys.exit(main())
