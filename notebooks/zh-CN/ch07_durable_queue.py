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

# %% [markdown] translates="ecf1ef5bf89c24e4"
# # 第 7 章：`BackgroundTasks` 不够用的时候：关闭、丢失的任务、持久化队列（durable queue）
#
# 后台任务（background task）活在接收请求（request）的那个服务器进程的内存里。本章用生产环境停掉进程的各种方式（部署时的 SIGTERM、开发者连按两次 Ctrl-C、`kill -9`）逐一停掉这个进程，并统计每种方式的代价。然后把工作挪进一个持久化队列 [huey](https://huey.readthedocs.io/)：它的作业（job）是 SQLite 文件里的行（或 Redis 里的键），比任何进程都活得久。再统计一遍。
#
# 这里的一切都是真实运行的：`python -m uvicorn` 和 `huey_consumer` 是本 notebook 的子进程，信号用 `os.kill` 发送；装了 `redis-server` 的机器上，还会启动一个用完即弃的 Redis 服务器。
#
# **你将学到**
#
# - uvicorn 在收到 SIGTERM、Ctrl-C、第二次 Ctrl-C、带 `--timeout-graceful-shutdown` 时，以及收到 SIGKILL 时，如何处理正在运行和排队等待的后台任务；
# - 持久化队列如何保存作业：huey 跑在 SQLite 上（不需要服务器）或 Redis 上（`QUEUE_URL`），API 进程负责入队（enqueue），消费者（consumer）负责执行，结果可以读回；
# - 作业能挺过 API 进程的死亡，以及如何配置重试（retry）；
# - 执行作业的工作线程（worker thread）死掉时，*正在运行*的作业会怎样，以及为什么作业必须幂等（idempotent）；
# - 第 3 章的发件箱（outbox）如何补上最后一块：作业一个不丢，回执也不会重复发送；
# - 每种方案在入队到开始的延迟上的代价，以及如何选择。

# %% [markdown] translates="248580f14bfc7656"
# ## 0. 准备：版本，以及课程的辅助函数
#
# 不同版本之间行为会变，所以每一章都会打印它验证时所用的版本。

# %%
import asyncio
import contextlib
import inspect
import os
import platform
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "huey": "3.5.4",
    "redis": "8.1.0",
    "sqlalchemy": "2.1.9",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown] translates="d718a5d29e928862"
# 本章用到的 `bgcourse` 辅助函数，每个都是一个 `with` 块，退出后什么都不留下：
#
# - `uvicorn_process(app, *options, env=...)` 在一个空闲端口上以子进程运行 `python -m uvicorn app`，等到它能应答，然后提供它的 `url`、`send_signal()`、`wait()` 和 `output`；`huey_consumer_process(huey, *options, env=...)` 对 huey 的消费者做同样的事。无论发生了什么，块结束时两者都会杀掉子进程。
# - `temporary_queue(name)` 提供一个全新的 huey 队列：临时文件夹里的一个 SQLite 文件；如果环境变量 `QUEUE_URL` 是 `redis://...`，则用 Redis。`run_consumer(huey)` 在本 notebook 的线程里运行 huey 自带的消费者。
# - `throwaway_redis()` 在一个空闲端口、一个临时文件夹里启动真正的 `redis-server`。
# - `read_module_source(name)` 显示子进程所运行模块的代码。

# %%
import httpx
import uvicorn
from fastapi import BackgroundTasks, FastAPI, status
from huey.consumer import Consumer
from huey.exceptions import TaskException
from IPython.display import Markdown
from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, create_engine, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from huey.exceptions import ConfigurationError
from tqdm.auto import tqdm

from bgcourse import (
    NotebookFigure,
    capture_logs,
    find_in_source,
    find_redis_server,
    huey_consumer_process,
    load_quiz,
    make_huey,
    read_module_source,
    run_consumer,
    serve,
    shows_error,
    temporary_queue,
    throwaway_redis,
    uvicorn_process,
    wait_until,
)

redis_program = find_redis_server()
if redis_program is None:
    print("redis-server: not installed here; the Redis cells say so and skip (apt-get install redis-server)")
else:
    about = subprocess.run([redis_program, "--version"], capture_output=True, text=True, check=True).stdout
    print(f"redis-server {about.split()[2].removeprefix('v=')}: found, the Redis cells run")

# %% [markdown] translates="5005349077148fb0"
# ## 1. 停掉服务器，`BackgroundTasks` 会怎样
#
# 要观察信号的效果，服务器必须是一个独立的进程：uvicorn 只在主线程里安装信号处理器（`Server.capture_signals`），所以 `serve()` 在 notebook 线程里运行的服务器永远收不到信号。下面就是以 `python -m uvicorn solutions.ch07_durable_queue.background_app:app` 运行的应用。一次 `POST /jobs` 安排四个作业，依次执行；每个作业在结束或被取消时往文件里写一行，生命周期（lifespan）则记下自己是怎么结束的。

# %%
print(read_module_source("solutions.ch07_durable_queue.background_app"))

# %% [markdown] translates="139aee49c629a5ac"
# 本节每个单元格都用同一个实验：启动应用，发两个请求（八个作业：两个在运行，六个排在它们后面），发送信号，等进程退出，数文件里的行。在服务器会等完所有作业的场景里，每个作业耗时 0.5 s；在服务器被提前停掉的场景里，每个作业耗时 3 s，这样无论机器多忙，停止时头几个作业都一定还在运行。第二个信号要等 uvicorn 在日志里说它正在关闭之后才发，就像有人又按了一次 Ctrl-C。

# %%
BACKGROUND_APP = "solutions.ch07_durable_queue.background_app:app"
JOBS = 8  # 两个请求，每个四个作业


@dataclass
class Stopped:
    how: str
    done: int
    cancelled: int
    never_ran: int
    lifespan: str
    exit_status: int
    seconds: float  # 从第一个信号到进程退出
    lived: float  # 从第一个请求到进程退出
    server_log: str
    refused_while_running: bool  # 进程还在运行时，新连接就已被拒绝


def stop_server(how: str, *signals: int, options: tuple[str, ...] = (), job_seconds: float = 0.5) -> Stopped:
    with tempfile.TemporaryDirectory() as folder:
        task_log = Path(folder) / "tasks.log"
        with uvicorn_process(BACKGROUND_APP, *options, env={"TASK_LOG": str(task_log)}) as server:
            requested = time.monotonic()
            with httpx.Client(base_url=server.url) as client:
                for first in (0, 4):
                    params = {"count": 4, "seconds": job_seconds, "first": first}
                    client.post("/jobs", params=params).raise_for_status()
            signalled = time.monotonic()
            for number, signum in enumerate(signals):
                if number:  # 再发一次：等 uvicorn 接收了第一个信号之后
                    server.wait_for_output("Shutting down", timeout=60)
                server.send_signal(signum)
            wait_until(lambda: refuses_connections(server.url), timeout=60, what="new connections refused")
            refused_while_running = server.returncode is None
            exit_status = server.wait(timeout=120)
            seconds, lived = time.monotonic() - signalled, time.monotonic() - requested
            server_log = server.output
        lines = task_log.read_text().splitlines() if task_log.exists() else []
    done = sum(line.startswith("done") for line in lines)
    cancelled = sum(line.startswith("cancelled") for line in lines)
    if "lifespan shutdown ran" in lines:
        lifespan = "shutdown ran"
    elif "lifespan finally ran" in lines:
        lifespan = "only `finally` ran"
    else:
        lifespan = "nothing ran"
    return Stopped(how, done, cancelled, JOBS - done - cancelled, lifespan, exit_status, seconds, lived, server_log,
                   refused_while_running)


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        # 要么被直接拒绝，要么在监听套接字关闭前刚进入 backlog、随后没有应答就被丢弃：
        # 无论哪种，服务器都不再接收请求了。
        return True
    return False


def uvicorn_said(stopped: Stopped) -> list[str]:
    """uvicorn's own lines about shutting down, without the request log and the tracebacks."""
    return [line for line in stopped.server_log.splitlines()
            if line.startswith(("INFO:", "ERROR:")) and re.search(r"Shutting|Waiting for [bc]|Cancel|shutdown", line)]


def report(stopped: Stopped) -> None:
    print(f"{stopped.how}: {stopped.done} of {JOBS} jobs done, {stopped.cancelled} cancelled, "
          f"{stopped.never_ran} never ran; lifespan: {stopped.lifespan}; exit status {stopped.exit_status}, "
          f"{stopped.seconds:.1f} s after the first signal")


