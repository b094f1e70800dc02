# ---
# jupyter:
#   bgcourse:
#     language: zh-CN
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: bgcourse
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] translates="f4801e310f02e957"
# # 第 5 章：性能：阻塞（blocking）、线程池（thread pool）、上限与超时（timeout）
#
# 第 1 章第 4 节演示过：`async def` 任务里的一个 `time.sleep`，会让另一个客户端的 `/ping` 跟着等待。本章测量要等多久，以及该怎么办。下面每个数字都是单元格运行时在你的机器上实时测得的，所以每次运行结果都不同；`assert` 只检查那些在繁忙的双核笔记本和大型服务器上都成立的结论。
#
# **你将学到**
#
# - 后台任务（background task）阻塞事件循环（event loop）时，其他请求（request）要等多久；`def` 任务和 `run_in_threadpool` 如何避免这种情况（对 CPU 密集型工作有代价：GIL）；
# - `def` 端点（endpoint）、`def` 依赖项（dependency）和 `def` 任务共用同一个限制器（limiter）：每个事件循环 40 个工作线程（worker thread）；第 41 个会怎样；如何调高上限，代价是什么；
# - 把长作业（job）拆成批次（batch），如何让服务器始终能及时处理请求、让进度可见；信号量（semaphore）如何跨请求约束某类工作，以及“bound to a different event loop”陷阱；
# - `asyncio.timeout` 和 `anyio.fail_after` 能取消什么，为什么两者都停不了线程；
# - 进程池如何把 CPU 密集型工作分到多个核上运行，同时服务器照常处理请求。

# %% [markdown] translates="7dca72ce998a2c2e"
# ## 0. 准备：版本、机器和课程的辅助函数
#
# 性能取决于机器，所以这个单元格还会打印 Python 能看到的 CPU 核数。

# %%
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from importlib.metadata import version

PINNED = {"fastapi": "0.163.2", "starlette": "1.10.0", "uvicorn": "0.54.0", "httpx": "0.28.1", "anyio": "4.16.0"}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")
print(f"{'CPU cores':10} {os.cpu_count()}")

# %% [markdown] translates="7e08fbc0abbd5ef2"
# 除了第 1 章的 `serve(app)` 和 `Timeline`，本章还用 `bgcourse` 中几个小辅助函数做测量：
#
# - `await probe_latency(client, "/ping", count=8, every=0.1)` 发出八个 `GET /ping`，每 0.1 s 一个，*不等上一个的应答*（就像八个不同的客户端那样），并对每个请求返回：何时发出、应答用了多久、响应（response）体；其中 `sent` 和 `answered` 就是这两个时刻在 `time.perf_counter()` 上的读数，本进程中服务器的代码也能读这个时钟；
# - `process_status()` 读取本进程运行着多少线程、占用多少内存（常驻集大小，取自 `/proc/self/status`）；
# - `count_primes(limit)` 是固定量的纯 Python CPU 工作；`cpu_time_of(func, *args)` 调用 `func(*args)`，返回其结果，以及调用线程在上面花掉的 CPU 时间。
#
# 记住：服务器运行在本笔记本进程的一个线程里，所以笔记本（客户端）和服务器共享同一个进程：它的线程、它的内存和它的 GIL。

# %%
import anyio
import anyio.to_thread
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool

from bgcourse import (
    NotebookFigure,
    Timeline,
    capture_logs,
    count_primes,
    cpu_time_of,
    find_in_source,
    load_quiz,
    peak_overlap,
    poll_json,
    probe_latency,
    process_status,
    run_in_fresh_kernel,
    serve,
)

# %% [markdown] translates="31c28e3abc68aa96"
# ## 1. `async def` 中的阻塞调用会拖住所有请求
#
# 事件循环一次只运行一段代码；`await` 是它可以切换去做别的事的地方。不带 `await` 的阻塞调用（`time.sleep`、CPU 循环、同步的 HTTP 或数据库客户端）会一直占着循环，直到返回。Starlette 在循环上运行 `async def` 任务，而通过 `run_in_threadpool` 把 `def` 任务放到工作线程上运行（第 1 章第 4 节）；`async def` 任务也可以自己用 `await run_in_threadpool(func, *args)` 把阻塞的部分交给线程。
#
# **事实 1.1**：一个 `async def` 任务阻塞 0.8 s 时（无论用 `time.sleep` 还是 CPU 循环），期间到达的每个请求都要等到任务结束：任务开始 0.1 s 后发出的 `/ping` 约等 0.7 s，0.5 s 时发出的约等 0.3 s，任务结束前一个也得不到应答。同样的工作换成 `def` 任务，或通过 `run_in_threadpool` 来 await，循环就是空闲的：任务还在工作时，ping 就得到了应答。
#
# 为了区分“之前”和“之后”，第二个任务记下工作结束的时刻（一个响应的各个任务依次运行），单元格把它与每个 ping 的 `sent` 和 `answered` 比较。比较时刻，而不是拿延迟和某个固定数字比，这样繁忙的机器也推翻不了结论：它可以把请求拖住一会儿，少则几个，多则大半，所以对于不阻塞的变体，单元格只要求至少有一个 ping 在任务结束前得到应答，而这是被阻塞的循环做不到的：它一个也答不了。

# %%
from tqdm.auto import tqdm

BLOCK_SECONDS = 0.8


