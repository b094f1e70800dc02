"""Measuring a server under load: latency probes, overlapping jobs, the process's threads and memory, CPU work."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # only for type hints: a process-pool worker that imports this module needs no HTTP client
    import httpx

__all__ = [
    "LatencySample",
    "ProcessStatus",
    "count_primes",
    "cpu_time_of",
    "peak_overlap",
    "poll_json",
    "probe_latency",
    "process_status",
]

T = TypeVar("T")


@dataclass(frozen=True)
class LatencySample:
    """One probe request: when it was sent (seconds after probing began), how long its answer took, what it said.

    Probing begins at the first probe's planned moment; a busy machine may send even that one late.

    ``sent`` and ``answered`` are the same two moments as readings of ``time.perf_counter()``, the
    clock a server's code in the same process can read too: so a probe can be placed before or
    after an event the server recorded ("answered before the task ended"), which is a comparison
    that a busy machine cannot turn around, unlike a latency compared with a fixed number.
    """

    sent_at: float
    seconds: float
    status_code: int
    body: str
    sent: float = 0.0
    answered: float = 0.0


async def probe_latency(
    client: httpx.AsyncClient, path: str = "/ping", *, count: int = 8, every: float = 0.1
) -> list[LatencySample]:
    """Send ``count`` GET requests, one every ``every`` seconds *without waiting for the previous
    answer*, and return each one's latency, in the order sent.

    A probe that waited for the previous answer would see a blocked server only once; sending on
    a fixed schedule shows how long every request that arrived during a stall had to wait.  Each
    request in flight uses its own connection, as separate clients would.
    """
    origin = time.perf_counter()

    async def one(index: int) -> LatencySample:
        await asyncio.sleep(max(0.0, origin + index * every - time.perf_counter()))
        sent = time.perf_counter()
        response = await client.get(path)
        answered = time.perf_counter()
        return LatencySample(sent - origin, answered - sent, response.status_code, response.text, sent, answered)

    return list(await asyncio.gather(*(one(index) for index in range(count))))


async def poll_json(
    client: httpx.AsyncClient,
    path: str,
    until: Callable[[Any], object],
    *,
    timeout: float = 30.0,
    every: float = 0.01,
) -> Any:
    """GET ``path`` until ``until(body)`` is true for its JSON body, and return that body.

    For a state the server reaches only a moment after the client's last request (the requests
    before it may still be on their way), without guessing how long a sleep would be enough.
    ``timeout`` only ends a wait that would otherwise never end: ``TimeoutError`` then shows the
    last body, which usually tells what went wrong.
    """
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get(path)).json()
        if until(body):
            return body
        if time.monotonic() >= deadline:
            raise TimeoutError(f"GET {path} did not get there within {timeout} s; its last answer: {body}")
        await asyncio.sleep(every)


def peak_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals running at one moment (start included, end not).

    The largest overlap always begins at some interval's start, so only those moments are tried:
    quadratic, and plain enough for the few hundred jobs a notebook times.  An interval that
    ends exactly when another starts does not overlap it.
    """
    spans = list(intervals)
    return max((sum(start <= moment < end for start, end in spans) for moment, _ in spans), default=0)


@dataclass(frozen=True)
class ProcessStatus:
    """How many threads this process runs, and how much memory it holds (resident set size)."""

    threads: int
    rss_bytes: int


def process_status() -> ProcessStatus:
    """This process's thread count and resident memory, read from ``/proc/self/status``.

    The kernel's own count of threads includes those that Python did not start; where ``/proc``
    is missing (macOS, Windows) Python's own thread count and peak memory stand in.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return ProcessStatus(int(fields["Threads"]), int(fields["VmRSS"].split()[0]) * 1024)
    import resource  # pragma: no cover - not on Linux

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover
    return ProcessStatus(threading.active_count(), peak if sys.platform == "darwin" else peak * 1024)


def count_primes(limit: int) -> int:
    """Count the primes below ``limit`` by trial division: pure-Python work that holds the GIL.

    A fixed amount of work (not a fixed time), so that running it in several processes at once
    shows a real speed-up.  It lives in a module, not a notebook, because a process pool started
    with ``spawn`` must import the function it runs.
    """
    found = 0
    for candidate in range(2, limit):
        divisor = 2
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 1
        else:
            found += 1
    return found


def cpu_time_of(func: Callable[..., T], *args: object) -> tuple[T, float]:
    """Call ``func(*args)`` and return its result with the CPU time the calling thread spent in it.

    Run in a worker thread or a worker process, it tells how much CPU a job really got; summed
    over jobs and divided by the wall time, how many cores were busy with them at once.  A
    module-level function, so that a process pool can send it to its workers.
    """
    started = time.thread_time()
    result = func(*args)
    return result, time.thread_time() - started