def stop_servers(experiments: dict[str, dict[str, Any]]) -> list[Stopped]:
    """Run ``stop_server(how, **arguments)`` for each experiment, with a progress bar: each takes seconds."""
    return [stop_server(how, *arguments.pop("signals"), **arguments)
            for how, arguments in tqdm(experiments.items(), desc="stopping uvicorn processes", unit="process")]


stops: list[Stopped] = []

# %% [markdown] translates="5d31005032177ca5"
# **事实 7.1**：收到 SIGTERM（`kill` 发送的信号；按各自的文档，`docker stop` 和 Kubernetes 发送的也是它）和 SIGINT（Ctrl-C）时，uvicorn 先停止接受连接，然后等待每一个正在运行*和排队中*的后台任务，再执行生命周期的关闭阶段，最后退出。这个等待没有时间上限：除非给了 `--timeout-graceful-shutdown`，否则 `timeout_graceful_shutdown` 为 `None`，而 `Server.shutdown` 把它传给 `asyncio.wait_for`。SIGTERM 之后退出状态是 `-15`：uvicorn 关闭完成后会重新触发这个信号，所以进程管理器（supervisor）看到的是"被 SIGTERM 结束"；SIGINT 之后，重新触发的信号变成 `KeyboardInterrupt`，被 `uvicorn.run` 捕获，退出状态为 `0`。

# %%
default = inspect.signature(uvicorn.Config).parameters["timeout_graceful_shutdown"].default
graceful = stop_servers({"SIGTERM": {"signals": [signal.SIGTERM]},
                         "Ctrl-C (SIGINT)": {"signals": [signal.SIGINT]}})
stops += graceful
print("uvicorn's default timeout_graceful_shutdown:", default)
for stopped in graceful:
    report(stopped)
print("new connections refused while the tasks were finishing:", [s.refused_while_running for s in graceful])
print("uvicorn said:", *uvicorn_said(graceful[-1]), sep="\n  ")
assert default is None
for stopped, expected_status in zip(graceful, (-signal.SIGTERM, 0)):
    assert stopped.refused_while_running, "the listening socket closes first"
    assert stopped.done == JOBS, "every running and queued task ran to the end"
    assert stopped.lifespan == "shutdown ran"
    # 由 sleep 构成的下界（sleep 从不提前结束）：一个请求的四个 0.5 s 的任务，一个接一个。
    assert stopped.lived >= 4 * 0.5, "the process lived until the 2 s of one request's tasks had passed"
    assert stopped.exit_status == expected_status

# %% [markdown] translates="4d841df4ff174132"
# 不管任务要跑多久，进程都会等。进程管理器通常没这么耐心：Docker 关于 `docker stop` 的文档说，宽限期（默认 10 s）过后它会发送 SIGKILL；Kubernetes 关于 Pod 生命周期的文档给的是 30 s（`terminationGracePeriodSeconds`）。SIGKILL 的效果见事实 7.4。
#
# **事实 7.2**：`--timeout-graceful-shutdown 1` 给这个等待设了上限：关闭开始 1 s 后，uvicorn 取消仍在运行的任务（"Cancel 2 running task(s), timeout graceful shutdown exceeded"）；排在它们后面的任务永远不会开始；生命周期的关闭阶段照样执行。

# %%
[stopped] = stop_servers({"SIGTERM, --timeout-graceful-shutdown 1": {
    "signals": [signal.SIGTERM], "options": ("--timeout-graceful-shutdown", "1"), "job_seconds": 3}})
stops.append(stopped)
report(stopped)
print("uvicorn said:", *uvicorn_said(stopped), sep="\n  ")
assert stopped.cancelled >= 1, "the tasks running at the deadline were cancelled"
assert stopped.done + stopped.cancelled < JOBS, "the tasks queued behind them never started"
assert stopped.lifespan == "shutdown ran"

# %% [markdown] translates="0a16f819aec17810"
# **事实 7.3**：uvicorn 等待期间再按一次 Ctrl-C 会强制退出：正在运行的任务被取消，排队的任务不会运行，生命周期的关闭阶段被跳过：生命周期里 `yield` 之后的代码不执行，但包住 `yield` 的 `finally:` 会执行（生命周期是被取消了，而不是被关闭）。只有 SIGINT 会这样：第二次 SIGTERM 什么也不改变。原因在 uvicorn 的 `Server.handle_exit` 里：

# %%
(force_exit,) = find_in_source("uvicorn", "self.force_exit = True")
print(force_exit.file)
print(force_exit.excerpt(before=3, after=2))

# %%
twice_int, twice_term = stop_servers({
    "Ctrl-C twice": {"signals": [signal.SIGINT, signal.SIGINT], "job_seconds": 3},
    "SIGTERM twice": {"signals": [signal.SIGTERM, signal.SIGTERM]},
})
stops += [twice_int, twice_term]
report(twice_int)
report(twice_term)
assert twice_int.cancelled >= 1 and twice_int.never_ran >= 1
assert twice_int.lifespan == "only `finally` ran"
assert twice_term.done == JOBS and twice_term.lifespan == "shutdown ran"

# %% [markdown] translates="90612033dee27b5f"
# **事实 7.4**：SIGKILL（`kill -9`；Linux 内核的 OOM killer 发送的也是这个信号，见 `mm/oom_kill.c`）立即结束进程，不给它运行任何代码的机会：所有待执行的任务都会丢失，生命周期不会结束，uvicorn 对此也不记任何日志。这些任务只存在于该进程的内存里，所以任何不再执行 Python 代码的死法（C 扩展里的段错误、`os._exit()`）都会以同样的方式终结它们。

# %%
[stopped] = stop_servers({"SIGKILL": {"signals": [signal.SIGKILL], "job_seconds": 3}})
stops.append(stopped)
report(stopped)
print(f"tasks lost: {stopped.never_ran} of {JOBS}; uvicorn said about it: {uvicorn_said(stopped) or 'nothing'}")
assert stopped.done == 0 and stopped.never_ran == JOBS
assert stopped.lifespan == "nothing ran" and stopped.exit_status == -signal.SIGKILL
assert uvicorn_said(stopped) == []

# %% [markdown] translates="d4ca8fffe764d24b"
# 六种停止方式，放在一起对比：

# %%
rows = [f"| {s.how} | {s.done} | {s.cancelled} | {s.never_ran} | {s.lifespan} | {s.exit_status} |" for s in stops]
Markdown("\n".join(["| how the server was stopped | done | cancelled | never ran | lifespan | exit status |",
                    "|---|---|---|---|---|---|", *rows]))

# %% [markdown] translates="f95916bc685890e4"
# 所以，后台任务只和进程一样安全：肯等足够久的部署什么也不丢；而耐心耗尽的进程管理器、第二次 Ctrl-C、`kill -9`、OOM kill 或一次崩溃，会丢掉所有还没完成的任务，可客户端早就收到了"已接受"。如果这项工作必须完成，它就需要一份进程之外的记录。

# %% [markdown] translates="9de4bcda76fe9a9d"
# ## 2. 持久化队列：基于 SQLite 的 huey
#
# 持久化队列在端点（endpoint）应答之前就把作业记下来。huey 是一个小型任务队列（task queue），支持多种存储：`SqliteHuey` 把作业放在一个 SQLite 文件里（无需安装或运行任何东西），`RedisHuey` 放在 Redis 服务器里；任务代码是同一份。`make_huey(name)`（以及 `temporary_queue(name)`）按配置选择：`QUEUE_URL=redis://host:6379/0` 得到 `RedisHuey`，`QUEUE_URL=sqlite:////path/queue.db` 或不设 `QUEUE_URL` 得到 `SqliteHuey`。
#
# 任务就是一个加了 `@huey.task()` 装饰器（decorator）的普通函数。下面的应用把生成报表的作业放进队列：

# %%
def reports_app(huey: Any) -> FastAPI:
    app = FastAPI()

    @huey.task()
    def build_report(month: str) -> str:
        time.sleep(0.2)  # 实际的工作
        return f"report for {month}: 12 pages"

    @app.post("/reports/{month}", status_code=status.HTTP_202_ACCEPTED)
    def request_report(month: str) -> dict[str, str]:  # 用 def：入队要写文件，所以不放在 loop 上
        return {"job_id": build_report(month).id}  # 把这次调用存进队列，立即返回

    return app