def spin(seconds: float) -> None:
    """Keep the CPU busy for `seconds`: a stand-in for parsing, resizing or hashing."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def sleep_in_async_def() -> None:
    time.sleep(BLOCK_SECONDS)  # 阻塞事件循环


async def spin_in_async_def() -> None:
    spin(BLOCK_SECONDS)  # CPU 工作也一样


def sleep_in_def() -> None:
    time.sleep(BLOCK_SECONDS)  # def 任务：Starlette 在工作线程上运行它


def spin_in_def() -> None:
    spin(BLOCK_SECONDS)


async def sleep_through_threadpool() -> None:
    await run_in_threadpool(time.sleep, BLOCK_SECONDS)  # async def，阻塞的部分放到线程上


VARIANTS = {
    "async def + time.sleep": sleep_in_async_def,
    "async def + CPU loop": spin_in_async_def,
    "def + time.sleep": sleep_in_def,
    "def + CPU loop": spin_in_def,
    "async def + run_in_threadpool": sleep_through_threadpool,
}
BLOCKING = ["async def + time.sleep", "async def + CPU loop"]
work_ended: dict[str, float] = {}  # 每个变体的工作何时结束，用 time.perf_counter() 的时钟


async def note_the_end(variant: str) -> None:  # async def 且瞬间完成：工作一结束它就运行
    work_ended[variant] = time.perf_counter()


app = FastAPI()


@app.post("/work/{variant}")
async def start_work(variant: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(VARIANTS[variant])
    background_tasks.add_task(note_the_end, variant)  # 在第一个任务之后、其工作完成时运行
    return {"started": variant}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


probes: dict[str, list] = {}
for variant in tqdm(VARIANTS, desc="a server for each variant"):
    with serve(app) as url:  # 每个变体一个新服务器；离开代码块时会等待任务结束
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post(f"/work/{variant}")
            probes[variant] = await probe_latency(client, "/ping", count=8, every=0.1)

during: dict[str, list] = {}  # 工作仍在运行时发出的 ping
for variant, samples in probes.items():
    during[variant] = [s for s in samples if s.sent < work_ended[variant]]
    in_time = [s for s in during[variant] if s.answered < work_ended[variant]]
    print(f"{variant:30} {len(in_time)} of the {len(during[variant])} pings sent during the task "
          f"were answered before it ended (median wait {statistics.median(s.seconds for s in samples):.2f} s)")
for variant in BLOCKING:
    assert during[variant], f"{variant}: no ping was sent while the task ran"
    assert all(s.answered > work_ended[variant] for s in during[variant]), f"{variant}: every ping waited for the end"
for variant in ["def + time.sleep", "def + CPU loop", "async def + run_in_threadpool"]:
    in_time = [s for s in during[variant] if s.answered < work_ended[variant]]
    # 至少一个而非大多数：繁忙的机器可能把大半请求拖住一会儿；被阻塞的循环则一个也答不了。
    assert in_time, f"{variant}: the loop stayed free while the task worked"

figure = NotebookFigure(figsize=(9, 4), layout="constrained")
axes = figure.subplots()
for variant, samples in probes.items():
    style = "-o" if variant in BLOCKING else "--s"
    axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], style, label=variant)
axes.set_xlabel("when the /ping was sent (seconds after the task started)")
axes.set_ylabel("how long /ping took (s)")
axes.set_title("/ping while a background task works for 0.8 s")
axes.legend(fontsize=8)
axes.grid(alpha=0.3)
figure

# %% [markdown] translates="32265702ba14837a"
# 两条阻塞曲线从约 0.8 s 降到约 0.1 s：每个 ping 无论来得早晚，都要等完任务剩下的部分。另外三条贴近底部；`def` CPU 循环那条可能有起伏，原因见下一段。
#
# `def` 任务让循环保持空闲，但对 CPU 密集型工作来说，事情还没完：循环所在的线程要持有 GIL 才能运行 Python 代码，而忙于执行 Python 代码的线程每隔 `sys.getswitchinterval()` 秒才交出一次 GIL。第 5 节同时运行八个这样的线程，测量它们对 `/ping` 的影响，再把工作挪到其他进程里，每个进程都有自己的 GIL。所以，对阻塞 I/O 来说，`def` 能根治问题；对 CPU 密集型工作，它只能缓解。

# %% [markdown] translates="f92ee8ae8a4aeecc"
# ## 2. 线程池：一个共享的、40 个令牌的限制器
#
# `run_in_threadpool` 就是 `anyio.to_thread.run_sync(func)`，每次调用在拿到线程之前，都要先从同一个 `CapacityLimiter`（AnyIO 的*默认线程限制器*）取一个令牌，函数返回时再还回去。FastAPI 对 `def` 端点（`fastapi/routing.py`，`run_endpoint_function`）和 `def` 依赖项（`fastapi/dependencies/utils.py`，`solve_dependencies`）调用 `run_in_threadpool`；Starlette 对 `def` 任务也调用它。所以它们消耗的是同一批令牌。
#
# 限制器在*每个事件循环中*第一次被需要时创建（`anyio/_backends/_asyncio.py` 把它存在一个 `RunVar` 里，即按循环区分的变量），所以 `anyio.to_thread.current_default_thread_limiter()` 只能在运行中的循环里调用：在 async 端点里，或者像这里一样，在应用的生命周期（lifespan）中。
#
# **事实 2.1**：在运行中的服务器里，默认限制器有 40 个令牌。每个事件循环都有自己的限制器：同时运行的两个服务器有两个限制器，在其中一个的生命周期里调高上限，另一个仍是 40。在没有事件循环运行的地方调用它（导入时，或者像这里一样在普通线程中），会抛出 `NoEventLoopError`。

# %%
def pool_app(tokens: int | None = None) -> tuple[FastAPI, list[tuple[float, float]], threading.Event]:
    """An app with a slow def task; `tokens` raises the thread limit in the lifespan."""
    runs: list[tuple[float, float]] = []  # 每个作业 0.5 s 工作的 (start, end)，用同一个时钟
    go = threading.Event()  # 作业的开始信号（见下文）

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if tokens is not None:  # 此处循环正在运行：这是服务器自己的限制器
            anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
        yield

    app = FastAPI(lifespan=lifespan)

    def slow_job() -> None:  # def 任务：先要一个令牌，再要一个工作线程
        go.wait(timeout=30)  # 持有令牌和线程，直到客户端发出信号
        started = time.perf_counter()
        time.sleep(0.5)
        runs.append((started, time.perf_counter()))

    @app.post("/jobs")
    async def add_job(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(slow_job)
        return {"queued": True}

    @app.get("/limiter")
    async def limiter_stats() -> dict[str, int]:  # async def：不需要令牌，立即应答
        limiter = anyio.to_thread.current_default_thread_limiter()
        here = process_status()
        return {
            "total_tokens": int(limiter.total_tokens),
            "borrowed": limiter.borrowed_tokens,
            "waiting": limiter.statistics().tasks_waiting,
            "limiter_id": id(limiter),
            "threads": here.threads,
            "rss_bytes": here.rss_bytes,
        }

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    @app.get("/sync-ping")
    def sync_ping() -> dict[str, bool]:  # def 端点：需要令牌
        return {"pong": True}

    def sync_dependency() -> bool:  # def 依赖项：也需要令牌
        return True

    @app.get("/async-with-sync-dependency")
    async def with_sync_dependency(ok: bool = Depends(sync_dependency)) -> dict[str, bool]:
        return {"pong": ok}

    return app, runs, go


default_app, _, _ = pool_app()
raised_app, _, _ = pool_app(tokens=100)
with serve(default_app) as default_url, serve(raised_app) as raised_url:
    default_limiter = httpx.get(f"{default_url}/limiter").json()
    raised_limiter = httpx.get(f"{raised_url}/limiter").json()

outside: list[Exception] = []


def limiter_without_a_loop() -> None:
    try:
        anyio.to_thread.current_default_thread_limiter()
    except Exception as error:
        outside.append(error)


plain_thread = threading.Thread(target=limiter_without_a_loop)
plain_thread.start()
plain_thread.join()
print(f"server with the default limit: {default_limiter['total_tokens']} tokens")
print(f"server whose lifespan set 100: {raised_limiter['total_tokens']} tokens")
print(f"two servers, two limiter objects: {default_limiter['limiter_id'] != raised_limiter['limiter_id']}")
print(f"in a thread without an event loop: {type(outside[0]).__name__}: {outside[0]}")
assert default_limiter["total_tokens"] == 40 and raised_limiter["total_tokens"] == 100
assert default_limiter["limiter_id"] != raised_limiter["limiter_id"]
assert type(outside[0]).__name__ == "NoEventLoopError"

# %% [markdown] translates="81735a558a5f06d9"
# 现在同时发出 60 个请求，每个都添加一个工作 0.5 s 的 `def` 任务。60 个响应会一起回来（任务在响应之后才运行）。为了让后面的结果不取决于繁忙的机器发出 60 个请求有多快，每个任务都先持着令牌和线程，等一个开始信号（一个 `threading.Event`），就像卡在慢调用上的任务那样。发出信号之前，客户端先通过一个 `async def` 端点询问服务器：它的限制器有多忙；然后再发三个请求：一个 `async def` 的 `/ping`、一个 `def` 端点，以及一个带 `def` 依赖项的 `async def` 端点。

# %% [markdown] translates="b0cae706708741fb"
# 实验写成一个函数 `sixty_jobs(tokens)`，因为事实 2.3 要在调高上限后再做一遍。它启动一个新的 `pool_app(tokens)`，读取空闲时的限制器（`idle`），然后分三步：
#
# 1. 发出 60 个 `POST /jobs`，等到限制器数到全部 60 个任务，每个要么持有令牌（`borrowed`），要么在等令牌（`waiting`）；这次读数是 `busy`；
# 2. 趁所有任务还在等信号，发出三个*探测请求*（`/ping`、`def` 端点、带 `def` 依赖项的端点），并等到限制器把两个 `def` 探测请求也算作等待中（或者等到两者都得到应答，那就推翻了这条事实）；这次读数是 `queued`；
# 3. 发出信号（`go.set()`，时刻为 `signal`），收集探测请求的应答。
#
# 它返回这些读数、各探测请求得到应答的时刻，以及每个作业的 `(start, end)`（`runs`）。等待和计数交给 `bgcourse` 的三个辅助函数：
#
# - `await poll_json(client, "/limiter", until=condition)` 反复请求 `/limiter`，直到 `condition(answer)` 为真，并返回那次应答。刚发出的请求可能还在路上，而没有哪个固定的 sleep 时长能在每台机器上都够用。
# - `probe_latency(client, path, count=1)`（第 0 节）发出一个请求；它的 `answered` 是应答到达的时刻，与 `signal` 用同一个时钟。
# - `peak_overlap(runs)` 是 `runs` 中同一时刻正在运行的 `(start, end)` 区间的最大数目。

# %%
DEF_PROBES = ("/sync-ping", "/async-with-sync-dependency")  # 一个 def 端点，一个 def 依赖项


async def sixty_jobs(tokens: int | None) -> dict:
    app, runs, go = pool_app(tokens)
    threads_before_server = process_status().threads
    with serve(app) as url:
        # 70 个连接：60 个给作业，另加探测请求，全部同时打开。
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=70)) as client:
            try:
                idle = (await client.get("/limiter")).json()
                # 第 1 步：60 个作业。
                await asyncio.gather(*(client.post("/jobs") for _ in range(60)))
                busy = await poll_json(
                    client, "/limiter", until=lambda stats: stats["borrowed"] + stats["waiting"] == 60
                )
                # 第 2 步：探测请求，此时每个作业都持有或在等待令牌。
                (ping,) = await probe_latency(client, "/ping", count=1)
                def_probes = [asyncio.create_task(probe_latency(client, path, count=1)) for path in DEF_PROBES]
                queued = await poll_json(
                    client, "/limiter", until=lambda stats: stats["waiting"] == 22 or all(p.done() for p in def_probes)
                )
            finally:
                # 第 3 步：发出信号（某一步失败时也发，好让作业和服务器能够结束）。
                signal = time.perf_counter()
                go.set()
            (def_endpoint,), (def_dependency,) = await asyncio.gather(*def_probes)
    assert [probe.status_code for probe in (ping, def_endpoint, def_dependency)] == [200] * 3
    # 离开 serve() 时已等到最后的作业结束；服务器的工作线程现在退出。
    deadline = time.monotonic() + 30
    while process_status().threads > threads_before_server and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return {
        "runs": sorted(runs), "idle": idle, "busy": busy, "queued": queued, "signal": signal,
        "ping": ping.answered, "def endpoint": def_endpoint.answered, "def dependency": def_dependency.answered,
        "threads after": process_status().threads, "threads before server": threads_before_server,
    }


# %% [markdown] translates="332d5fd6b42d8384"
# **事实 2.2**：在默认上限下，40 个任务占用全部令牌，另外 20 个在等；`def` 端点和 `def` 依赖项排在它们后面（共 22 个在等），而 `async def` 的 `/ping` 立即得到应答。发出信号后，同时运行的任务最多 40 个：其余 20 个要等前面的结束才能开始，所以 60 个任务分两波完成，在信号后 1 s（而不是 0.5 s）全部结束；`def` 端点和依赖项要到第一波结束后才得到应答。
#
# 在证据中，`runs` 按开始时间顺序保存每个作业的 `(start, end)`，所以 `runs[40]` 是第 41 个开始的作业；所有时刻都打印为信号之后的秒数。

# %%
default_run = await sixty_jobs(tokens=None)
runs, signal = default_run["runs"], default_run["signal"]
first_end = min(end for _, end in runs)
print(f"all 60 requests answered; the limiter said: {default_run['busy']['borrowed']} tokens borrowed, "
      f"{default_run['busy']['waiting']} tasks waiting")
print(f"the async def /ping was answered while all tokens were taken: {default_run['ping'] < signal}")
print(f"after a def endpoint and a def dependency were asked for: {default_run['queued']['waiting']} waiting")
print(f"after the signal, tasks running at once, at most: {peak_overlap(runs)}")
print(f"first wave: {sum(start < first_end for start, _ in runs)} tasks, from {runs[0][0] - signal:.2f} s to "
      f"{first_end - signal:.2f} s after the signal; the 41st task started at {runs[40][0] - signal:.2f} s; "
      f"all done at {max(end for _, end in runs) - signal:.2f} s")
for probe in ("def endpoint", "def dependency"):
    print(f"the {probe} was answered {default_run[probe] - signal:.2f} s after the signal")
assert default_run["busy"]["borrowed"] == 40 and default_run["busy"]["waiting"] == 20
assert default_run["queued"]["waiting"] == 22, "the def endpoint and the def dependency wait for tokens"
assert default_run["ping"] < signal, "an async def endpoint needs no token"
assert peak_overlap(runs) == 40
assert runs[40][0] >= first_end, "the 41st task waited for a token"
# 下界，在繁忙的机器上也成立：sleep 绝不会提前结束，也没有任务会在信号之前开始。
assert max(end for _, end in runs) - signal >= 1.0, "two waves of 0.5 s"
assert default_run["def endpoint"] >= first_end and default_run["def dependency"] >= first_end

# %% [markdown] translates="46b9ab985877aaf4"
# 在限制器眼里，慢的 `def` 任务和慢的 `def` 端点没有区别：任何一方都可能耗尽另一方需要的令牌，而 `async def` 端点根本不需要令牌。
#
# 上限是循环的属性，所以要在循环运行的地方调高：在生命周期中（上面的 `pool_app(tokens=100)` 做的就是 `anyio.to_thread.current_default_thread_limiter().total_tokens = 100`）。
#
# **事实 2.3**：有 100 个令牌时，60 个任务同时开始，一波完成；`def` 端点和依赖项立即得到应答，早于信号：还有 40 个令牌空闲。代价是 60 个工作线程而不是 40 个，每个都有自己的栈；单元格统计峰值时本进程的线程数和常驻内存。服务器停止时，它的工作线程随之结束，下一个服务器又从 40 个令牌开始。

# %%
raised_run = await sixty_jobs(tokens=100)
next_app, _, _ = pool_app()
with serve(next_app) as next_url:  # 上限只在另一个服务器的循环中调高过
    next_limiter = httpx.get(f"{next_url}/limiter").json()
for name, run in (("40 tokens (default)", default_run), ("100 tokens", raised_run)):
    jobs = run["runs"]
    extra_threads = run["busy"]["threads"] - run["idle"]["threads"]
    print(f"{name:20} at most {peak_overlap(jobs)} at once, all done {max(end for _, end in jobs) - run['signal']:.2f} s "
          f"after the signal; {extra_threads} more threads while the jobs held their tokens")
    print(f"{'':20} resident memory {run['idle']['rss_bytes'] / 2**20:.1f} MB before the jobs, "
          f"{run['busy']['rss_bytes'] / 2**20:.1f} MB with them")
    print(f"{'':20} threads in this process after the server stopped: {run['threads after']} "
          f"(before it started: {run['threads before server']})")
    assert run["threads after"] <= run["threads before server"], "the server's worker threads have ended"
print("with 100 tokens, the def endpoint and dependency were answered before the signal: "
      f"{max(raised_run['def endpoint'], raised_run['def dependency']) < raised_run['signal']}")
print(f"a server started after it has {next_limiter['total_tokens']} tokens again")
assert next_limiter["total_tokens"] == 40
assert raised_run["busy"]["total_tokens"] == 100 and raised_run["busy"]["borrowed"] == 60
assert peak_overlap(raised_run["runs"]) == 60
assert raised_run["runs"][-1][0] < min(end for _, end in raised_run["runs"]), "all started before any ended"
assert max(raised_run["def endpoint"], raised_run["def dependency"]) < raised_run["signal"]
assert raised_run["busy"]["threads"] - raised_run["idle"]["threads"] >= 60
assert default_run["busy"]["threads"] - default_run["idle"]["threads"] >= 40

figure = NotebookFigure(figsize=(9, 4), layout="constrained")
panels = figure.subplots(1, 2, sharex=True, sharey=True)
for panel, (name, run) in zip(panels, (("40 tokens (default)", default_run), ("100 tokens", raised_run))):
    panel.barh(range(60), [end - start for start, end in run["runs"]],
               left=[start - run["signal"] for start, _ in run["runs"]], height=0.8, color="#dd8452")
    panel.set_title(f"60 def tasks of 0.5 s, {name}", fontsize=10)
    panel.set_xlabel("seconds after the signal")
    panel.invert_yaxis()
    panel.grid(axis="x", alpha=0.3)
panels[0].set_ylabel("task, in order of start")
figure

# %% [markdown] translates="7cd706df3b885905"
# 图中的两波一目了然：每根横条是一个任务 0.5 s 的工作。线程数是精确的。内存数字是操作系统报告的常驻内存，噪声很大：线程栈只按它实际触及的页面计入，已结束线程释放的内存也常被保留下来复用，所以在同一进程里再运行一次，增长可能更小。线程更多，还意味着同时有更多工作压向这些任务共用的资源，比如数据库的连接池（connection pool）或有速率限制的 API，也意味着更多线程争抢同一个 GIL。只有当你的 `def` 任务和端点大部分时间在*等待*、并且经测量 40 确实不够时，才调高上限；否则，像下一节那样，去约束工作本身。

# %% [markdown] translates="63dbb256490319fb"
# ## 3. 批次与信号量：约束长时间运行和并行的工作
#
# 循环上的长作业可以拆成多个批次，批次之间放一个 `await`。在批次之间，循环会处理已经到达的请求，作业也可以公布自己的进度。
#
# **事实 3.1**：一个由 40 批、每批 20 ms CPU 工作组成的作业，如果在 `async def` 任务里一口气跑完，每个 `/progress` 请求都要等到作业结束（而且看到的都是 40/40）。在每批之后加一个 `await asyncio.sleep(0)`，`/progress` 就能在作业运行期间得到应答（单元格要求大多数请求如此），并显示进度在推进。一个请求需要循环转好几轮（读取、解析、运行端点、写出），而作业在每两轮之间跑一批，所以等待的是几批，而不是一批。与第 1 节一样，`note_the_end` 记下每个作业结束的时刻。

# %%
BATCHES, BATCH_SECONDS = 40, 0.02
progress = {"done": 0, "of": BATCHES}


async def job_in_one_piece() -> None:
    progress["done"] = 0
    for _ in range(BATCHES):
        spin(BATCH_SECONDS)
        progress["done"] += 1


async def job_in_batches() -> None:
    progress["done"] = 0
    for _ in range(BATCHES):
        spin(BATCH_SECONDS)
        progress["done"] += 1
        await asyncio.sleep(0)  # 让循环处理已经到达的请求


JOB_KINDS = {"in one piece": job_in_one_piece, "in batches": job_in_batches}
app = FastAPI()


@app.post("/job/{how}")
async def start_job(how: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(JOB_KINDS[how])
    background_tasks.add_task(note_the_end, how)
    return {"started": how}


@app.get("/progress")
async def get_progress() -> dict[str, int]:
    return progress


seen: dict[str, list] = {}
for how in JOB_KINDS:
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post(f"/job/{how}")
            seen[how] = await probe_latency(client, "/progress", count=8, every=0.1)

in_time: dict[str, list] = {}  # 作业期间发出、并在作业结束前得到应答的请求
for how, samples in seen.items():
    done = [json.loads(sample.body)["done"] for sample in sorted(samples, key=lambda s: s.answered)]
    during[how] = [s for s in samples if s.sent < work_ended[how]]
    in_time[how] = [s for s in during[how] if s.answered < work_ended[how]]
    print(f"job {how:12}: {len(in_time[how])} of the {len(during[how])} requests sent during the job were "
          f"answered before it ended (median wait {statistics.median(s.seconds for s in samples) / BATCH_SECONDS:.0f} "
          f"batches); they saw {done}")
whole = [json.loads(s.body)["done"] for s in seen["in one piece"]]
batched = [json.loads(s.body)["done"] for s in seen["in batches"]]
assert during["in one piece"] and not in_time["in one piece"], "in one piece, every request waited for the end"
assert whole == [BATCHES] * 8, "so every request saw the job done"
assert len(in_time["in batches"]) > len(during["in batches"]) / 2, "in batches, the loop answered while the job ran"
assert len({done for done in batched if done < BATCHES}) >= 3, "progress was visible while the job ran"

figure = NotebookFigure(figsize=(9, 3.5), layout="constrained")
latency_axes, progress_axes = figure.subplots(1, 2)
for how, samples in seen.items():
    latency_axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], "-o", label=f"job {how}")
    progress_axes.plot([s.sent_at + s.seconds for s in samples], [json.loads(s.body)["done"] for s in samples],
                       "o", label=f"job {how}")
latency_axes.set(xlabel="when /progress was sent (s)", ylabel="how long it took (s)", title="waiting")
progress_axes.set(xlabel="when the answer came (s)", ylabel="batches done", title="what the client saw")
for axes in (latency_axes, progress_axes):
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
figure

# %% [markdown] translates="53b5618ff59f9b32"
# 批次适用于必须在循环上运行的作业；能在别处运行的作业（阻塞 I/O 放线程，CPU 工作放进程，见第 5 节）就应该放到别处。
#
# 把一个作业拆成同一个请求里的许多小任务，*本身*并不能达到分批的效果。一个请求的各个任务在同一个循环里依次运行，即 `for task in self.tasks: await task()`（第 1 章第 2 节），而 await 一个自己从不 await 任何东西的 `async def` 任务，并不会让循环轮转：四十个这样的任务占住循环的时间，和一个任务做完全部四十份工作一样长。（而且只要有一份抛出异常，后面所有份都会被跳过，见第 1 章事实 7.1。）只有每一份都让循环轮转一次，拆分才能解放循环：会 await 的 `async def` 小任务（真正的 I/O 调用，或 `await asyncio.sleep(0)`），或者 `def` 小任务，Starlette 把它放到工作线程上运行，循环则在此期间等待它；又或者每一份是独立的请求，或是队列中的作业（第 7 章）。
#
# **事实 3.2**：一个请求添加 40 个任务，每个做 20 ms 的 CPU 工作。在第一份开始之后发出的 `/ping`：如果这些小任务是从不 await 的 `async def`，要等全部 40 份做完才得到应答；如果每份以 `await asyncio.sleep(0)` 结尾，或者它们是 `def`，就会在还有剩余时得到应答。

# %%
PIECES = 40
pieces_done: list[int] = [0]
first_piece_started = threading.Event()
all_pieces_done = threading.Event()


def piece_of_work() -> None:
    first_piece_started.set()
    spin(BATCH_SECONDS)
    pieces_done[0] += 1
    if pieces_done[0] == PIECES:
        all_pieces_done.set()


async def async_piece() -> None:
    piece_of_work()


async def async_piece_that_awaits() -> None:
    piece_of_work()
    await asyncio.sleep(0)  # 让循环轮转一次


PIECE_KINDS = {"async def, never awaits": async_piece, "async def, awaits": async_piece_that_awaits,
               "def": piece_of_work}
app = FastAPI()


@app.post("/split/{how}")
async def split_job(how: str, background_tasks: BackgroundTasks) -> dict[str, int]:
    for _ in range(PIECES):
        background_tasks.add_task(PIECE_KINDS[how])
    return {"pieces": PIECES}


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pieces done": pieces_done[0]}


pieces_seen: dict[str, int] = {}  # 方式 -> /ping 得到应答时已完成的份数
for how in PIECE_KINDS:
    pieces_done[0] = 0
    first_piece_started.clear()
    all_pieces_done.clear()
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.post(f"/split/{how}")
        assert first_piece_started.wait(timeout=60), "the first piece did not start"
        pieces_seen[how] = client.get("/ping").json()["pieces done"]
        assert all_pieces_done.wait(timeout=60), "the pieces did not all run"
for how, seen_done in pieces_seen.items():
    print(f"pieces {how:24}: /ping answered when {seen_done} of {PIECES} pieces were done")
assert pieces_seen["async def, never awaits"] == PIECES, "the loop had no turn until every piece was done"
assert pieces_seen["async def, awaits"] < PIECES and pieces_seen["def"] < PIECES, "the loop had turns in between"

# %% [markdown] translates="c28ace7d6fcc4bdc"
# 反过来的问题：很多请求，每个都启动同样的重活。没有什么能阻止其中 60 个占满全部 40 个线程令牌（第 2 节）。`asyncio.Semaphore(3)` 让三个运行，其余的等待，并且等待期间*不*占用令牌或线程。asyncio 原语属于某一个事件循环（事实 3.4 展示不这样做的后果），所以要在循环运行时创建它，也就是在生命周期中，并把它放在 `app.state` 上。
#
# **事实 3.3**：九个请求，每个添加一个任务，在生命周期中创建的、容量为 3 的信号量保护下，通过 `run_in_threadpool` 做 0.25 s 的阻塞工作：同时运行的从不超过 3 个，所以它们分三波完成；与此同时，一个 `def` 端点在导出进行期间就能得到应答，因为还有 37 个令牌空闲。（与第 2 节一样，这些任务先等一个开始信号，这里是生命周期中创建的 `asyncio.Event`，这样无论繁忙的机器发请求有多慢，九个任务都会一起争抢信号量。）

# %%
timeline = Timeline()


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.exports = asyncio.Semaphore(3)  # 在服务器正在运行的循环内创建
    app.state.go = asyncio.Event()  # 开始信号也一样
    yield


app = FastAPI(lifespan=lifespan)
running = {"now": 0, "peak": 0}


def export_report() -> None:
    time.sleep(0.25)  # 阻塞工作：一个慢的 PDF 库


async def bounded_export(number: int, exports: asyncio.Semaphore, go: asyncio.Event) -> None:
    await go.wait()
    async with exports:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await run_in_threadpool(timeline.track(f"export {number}", export_report))
        running["now"] -= 1
    work_ended["exports"] = time.perf_counter()  # 最后结束的导出最后写入


@app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(bounded_export, number, request.app.state.exports, request.app.state.go)
    return {"export": number}


@app.post("/go")
async def give_the_signal(request: Request) -> dict[str, bool]:
    request.app.state.go.set()
    return {"go": True}


@app.get("/sync-ping")
def sync_ping() -> dict[str, bool]:
    return {"pong": True}


with serve(app) as url:
    async with httpx.AsyncClient(base_url=url) as client:
        await asyncio.gather(*(client.post(f"/exports/{number}") for number in range(1, 10)))
        await client.post("/go")
        sync_pings = await probe_latency(client, "/sync-ping", count=5, every=0.1)

starts = sorted(timeline.at(f"export {n}", "task start") for n in range(1, 10))
ends = sorted(timeline.at(f"export {n}", "task end") for n in range(1, 10))
while_exporting = [s for s in sync_pings if s.answered < work_ended["exports"]]
print(f"exports running at once, at most: {running['peak']}")
print(f"all nine were done {ends[-1] - starts[0]:.2f} s after the first started (nine at once would take 0.25 s)")
print(f"a def endpoint, asked {len(sync_pings)} times meanwhile, answered {len(while_exporting)} times "
      f"while the exports still ran (median wait {statistics.median(s.seconds for s in sync_pings):.3f} s)")
assert running["peak"] == 3
assert ends[-1] - starts[0] >= 0.7, "three waves of 0.25 s"
# 大多数而非全部：繁忙的机器可能延迟应答，而最后一次询问距导出最早可能结束的时刻只有 0.35 s。
assert len(while_exporting) > len(sync_pings) / 2, "the def endpoint found a free token while the exports ran"
timeline.plot("nine exports, at most three at a time")

# %% [markdown] translates="12bace97982b18bf"
# 现在来看陷阱。在导入时（模块顶层）创建的信号量，诞生于任何循环运行之前。它会绑定到第一次有代码需要在它上面等待的那个循环，之后拒绝其他所有循环。而应用每次启动都运行在一个新的事件循环上：这里就是第二次 `serve()`。
#
# **事实 3.4**：模块级的 `asyncio.Semaphore` 在第一个服务器中工作正常。在第二个服务器中，第一个请求仍能通过，但第一个需要等待的请求会抛出 `RuntimeError: ... is bound to a different event loop`：异常发生在任务中，此时它的客户端早已收到 `202`；只有服务器日志能看到它。（每个服务器收到两个导出；第一个持有信号量，直到第二个到达，所以第二个一定要等待。）

# %%
module_level_semaphore = asyncio.Semaphore(1)  # 在导入时、任何循环之外创建

app = FastAPI()
arrived: list[str] = []
finished: list[str] = []


async def export_with_module_semaphore(name: str) -> None:
    arrived.append(name)
    async with module_level_semaphore:
        server = name.rsplit(" ", 1)[0]  # "first server" 或 "second server"
        deadline = time.monotonic() + 30  # 只用来结束一个否则永远不会结束的等待
        while sum(other.startswith(server) for other in arrived) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # 持有信号量，直到本服务器的另一个导出到达
    finished.append(name)


@app.post("/exports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def start_export_module(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(export_with_module_semaphore, name)
    return {"export": name}


statuses = []
with capture_logs("uvicorn.error") as records:
    for server in ("first server", "second server"):
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                responses = await asyncio.gather(*(client.post(f"/exports/{server} {n}") for n in (1, 2)))
                statuses += [response.status_code for response in responses]

errors = [record.exc_info[1] for record in records if record.exc_info]
print(f"clients were told: {statuses}")
print(f"exports that finished: {finished}")
for error in errors:
    *_, caller, raiser = traceback.extract_tb(error.__traceback__)
    module = "/".join(raiser.filename.split(os.sep)[-2:])
    print(f"the server logged: {type(error).__name__}: {error}")
    print(f"raised by {raiser.name}() in {module}, called as `{caller.line}` in {caller.name}()")
assert statuses == [202, 202, 202, 202]
assert sorted(finished)[:2] == ["first server 1", "first server 2"] and len(finished) == 3, "one export failed"
assert len(errors) == 1 and "is bound to a different event loop" in str(errors[0])
arrived.clear()
finished.clear()

# %% [markdown] translates="4b315665297a6abe"
# 修复方法就是事实 3.3 的模式：在生命周期中创建信号量（应用每次启动时，那里都有正在运行的循环），并通过 `request.app.state` 取用它。
#
# **事实 3.5**：在生命周期中创建信号量后，同样的两个服务器完成了全部四个导出，日志中什么也没有。

# %%
@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.exports = asyncio.Semaphore(1)  # 应用每启动一次就创建一个，在那次启动的循环中
    yield


app = FastAPI(lifespan=lifespan)


async def export_with_app_semaphore(name: str, exports: asyncio.Semaphore) -> None:
    async with exports:
        await asyncio.sleep(0.05)
    finished.append(name)


@app.post("/exports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def start_export_app(name: str, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(export_with_app_semaphore, name, request.app.state.exports)
    return {"export": name}


with capture_logs("uvicorn.error") as records:
    for server in ("first server", "second server"):
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                await asyncio.gather(*(client.post(f"/exports/{server} {n}") for n in (1, 2)))

print(f"exports that finished: {sorted(finished)}")
print(f"log records with an exception: {sum(1 for record in records if record.exc_info)}")
assert sorted(finished) == ["first server 1", "first server 2", "second server 1", "second server 2"]
assert not [record for record in records if record.exc_info]
finished.clear()

# %% [markdown] translates="63bf115e2cdbf9e2"
# ## 4. 超时：能取消什么，不能取消什么
#
# `asyncio.timeout(seconds)`（Python 3.11+）和 AnyIO 的 `anyio.fail_after(seconds)` 都会在代码块耗时过长时抛出 `TimeoutError`。它们的做法是*取消*代码块正在 await 的东西：把一个 `CancelledError` 抛进协程（coroutine）当前所在的 `await`。
#
# **事实 4.1**：包住异步工作（这里是 `await asyncio.sleep(0.8)`）时，两者都在 0.2 s 后放弃：工作在它的 `await` 处收到 `CancelledError`，之后的代码永远不会运行。

# %%
DEADLINE, WORK_SECONDS = 0.2, 0.8
outcomes: dict[str, dict] = {}
work_done: dict[str, float] = {}
work_cancelled: list[str] = []


async def async_work(name: str) -> None:
    try:
        await asyncio.sleep(WORK_SECONDS)
    except asyncio.CancelledError:
        work_cancelled.append(name)
        raise
    work_done[name] = time.perf_counter()


def blocking_work(name: str) -> None:
    time.sleep(WORK_SECONDS)
    work_done[name] = time.perf_counter()


async def with_asyncio_timeout(name: str, work) -> None:
    async with asyncio.timeout(DEADLINE):
        await work(name)


async def with_fail_after(name: str, work) -> None:
    with anyio.fail_after(DEADLINE):
        await work(name)


async def timed_task(name: str, guard, work) -> None:
    started = time.perf_counter()
    try:
        await guard(name, work)
        outcome = "returned normally"
    except TimeoutError:
        outcome = "TimeoutError"
    outcomes[name] = {"started": started, "ended": time.perf_counter(), "outcome": outcome}


def run_blocking_in_thread(name: str):
    return run_in_threadpool(blocking_work, name)


def run_blocking_abandoning(name: str):
    return anyio.to_thread.run_sync(blocking_work, name, abandon_on_cancel=True)


async def run_blocking_then_checkpoint(name: str) -> None:
    await run_in_threadpool(blocking_work, name)
    await anyio.sleep(0)  # 块中再加一个 await：一个检查点


EXPERIMENTS = {
    "asyncio.timeout, async work": (with_asyncio_timeout, async_work),
    "anyio.fail_after, async work": (with_fail_after, async_work),
    "asyncio.timeout, run_in_threadpool": (with_asyncio_timeout, run_blocking_in_thread),
    "anyio.fail_after, run_in_threadpool": (with_fail_after, run_blocking_in_thread),
    "anyio.fail_after, run_sync(abandon_on_cancel=True)": (with_fail_after, run_blocking_abandoning),
    "anyio.fail_after, run_in_threadpool, checkpoint": (with_fail_after, run_blocking_then_checkpoint),
}
app = FastAPI()


@app.post("/timed/{name}")
async def start_timed(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    guard, work = EXPERIMENTS[name]
    background_tasks.add_task(timed_task, name, guard, work)
    return {"started": name}


async def run_experiments(names: list[str], *, threads: bool) -> None:
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await asyncio.gather(*(client.post(f"/timed/{name}") for name in names))
    # 离开 serve() 时已等到任务结束；任务不再等待的线程可能仍在运行。
    deadline = time.monotonic() + 30  # 只用来结束一个否则永远不会结束的等待
    while threads and any(name not in work_done for name in names):
        assert time.monotonic() < deadline, "the thread did not finish"
        await asyncio.sleep(0.05)


def report(names: list[str]) -> None:
    print(f"{'':52} {'the await ended':>16}   {'with':18} {'the work finished':>18}")
    for name in names:
        result = outcomes[name]
        done = work_done.get(name)
        finished_text = f"after {done - result['started']:.2f} s" if done else "never"
        print(f"{name:52} {'after':>7} {result['ended'] - result['started']:.2f} s   {result['outcome']:18} "
              f"{finished_text:>18}")


async_names = list(EXPERIMENTS)[:2]
await run_experiments(async_names, threads=False)
report(async_names)
# 截止时间的计时器读的是事件循环的时钟，其精度可能比 perf_counter 的粗。
CLOCK_SLACK = 0.02
for name in async_names:
    assert outcomes[name]["outcome"] == "TimeoutError"
    assert outcomes[name]["ended"] - outcomes[name]["started"] >= DEADLINE - CLOCK_SLACK, "not before the deadline"
    assert name not in work_done, "the await gave up without waiting for the work, and the work never finished"
assert sorted(work_cancelled) == sorted(async_names), "the work itself received the cancellation"

# %% [markdown] translates="1d7879b42403f4ca"
# 线程无法被取消：Python 没有办法从外部停止另一个线程。超时能做的，是停止*等待*这个线程。它会不会这样做，取决于两点：是哪种超时，以及对线程的等待是怎样发起的。
#
# AnyIO 的超时（`anyio.fail_after`、`anyio.move_on_after`）是*取消作用域*（cancel scope）：一种 `with` 代码块，截止时间一过，就在块内代码的下一个 `await` 处取消它；更准确地说，是在下一个*检查点*（checkpoint）处，事实 4.2 之后会解释。取消作用域还可以被*屏蔽*（shield），即 `CancelScope(shield=True)`：这时外层任何 AnyIO 作用域发出的取消，都要等屏蔽块结束后才能到达块内的代码。
#
# `run_in_threadpool(func)` 就是 `anyio.to_thread.run_sync(func)`，它的 `abandon_on_cancel` 参数在你不传时为 `False`。此时 AnyIO 在一个被屏蔽的作用域里等待线程：`CancelScope(shield=not abandon_on_cancel)`。所以包在调用外面的 AnyIO 超时打断不了这次等待，等待会一直持续到线程返回。传入 `abandon_on_cancel=True` 时作用域不被屏蔽：超时打断等待，调用就此放弃（*abandon*）这个线程，而线程继续运行。
#
# `asyncio.timeout` 不是 AnyIO 的取消作用域：它直接取消 asyncio 任务。屏蔽只挡得住 AnyIO 自己发出的取消，所以挡不住它。
#
# 下一个单元格展示这些结论所依据的源码行（固定版本的 Starlette 和 AnyIO）；事实 4.2 再展示它们的效果。

# %%
(starlette_call,) = find_in_source("starlette", "return await anyio.to_thread.run_sync(func)")
(shielded_wait,) = find_in_source("anyio", "CancelScope(shield=not abandon_on_cancel)")
(default_abandon,) = [hit for hit in find_in_source("anyio", "abandon_on_cancel: bool = False")
                      if hit.file == "anyio/to_thread.py"]
for hit in (starlette_call, default_abandon, shielded_wait):
    print(hit)
assert starlette_call.function == "run_in_threadpool" and "abandon_on_cancel" not in starlette_call.code
assert default_abandon.function == "run_sync"
assert shielded_wait.function.endswith("run_sync_in_worker_thread")

# %% [markdown] translates="a6f22656d43ddfed"
# **事实 4.2**：包住用 `run_in_threadpool` 执行的 0.8 s 阻塞工作时：`asyncio.timeout(0.2)` 在 0.2 s 后以 `TimeoutError` 放弃，线程继续运行，并在 0.8 s 时完成工作。`anyio.fail_after(0.2)` 则根本不放弃：await 在 0.8 s 后正常返回，而当这个 await 是块中最后一个 await 时，不会抛出 `TimeoutError`。在 `anyio.fail_after` 下使用 `anyio.to_thread.run_sync(..., abandon_on_cancel=True)`，会在 0.2 s 后放弃，线程同样在 0.8 s 时完成。
#
# `TimeoutError` 为何消失，背后的规则是：被取消的 AnyIO 作用域，会在其内部的下一个*检查点*（一个可能挂起的 `await`）投递取消；而 `fail_after` 只有在取消确实被投递、并在作用域内被捕获时，才会在离开作用域时抛出 `TimeoutError`。对线程的等待被屏蔽了，不算这样的检查点；块中之后的任何 `await` 都算。所以在线程调用之后加一个 `await anyio.sleep(0)`，`fail_after` 就会抛出 `TimeoutError`：只是很迟，要等线程的 0.8 s 过完。

# %%
thread_names = list(EXPERIMENTS)[2:]
await run_experiments(thread_names, threads=True)
report(thread_names)
gave_up = ["asyncio.timeout, run_in_threadpool", "anyio.fail_after, run_sync(abandon_on_cancel=True)"]
for name in thread_names:
    result = outcomes[name]
    assert work_done[name] - result["started"] >= WORK_SECONDS, f"{name}: the thread ran to the end"
    if name == "anyio.fail_after, run_in_threadpool, checkpoint":
        assert result["outcome"] == "TimeoutError", "the checkpoint delivered the cancellation"
        assert result["ended"] >= work_done[name], "late: only after the thread had finished"
    elif name in gave_up:
        assert result["outcome"] == "TimeoutError"
        assert result["ended"] - result["started"] >= DEADLINE - CLOCK_SLACK, "not before the deadline"
        assert result["ended"] < work_done[name], "the await gave up before the thread finished"
    else:
        assert result["outcome"] == "returned normally"
        assert result["ended"] - result["started"] >= WORK_SECONDS
outcomes.clear()
work_done.clear()
work_cancelled.clear()

# %% [markdown] translates="703a5758b6e3bab3"
# 放弃线程还有第二个代价。第 2 节的线程令牌上限统计的是持有令牌的*调用*，而被放弃的调用会立即归还令牌，它的线程却还在运行。因此被超时放弃的调用不再计入上限：实际运行的线程比上限允许的多。
#
# **事实 4.3**：在只有 1 个令牌的限制器下，四次 `anyio.to_thread.run_sync(..., abandon_on_cancel=True)` 调用，每次都在 0.05 s 后被放弃，结果是四个线程同时运行，而限制器的那一个令牌是空闲的。把默认限制器设为 1 个令牌，在 `run_in_threadpool` 外面套 `asyncio.timeout`，效果相同。同样的调用如果不带 `abandon_on_cancel`，在 AnyIO 自己的超时下，每次都持有令牌直到线程返回：同时运行的线程从不超过一个。（实验在一个独立的事件循环上运行，以免动到本笔记本的限制器。）


# %%
async def four_calls_limited_to_one(how: str) -> dict[str, int]:
    limiter = anyio.to_thread.current_default_thread_limiter()  # 这个新循环自己的限制器
    limiter.total_tokens = 1
    abandon = how != "anyio.move_on_after, abandon_on_cancel=False"
    lock, running, most = threading.Lock(), [0], [0]
    release = threading.Event()  # 被放弃的线程等待它；其他线程 0.1 s 后返回

    def blocking() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if abandon:
            release.wait(timeout=60)
        else:
            time.sleep(0.1)
        with lock:
            running[0] -= 1

    for _ in range(4):
        if how == "asyncio.timeout, run_in_threadpool":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await run_in_threadpool(blocking)
        else:
            with anyio.move_on_after(0.05):  # AnyIO 的超时
                await anyio.to_thread.run_sync(blocking, abandon_on_cancel=abandon)
    for _ in range(6000 if abandon else 0):  # 被放弃的线程可能还在启动：（有时限地）等待全部 4 个
        if running[0] == 4:
            break
        await anyio.sleep(0.01)
    seen = {"threads running": running[0], "most at once": most[0], "tokens borrowed": limiter.borrowed_tokens}
    release.set()
    while running[0]:  # 在循环关闭之前让每个线程都结束
        await anyio.sleep(0.01)
    return seen


HOWS = (
    "anyio.move_on_after, abandon_on_cancel=True",
    "asyncio.timeout, run_in_threadpool",
    "anyio.move_on_after, abandon_on_cancel=False",
)
limits = {how: await asyncio.to_thread(anyio.run, four_calls_limited_to_one, how) for how in HOWS}
for how, seen in limits.items():
    print(f"{how:44}: {seen}")
for how in HOWS[:2]:
    assert limits[how] == {"threads running": 4, "most at once": 4, "tokens borrowed": 0}, f"{how}: no limit"
assert limits[HOWS[2]]["most at once"] == 1, "held tokens: one thread at a time"

# %% [markdown] translates="358fa3975a104f81"
# 三条教训。给在线程中运行的工作设超时，限制的是*你等待*多久，而不是工作运行多久：线程会一直忙到函数返回。要真正约束这类工作，就从内部约束：给阻塞客户端设置它自己的超时（大多数 HTTP 和数据库客户端都支持），或者在步骤之间检查一个标志。还要清楚自己用的是哪种超时：对于 AnyIO 的超时，`abandon_on_cancel=True` 会停止等待，同时也解除了线程上限对那个线程的约束（事实 4.3）；不加它，上限依然有效，你也要一直等到线程结束。

# %% [markdown] translates="7420b8dd01753160"
# ## 5. CPU 密集型工作：进程池
#
# 线程共用一个 GIL，所以把纯 Python 的 CPU 工作分给多个线程，耗时和放在一个线程里一样，而且运行期间还会拖慢循环所在的线程（第 1 节）。每个进程都有自己的解释器和 GIL。`concurrent.futures.ProcessPoolExecutor` 维护几个工作进程（worker）；在异步代码中，`await loop.run_in_executor(pool, func, *args)` 把 `func` 及其参数发给一个工作进程（经过 pickle 序列化：函数以“模块名 + 函数名”的引用形式传过去），并在不阻塞循环的情况下 await 结果。
#
# 工作进程如何启动，在笔记本里和服务器里都很重要。`fork` 按父进程当时的样子复制它，不管它的其他线程正做到哪一半；Python 文档警告不要 fork 正在运行多个线程的进程，而本进程正是如此（内核的线程和各个服务器的线程）。`spawn` 则启动一个全新的解释器，由它自己导入所需的东西。默认方式取决于平台和 Python 版本（下面的单元格会打印本机的默认值）；本课程显式指定 `spawn`，让各单元格在哪里都表现一致。
#
# **事实 5.1**：本机的默认启动方式打印在下面。使用 `spawn` 时，在笔记本中定义的函数不能在进程池里运行：工作进程在自己的 `__main__` 里找不到它，反序列化（unpickle）失败后退出，进程池随之损坏。（这段代码在一个全新的内核中运行，让当前内核保持干净。）这就是 `count_primes` 放在模块里的原因。

# %%
print(f"default start method here: {multiprocessing.get_start_method()}; "
      f"threads in this process: {threading.active_count()}")
NOTEBOOK_FUNCTION_IN_A_SPAWN_POOL = """
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor


