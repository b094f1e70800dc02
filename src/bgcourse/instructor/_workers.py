"""Each job in a process of its own, so that whatever happens to one costs that job only.

A worker is spawned (not forked: the grader may have threads) for each job, runs it and sends
the result back through a pipe. A worker that dies (a learner's code can kill its kernel's
parent, which is the worker) or outlives its job's time is reported to the caller, who may run
the job again, differently; a pool would instead break for every job in it. Each worker works
in a temporary folder of its own (the kernel's too), which is removed when it ends, however it ends.

No process outlives the grader: each worker watches it, and when it is gone (even killed with
SIGKILL, which nothing can catch) the worker kills its kernels, with their process groups, and
exits. The grader itself kills what is still running when it stops early (an exception, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Generic, TypeVar

import psutil

__all__ = ["Ended", "end_descendants", "run_jobs"]

Job = TypeVar("Job")
Result = TypeVar("Result")

WATCH_SECONDS = 0.2  # how often a worker looks whether the grader is still there
EXIT_SECONDS = 30  # how long a worker that sent its result may take to exit
# A kernel's IPC sockets live in its folder, <temporary folder>/bgcourse-grade-XXXXXXXX/kernel/k-N
# (35 characters more), and a socket's path must be under 107 characters: in a worker folder with a
# longer path, the kernel's folder goes to the usual temporary folder, or to /tmp if that is long
# too (and is left there if the worker is killed before it can remove it: only if the kernel
# kills it, or someone else does).
MAX_SCRATCH_CHARS = 70


@dataclass(frozen=True)
class Ended:
    """How a job ended without a result: ``"died"`` (``detail`` says how) or ``"overran"`` its time."""

    how: str
    detail: str = ""


@dataclass
class _Running(Generic[Job]):
    job: Job
    process: BaseProcess
    results: Connection
    scratch: str
    stop_at: float


def run_jobs(
    jobs: Sequence[Job],
    work: Callable[[Job], Result],
    *,
    workers: int,
    seconds: Callable[[Job], float],
    again: Callable[[Job, Ended], Job | None],
    ended: Callable[[Job, Ended], Result],
    done: Callable[[], None],
) -> list[Result]:
    """``work(job)`` for each job, ``workers`` at a time, each in a new process; results in the jobs' order.

    A job still running after ``seconds(job)`` is stopped. A job that ended without a result is
    run once more as ``again(job, how)`` if that is a job, else its result is ``ended(job, how)``.
    ``work`` must be picklable (a module-level function): the workers are spawned.
    """
    context = multiprocessing.get_context("spawn")
    queue = deque(enumerate(jobs))
    running: dict[int, _Running[Job]] = {}
    results: dict[int, Result] = {}
    try:
        while queue or running:
            while queue and len(running) < max(1, workers):
                index, job = queue.popleft()
                running[index] = _start(context, work, job, seconds(job))
            handles: dict[object, int] = {run.results: index for index, run in running.items()}
            handles |= {run.process.sentinel: index for index, run in running.items()}
            timeout = max(0.0, min(run.stop_at for run in running.values()) - time.monotonic())
            ready = {handles[handle] for handle in wait(list(handles), timeout)}  # type: ignore[arg-type]
            ready |= {index for index, run in running.items() if time.monotonic() >= run.stop_at}
            for index in sorted(ready):
                run = running.pop(index)
                outcome = _finish(run)
                if isinstance(outcome, Ended):
                    retry = again(run.job, outcome)
                    if retry is not None:
                        queue.appendleft((index, retry))
                        continue
                    results[index] = ended(run.job, outcome)
                else:
                    results[index] = outcome  # type: ignore[assignment]  # what work(job) returned
                done()
    finally:
        for run in running.values():
            _stop(run)
    return [results[index] for index in range(len(jobs))]


def _start(
    context: multiprocessing.context.SpawnContext, work: Callable[[Job], object], job: Job, seconds: float
) -> _Running[Job]:
    scratch = tempfile.mkdtemp(prefix="")  # no prefix: the kernel's socket paths inside must stay short
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_serve, args=(work, job, writer, os.getpid(), scratch), daemon=True)
    process.start()
    writer.close()  # the worker has its own copy: once it ends, reading gives EOF
    return _Running(job, process, reader, scratch, time.monotonic() + seconds)


def _finish(run: _Running[Job]) -> object:
    """The worker's result, or how it ended without one; the worker and its processes are gone after."""
    if run.results.poll():  # a result, or the end of the pipe
        try:
            result = run.results.recv()
        except Exception:  # noqa: BLE001  # EOFError: it died before sending; or while sending
            pass
        else:
            _stop(run, gently=True)
            return result
    if run.process.is_alive() and time.monotonic() >= run.stop_at:
        _stop(run)
        return Ended("overran")
    run.process.join(EXIT_SECONDS)  # no result, and the pipe is closed: it has ended, or is ending
    code = run.process.exitcode
    _stop(run)
    return Ended("died", f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}")


def _stop(run: _Running[Job], *, gently: bool = False) -> None:
    if gently:
        run.process.join(EXIT_SECONDS)
    if run.process.is_alive():
        pid = run.process.pid
        descendants = _descendants(pid) if pid else []
        run.process.kill()  # first, so that it starts nothing more; then what it had started
        run.process.join()
        _kill(descendants)
    run.results.close()
    shutil.rmtree(run.scratch, ignore_errors=True)


def _serve(work: Callable[[Job], object], job: Job, results: Connection, grader: int, scratch: str) -> None:
    """The worker: watch the grader, do the job in ``scratch``, send the result."""
    os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(scratch, "runtime")  # the kernel's connection file
    if len(scratch) <= MAX_SCRATCH_CHARS:  # for the kernel's folder too, if its socket paths still fit
        os.environ["TMPDIR"] = tempfile.tempdir = scratch
    elif len(tempfile.gettempdir()) > MAX_SCRATCH_CHARS and os.path.isdir("/tmp"):
        # A long TMPDIR would make the kernel's socket paths too long for it to start at all.
        os.environ["TMPDIR"] = tempfile.tempdir = "/tmp"
    signal.signal(signal.SIGTERM, _end_on_signal)
    finished = threading.Event()
    watch = threading.Thread(target=_watch, args=(grader, scratch, finished), name="bgcourse-watch", daemon=True)
    watch.start()
    result = work(job)
    finished.set()
    if os.getppid() != grader:  # nobody is left to read the result, or to remove the folder
        shutil.rmtree(scratch, ignore_errors=True)
        return
    results.send(result)
    results.close()


def _watch(grader: int, scratch: str, finished: threading.Event) -> None:
    while os.getppid() == grader:  # once the grader is gone, the worker has a new parent
        time.sleep(WATCH_SECONDS)
    end_descendants()
    # With its kernel gone, the job ends soon, and removes the kernel's folder as it does.
    finished.wait(EXIT_SECONDS)
    shutil.rmtree(scratch, ignore_errors=True)
    os._exit(1)


def _end_on_signal(signum: int, frame: FrameType | None) -> None:
    end_descendants()
    os._exit(128 + signum)


def end_descendants() -> None:
    """Kill every process this one started, and the process groups they lead (a kernel has one)."""
    _kill(_descendants(os.getpid()))


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill(processes: list[psutil.Process]) -> None:
    groups: set[int] = set()
    for process in processes:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(process.pid))
    for group in groups - {os.getpgrp()}:  # never our own group: the grader and its workers share it
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