MONTHS = ("2026-09", "2026-10", "2026-11")

# %% [markdown] translates="cf782b141b977e71"
# **事实 7.5**：调用 huey 任务并不会执行它：它把这次调用（任务名和参数，用 pickle 序列化）存进队列，并返回一个 `Result` 句柄。没有消费者在运行时，作业就一直等着（在 SQLite 上，它们是队列文件里 `task` 表的行），即使把它们入队的服务器已经停了，它们也还在。

# %%
with temporary_queue("ch07-reports") as queue:
    with serve(reports_app(queue.huey)) as url, httpx.Client(base_url=url) as client:
        responses = [client.post(f"/reports/{month}") for month in MONTHS]
    print("answers:", [response.status_code for response in responses])
    print(f"the server has stopped; jobs waiting in the queue: {queue.huey.pending_count()}")
    if queue.url.startswith("sqlite"):
        with sqlite3.connect(queue.url.removeprefix("sqlite:///")) as connection:
            (rows,) = connection.execute("select count(*) from task").fetchone()
        connection.close()
        print(f"rows in the task table of {Path(queue.url).name}: {rows}")
        assert rows == len(MONTHS)
    assert [response.status_code for response in responses] == [202] * len(MONTHS)
    assert queue.huey.pending_count() == len(MONTHS)

# %% [markdown] translates="85231d68bde81dcd"
# **事实 7.6**：消费者从队列中取出作业并执行，再把每个结果存回队列的存储，任何进程都可以按作业 id 读取。这里的消费者是 huey 自带的 `Consumer`，运行在本 notebook 的线程里（`run_consumer`）；下一节会把它作为独立的 `huey_consumer` 进程运行。读取结果会把它*删除*，除非传入 `preserve=True`。

# %%
with temporary_queue("ch07-reports") as queue:
    with serve(reports_app(queue.huey)) as url, httpx.Client(base_url=url) as client:
        job_ids = [client.post(f"/reports/{month}").json()["job_id"] for month in MONTHS]
    with run_consumer(queue.huey, workers=2):
        results = [queue.huey.result(job_id, blocking=True, timeout=20, preserve=True) for job_id in job_ids]
    print("results:", results)
    print("waiting in the queue now:", queue.huey.pending_count())
    first_read = queue.huey.result(job_ids[0])
    second_read = queue.huey.result(job_ids[0])
    print(f"read without preserve=True: first {first_read!r}, then {second_read!r}")
assert results == [f"report for {month}: 12 pages" for month in MONTHS]
assert first_read == results[0] and second_read is None

# %% [markdown] translates="8498be60892310fc"
# **事实 7.7**：huey 拒绝 `async def` 任务：装饰器会抛出 `ConfigurationError`。执行任务的是线程（也可以是进程或 greenlet），调用的都是普通函数。

# %%
with shows_error(ConfigurationError) as raised, temporary_queue("ch07-async") as queue:

    @queue.huey.task()
    async def build_report_async(month: str) -> str:
        return f"report for {month}"

assert type(raised.error) is ConfigurationError

# %% [markdown] translates="a1005ef9d5745549"
# 任务里照样可以用异步客户端库：任务本身是普通函数，它在自己的工作线程上用 `asyncio.run()` 运行协程（coroutine）；这个线程没有自己的事件循环（event loop）。

# %%
async def fetch_exchange_rate(currency: str) -> float:
    await asyncio.sleep(0.05)  # 代替一次异步 HTTP 调用
    return 1.08 if currency == "USD" else 1.0


with temporary_queue("ch07-async") as queue:

    @queue.huey.task()
    def convert(amount: float, currency: str) -> float:
        return round(amount * asyncio.run(fetch_exchange_rate(currency)), 2)

    converted = convert(100.0, "USD")
    with run_consumer(queue.huey):
        value = converted.get(blocking=True, timeout=20)
print("100 EUR in USD, computed by the worker:", value)
assert value == 108.0

# %% [markdown] translates="26b892f4a47e699f"
# ## 3. 作业比 API 进程活得久
#
# 从这里开始，API 和消费者是两个独立的进程，和生产环境一样。它们导入同一个模块 `solutions/ch07_durable_queue/jobs.py`：API 用它入队，消费者用它执行。两者共享哪个存储，由环境变量 `QUEUE_URL` 决定。

# %%
print(read_module_source("solutions.ch07_durable_queue.jobs"))
print("-" * 100)
print(read_module_source("solutions.ch07_durable_queue.jobs_api"))

# %% [markdown] translates="94f08fc1f1739ecc"
# **事实 7.8**：API 进程入队的作业，在该进程被 SIGKILL 杀掉后仍在队列里；之后在独立进程中启动的消费者（`huey_consumer solutions.ch07_durable_queue.jobs.huey --workers 2`）会把它们全部执行完；新的 API 进程能报告它们的结果。什么都没丢，因为没有任何东西只存在于 API 的内存里。

# %%
JOBS_API = "solutions.ch07_durable_queue.jobs_api:app"
JOBS_HUEY = "solutions.ch07_durable_queue.jobs.huey"


def job_lines(job_log: Path, prefix: str) -> list[str]:
    lines = job_log.read_text().splitlines() if job_log.exists() else []
    return [line for line in lines if line.startswith(prefix)]


def survive_an_api_kill(queue: Any, count: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, tqdm(total=3, desc="enqueue, then kill the API") as progress:
        job_log = Path(folder) / "jobs.log"
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            job_ids = httpx.post(f"{api.url}/jobs", params={"count": count, "seconds": 0.05}).json()["job_ids"]
            api.send_signal(signal.SIGKILL)  # API 在任何消费者看到作业之前就死了
            api_status = api.wait(timeout=30)
        waiting = queue.huey.pending_count()
        progress.set_description("a consumer process runs the jobs")
        progress.update()
        with huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env) as consumer:
            wait_until(lambda: len(job_lines(job_log, "done")) == count, timeout=120, what=f"{count} jobs done")
            consumer.send_signal(signal.SIGINT)  # huey 的消费者收到 SIGINT 时，会等作业跑完再停
            consumer_status = consumer.wait(timeout=60)
        progress.set_description("a new API process reads the results")
        progress.update()
        with uvicorn_process(JOBS_API, env=env) as api, httpx.Client(base_url=api.url) as client:
            answers = [client.get(f"/jobs/{job_id}").json() for job_id in job_ids]
        progress.update()
    return {"enqueued": len(job_ids), "api_status": api_status, "waiting": waiting,
            "consumer_status": consumer_status, "done": sum(answer["status"] == "done" for answer in answers),
            "results": sorted(answer["result"] for answer in answers)}


with temporary_queue("ch07-jobs") as queue:
    outcome = survive_an_api_kill(queue)
print(f"the API accepted {outcome['enqueued']} jobs and was killed (exit status {outcome['api_status']})")
print(f"jobs waiting in the queue afterwards: {outcome['waiting']}")
print(f"a consumer process ran them and stopped on Ctrl-C (exit status {outcome['consumer_status']})")
print(f"a new API process reports {outcome['done']} of {outcome['enqueued']} jobs done")
assert outcome["api_status"] == -signal.SIGKILL
assert outcome["waiting"] == outcome["enqueued"] == outcome["done"] == 20
assert outcome["results"] == list(range(20))

# %% [markdown] translates="eccac7e29a6ecf19"
# ## 4. 重试
#
# `@huey.task(retries=2, retry_delay=1)`：如果函数抛出异常，huey 会再次运行这个作业，最多再跑两次，每次失败后至少隔 1 s。重试是队列*调度表*（schedule）里的一个新条目，消费者的调度器每秒读一次，所以在空闲的机器上，测得的间隔在 1 s 到大约 2 s 之间（机器忙只会让它更长）。
#
# **事实 7.9**：一个先失败两次、然后成功的作业会运行三次，每次重试都在失败至少 `retry_delay` 之后，它的结果是第三次尝试的结果。
#
# **事实 7.10**：在 huey 默认的 `store_intermediate_errors=True` 下，只要后面还有重试，失败那次尝试的错误就会被存为作业的结果：读取者会看到 `TaskException`，尽管作业最终会成功。`store_intermediate_errors=False` 会先扣住失败，直到最后一次重试也失败了才存。