def square(x):  # defined in the notebook, that is in its __main__
    return x * x


# A worker reports its own error on its stderr; point that at a file so as to show it here.
with tempfile.TemporaryFile("w+") as worker_stderr:
    kernel_stderr = os.dup(2)
    os.dup2(worker_stderr.fileno(), 2)  # a worker process inherits file descriptor 2
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                pool.submit(square, 3).result(timeout=60)
            except Exception as error:
                print(f"the notebook: {type(error).__name__}: {error}")
    finally:
        os.dup2(kernel_stderr, 2)
        os.close(kernel_stderr)
    worker_stderr.seek(0)
    print(f"the worker:   {worker_stderr.read().strip().splitlines()[-1]}")
"""
print("running that in a fresh kernel (this takes a few seconds) ...", flush=True)
fresh = run_in_fresh_kernel(NOTEBOOK_FUNCTION_IN_A_SPAWN_POOL, timeout=90)
print(fresh.output.strip())
assert not fresh.error, fresh.error
assert "the notebook: BrokenProcessPool" in fresh.output
assert "the worker:   AttributeError: Can't get attribute 'square'" in fresh.output

# %% [markdown] translates="4f4577ddb20078ff"
# 进程池应当放在生命周期里：启动工作进程需要时间，所以只在启动时做一次，并在第一个请求到来之前等所有工作进程就绪。`spawn` 出来的工作进程，在第一次从某个模块反序列化函数时才导入该模块（这里是 `bgcourse`，它会连带导入 FastAPI 和 uvicorn）；进程池的 `initializer` 在每个工作进程启动时运行一次，所以把 `count_primes` 传给它，这次导入就发生在启动时，而不是第一个作业里。关闭进程池要等工作进程退出，所以生命周期在线程上而不是在循环上执行关闭。
#
# **事实 5.2**：从一个后台任务同时启动八个 `count_primes(100_000)` 作业。通过 `run_in_threadpool`（八个线程，一个 GIL），它们最多只能让一个核忙起来，所以耗时和逐个执行一样。通过进程池（每个核一个工作进程，至少两个，至多四个），机器给多少核，它们就能让多少核忙起来，耗时也相应缩短。每个作业报告自己得到的 CPU 时间（`cpu_time_of`），CPU 时间除以墙钟时间就是在干活的核数，所以单元格能判断工作进程是否得到了它们要的核。你机器上的其他程序可能占着这些核（单核机器则根本没有核可给），所以只有当工作进程得到 1.5 个核或更多时，才断言有加速，图的标题会说明你的机器属于哪种情况。始终断言的是：线程最多用了 1.2 个核；在进程池的各轮中，服务器自身进程花掉的 CPU 时间不到线程各轮的三分之一（工作在其他进程中运行，所以本进程的 GIL 保持空闲）；进程池工作时发出的 `/ping`，等待时间（中位数）比八个线程工作时短，因为后一种情况下，循环所在的线程得等 GIL。

# %%
# 本进程可以使用的核（容器或 `taskset` 允许的可能比机器实际拥有的少）。
USABLE_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = min(max(USABLE_CORES, 2), 4)  # 每个可用核一个；至少两个，这样才有工作可分
JOBS, PRIMES_BELOW = 8, 100_000  # 八个小作业：被拖慢的工作进程会少接几个
ROUNDS = 3  # 每种方式三轮，取最快的一轮：其他程序可能暂时占用某个核
ENOUGH_CORES = 1.5  # 工作进程至少得到这么多核时，才断言有加速


@asynccontextmanager
async def lifespan(app: FastAPI):
    pool = ProcessPoolExecutor(
        max_workers=WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=count_primes,  # 在每个工作进程中运行一次：在启动时就在那里导入 bgcourse
        initargs=(10,),
    )
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        pids: set[int] = set()
        while len(pids) < WORKERS:  # 等到每个工作进程都已启动并应答过一次
            pids.update(await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(WORKERS))))
            await asyncio.sleep(0.01)
        app.state.pool, app.state.pids, app.state.startup = pool, pids, time.perf_counter() - started
        yield
    finally:
        await anyio.to_thread.run_sync(pool.shutdown)  # 等待工作进程退出


app = FastAPI(lifespan=lifespan)
took: dict[str, list[tuple[float, float]]] = {"threads": [], "processes": []}  # 每轮的 (墙钟, CPU) 秒数
server_cpu: dict[str, list[float]] = {"threads": [], "processes": []}  # 每轮本进程的 CPU 秒数


async def crunch_in_threads() -> None:
    started, own_cpu = time.perf_counter(), time.process_time()  # process_time：本进程的所有线程
    jobs = [run_in_threadpool(cpu_time_of, count_primes, PRIMES_BELOW) for _ in range(JOBS)]
    cpu = sum(seconds for _, seconds in await asyncio.gather(*jobs))
    work_ended["threads"] = time.perf_counter()
    server_cpu["threads"].append(time.process_time() - own_cpu)
    took["threads"].append((work_ended["threads"] - started, cpu))


async def crunch_in_processes(pool: ProcessPoolExecutor) -> None:
    loop = asyncio.get_running_loop()
    started, own_cpu = time.perf_counter(), time.process_time()
    jobs = [loop.run_in_executor(pool, cpu_time_of, count_primes, PRIMES_BELOW) for _ in range(JOBS)]
    cpu = sum(seconds for _, seconds in await asyncio.gather(*jobs))
    work_ended["processes"] = time.perf_counter()
    server_cpu["processes"].append(time.process_time() - own_cpu)
    took["processes"].append((work_ended["processes"] - started, cpu))


@app.post("/crunch/{how}")
async def crunch(how: str, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    if how == "threads":
        background_tasks.add_task(crunch_in_threads)
    else:
        background_tasks.add_task(crunch_in_processes, request.app.state.pool)
    return {"started": how}


@app.get("/pids")
async def pids_of(request: Request) -> dict[str, list[int]]:
    return {"server": [os.getpid()], "pool": sorted(request.app.state.pids)}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


pings: dict[str, list] = {"threads": [], "processes": []}  # 作业运行期间发出的 ping，所有轮次
progress_bar = tqdm(total=1 + 2 * ROUNDS, desc=f"starting {WORKERS} worker processes")
with serve(app, start_timeout=100) as url:  # 在繁忙的机器上，启动进程可能要很多秒
    progress_bar.update()
    # 连接 5 s 没有请求，uvicorn 就会关闭它，而 httpx 会把空闲连接保留 5 s：
    # 在慢机器上，请求可能正好发到一个正在关闭的连接上。
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(keepalive_expiry=1.0)) as client:
        pids = (await client.get("/pids")).json()
        for round_number in range(1, ROUNDS + 1):
            for how in ("threads", "processes"):
                progress_bar.set_description(f"round {round_number} of {ROUNDS}: {JOBS} jobs in {how}")
                runs_so_far = len(took[how])
                await client.post(f"/crunch/{how}")
                samples = await probe_latency(client, "/ping", count=8, every=0.05)
                deadline = time.monotonic() + 60  # 只用来结束一个否则永远不会结束的等待
                while len(took[how]) == runs_so_far:  # 作业在响应之后运行；等待它们
                    assert time.monotonic() < deadline, f"the jobs in {how} did not finish"
                    await asyncio.sleep(0.02)
                pings[how] += [s for s in samples if s.sent < work_ended[how]]
                progress_bar.update()
    startup = app.state.startup
progress_bar.close()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # 信号 0：只询问进程是否存在
    except ProcessLookupError:
        return False
    return True


best = {how: min(rounds) for how, rounds in took.items()}  # 每种方式最快的一轮
cores = {how: cpu / wall for how, (wall, cpu) in best.items()}
speed_up = best["threads"][0] / best["processes"][0]
median_ping = {how: statistics.median(s.seconds for s in samples) for how, samples in pings.items()}
got_the_cores = cores["processes"] >= ENOUGH_CORES
print(f"this process may use {USABLE_CORES} of the {os.cpu_count()} CPU cores; pool workers: {WORKERS}; "
      f"starting them took {startup:.2f} s")
print(f"server process {pids['server'][0]}, worker processes {pids['pool']}")
for how in ("threads", "processes"):
    print(f"{JOBS} jobs in {how:9}: {best[how][0]:.2f} s (best of {ROUNDS}), keeping {cores[how]:.1f} cores busy; "
          f"median wait of a /ping meanwhile {median_ping[how]:.3f} s")
print(f"the pool's workers got {cores['processes']:.1f} cores, and took {1 / speed_up:.0%} of the threads' time "
      f"(the speed-up is asserted from {ENOUGH_CORES} cores on)")
print(f"/ping waited {median_ping['threads'] / median_ping['processes']:.0f} times less while the pool worked "
      "than while the threads did")
own = {how: min(rounds) for how, rounds in server_cpu.items()}
print(f"this process's own CPU time per round: {own['threads']:.2f} s with threads, {own['processes']:.2f} s with "
      "the pool")
print(f"worker processes still running after the server stopped: {[p for p in pids['pool'] if is_running(p)]}")
assert pids["server"][0] not in pids["pool"] and len(pids["pool"]) == WORKERS
assert not [pid for pid in pids["pool"] if is_running(pid)], "the lifespan shut the pool down"
assert max(cpu / wall for wall, cpu in took["threads"]) < 1.2, "one GIL: the threads never use much more than a core"
assert pings["threads"] and pings["processes"], "some pings were sent while the jobs ran"
# CPU 时间而非等待时间：其他程序无法让它变大，所以留足余量的比值是可靠的。
assert own["processes"] < own["threads"] / 3, "the work ran in the pool's processes, not in this one"
assert median_ping["processes"] < median_ping["threads"], "the loop is more responsive while the pool works"
if got_the_cores:
    assert speed_up > 1.2, "the workers had the cores, so the work was faster"

figure = NotebookFigure(figsize=(9, 3.8), layout="constrained")
time_axes, ping_axes = figure.subplots(1, 2)
bars = time_axes.bar(["threads (one GIL)", f"process pool ({WORKERS} workers)"],
                     [best["threads"][0], best["processes"][0]], color=["#4c72b0", "#55a868"])
time_axes.bar_label(bars, [f"{cores[how]:.1f} cores busy" for how in ("threads", "processes")], fontsize=8)
time_axes.set(ylabel=f"seconds for {JOBS} jobs (best of {ROUNDS})", title="the same CPU work")
for how, samples in pings.items():
    ping_axes.plot([s.sent_at for s in samples], [s.seconds for s in samples], "o", label=f"jobs in {how}")
ping_axes.set(xlabel="when /ping was sent (s after the jobs began)", ylabel="/ping took (s)",
              title="the loop meanwhile (all rounds)")
ping_axes.legend(fontsize=8)
ping_axes.grid(alpha=0.3)
if got_the_cores:
    verdict = (f"Your machine gave the pool's {WORKERS} workers {cores['processes']:.1f} cores,\n"
               f"so the pool was {speed_up:.1f} times as fast as the threads.")
else:  # 单看图会与本节标题矛盾：说明原因
    verdict = (f"Your machine gave the pool's {WORKERS} workers only {cores['processes']:.1f} cores (other programs "
               "held the rest, or it has no more),\n"
               f"so here it ran at {speed_up:.1f} times the threads' speed; with {WORKERS} free cores it would be up "
               f"to {WORKERS} times as fast.")
figure.suptitle(verdict, fontsize=10)
figure

# %% [markdown] translates="6b846b9c70c8a230"
# 加速比就是工作进程保持忙碌的核数，而它取决于机器同时还在做什么：在两个空闲核上接近 2；其他程序占着核时，上图中“cores busy”的数字会下降，加速比也随之下降，这时图的标题会说明这一点。线程的那个数字从不明显超过 1：这就是 GIL。还有两个代价需要知道：参数和结果在进程之间以 pickle 形式传递，所以要传小的输入（文件名、id），而不是大对象；每个工作进程都是一个完整的 Python 进程，有自己的内存。

# %% [markdown] translates="9d011d5556bc628e"
# ## 6. 常见建议，逐条验证
#
# | 建议 | 结论 | 证据 |
# |---|---|---|
# | “绝不要在 `async def` 里阻塞” | 正确：每个请求都要等整个阻塞调用结束 | 事实 1.1 |
# | “阻塞的工作用 `def`” | 正确：`def` 任务能让循环保持空闲，即使它跑的是 CPU 循环（事实 1.1）；但 CPU 密集型线程与循环共用 GIL，所以八个这样的线程运行时，`/ping` 比进程池工作时等得更久（事实 5.2） | 事实 1.1、5.2 |
# | “FastAPI 在线程池中运行 `def` 代码” | 正确，每个循环 40 个令牌，由端点、依赖项和任务共享 | 事实 2.1、2.2 |
# | “任务排队了，就调高线程上限” | 有效（在生命周期中调）；代价是线程和内存 | 事实 2.3 |
# | “用模块级信号量限制并发（concurrency）” | 只在一个循环内有效；第二次启动就会失败 | 事实 3.3、3.4 |
# | “给慢调用套上超时” | 停止的是等待，从来不是线程；`fail_after` 套在 `run_in_threadpool` 外面时，连等待都停不了 | 事实 4.1、4.2 |
# | “CPU 密集型工作用进程” | 正确：有多个空闲核时更快，而且循环保持空闲 | 事实 5.2 |

# %% [markdown] translates="d0efd32856a41cb5"
# ## 练习（Exercises）
#
# 每个练习都有一个代码单元格供你作答，还有一个单元格用真实的服务器检查答案。参考答案在 `solutions/ch05_performance/` 中；先自己尝试，再对照。
#
# ### 练习 5.1：渲染报告，不拖住循环
#
# `render_report(name)` 代表一个阻塞的 PDF 库：它 sleep 0.5 s，然后把 `name` 追加到 `rendered`。写一个应用，包含 `POST /reports/{name}`：立即以 `202 Accepted` 应答 `{"report": name, "status": "rendering"}`，并在后台任务中渲染报告；还包含 `GET /ping`（`async def`），在报告渲染期间必须照常应答：检查会在响应之后立刻发一个 `/ping`，并期望它在报告渲染完成之前得到应答。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
rendered: list[str] = []


def render_report(name: str) -> None:
    time.sleep(0.5)  # 一个阻塞的 PDF 库
    rendered.append(name)


@app.post("/reports/{name}", status_code=status.HTTP_202_ACCEPTED)
async def create_report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(render_report, name)  # def 函数：它在工作线程上运行
    return {"report": name, "status": "rendering"}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch05_performance as checks

checks.ex01(app, rendered)

# %% [markdown] translates="d2964ac7362fd309"
# ### 练习 5.2：同时最多两个导出
#
# 写一个应用，由它的生命周期创建 `app.state.exports`：一个允许两个导出同时运行的 `asyncio.Semaphore`。`POST /exports/{number}`（`number` 为 `int`）以 `202` 应答 `{"export": number}`，并添加一个 `async def` 任务：在持有信号量期间，把 `("start", number)` 追加到 `events`，等待 `await asyncio.sleep(0.2)`（这就是导出），再追加 `("end", number)`。检查会同时发出六个请求，并启动你的应用两次。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status

events: list[tuple[str, int]] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.exports = asyncio.Semaphore(2)  # 在运行中的循环里创建，每次启动一次
    yield


app = FastAPI(lifespan=lifespan)


async def export(number: int, exports: asyncio.Semaphore) -> None:
    async with exports:
        events.append(("start", number))
        await asyncio.sleep(0.2)
        events.append(("end", number))


@app.post("/exports/{number}", status_code=status.HTTP_202_ACCEPTED)
async def start_export(number: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(export, number, request.app.state.exports)
    return {"export": number}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(app, events)

# %% [markdown] translates="5e29ab081812c5ee"
# ### 练习 5.3：给阻塞调用设截止时间
#
# `fetch_rates()` 代表一个慢 API 的阻塞客户端：它 sleep 1 s，然后把 `"fetched"` 追加到 `calls`。写一个应用，包含 `POST /refresh`：以 `202` 应答 `{"status": "refreshing"}`，并添加一个任务，在工作线程上运行 `fetch_rates`，截止时间 0.3 s：如果调用按时返回，就把 `"ok"` 追加到 `outcomes`；截止时间一过，就*立即*追加 `"timed out"`（不能等线程结束）。第 4 节展示了哪些超时会放弃线程、哪些不会（事实 4.3 则说明放弃的代价：被放弃的线程在线程上限之外继续运行）。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import time

from fastapi import BackgroundTasks, FastAPI, status
from fastapi.concurrency import run_in_threadpool

app = FastAPI()
calls: list[str] = []
outcomes: list[str] = []


def fetch_rates() -> None:
    time.sleep(1)  # 慢 API 的阻塞客户端
    calls.append("fetched")


async def refresh_rates() -> None:
    try:
        async with asyncio.timeout(0.3):  # 取消 await；线程继续运行
            await run_in_threadpool(fetch_rates)
    except TimeoutError:
        outcomes.append("timed out")
    else:
        outcomes.append("ok")


@app.post("/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(refresh_rates)
    return {"status": "refreshing"}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(app, outcomes, calls)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验（Quiz）
#
# 每道题显示在一个单元格里；在它下面的单元格作答；再下一个单元格告诉你是否答对。答对时附上解释；答错时给出提示，但不泄露答案（如果你更想直接读解释，`quiz.explain("q01")` 随时可以显示 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch05_performance")
quiz.ask("q01")

# %% nbgrader={"grade": false, "grade_id": "q01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q01 = "C"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q01", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q01", answer_q01)

# %% nbgrader={"grade": false, "grade_id": "q02_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q02")

# %% nbgrader={"grade": false, "grade_id": "q02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q02 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q02", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q02", answer_q02)

# %% nbgrader={"grade": false, "grade_id": "q03_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q03")

# %% nbgrader={"grade": false, "grade_id": "q03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q03 = "D"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q03", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q03", answer_q03)

# %% nbgrader={"grade": false, "grade_id": "q04_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q04")

# %% nbgrader={"grade": false, "grade_id": "q04_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q04 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q04", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q04", answer_q04)

# %% nbgrader={"grade": false, "grade_id": "q05_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q05")

# %% nbgrader={"grade": false, "grade_id": "q05_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi.concurrency import run_in_threadpool


async def run_off_loop(func, *args):
    return await run_in_threadpool(func, *args)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", run_off_loop)

# %% [markdown] translates="81685d37fe4157d1"
# ## 小结
#
# - `async def` 任务中的阻塞调用，会让期间到达的每个请求都等它剩下的部分；`def` 任务或 `await run_in_threadpool(...)` 能让循环保持空闲，不过 CPU 密集型线程仍会通过 GIL 拖慢循环（第 1 节和第 5 节）。
# - `def` 端点、`def` 依赖项和 `def` 任务共用 AnyIO 的默认线程限制器：每个事件循环 40 个令牌。第 41 个要等待，慢的 `def` 任务可能拖延 `def` 端点。在生命周期中用 `anyio.to_thread.current_default_thread_limiter().total_tokens = N` 调高上限，代价是更多的线程和内存（第 2 节）。
# - 循环上的长工作要拆成批次，批次之间放一个 `await`；用在生命周期中创建的信号量跨请求约束某类工作，绝不要在导入时创建它（第 3 节）。
# - 超时能取消异步工作；它从来停不了线程，而 `anyio.fail_after` 甚至不会停止对 `run_in_threadpool` 的等待（第 4 节）。
# - CPU 密集型工作应放进进程池：在生命周期中用 `spawn` 启动，交给它的函数要定义在模块中（第 5 节）。
#
# 下一章：第 6 章排查 `RuntimeError: No response returned.`。
