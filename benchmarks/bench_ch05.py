"""Print chapter 5's figures: latency while the loop is blocked, thread-pool queueing, batching, processes.

Run with `make bench` (after the foundation's figures) or on its own. Figures, not pass/fail: the
notebook asserts what must hold; here the numbers show how this machine behaves today.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

import anyio.to_thread
import httpx
from fastapi import BackgroundTasks, FastAPI
from fastapi.concurrency import run_in_threadpool

from bgcourse import count_primes, cpu_time_of, probe_latency, process_status, serve

BLOCK_SECONDS = 0.8


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def sleep_in_async_def() -> None:
    time.sleep(BLOCK_SECONDS)


async def spin_in_async_def() -> None:
    spin(BLOCK_SECONDS)


def sleep_in_def() -> None:
    time.sleep(BLOCK_SECONDS)


def spin_in_def() -> None:
    spin(BLOCK_SECONDS)


async def sleep_through_threadpool() -> None:
    await run_in_threadpool(time.sleep, BLOCK_SECONDS)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:7.1f} ms"


async def blocking_latency() -> None:
    """Section 1: /ping sent every 0.1 s while a task works for 0.8 s, five ways."""
    variants: dict[str, Callable[[], object]] = {
        "async def + time.sleep": sleep_in_async_def,
        "async def + CPU loop": spin_in_async_def,
        "def + time.sleep": sleep_in_def,
        "def + CPU loop": spin_in_def,
        "async def + run_in_threadpool": sleep_through_threadpool,
    }
    app = FastAPI()

    @app.post("/work/{variant}")
    async def start(variant: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(variants[variant])
        return {"started": variant}

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    print("/ping while a background task works for 0.8 s (8 probes, one every 0.1 s):")
    for variant in variants:
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post(f"/work/{variant}")
                waits = [sample.seconds for sample in await probe_latency(client, "/ping", count=8, every=0.1)]
        print(f"  {variant:30} median {ms(statistics.median(waits))}   max {ms(max(waits))}")


async def thread_pool_queueing() -> None:
    """Section 2: 60 def tasks of 0.5 s with the default 40 tokens, and with 100."""
    print("60 def tasks of 0.5 s, sent at once:")
    for tokens in (None, 100):
        runs: list[tuple[float, float]] = []

        @asynccontextmanager
        async def lifespan(app: FastAPI, tokens: int | None = tokens) -> AsyncIterator[None]:
            if tokens is not None:
                anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
            yield

        app = FastAPI(lifespan=lifespan)

        def slow_job(runs: list[tuple[float, float]] = runs) -> None:
            started = time.perf_counter()
            time.sleep(0.5)
            runs.append((started, time.perf_counter()))

        @app.post("/jobs")
        async def add_job(background_tasks: BackgroundTasks) -> dict[str, bool]:
            background_tasks.add_task(slow_job)
            return {"queued": True}

        @app.get("/status")
        async def status() -> dict[str, int]:
            here = process_status()
            limiter = anyio.to_thread.current_default_thread_limiter()
            return {"tokens": int(limiter.total_tokens), "threads": here.threads, "rss": here.rss_bytes}

        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=70)) as client:
                idle = (await client.get("/status")).json()
                await asyncio.gather(*(client.post("/jobs") for _ in range(60)))
                busy = (await client.get("/status")).json()
        runs.sort()
        first_end = min(end for _, end in runs)
        first_wave = sum(start < first_end for start, _ in runs)
        print(
            f"  {busy['tokens']:3} tokens: {first_wave} started at once, all done after "
            f"{max(end for _, end in runs) - runs[0][0]:.2f} s; +{busy['threads'] - idle['threads']} threads, "
            f"resident memory {idle['rss'] / 2**20:.1f} -> {busy['rss'] / 2**20:.1f} MB"
        )


async def batching() -> None:
    """Section 3: /progress during 40 batches of 20 ms of CPU work, in one piece or yielding between batches."""
    progress = {"done": 0}

    async def job(yield_between: bool) -> None:
        progress["done"] = 0
        for _ in range(40):
            spin(0.02)
            progress["done"] += 1
            if yield_between:
                await asyncio.sleep(0)

    app = FastAPI()

    @app.post("/job/{yield_between}")
    async def start(yield_between: bool, background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(job, yield_between)
        return {"started": True}

    @app.get("/progress")
    async def get_progress() -> dict[str, int]:
        return progress

    print("/progress during a job of 40 batches of 20 ms of CPU work (8 probes, one every 0.1 s):")
    for yield_between, name in ((False, "in one piece"), (True, "in batches")):
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post(f"/job/{yield_between}")
                samples = await probe_latency(client, "/progress", count=8, every=0.1)
        waits = [sample.seconds for sample in samples]
        seen = sorted(json.loads(sample.body)["done"] for sample in samples)
        print(f"  {name:13} median {ms(statistics.median(waits))}   max {ms(max(waits))}   saw {seen}")


async def process_pool(rounds: int = 3, jobs: int = 8, limit: int = 150_000) -> None:
    """Section 5: the same CPU work in threads (one GIL) and in a spawn process pool."""
    workers = min(os.cpu_count() or 1, 4)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    with ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=count_primes, initargs=(10,)
    ) as pool:
        pids: set[int] = set()
        while len(pids) < workers:
            pids.update(await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(workers))))
        startup = time.perf_counter() - started

        def in_processes() -> Awaitable[list[tuple[int, float]]]:
            return asyncio.gather(*(loop.run_in_executor(pool, cpu_time_of, count_primes, limit) for _ in range(jobs)))

        def in_threads() -> Awaitable[list[tuple[int, float]]]:
            return asyncio.gather(*(run_in_threadpool(cpu_time_of, count_primes, limit) for _ in range(jobs)))

        best: dict[str, tuple[float, float]] = {}
        for _ in range(rounds):
            for how, run in (("threads", in_threads), ("processes", in_processes)):
                began = time.perf_counter()
                cpu = sum(seconds for _, seconds in await run())
                wall = time.perf_counter() - began
                best[how] = min(best.get(how, (wall, cpu)), (wall, cpu))
    print(f"{jobs} jobs of count_primes({limit}) on {os.cpu_count()} cores (best of {rounds}):")
    print(f"  starting {workers} spawn workers took {startup:.2f} s")
    for how, (wall, cpu) in best.items():
        print(f"  {how:9} {wall:.2f} s, {cpu / wall:.1f} cores busy")
    print(f"  speed-up of the process pool: {best['threads'][0] / best['processes'][0]:.2f}x")


async def main() -> None:
    await blocking_latency()
    await thread_pool_queueing()
    await batching()
    await process_pool()


if __name__ == "__main__":  # a spawned worker imports this module; only the parent runs the benchmarks
    asyncio.run(main())