# %%
def flaky_charge(huey: Any, attempts: list[float]) -> Any:
    @huey.task(retries=2, retry_delay=1)
    def charge(order_id: str) -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("the payment gateway timed out")
        return f"charged {order_id}"

    return charge


def read_result(store_intermediate_errors: bool) -> tuple[str, int, list[float], int]:
    """What a reader of the job's result gets, after which attempt; the attempts' times; failures logged."""
    with temporary_queue("ch07-retry", store_intermediate_errors=store_intermediate_errors) as queue, \
            capture_logs("huey") as huey_log:
        attempts: list[float] = []
        result = flaky_charge(queue.huey, attempts)("o-7")
        with run_consumer(queue.huey):
            try:
                outcome = result.get(blocking=True, timeout=30)
            except TaskException as error:
                outcome = f"TaskException: {error}"
            read_after = len(attempts)
    return outcome, read_after, attempts, sum(record.levelname == "ERROR" for record in huey_log)


readings = {setting: read_result(store_intermediate_errors=setting)
            for setting in tqdm((True, False), desc="a flaky job, retried", unit="queue")}
(early, early_after, _, _), (final, final_after, attempts, failures) = readings[True], readings[False]
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"store_intermediate_errors=True:  the reader got {early!r} after attempt {early_after}")
print(f"store_intermediate_errors=False: the reader got {final!r} after attempt {final_after}")
print(f"  attempts: {len(attempts)}; gaps between them: " + ", ".join(f"{gap:.1f} s" for gap in gaps))
print(f"  huey logged {failures} failures, each with its traceback")
assert early.startswith("TaskException") and early_after == 1
assert final == "charged o-7" and len(attempts) == 3
assert all(gap >= 1.0 for gap in gaps), f"each retry came at least retry_delay=1 s after its failure: {gaps}"
assert failures == 2

# %% [markdown] translates="5cff95f16240fb45"
# `make_huey(..., store_intermediate_errors=False)` 在创建队列时设置它，上面的 `temporary_queue` 就是这么做的（它是每个 `Huey` 类都有的参数）。失败会连同回溯（traceback）一起记录在 `huey` logger 上（这里由 `capture_logs` 收集；消费者进程会把它们打印出来）。

# %% [markdown] translates="350fb2915c907e5f"
# ## 5. 工作线程死掉时正在运行的作业
#
# 排队的作业在队列里是安全的。*正在运行*的作业则不然：两种存储都是把作业从队列中移除，以此把它交给工作线程。SQLite 在工作线程取走作业时删除对应的行（见下），Redis 则把它弹出（`BRPOP`）。从那一刻起，这个作业只存在于工作线程所在进程的内存里。

# %%
(take,) = find_in_source("huey", "delete from task where id = ?")
print(take)
print(take.excerpt(before=6, after=2))

# %% [markdown] translates="3bc0a281d51efaf4"
# 实验：队列里有三个 2 s 的作业，消费者只有一个工作线程，第一个作业一开始就发信号（2 s 留足了余量，机器忙、信号发得慢一些也来得及）；然后统计完成了多少、还有多少在等、丢了多少。

# %%
@dataclass
class Interrupted:
    how: str
    done: int
    waiting: int
    lost: int
    exit_status: int
    consumer_log: str
    starts_after_restart: int = 0


JOB_SECONDS = 2.0


def stop_consumer(how: str, signum: int, *options: str, huey: str = JOBS_HUEY, restart: bool = False) -> Interrupted:
    with temporary_queue("ch07-jobs") as queue, tempfile.TemporaryDirectory() as folder:
        job_log = Path(folder) / "jobs.log"
        env = {"QUEUE_URL": queue.url, "JOB_LOG": str(job_log)}
        with uvicorn_process(JOBS_API, env=env) as api:
            httpx.post(f"{api.url}/jobs", params={"count": 3, "seconds": JOB_SECONDS}).raise_for_status()
        with huey_consumer_process(huey, "--workers", "1", *options, env=env) as consumer:
            wait_until(lambda: job_lines(job_log, "start 0"), timeout=60, what="the first job to start")
            consumer.send_signal(signum)
            exit_status = consumer.wait(timeout=60)
            consumer_log = consumer.output
        done, waiting = len(job_lines(job_log, "done")), queue.huey.pending_count()
        interrupted = Interrupted(how, done, waiting, 3 - done - waiting, exit_status, consumer_log)
        if restart:  # 新的消费者把剩下的作业跑完
            with huey_consumer_process(huey, "--workers", "2", env=env) as consumer:
                wait_until(lambda: queue.huey.pending_count() == 0 and len(job_lines(job_log, "done")) >= 3,
                           timeout=120, what="the queue to drain")
                consumer.send_signal(signal.SIGINT)
                consumer.wait(timeout=60)
            interrupted.starts_after_restart = len(job_lines(job_log, "start 0"))
    return interrupted


def tell(run: Interrupted) -> None:
    print(f"{run.how}: running job {'finished' if run.done else 'not finished'}; "
          f"{run.waiting} waiting in the queue, {run.lost} lost; consumer exit status {run.exit_status}")


def stop_consumers(experiments: dict[str, dict[str, Any]]) -> list[Interrupted]:
    """Run ``stop_consumer(how, **arguments)`` for each experiment, with a progress bar: each takes seconds."""
    return [stop_consumer(how, arguments.pop("signum"), *arguments.pop("options", ()), **arguments)
            for how, arguments in tqdm(experiments.items(), desc="stopping huey consumers", unit="consumer")]


interruptions: list[Interrupted] = []

# %% [markdown] translates="7bd9e01a999c24c8"
# **事实 7.11**：huey 的消费者收到 SIGINT 时会优雅关闭（graceful shutdown）：让正在运行的作业跑完，其余的留在队列里。收到 SIGTERM 时它*不*等待，和 uvicorn 正好相反：它立即退出，正在运行的作业丢失，日志里连一条警告都没有。收到 SIGKILL 时，正在运行的作业同样丢失。无论哪种情况，排队的作业都是安全的。

# %%
graceful, term, kill = stop_consumers({how: {"signum": getattr(signal, how)}
                                        for how in ("SIGINT", "SIGTERM", "SIGKILL")})
interruptions += [graceful, term, kill]
for run in (graceful, term, kill):
    tell(run)
assert (graceful.done, graceful.waiting, graceful.lost) == (1, 2, 0)
assert (term.done, term.waiting, term.lost) == (0, 2, 1) and "WARNING" not in term.consumer_log
assert (kill.done, kill.waiting, kill.lost) == (0, 2, 1)

# %% [markdown] translates="9720b7f94debcd78"
# huey 的消费者有两种停止方式。*优雅关闭*等正在运行的作业完成后再退出；*立即停止*马上退出，并中断正在运行的作业。默认情况下，SIGINT 要求前者，SIGTERM 要求后者（事实 7.11）。有两样东西会改变立即停止的代价：
#
# - huey 的 `SIGNAL_INTERRUPTED` 的处理函数。这是 *huey 信号*，不是 Unix 信号：它是 huey 内部的一个事件，会调用用 `@huey.signal(SIGNAL_INTERRUPTED)` 注册的函数。`jobs_requeue.py` 里的处理函数（见下）把被中断的作业放回队列。
# - 两个消费者选项：`-g TERM`（`--graceful-signal TERM`）让 SIGTERM 成为触发优雅关闭的信号，和 uvicorn 一样；`-t SECONDS`（`--shutdown-timeout`）给优雅关闭的等待设上限，过了上限，消费者还是会中断正在运行的作业。
#
# **事实 7.12**：消费者不等作业跑完就停止时，huey 会为每个仍在运行的作业发送 `SIGNAL_INTERRUPTED`。一个把作业放回队列的处理函数，能把 SIGTERM 造成的丢失变成重跑：下一个消费者会*从头*再运行这个作业，所以信号到来之前它做过的事会做两遍。面对 SIGKILL，处理函数无能为力：被杀掉的进程不会再运行任何代码。有了 `-g TERM`，SIGTERM 会等正在运行的作业；有了 `-t`，超过上限的作业会被中断，再由处理函数重新入队。

# %%
print(read_module_source("solutions.ch07_durable_queue.jobs_requeue"))

