"""The measuring helpers: probes and polls against a real server, overlaps, threads and memory, CPU work."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi import FastAPI

from bgcourse import (
    LatencySample,
    count_primes,
    cpu_time_of,
    peak_overlap,
    poll_json,
    probe_latency,
    process_status,
    serve,
)

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def make_app(stalling: threading.Event, stall_ended: list[float] | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    @app.post("/stall")
    async def stall() -> dict[str, bool]:
        stalling.set()
        time.sleep(0.6)  # blocks the server's event loop on purpose
        if stall_ended is not None:
            stall_ended.append(time.perf_counter())
        return {"stalled": True}

    return app


async def probe(url: str, stalling: threading.Event | None = None) -> list[LatencySample]:
    async with httpx.AsyncClient(base_url=url) as client:
        stall = asyncio.create_task(client.post("/stall")) if stalling else None
        while stalling is not None and not stalling.is_set():  # until the server's loop is stuck
            await asyncio.sleep(0.005)
        samples = await probe_latency(client, "/ping", count=4, every=0.05)
        if stall is not None:
            await stall
    return samples


def test_probes_are_sent_on_schedule_and_report_each_answer() -> None:
    with serve(make_app(threading.Event())) as url:
        samples = asyncio.run(probe(url))
    assert [sample.status_code for sample in samples] == [200] * 4
    assert all(sample.body == '{"pong":true}' for sample in samples), samples
    # Lower bounds only: a busy machine may send a probe late, never early (0.01 s for the loop's clock).
    assert all(sample.sent_at >= index * 0.05 - 0.01 for index, sample in enumerate(samples)), samples
    assert samples[0].sent_at >= 0
    for sample in samples:  # the two clocks agree: perf_counter readings and seconds after probing began
        assert sample.answered - sample.sent == pytest.approx(sample.seconds)
        # Not `sent_at` alone: a busy machine may send even the first probe late, so its sent_at
        # need not be 0; but the gaps between probes are the same on both clocks.
        assert sample.sent - samples[0].sent == pytest.approx(sample.sent_at - samples[0].sent_at, abs=1e-6)
        assert sample.answered > sample.sent


def test_probes_sent_during_a_stall_all_wait_for_its_end() -> None:
    stalling = threading.Event()
    stall_ended: list[float] = []
    with serve(make_app(stalling, stall_ended)) as url:
        samples = asyncio.run(probe(url, stalling))
    # Orderings, not latencies: a busy machine can delay any answer, but none can come before the stall ends.
    during = [sample for sample in samples if sample.sent < stall_ended[0]]
    assert during, f"a probe was sent while the loop was stuck: {samples}"
    assert all(sample.answered > stall_ended[0] for sample in during), f"each waited for the end: {samples}"


def counter_app() -> FastAPI:
    app = FastAPI()
    asked = [0]

    @app.get("/count")
    async def count() -> dict[str, int]:  # each answer counts itself: a state that changes as we poll
        asked[0] += 1
        return {"asked": asked[0]}

    return app


def test_poll_json_returns_the_first_body_that_satisfies_the_condition() -> None:
    async def poll(url: str) -> dict[str, int]:
        async with httpx.AsyncClient(base_url=url) as client:
            body: dict[str, int] = await poll_json(client, "/count", until=lambda body: body["asked"] >= 3)
            return body

    with serve(counter_app()) as url:
        assert asyncio.run(poll(url)) == {"asked": 3}


def test_poll_json_gives_up_after_its_timeout_with_the_last_body() -> None:
    async def poll(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            await poll_json(client, "/count", until=lambda body: False, timeout=0.2)

    with serve(counter_app()) as url, pytest.raises(TimeoutError, match=r"GET /count did not get there.*'asked': \d+"):
        asyncio.run(poll(url))


def test_peak_overlap_counts_the_intervals_running_at_one_moment() -> None:
    assert peak_overlap([]) == 0
    assert peak_overlap([(0.0, 1.0)]) == 1
    assert peak_overlap([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) == 1, "touching intervals do not overlap"
    assert peak_overlap([(0.0, 10.0), (1.0, 2.0), (1.5, 3.0), (2.5, 4.0)]) == 3
    assert peak_overlap(iter([(0.0, 1.0), (0.0, 1.0)])) == 2, "any iterable, read once"
    waves = [(0.0, 0.5)] * 40 + [(0.5, 1.0)] * 20  # two waves, as 60 jobs through 40 tokens
    assert peak_overlap(waves) == 40


def test_process_status_counts_new_threads_and_some_memory() -> None:
    release = threading.Event()
    before = process_status()
    threads = [threading.Thread(target=release.wait) for _ in range(5)]
    for thread in threads:
        thread.start()
    try:
        during = process_status()
    finally:
        release.set()
        for thread in threads:
            thread.join()
    # At least 3 of the 5: a thread left over by an earlier test may end at the same moment.
    assert during.threads >= before.threads + 3, (before, during)
    assert during.rss_bytes > 10 * 2**20, "a Python process with FastAPI loaded holds more than 10 MB"


def test_count_primes_counts_primes() -> None:
    assert [count_primes(limit) for limit in (2, 3, 10, 100, 1000)] == [0, 1, 4, 25, 168]


def test_cpu_time_of_tells_working_from_waiting() -> None:
    primes, working = cpu_time_of(count_primes, 100_000)
    nothing, waiting = cpu_time_of(time.sleep, 0.2)
    assert primes == 9592
    assert nothing is None
    assert working > 0.01
    assert waiting < 0.05, "sleeping takes no CPU time"