# %% [markdown] translates="8ed9585fad591c91"
# 下一个单元格把事实 7.11 的实验（三个 2 s 的作业、一个工作线程、作业 0 开始后发信号）重复四次，每次都装上处理函数。预期结果及其原因，格式为 *完成 / 在队列中等待 / 丢失*：
#
# | 消费者如何被停止 | 预期 | 原因 |
# |---|---|---|
# | SIGTERM | 0 / 3 / 0 | 立即停止中断了作业 0，处理函数把它放回队列，和作业 1、2 排在一起 |
# | SIGKILL | 0 / 2 / 1 | 进程没来得及运行处理函数就死了：作业 0 丢失，和事实 7.11 一样 |
# | SIGTERM，带 `-g TERM -t 5` | 1 / 2 / 0 | 优雅关闭；作业 0 的 2 s 在 5 s 上限之内，所以它跑完了 |
# | SIGTERM，带 `-g TERM -t 0.3` | 0 / 3 / 0 | 优雅关闭，但作业 0 超过了 0.3 s 的上限：它被中断，然后重新入队 |
#
# 第一次停止之后，一个新的消费者把队列跑完，单元格统计作业 0 一共启动了几次：预期是两次，SIGTERM 之前一次，重启之后一次。

# %%
REQUEUE_HUEY = "solutions.ch07_durable_queue.jobs_requeue.huey"
handled = stop_consumers({
    "SIGTERM, re-enqueue handler": {"signum": signal.SIGTERM, "huey": REQUEUE_HUEY, "restart": True},
    "SIGKILL, re-enqueue handler": {"signum": signal.SIGKILL, "huey": REQUEUE_HUEY},
    "SIGTERM, -g TERM -t 5": {"signum": signal.SIGTERM, "options": ("-g", "TERM", "-t", "5"), "huey": REQUEUE_HUEY},
    "SIGTERM, -g TERM -t 0.3": {"signum": signal.SIGTERM, "options": ("-g", "TERM", "-t", "0.3"), "huey": REQUEUE_HUEY},
})
interruptions += handled

# %%
for run in handled:
    tell(run)
requeued, killed, term_graceful, term_bounded = handled
said = [re.sub(r"job \S+", "job <id>", line.split(":MainThread:")[-1])
        for line in requeued.consumer_log.splitlines() if "interrupted" in line]
said += [line.split(":MainThread:")[-1] for line in term_bounded.consumer_log.splitlines() if "timeout" in line]
print("the consumer logged:", *said, sep="\n  ")
print(f"after a restart, job 0 had started {requeued.starts_after_restart} times")
assert (requeued.waiting, requeued.lost) == (3, 0) and requeued.starts_after_restart == 2
assert (killed.waiting, killed.lost) == (2, 1)
assert (term_graceful.done, term_graceful.waiting, term_graceful.lost) == (1, 2, 0)
assert (term_bounded.done, term_bounded.waiting, term_bounded.lost) == (0, 3, 0)

# %% [markdown] translates="834f40f527cfa32e"
# 输出说明了什么：四行中的每一行都是预期的计数（单元格对它们做了断言）。第一条日志是 SIGTERM 之后处理函数在起作用；第二条是消费者在 0.3 s 后放弃了优雅关闭的等待。作业 0 启动了两次：重新入队的作业没有从停下的地方接着跑，而是从头开始。下表汇总了本节的七次停止。

# %%
rows = [f"| {run.how} | {'finished' if run.done else 'not finished'} | {run.waiting} | {run.lost} | {run.exit_status} |"
        for run in interruptions]
Markdown("\n".join(["| how the consumer was stopped | running job | waiting in the queue | lost | exit status |",
                    "|---|---|---|---|---|", *rows]))

# %% [markdown] translates="aaa20df18de5835d"
# huey 交出作业是*至多一次（at most once）*：工作线程一旦拿到作业，崩溃就会让它丢失。另一种设计是作业完成之后才确认（ack）它（延迟确认，late acknowledgement），于是崩溃的工作线程手里的作业会被再次投递：*至少一次投递（at-least-once delivery）*。无论哪种，解药都是同一对：
#
# 1. **幂等的作业**：运行两次的效果等于运行一次（重新入队的作业会从头开始，上面刚测过）；
# 2. **一份"必须发生什么"的记录**，放在队列之外，丢失的作业可以据此重新发送：第 3 章的发件箱（第 7 节）。

# %% [markdown] translates="915833d6f0571933"
# ## 6. 同样的代码跑在 Redis 上
#
# **事实 7.13**：设置 `QUEUE_URL=redis://127.0.0.1:<port>/0` 后，同样的 `jobs.py`、`jobs_api.py` 和 `huey_consumer` 会在真实的 `redis-server` 上运行，第 3 节的实验得到相同的结果。
#
# **事实 7.14**：Redis 把队列放在内存里。不开持久化时（这个临时服务器的默认设置：不做快照，也没有 AOF 只追加文件），`redis-server` 一崩溃就会丢掉所有排队的作业；开启 AOF 并设置 `appendfsync always` 后，排队的作业能挺过崩溃。

# %%
def crash_redis(appendonly: bool) -> tuple[int, int]:
    with throwaway_redis(appendonly=appendonly) as server, temporary_queue("ch07-crash", url=server.url) as queue:

        @queue.huey.task()
        def resize_photo(number: int) -> int:
            return number

        for number in range(5):
            resize_photo(number)
        before = queue.huey.pending_count()
        server.kill()  # SIGKILL，相当于崩溃或 OOM killer
        server.start()  # 同一个端口，同一个文件夹
        return before, queue.huey.pending_count()


if redis_program is None:
    print("redis-server is not installed: Facts 7.13 and 7.14 are not shown on this machine.")
else:
    with throwaway_redis() as redis_server, temporary_queue("ch07-jobs", url=redis_server.url) as redis_queue:
        on_redis = survive_an_api_kill(redis_queue)
    crashes = {appendonly: crash_redis(appendonly) for appendonly in (False, True)}
    print(f"Redis: {on_redis['waiting']} jobs waited after the API was killed; "
          f"{on_redis['done']} of {on_redis['enqueued']} done by the consumer process")
    for appendonly, (before, after) in crashes.items():
        print(f"redis-server {'with' if appendonly else 'without'} the append-only file: "
              f"{before} jobs queued before the crash, {after} after the restart")
    assert on_redis["waiting"] == on_redis["enqueued"] == on_redis["done"] == 20
    assert on_redis["results"] == list(range(20))
    assert crashes == {False: (5, 0), True: (5, 5)}

# %% [markdown] translates="d3aeaaf048a2a1c2"
# ## 7. 补全第 3 章的发件箱
#
# 第 3 章把*意图*（"给订单 12 发回执"）记为发件箱里的一行，和订单本身放在同一个数据库事务（transaction）里，两者要么一起提交（commit），要么都不提交。现在，一个中继程序（relay）把每个发件箱行交给持久化队列，而发送回执的作业是幂等的。huey 的任务是普通函数，所以本节使用 SQLAlchemy 的同步 engine（在 SQLite 上），而第 3 章的端点用的是 asyncio 版本。

# %%
metadata = MetaData()
orders = Table("orders", metadata, Column("id", Integer, primary_key=True), Column("item", String, nullable=False))
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("enqueued_at", Float),  # 作业进入队列后，由中继程序设置
    Column("done_at", Float),  # 由作业自己设置，和实际工作在同一个事务里
)
receipts = Table("receipts", metadata, Column("order_id", Integer, primary_key=True), Column("sent_at", Float))


def orders_app(engine: Engine) -> FastAPI:
    app = FastAPI()

    @app.post("/orders", status_code=status.HTTP_201_CREATED)
    def place_order(item: str) -> dict[str, int]:
        with engine.begin() as connection:  # 一个事务：订单和它的发件箱行，要么都有，要么都没有
            order_id = connection.execute(insert(orders).values(item=item)).inserted_primary_key[0]
            connection.execute(insert(outbox).values(order_id=order_id))
        return {"order_id": order_id}

    return app


def receipt_task(huey: Any, engine: Engine, runs: list[int]) -> Any:
    @huey.task(retries=2, retry_delay=1)
    def send_receipt(order_id: int) -> str:
        runs.append(order_id)
        with engine.begin() as connection:  # 回执和"已完成"标记：同一个事务
            # 主键让同一个订单不可能有第二张回执：幂等。
            new = sqlite_insert(receipts).values(order_id=order_id, sent_at=time.time()).on_conflict_do_nothing()
            sent = connection.execute(new).rowcount == 1
            connection.execute(update(outbox).where(outbox.c.order_id == order_id).values(done_at=time.time()))
        return "sent" if sent else "already sent"

    return send_receipt


def relay_new_rows(engine: Engine, enqueue: Any) -> int:
    with engine.connect() as connection:
        query = select(outbox.c.id, outbox.c.order_id).where(outbox.c.enqueued_at.is_(None)).order_by(outbox.c.id)
        rows = connection.execute(query).all()
    for row in rows:
        enqueue(row.order_id)  # 先入队……
        with engine.begin() as connection:  # ……再标记：两步之间崩溃只会重发，不会丢失
            connection.execute(update(outbox).where(outbox.c.id == row.id).values(enqueued_at=time.time()))
    return len(rows)


def count(engine: Engine, *conditions: Any, table: Table = outbox) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(*conditions)).scalar_one()


ITEMS = ("teapot", "cups", "tray", "spoons", "kettle")

# %% [markdown] translates="a792e17ea4472c83"
# **事实 7.15**：每个订单都和它的发件箱行一起提交。中继程序先把某一行的作业入队，然后才标记这一行；中继程序如果在这两步之间死掉（这里：第三次入队之后立刻抛出异常），那一行就还是未标记的，所以它下一次运行时会把这个作业再入队一次。于是作业运行两次，而幂等的任务仍然只为每个订单发一张回执。
#
# 对五个订单，逐步的预期如下：
#
# 1. 下了五个订单：五个发件箱行，都还没有转发。
# 2. 中继程序把第 1、2、3 行的作业入队，在第三个之后立刻死掉：队列里有 3 个作业，但只有第 1、2 行被标记（第 3 行的标记本该是下一步）。
# 3. 它下一次运行时发现第 3、4、5 行未标记，把三个都入队：队列里有 6 个作业，其中两个是第三个订单的。
# 4. 消费者运行这 6 个作业。第三个订单的作业运行了两次，但第二次运行时发现回执已经存在（主键拒绝第二张）：5 张回执，每个订单一张。

# %%
crash_after = [3]  # 中继程序在把第三个作业入队后立刻死掉


def enqueue_then_die(order_id: int) -> None:
    send_receipt(order_id)
    crash_after[0] -= 1
    if crash_after[0] == 0:
        raise ConnectionError("the relay lost its database connection")


with tempfile.TemporaryDirectory() as folder, temporary_queue("ch07-outbox") as queue:
    engine = create_engine(f"sqlite:///{Path(folder) / 'shop.db'}")
    metadata.create_all(engine)
    runs: list[int] = []
    send_receipt = receipt_task(queue.huey, engine, runs)
    with serve(orders_app(engine)) as url, httpx.Client(base_url=url) as client:
        order_ids = [client.post("/orders", params={"item": item}).json()["order_id"] for item in ITEMS]
    not_relayed = count(engine, outbox.c.enqueued_at.is_(None))
    story = [f"{len(order_ids)} orders, {not_relayed} outbox rows not yet relayed"]
    after_the_crash = None  # 中继程序死掉时的（队列中的作业数, 已标记的行数）
    try:
        relay_new_rows(engine, enqueue_then_die)
    except ConnectionError as error:
        after_the_crash = (queue.huey.pending_count(), count(engine, outbox.c.enqueued_at.is_not(None)))
        story.append(f"the relay died ({error}) with {after_the_crash[0]} jobs in the queue "
                     f"and {after_the_crash[1]} rows marked")
    relayed, queued = relay_new_rows(engine, send_receipt), queue.huey.pending_count()
    story.append(f"its next run enqueued {relayed} rows; jobs in the queue: {queued}")
    with run_consumer(queue.huey, workers=2):
        wait_until(lambda: count(engine, outbox.c.done_at.is_(None)) == 0 and len(runs) == 6, timeout=60,
                   what="every outbox row done")
    sent = count(engine, table=receipts)
    engine.dispose()
twice = [order_id for order_id, times in Counter(runs).items() if times > 1]
story.append(f"the task ran {len(runs)} times for {len(order_ids)} orders (order {twice} twice); receipts sent: {sent}")
print(*story, sep="\n")
assert len(order_ids) == not_relayed == 5
assert after_the_crash == (3, 2), "3 jobs enqueued, the third one's row not marked"
assert (relayed, queued) == (3, 6), "the next run enqueued the third job again"
assert len(runs) == 6 and twice == [order_ids[2]]
assert sent == len(order_ids)

# %% [markdown] translates="1dfe33e4fa94909c"
# 四行输出就是上面的四个步骤，计数都符合预期（单元格逐一做了断言）。唯一运行了两次的作业属于第三个订单，也就是死掉的中继程序没来得及标记的那一行；回执和订单一样多。发件箱保证了没有回执丢失，幂等的任务保证了没有回执重复发送。

# %% [markdown] translates="d153f40c453ff55b"
# **事实 7.16**：从队列中丢失的作业（像第 5 节那样，工作线程在执行中途被杀；或像第 6 节那样，Redis 在没有持久化时崩溃）会让它的发件箱行停在*已入队、但从未完成*的状态：发件箱确切地知道缺了哪些作业。这里用清空队列（`huey.flush()`）来代替那些崩溃；之后启动的消费者只运行崩溃之后入队的一个作业，别的什么也不运行。练习（exercise）7.3 会写一个重新发送这类行的中继程序。

# %%
with tempfile.TemporaryDirectory() as folder, temporary_queue("ch07-outbox") as queue:
    engine = create_engine(f"sqlite:///{Path(folder) / 'shop.db'}")
    metadata.create_all(engine)
    runs = []
    send_receipt = receipt_task(queue.huey, engine, runs)
    with serve(orders_app(engine)) as url, httpx.Client(base_url=url) as client:
        for item in ITEMS[:2]:
            client.post("/orders", params={"item": item}).raise_for_status()
    relay_new_rows(engine, send_receipt)
    queue.huey.flush()  # 崩溃：两个作业没了

    @queue.huey.task()
    def after_the_crash() -> str:
        return "ran"

    later = after_the_crash()  # 证明下面的消费者确实从这个队列取了作业
    with run_consumer(queue.huey):
        later_ran = later.get(blocking=True, timeout=60)
    missing = count(engine, outbox.c.enqueued_at.is_not(None), outbox.c.done_at.is_(None))
    engine.dispose()
print(f"a job enqueued after the crash: {later_ran}; receipt jobs run: {len(runs)}; "
      f"outbox rows enqueued but never done: {missing}")
assert later_ran == "ran"
assert runs == [] and missing == 2

# %% [markdown] translates="931a0867302e2fcf"
# ## 8. 实测：入队到开始的延迟
#
# 同一个极简作业，每个参与者各跑 200 次，形态和生产环境一样：API 是一个 `uvicorn` 进程，huey 的消费者是一个带两个工作线程的 `huey_consumer` 进程。参与比较的三者是 `BackgroundTasks`（`background_app.py` 的 `POST /stamps/{number}`）、基于 SQLite 的 huey 和基于 Redis 的 huey（`jobs_api.py` 的 `POST /stamps/{number}`，它把 `jobs.stamp` 入队）。三者同时运行，由同一个客户端轮流给每一个发一个 `POST`，共 200 轮，这样机器忙的时刻会同样落在三者身上。每个作业记下它被安排的时间和开始的时间，*入队到开始的延迟*就是两者之差。（`benchmarks/bench_ch07.py` 还测吞吐量（throughput）：1,000 个作业，一次只测一个参与者。）
#
# **事实 7.17**：基于 SQLite 的 huey 启动最慢：它的入队到开始延迟的中位数超过 10 ms，高于 `BackgroundTasks`（它在 API 进程里、响应（response）发出后立即启动作业）和基于 Redis 的 huey。SQLite 没法唤醒正在等待的读取者，所以 huey 的工作线程要*轮询*这个文件：一次空轮询后睡 0.1 s，此后每次空轮询多睡 15 %，最多 10 s（消费者的 `--delay`、`--backoff` 和 `--max-delay` 选项）。Redis 的工作线程则在阻塞（blocking）的 `BRPOP` 里等待，作业一到就醒。（机器忙时，三者都会多出调度延迟，在这里还是在同样的时刻，而轮询的等待只会更长；所以单元格断言的是三者的比较，以及光是轮询就要花的 10 ms，具体数字则打印出来。）

# %%
defaults = inspect.signature(Consumer.__init__).parameters
print("huey's consumer polls with", {name: defaults[name].default for name in ("initial_delay", "backoff", "max_delay")})
(brpop,) = find_in_source("huey", "self.conn.brpop(")
print("the Redis storage waits in:", brpop)

# %%
SAMPLES = 200


def stamps_in(log: Path) -> list[tuple[float, float]]:
    """(scheduled at, started at) of every job that has started, from its "stamp" line."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(scheduled), float(started))
            for _, _, scheduled, started in (line.split() for line in lines if line.startswith("stamp"))]


def start(processes: contextlib.ExitStack, log: Path, queue_url: str) -> str:
    """One contender's processes, the URL of its API: BackgroundTasks without a queue URL, else huey."""
    env = {"TASK_LOG": str(log), "JOB_LOG": str(log), "QUEUE_URL": queue_url}
    quiet = ("--log-level", "warning")  # 不为每个请求写一行访问日志
    if not queue_url:
        return processes.enter_context(uvicorn_process(BACKGROUND_APP, *quiet, env=env)).url
    api = processes.enter_context(uvicorn_process(JOBS_API, *quiet, env=env))
    processes.enter_context(huey_consumer_process(JOBS_HUEY, "--workers", "2", env=env))
    return api.url


def all_started(log: Path) -> bool:
    return len(stamps_in(log)) == SAMPLES


with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as processes:
    queue_urls = {"BackgroundTasks": ""}
    queue = processes.enter_context(temporary_queue("ch07-jobs"))
    queue_urls["huey on SQLite" if queue.url.startswith("sqlite") else "huey on QUEUE_URL"] = queue.url
    if redis_program is not None:
        redis_server = processes.enter_context(throwaway_redis())
        queue_urls["huey on Redis"] = processes.enter_context(temporary_queue("ch07-jobs", url=redis_server.url)).url
    logs = {name: Path(folder) / f"{index}.log" for index, name in enumerate(queue_urls)}
    apis = {name: start(processes, logs[name], url) for name, url in queue_urls.items()}
    with httpx.Client() as client:
        for number in tqdm(range(SAMPLES), desc=f"{SAMPLES} rounds, one job to each contender", unit="round"):
            for api in apis.values():  # 轮流发：机器忙的时刻会落在每一个身上
                client.post(f"{api}/stamps/{number}").raise_for_status()
    for name, log in logs.items():
        wait_until(lambda: all_started(log), timeout=120, what=f"every {name} job started")
    latencies = {name: sorted(started - scheduled for scheduled, started in stamps_in(log)) for name, log in logs.items()}

median = {name: times[len(times) // 2] for name, times in latencies.items()}
# 不做列对齐：数字每次运行都会变，周围的文字不能变。
lines = [f"{name}: median {1000 * median[name]:.2f} ms, 95th percentile {1000 * times[int(0.95 * len(times))]:.2f} ms"
         for name, times in latencies.items()]
lines += [f"{name}: median latency {median[name] / median['BackgroundTasks']:.0f} times that of BackgroundTasks"
          for name in latencies if name != "BackgroundTasks"]
print(*lines, sep="\n")
assert all(len(times) == SAMPLES for times in latencies.values())
if "huey on SQLite" in median:
    # 这个下限由设计决定，而不是由机器决定：发现队列为空的工作线程至少睡 0.1 s，
    # 机器忙只会让等待更长。
    assert median["huey on SQLite"] > 0.01, "each job waits for the next poll of the file"
    assert all(median["huey on SQLite"] > median[other] for other in median if other != "huey on SQLite")

# %%
figure = NotebookFigure(figsize=(9, 3.2), layout="constrained")
axes = figure.subplots()
names = list(latencies)
axes.boxplot([[1000 * time for time in latencies[name]] for name in names], orientation="horizontal",
             tick_labels=names, whis=(5, 95), showfliers=False)
axes.set_xscale("log")
axes.xaxis.set_major_formatter("{x:g}")
axes.set_xlabel("enqueue-to-start latency (ms, log scale); box: middle half, whiskers: 5th to 95th percentile")
axes.invert_yaxis()  # 第一个参与者在最上面
figure.suptitle(f"{SAMPLES} trivial jobs for each contender, scheduled in turn")
figure

# %% [markdown] translates="78de0be3aeb87c9b"
# 被杀一次的代价，取自第 1、5、6 节：
#
# | | API 进程被杀 | 工作线程在作业中途被杀 | 存储崩溃 |
# |---|---|---|---|
# | `BackgroundTasks` | 所有尚未完成的任务（8 个全丢，事实 7.4） | （执行任务的*就是* API 进程） | （什么都没存） |
# | 基于 SQLite 的 huey | 什么都不丢（事实 7.8） | 正在运行的作业（1 个；事实 7.11、7.12） | 没有会崩溃的服务器：作业是文件里的行（事实 7.8） |
# | 基于 Redis 的 huey | 什么都不丢（事实 7.13） | 正在运行的作业 | 不开持久化：所有排队的作业；开启 AOF：一个不丢（事实 7.14） |

# %% [markdown] translates="b3d08bc875faf767"
# ## 9. 如何选择：决策指南
#
# 第三列是按分布式任务引擎各自的文档来描述的；本课程没有运行过它们。
#
# | | `BackgroundTasks` | 持久化队列：基于 SQLite 或 Redis 的 huey | 分布式引擎：基于 Redis 或 RabbitMQ 的 Celery、Dramatiq、arq |
# |---|---|---|---|
# | **作业存放在哪里** | API 进程的内存 | 一个 SQLite 文件 / 一台 Redis 服务器 | 一个 broker（RabbitMQ、Redis） |
# | **能否挺过部署** | 仅当任务在进程管理器发出 SIGKILL 之前跑完 | 能 | 能 |
# | **能否挺过崩溃** | 不能：所有未完成的任务都会丢失 | 排队的作业能；正在运行的作业会丢失（至多一次） | 启用延迟确认时，正在运行的作业会被再次投递（至少一次投递）：见 Celery 的文档（`task_acks_late`，术语表中的 "late acknowledgment"；它的 Tasks 指南还指出，被信号杀死的子进程仍会被确认，除非设置了 `task_reject_on_worker_lost`）；Dramatiq 的文档（"Message Persistence"：至少一次，处理完才确认）；arq 的文档（"pessimistic execution"：作业一直留在队列里，直到成功或失败） |
# | **重试** | 自己写（第 4 章） | `retries=`、`retry_delay=`、`retry_backoff=` | 内置，见各自的文档 |
# | **入队到开始的延迟** | 最低：响应之后立即开始 | Redis：接近最低（阻塞的 `BRPOP`）；SQLite：等下一次轮询，几十毫秒或更多 | 取决于 broker |
# | **在哪里运行** | API 的事件循环和线程池（thread pool） | 你自己启动的工作线程或工作进程（worker），即 `huey_consumer` | 任意多台机器上的工作进程 |
# | **运维成本** | 无 | 多一个进程；用 Redis 时多一台服务器 | 要部署、监控和升级的 broker 和工作进程 |
# | **什么时候选它** | 任务丢了也能接受（缓存预热、一行日志） | 作业必须完成，一台或几台机器，量不大 | 多台机器、大流量、路由、工作流、至少一次投递 |
#
# 无论选哪个，只要丢一个作业是不可接受的，就要让作业幂等，并把意图保存在你自己的数据库里（发件箱）：队列只是运输工具，数据库才是记录。

# %% [markdown] translates="8134d5cbbace1057"
# ## 10. 什么都不留下
#
# **事实 7.18**：做完所有这些实验之后，本 notebook 没有留下任何子进程（每个 `uvicorn`、`huey_consumer` 和 `redis-server` 都已被各自的 `with` 块杀掉并回收），也没有任何消费者线程或服务器线程还在运行。

# %%
try:
    leftover = os.waitpid(-1, os.WNOHANG)  # 如果还有子进程在运行，会得到 (0, 0)
except ChildProcessError:
    leftover = None  # 即 "no child processes"：没有子进程
threads = sorted(thread.name for thread in threading.enumerate()
                 if thread.name.startswith(("Worker-", "Scheduler", "uvicorn-")))
print(f"child processes: {'none' if leftover is None else leftover}; consumer or server threads: {threads or 'none'}")
assert leftover is None and threads == []

# %% [markdown] translates="22dccaf491c83549"
# ## 练习
#
# 每个练习都有一个写答案的代码单元格，以及一个用真实服务器和真实队列检查它的单元格。参考答案在 `solutions/ch07_durable_queue/` 里；请先自己试试。
#
# ### 练习 7.1：回执作业及其状态
#
# 编写 `make_app(huey)`，返回一个 FastAPI 应用。它在给定的 `huey` 上定义一个 huey 任务 `send_receipt(order_id)`，返回 `f"receipt sent for {order_id}"`。`POST /receipts/{order_id}` 把它入队，并以 `202 Accepted` 应答 `{"job_id": <the job's id>}`。`GET /jobs/{job_id}` 在消费者执行这个作业之前应答 `{"status": "pending"}`，之后应答 `{"status": "done", "result": <its result>}`，每次询问都是如此。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from typing import Any

from fastapi import FastAPI, status


def make_app(huey: Any) -> FastAPI:
    app = FastAPI()

    @huey.task()
    def send_receipt(order_id: str) -> str:
        return f"receipt sent for {order_id}"

    @app.post("/receipts/{order_id}", status_code=status.HTTP_202_ACCEPTED)
    def queue_receipt(order_id: str) -> dict[str, str]:
        return {"job_id": send_receipt(order_id).id}

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        result = huey.result(job_id, preserve=True)
        if result is None:
            return {"status": "pending"}
        return {"status": "done", "result": result}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch07_durable_queue as checks

checks.ex01(make_app)

# %% [markdown] translates="ec48143add99403d"
# ### 练习 7.2：作业无论运行几次，都只发一张回执
#
# 重新入队的作业（第 5 节），或在入队和标记之间死掉的中继程序（第 7 节），都会让一个作业运行两次，而且可能同时在两个工作线程上运行。编写 `deliver_once(db_path, order_id, send) -> bool`：只有此前没有任何一次调用发送过这个订单的回执时，才调用 `send(order_id)`；记录保存在 SQLite 文件 `db_path` 里（需要什么自己创建）。发送了就返回 `True`，回执之前已经发过则返回 `False`。如果 `send` 抛出异常，让异常传出去（huey 会重试这个作业），并且不留下任何记录，这样重试时才会发送。同一个订单的两次调用同时发生时，必须只发送一次。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import sqlite3
from collections.abc import Callable


def deliver_once(db_path: str, order_id: str, send: Callable[[str], object]) -> bool:
    connection = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        connection.execute("create table if not exists deliveries (order_id text primary key)")
        # BEGIN IMMEDIATE 立刻拿到 SQLite 的写锁：执行同一个作业的另一个工作线程
        # 会在这里等，直到这一个提交或回滚（rollback），然后看到这一行。
        connection.execute("begin immediate")
        try:
            claimed = connection.execute("insert or ignore into deliveries values (?)", (order_id,)).rowcount == 1
            if claimed:
                send(order_id)
        except BaseException:
            connection.execute("rollback")  # send 失败：不留记录，这样重试时会发送
            raise
        connection.execute("commit")
        return claimed
    finally:
        connection.close()
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(deliver_once)

# %% [markdown] translates="0ca55b3e9eac5daa"
# ### 练习 7.3：还能重发丢失作业的中继程序
#
# 扩展第 7 节的中继程序：`relay_outbox(engine, enqueue, *, stale_after) -> int` 按 `id` 顺序把下面这些发件箱行入队（调用 `enqueue(order_id)`）：每一个从未入队的行，以及每一个在 `stale_after` 秒之前就已入队、但还没有完成的行（它的作业丢了，事实 7.16）；为每一行把 `enqueued_at` 设为当前时间，并返回入队的行数。`outbox` 表有 `id`、`order_id`、`enqueued_at` 和 `done_at` 这几列（时间是 `time.time()` 的浮点数，尚未发生时为 `NULL`）。如果 `enqueue` 抛出异常，让异常传出去，而且绝不标记入队没有成功的行。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time
from collections.abc import Callable

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, and_, or_, select, update

metadata = MetaData()
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, nullable=False),
    Column("enqueued_at", Float),
    Column("done_at", Float),
)


def relay_outbox(engine: Engine, enqueue: Callable[[int], object], *, stale_after: float) -> int:
    cutoff = time.time() - stale_after
    waiting = or_(
        outbox.c.enqueued_at.is_(None),
        and_(outbox.c.done_at.is_(None), outbox.c.enqueued_at < cutoff),
    )
    with engine.connect() as connection:
        rows = connection.execute(select(outbox.c.id, outbox.c.order_id).where(waiting).order_by(outbox.c.id)).all()
    for row in rows:
        enqueue(row.order_id)  # 先入队……
        with engine.begin() as connection:  # ……再标记：两步之间崩溃只会重发，不会丢失
            connection.execute(update(outbox).where(outbox.c.id == row.id).values(enqueued_at=time.time()))
    return len(rows)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(relay_outbox)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验（quiz）
#
# 每道题显示在一个单元格里；在它下面的单元格里作答；再下面一个单元格会告诉你答对了没有。答对时会给出解释；答错时会给出一个不泄露答案的提示（如果你更想直接看解释，`quiz.explain("q01")` 随时都能显示 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch07_durable_queue")
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
answer_q02 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q02", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q02", answer_q02)

# %% nbgrader={"grade": false, "grade_id": "q03_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q03")

# %% nbgrader={"grade": false, "grade_id": "q03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q03 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q03", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q03", answer_q03)

# %% nbgrader={"grade": false, "grade_id": "q04_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q04")

# %% nbgrader={"grade": false, "grade_id": "q04_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q04 = "D"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q04", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q04", answer_q04)

# %% nbgrader={"grade": false, "grade_id": "q05_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q05")

# %% nbgrader={"grade": false, "grade_id": "q05_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q05 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", answer_q05)

# %% nbgrader={"grade": false, "grade_id": "q06_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q06")

# %% nbgrader={"grade": false, "grade_id": "q06_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
def make_task(huey):
    @huey.task(retries=3, retry_delay=2)
    def charge(order_id):
        return f"charged {order_id}"

    return charge
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", make_task)

# %% [markdown] translates="804fc63cf3242b4b"
# ## 小结
#
# - 收到 SIGTERM 或一次 Ctrl-C 时，uvicorn 会等待每一个正在运行和排队中的后台任务，除非设置了 `--timeout-graceful-shutdown`，否则没有时间上限；设了上限的话，到点就取消剩下的任务，生命周期的关闭阶段照样执行（第 1 节）。
# - 第二次 Ctrl-C 会取消任务并跳过生命周期的关闭阶段（它的 `finally` 仍会执行）；第二次 SIGTERM 不会多做什么。SIGKILL、OOM kill 或崩溃会悄无声息地丢掉所有未完成的任务（第 1 节）。
# - 持久化队列在响应之前就把作业记下来：huey 把它存在一个 SQLite 文件里，`QUEUE_URL` 指定时则存在 Redis 里，任务代码不变。API 入队，消费者执行，谁都能读取结果（要读不止一次就用 `preserve=True`）（第 2、3、6 节）。
# - 作业比 API 进程活得久；重试用 `retries=` 和 `retry_delay=` 配置；如果读取者不该看到一次可能被重试修复的失败，就设置 `store_intermediate_errors=False`（第 3、4 节）。
# - huey 的消费者收到 SIGINT 时优雅关闭，收到 SIGTERM 时立即退出（改用 `-g TERM -t N`）；正在运行的作业在 SIGTERM 和 SIGKILL 下都会丢失；`SIGNAL_INTERRUPTED` 处理函数能在 SIGTERM 时把它重新入队，SIGKILL 时什么也救不了它。不开持久化的 Redis 一崩溃就会丢掉整个队列（第 5、6 节）。
# - 所以：作业要幂等，发件箱作为记录：订单和它的意图在同一个事务里，中继程序先入队、后标记，作业自己标记完成，中继程序重发从未完成的作业（第 7 节，练习 7.2 和 7.3）。
# - 基于 SQLite 的 huey 启动作业比 `BackgroundTasks` 和基于 Redis 的 huey 晚，因为它的工作线程要轮询文件；按丢一个作业的代价来选，而不是按毫秒来选（第 8、9 节）。
