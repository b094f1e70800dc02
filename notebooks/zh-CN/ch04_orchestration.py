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

# %% [markdown] translates="24eab0766d2f3394"
# # 第 4 章：任务编排：包装函数（wrapper）、重试（retry）、任务链与失败
#
# 第 1 章展示了单个后台任务（background task）是如何运行的。真实的任务会被包装（为了记录日志）、被重试（因为它们调用的服务时不时会失败）、被串成链，或者扇出（fan-out）。每一种做法都有一个众所周知的、悄无声息地出错的方式。和每一章一样，每条陈述之后都跟着一个证明单元格（proof cell），它在真实的服务器上验证该陈述，并用 `assert` 断言。
#
# **你将学到**
#
# - 常见的监控装饰器（decorator），即一个 await 被包装函数的 `async def wrapper`，会对 `def` 任务造成什么影响：它阻塞（blocking）整个服务器，在工作已经完成之后报告失败，并把任务改名为 `wrapper`；
# - 如何写出正确的装饰器：使用 `functools.wraps`；`async` 函数直接 await，`def` 函数送进线程池（thread pool）；失败时连同回溯（traceback）一起记录日志；用 `ParamSpec` 标注类型；
# - 失败的任务会做什么、不会做什么：对客户端和它收到的响应（response），对该请求（request）的其他任务，对日志，对其他请求，以及在测试中；
# - 如何用 `tenacity` 以指数退避（exponential backoff）的方式重试，有上限、有日志；以及为什么被重试的任务必须是幂等（idempotent）的；
# - 如何编排：把结果传递下去的任务链；用 `asyncio.TaskGroup` 或 `asyncio.gather` 扇出（以及其中一部分失败时两者有何不同）；由依赖项（dependency）添加的任务；以及会悄悄丢掉任务的 `background=` 陷阱。

# %% [markdown] translates="ff2f4560fa0a512d"
# ## 0. 准备工作：版本和课程的辅助函数
#
# 本课程在 `pyproject.toml` 中固定的版本上验证过；如果你的版本与之不同，下面的单元格会指出来。本章新增了重试库 `tenacity`。

# %%
import asyncio
import functools
import inspect
import logging
import platform
import threading
import time
from importlib.metadata import version

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "tenacity": "9.2.1",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown] translates="99dc55f57793761e"
# 辅助函数与第 1 章相同：`serve(app)` 在一个线程中运行真实的 uvicorn 服务器，并在代码块结束时停止它（会等待正在运行的任务）；`Timeline` 和中间件（middleware）`TimelineMiddleware` 在同一个时钟上记录请求和任务；`capture_logs(name)` 收集某个 logger 记录的内容，以便单元格打印它们并对其断言；`run_in_fresh_kernel` 在一个新内核中运行一段代码；`version_table(...)` 展示 `make versions` 在旧版 FastAPI 上测得的结果。
#
# 本章的任务在名为 `"tasks"` 的 logger 上记录日志。它的开始和结束日志是 `INFO` 级别，低于 Python 的默认阈值（`WARNING`），所以下面的单元格为这个 logger 调低了阈值。`describe` 把一条日志记录打印成一行。

# %%
import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Header, Request, Response
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from tqdm.auto import tqdm

from bgcourse import (
    Timeline,
    TimelineMiddleware,
    capture_logs,
    load_quiz,
    run_in_fresh_kernel,
    serve,
    shows_error,
    version_table,
    wait_until,
)

logger = logging.getLogger("tasks")
logger.setLevel(logging.INFO)


def describe(record: logging.LogRecord) -> str:
    """One log record as a line: logger, level, the message's first line, and the exception it carries."""
    line = f"{record.name} {record.levelname}: {record.getMessage().splitlines()[0]}"
    if record.exc_info and record.exc_info[1] is not None:
        line += f"  [with the traceback of {type(record.exc_info[1]).__name__}]"
    return line


# %% [markdown] translates="af26f3edd487c6cd"
# ## 1. 常见的监控装饰器
#
# 教程和问答经常建议用下面这样的装饰器包装每个后台任务，以便记录它何时开始、何时结束、何时失败：
#
# ```python
# def monitor_task(func):
#     async def wrapper(*args, **kwargs):
#         logger.info(f"Task {func.__name__} started")
#         try:
#             result = await func(*args, **kwargs)
#             logger.info(f"Task {func.__name__} completed")
#             return result
#         except Exception as e:
#             logger.error(f"Task {func.__name__} failed: {e}")
#             raise
#     return wrapper
# ```
#
# 用在 `async def` 任务上，它没有问题（事实 1.3 会展示）。用在 `def` 任务上，它会在三个方面出错。第 1 章（事实 4.1）表明，Starlette 根据交给它的函数来决定任务在哪里运行：一个协程（coroutine）函数会在事件循环（event loop）上被 await，其他函数则被送到工作线程（worker thread）上。这个装饰器交给 Starlette 的是 `wrapper`，而它永远是 `async def`。
#
# **事实 1.1**：被 `monitor_task` 包装后，`def` 任务不再在工作线程上运行，而是在事件循环的线程上运行，它的阻塞调用会让整个服务器停住：在它运行期间发出的 `GET /ping`，要等任务结束后才得到响应。同一个函数不加包装直接添加时，会在工作线程上运行，`/ping` 在它仍在运行时就得到了响应。

# %%
def monitor_task(func):
    async def wrapper(*args, **kwargs):
        logger.info(f"Task {func.__name__} started")
        try:
            result = await func(*args, **kwargs)
            logger.info(f"Task {func.__name__} completed")
            return result
        except Exception as e:
            logger.error(f"Task {func.__name__} failed: {e}")
            raise

    return wrapper


timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


def build_report(kind: str) -> None:
    time.sleep(0.5)  # 阻塞的工作：同步的数据库驱动、文件操作、CPU 密集的步骤


@app.post("/reports/{kind}")
async def order_report(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task = monitor_task(build_report) if kind == "decorated" else build_report
    background_tasks.add_task(timeline.track(f"build_report, {kind}", task), kind)
    return {"queued": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


# 两个客户端：任务失败的那个客户端，其连接会被关闭（第 1 章，事实 7.2）。
with (
    capture_logs("tasks"),
    capture_logs("uvicorn.error"),
    serve(app) as url,
    httpx.Client(base_url=url) as reports,
    httpx.Client(base_url=url) as pings,
):
    for kind in ("plain", "decorated"):
        timeline.request(reports, "POST", f"/reports/{kind}", lane=f"POST /reports/{kind}")
        timeline.request(pings, "GET", "/ping", lane=f"GET /ping while the {kind} task runs")

# 每个 /ping 何时发出、何时得到响应，并与同时运行的那个任务的结束时间相比较。
sent, answered, task_end = {}, {}, {}
for kind, when in (("plain", "before"), ("decorated", "after")):
    lane = f"GET /ping while the {kind} task runs"
    sent[kind], answered[kind] = timeline.at(lane, "request sent"), timeline.at(lane, "response received")
    task_end[kind] = timeline.at(f"build_report, {kind}", "task end")
    thread = timeline.find(f"build_report, {kind}", "task start").thread
    print(
        f"build_report, {kind:9}: /ping answered {abs(task_end[kind] - answered[kind]):.2f} s {when} the task"
        f" ended; the task ran on {thread}"
    )
assert timeline.find("build_report, plain", "task start").thread == "AnyIO worker thread"
assert timeline.find("build_report, decorated", "task start").thread.startswith("uvicorn-")
assert all(sent[kind] < task_end[kind] for kind in sent), "each /ping was sent while its task ran"
assert answered["plain"] < task_end["plain"], "beside the plain task, /ping was answered while the task ran"
assert answered["decorated"] > task_end["decorated"], "beside the decorated task, /ping waited for its end"
timeline.plot("monitor_task moves a def task onto the event loop: /ping waits for it")

# %% [markdown] translates="a4cbf0177b9a6eee"
# 第二个 `/ping` 的条形在任务的条形结束之后才结束：在 `time.sleep(0.5)` 返回之前，服务器连读取请求都做不到。发给这个服务器的每个请求都会以同样的方式等待。
#
# 接着，`wrapper` 执行到 `await func(*args, **kwargs)`。`func` 不是协程函数，所以这个调用已经*完成了工作*并返回了结果，这里是 `None`；`await` 作用在的是这个结果上。
#
# **事实 1.2**：报表生成之后，`await None` 抛出 `TypeError`（在 Python 3.11 上是：`object NoneType can't be used in 'await' expression`）。包装函数为一项成功完成的工作记录了 "failed"，服务器记录了这个异常，而该请求后面的任务都被跳过（第 1 章，事实 7.1）。

# %%
app = FastAPI()
reports_built: list[str] = []
notified: list[str] = []


@monitor_task
def build_monthly_report(month: str) -> None:
    time.sleep(0.1)
    reports_built.append(month)


@app.post("/monthly/{month}")
def order_monthly_report(month: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(build_monthly_report, month)
    background_tasks.add_task(notified.append, f"report {month} is ready")
    return {"queued": month}


with capture_logs("tasks") as task_records, capture_logs("uvicorn.error") as server_records, serve(app) as url:
    response = httpx.post(f"{url}/monthly/march")

print(f"the client got {response.status_code} {response.json()}")
print(f"reports built: {reports_built}")
for record in task_records + server_records:
    print(describe(record))
print(f"the notification task added after it: {'ran' if notified else 'never ran'}")
failure = server_records[0].exc_info[1]
assert response.status_code == 200 and reports_built == ["march"]
assert [record.levelname for record in task_records] == ["INFO", "ERROR"]
assert "failed" in task_records[1].getMessage()
assert isinstance(failure, TypeError) and "NoneType" in str(failure) and "await" in str(failure)
assert notified == []

# %% [markdown] translates="7c9bacc5fed4aba1"
# 日志说任务失败了，报表却已经存在，而以这份报表为前提的通知始终没有发出。值班工程师如果重新运行这个“失败”的任务，就会把报表生成两次。
#
# 第三个问题是名字。`wrapper` 是一个新函数，没有 `functools.wraps` 时，它保留自己的名字、限定名和（空的）docstring。装饰器自己的日志行是对的，因为它们从闭包里读取 `func.__name__`；但任何从拿到的任务上读取名字的代码，看到的都是 `wrapper`。
#
# **事实 1.3**：被 `monitor_task` 装饰后，每个任务都叫 `wrapper`：一个在日志中记下每个入队（enqueue）任务名字的辅助函数，为两个不同的任务记录了两次 `queued wrapper`。在 wrapper 上加上 `@functools.wraps(func)` 后，名字、docstring 和签名都变成任务自己的，除此之外什么都没变：wrapper 仍然是协程函数，包在 `def` 函数外面时仍然以 `TypeError` 告终。（在这些 `async def` 任务上，两个装饰器在其他方面都能正常工作：任务都完成了。）

# %%
def monitor_task_with_wraps(func):
    @functools.wraps(func)  # 与 monitor_task 唯一的区别
    async def wrapper(*args, **kwargs):
        logger.info(f"Task {func.__name__} started")
        try:
            result = await func(*args, **kwargs)
            logger.info(f"Task {func.__name__} completed")
            return result
        except Exception as e:
            logger.error(f"Task {func.__name__} failed: {e}")
            raise

    return wrapper


async def send_invoice(customer: str) -> None:
    """E-mail the customer their invoice."""
    await asyncio.sleep(0.01)


async def update_crm(customer: str) -> None:
    """Record the sale in the CRM."""
    await asyncio.sleep(0.01)


def enqueue(background_tasks: BackgroundTasks, func, *args) -> None:
    """A helper many code bases have: queue a task and say so in the log."""
    logger.info("queued %s", func.__name__)
    background_tasks.add_task(func, *args)


app = FastAPI()


@app.post("/sales/{decorator}")
async def record_sale(decorator: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    wrap = monitor_task if decorator == "without-wraps" else monitor_task_with_wraps
    enqueue(background_tasks, wrap(send_invoice), "ada")
    enqueue(background_tasks, wrap(update_crm), "ada")
    return {"recorded": "ada"}


with capture_logs("tasks") as records, serve(app) as url:
    for decorator in ("without-wraps", "with-wraps"):
        httpx.post(f"{url}/sales/{decorator}")

messages = [record.getMessage() for record in records]
queued_lines = [message for message in messages if message.startswith("queued")]
queued = {"without-wraps": queued_lines[:2], "with-wraps": queued_lines[2:]}  # 请求是一个接一个来的
completed = sum(message.endswith("completed") for message in messages)
failed = sum(" failed: " in message for message in messages)
print(f"on async def tasks, both decorators work: {completed} tasks completed, {failed} failed")
for decorator, wrap in (("without-wraps", monitor_task), ("with-wraps", monitor_task_with_wraps)):
    wrapped = wrap(send_invoice)
    print(f"{decorator}: the server logged {queued[decorator]}")
    print(
        f"{'':14} __name__={wrapped.__name__!r}, __qualname__={wrapped.__qualname__!r},"
        f" __doc__={wrapped.__doc__!r}, signature={inspect.signature(wrapped)}"
    )
still_async = inspect.iscoroutinefunction(monitor_task_with_wraps(build_report))
with capture_logs("tasks"):
    try:
        await monitor_task_with_wraps(time.sleep)(0.01)
        with_wraps_on_def = "nothing"
    except TypeError as error:
        with_wraps_on_def = f"TypeError: {error}"
print(f"with wraps, monitor_task_with_wraps(build_report) is still a coroutine function: {still_async}")
print(f"with wraps, awaiting it around the def function time.sleep still raises {with_wraps_on_def}")
assert completed == 4 and failed == 0
assert still_async and with_wraps_on_def.startswith("TypeError")
assert queued["without-wraps"] == ["queued wrapper", "queued wrapper"]
assert queued["with-wraps"] == ["queued send_invoice", "queued update_crm"]
assert str(inspect.signature(monitor_task_with_wraps(send_invoice))) == "(customer: str) -> None"

# %% [markdown] translates="971679ae95fc0f62"
# 所以 `functools.wraps` 修好了名字，仅此而已：Starlette 看到的是协程函数，仍然会把被 `monitor_task_with_wraps` 包装的 `def` 任务放在事件循环上运行。
#
# 这个装饰器的镜像版本，即包在 `async def` 任务外面的普通 `def wrapper`，失败得更加悄无声息。Starlette 看到一个 `def` 函数，就把它放到工作线程中运行；在那里调用 `async def` 函数只会*创建*一个协程，而没有人 await 它。Python 在这个协程被丢弃时，用一个 `RuntimeWarning` 报告此事。为了不让这个警告出现在当前内核中，演示在一个独立的全新内核中运行，由它记录并打印这个警告。
#
# **事实 1.4**：包在 `async def` 任务外面的 `def` 包装函数会记录 "started" 和 "completed"，任务的工作却从未发生，唯一的异常迹象是 `RuntimeWarning: coroutine 'send_welcome' was never awaited`。

# %%
MIRROR_IMAGE = '''
import asyncio, functools, threading, warnings
import httpx
from fastapi import BackgroundTasks, FastAPI
from bgcourse import serve

sent = []

def log_task(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        print(f"Task {func.__name__} started")
        result = func(*args, **kwargs)
        print(f"Task {func.__name__} completed")
        return result
    return wrapper

@log_task
async def send_welcome(address):
    await asyncio.sleep(0.05)
    sent.append(address)

app = FastAPI()

@app.post("/signup")
def signup(background_tasks: BackgroundTasks):
    background_tasks.add_task(send_welcome, "ada@example.com")
    return {"status": "signed up"}

warned = []
shown = threading.Event()

def record(message, category, filename, lineno, file=None, line=None):
    warned.append(f"{category.__name__}: {message}")
    shown.set()

with warnings.catch_warnings():
    warnings.simplefilter("always")
    warnings.showwarning = record
    with serve(app) as url:
        httpx.post(f"{url}/signup")
    # The thread that lets go of the coroutine last, the event loop's or the worker's, drops it,
    # and that can be after the server has stopped: wait for the warning itself.
    shown.wait(timeout=60)
print(f"welcome e-mails sent: {sent}")
for warning in warned:
    print(f"Python warned: {warning}")
'''
with tqdm(total=1, desc="running the demonstration in a fresh kernel") as progress:
    mirror = run_in_fresh_kernel(MIRROR_IMAGE)
    progress.update()
print(mirror.output.strip())
assert "Task send_welcome completed" in mirror.output
assert "welcome e-mails sent: []" in mirror.output
assert "RuntimeWarning: coroutine 'send_welcome' was never awaited" in mirror.output
assert not mirror.error

# %% [markdown] translates="87a45f89d331d04a"
# ## 2. 正确的监控装饰器
#
# 一个必须由 Starlette 当作协程运行的包装函数，仍然可以对两种函数都做正确的事，办法是亲自去做 Starlette 本来会做的事：
#
# - `@functools.wraps(func)`：任务保留自己的名字、docstring 和签名；
# - `async def` 函数直接 await；其他函数用 `starlette.concurrency.run_in_threadpool` 送进线程池，这正是 Starlette 的 `BackgroundTask` 处理 `def` 任务时所用的函数（它调用 `anyio.to_thread.run_sync`），这样事件循环就能保持空闲。是否“异步”按 Starlette 的方式判断（`starlette/_utils.py` 中的 `is_async_callable`）：协程函数、协程函数的 `functools.partial`，或者 `__call__` 是协程函数的对象。`inspect.iscoroutinefunction` 也能看穿 partial，但对这种对象会回答“否”，于是包装函数会把它送进线程，而在那里调用它只会产生一个没人 await 的协程；
# - 失败时用 `logger.exception` 记录，它会附上回溯，然后重新抛出，这样该请求后面的任务会像没有装饰器时一样被跳过（第 3 节；第 1 章的练习（exercise）1.3 `keep_going` 是让它们继续运行的变体）；
# - 用 `ParamSpec` 标注类型，让类型检查器知道 `monitored(build_report)` 接受的参数与 `build_report` 相同。两个 `@overload` 的含义是：`async` 函数保留其返回类型；普通函数的返回值变成可 await 的。

# %%
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")


def is_async_callable(func: object) -> bool:
    """As Starlette decides it (starlette/_utils.py): unwrap partials, then look at the function or its __call__."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or (callable(func) and inspect.iscoroutinefunction(func.__call__))


@overload
def monitored(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
@overload
def monitored(func: Callable[P, R]) -> Callable[P, Awaitable[R]]: ...
def monitored(func: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
    """Log a task's start, end and failure (with the traceback); run it where it belongs."""
    name = getattr(func, "__qualname__", type(func).__qualname__)
    is_async = is_async_callable(func)

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        logger.info("task %s started", name)
        started = time.perf_counter()
        try:
            if is_async:
                result = await func(*args, **kwargs)
            else:
                result = await run_in_threadpool(func, *args, **kwargs)
        except Exception:
            logger.exception("task %s failed after %.2f s", name, time.perf_counter() - started)
            raise
        logger.info("task %s finished in %.2f s", name, time.perf_counter() - started)
        return result

    return wrapper


# %% [markdown] translates="e103b9b784165b19"
# **事实 2.1**：使用 `monitored` 时，第 1 节的 `def` 任务在 AnyIO 工作线程上运行，`/ping` 在它运行期间就得到响应；日志写出了任务的名字，并说明它已完成；任务的名字和签名是它自己的；`async def` 任务仍然在事件循环上被 await，返回值原样传回。`async def` 函数的 `functools.partial`，以及带有 `async def __call__` 的对象，也是如此；`inspect.iscoroutinefunction` 能识别前者，却识别不了后者。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def count_pages(kind: str) -> int:
    await asyncio.sleep(0.05)
    return 12


@app.post("/reports/{kind}")
async def order_report(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track("monitored(build_report)", monitored(build_report)), kind)
    background_tasks.add_task(timeline.track("monitored(count_pages)", monitored(count_pages)), kind)
    return {"queued": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


with (
    capture_logs("tasks") as records,
    serve(app) as url,
    httpx.Client(base_url=url) as reports,
    httpx.Client(base_url=url) as pings,
):
    timeline.request(reports, "POST", "/reports/monitored", lane="POST /reports/monitored")
    timeline.request(pings, "GET", "/ping", lane="GET /ping while the task runs")

ahead = timeline.at("monitored(build_report)", "task end") - timeline.at(
    "GET /ping while the task runs", "response received"
)
print(f"/ping answered {ahead:.2f} s before build_report ended")
for lane in ("monitored(build_report)", "monitored(count_pages)"):
    print(f"{lane:24} ran on {timeline.find(lane, 'task start').thread}")
for record in records:
    print(describe(record))
wrapped = monitored(build_report)
print(f"monitored(build_report): __name__={wrapped.__name__!r}, signature={inspect.signature(wrapped)}")
pages = await monitored(count_pages)("monthly")
print(f"awaiting monitored(count_pages) directly returns {pages}")


class PageCounter:
    async def __call__(self, kind: str) -> int:
        return await count_pages(kind)


seen_as_async = {
    type(odd_one).__name__: (inspect.iscoroutinefunction(odd_one), is_async_callable(odd_one))
    for odd_one in (functools.partial(count_pages, "monthly"), PageCounter())
}
for kind, (by_inspect, by_starlette) in seen_as_async.items():
    print(f"{kind:11} inspect.iscoroutinefunction: {by_inspect!s:5}  is_async_callable: {by_starlette}")
assert seen_as_async == {"partial": (True, True), "PageCounter": (False, True)}
assert await monitored(functools.partial(count_pages, "monthly"))() == 12  # 在事件循环上被 await，得到的是结果而不是协程
assert await monitored(PageCounter())("monthly") == 12
assert ahead > 0, "/ping was answered while build_report still ran"
assert timeline.find("monitored(build_report)", "task start").thread.startswith("uvicorn-")  # 包装函数
assert [r.getMessage().split(" in ")[0] for r in records] == [
    "task build_report started",
    "task build_report finished",
    "task count_pages started",
    "task count_pages finished",
]
assert wrapped.__name__ == "build_report" and inspect.iscoroutinefunction(wrapped)
assert pages == 12

# %% [markdown] translates="16312ebd6e560bcd"
# 时间线记录的是*包装函数*的开始，它位于事件循环的线程上（`uvicorn-<port>`）；包装函数里面的工作 `build_report` 去了工作线程，所以 `/ping` 没有被挡住。下面这个单元格从函数内部展示这一点：

# %%
ran_on: dict[str, str] = {}


def def_function() -> None:
    ran_on["def function"] = threading.current_thread().name


async def async_def_function() -> None:
    ran_on["async def function"] = threading.current_thread().name


app = FastAPI()


@app.post("/where")
async def where(background_tasks: BackgroundTasks) -> dict[str, bool]:
    ran_on["endpoint"] = threading.current_thread().name
    background_tasks.add_task(monitored(def_function))
    background_tasks.add_task(monitored(async_def_function))
    return {"queued": True}


with capture_logs("tasks"), serve(app) as url:
    httpx.post(f"{url}/where")
for where_from in ("def function", "async def function"):
    print(f"{where_from}, inside monitored, ran on: {ran_on[where_from]}")
print(f"(the endpoint ran on {ran_on['endpoint']}, the event loop's thread)")
assert ran_on["def function"] == "AnyIO worker thread"
assert ran_on["async def function"] == ran_on["endpoint"] != ran_on["def function"]

# %% [markdown] translates="e92fa5c4d4a0a1d2"
# `ParamSpec` 带来的好处体现在类型检查器中，而不是运行时。课程安装了 mypy；下面的单元格把 `monitored`（它的源码，取自本 notebook）和一次参数错误的调用写进一个临时文件，对它运行 `mypy --strict`；然后把装饰器的类型标注换成 `Callable[..., Any]`（就像第 1 章练习 1.3 那样），对同样的调用再运行一次。
#
# **事实 2.2**：mypy 拒绝 `background_tasks.add_task(monitored(build_report), 3)`：`build_report` 接受的是 `str`。如果类型标注为 `Callable[..., Any]`，同样的错误就能通过检查。

# %%
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

MONITORED_SOURCE = "".join(
    inspect.getsource(f) for f in [is_async_callable, *typing.get_overloads(monitored), monitored]
)
HEADER = """\
from __future__ import annotations
import functools, inspect, logging, time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, overload
from fastapi import BackgroundTasks
from starlette.concurrency import run_in_threadpool

logger = logging.getLogger("tasks")
P = ParamSpec("P")
R = TypeVar("R")


def build_report(kind: str) -> None: ...
"""
LOOSELY_TYPED = """
def monitored(func: Callable[..., Any]) -> Callable[..., Any]:
    return func
"""
MISTAKE = """

def order_report(background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(monitored(build_report), 3)
"""


def mypy_says(source: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        module = Path(folder) / "tasks_module.py"
        module.write_text(source, encoding="utf-8")
        command = [sys.executable, "-m", "mypy", "--strict", "--no-color-output", "--cache-dir", f"{folder}/cache"]
        result = subprocess.run(
            [*command, str(module)],
            capture_output=True,
            text=True,
            cwd=folder,
        )
    return result.stdout.replace(str(module), "tasks_module.py").strip()


sources = {"with ParamSpec": HEADER + MONITORED_SOURCE + MISTAKE, "loosely typed": HEADER + LOOSELY_TYPED + MISTAKE}
verdicts = {name: mypy_says(source) for name, source in tqdm(sources.items(), desc="mypy --strict", unit="file")}
with_paramspec, loosely_typed = verdicts["with ParamSpec"], verdicts["loosely typed"]
print("monitored typed with ParamSpec:\n ", with_paramspec.replace("\n", "\n  "))
print("monitored typed as Callable[..., Any]:\n ", loosely_typed.replace("\n", "\n  "))
assert 'incompatible type "int"; expected "str"' in with_paramspec and "Found 1 error" in with_paramspec
assert loosely_typed.startswith("Success")

# %% [markdown] translates="05ff10c9b2a09e09"
# ## 3. 被监控的任务失败时
#
# 第 1 章（第 7 节）证明了任务中的异常会造成什么后果。这里在加上 `monitored` 的情况下再看一遍；`monitored` 会重新抛出异常，因为装饰器应该报告失败，而不是改变失败的后果。
#
# **事实 3.1**：当一个任务在 0.3 秒时失败：客户端已经拿到了它的 `200`；该请求后面的任务被跳过；失败被记录两次，一次由 `monitored` 记录（写明任务名，附带回溯），一次由 uvicorn 记录（`Exception in ASGI application`）；在任务失败期间发出的另一个请求会得到响应，它自己的任务也会运行。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
receipts: list[str] = []


@monitored
async def charge_card(order: str) -> None:
    await asyncio.sleep(0.3)
    raise ConnectionError(f"the card processor refused order {order}")


@monitored
async def send_receipt(order: str) -> None:
    receipts.append(order)


@app.post("/orders/{order}")
async def place_order(order: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    if order == "A":
        background_tasks.add_task(timeline.track("order A: charge_card", charge_card), order)
    background_tasks.add_task(timeline.track(f"order {order}: send_receipt", send_receipt), order)
    return {"order": order, "status": "accepted"}


with (
    capture_logs("tasks") as task_records,
    capture_logs("uvicorn.error") as server_records,
    serve(app) as url,
    httpx.Client(base_url=url) as first,
    httpx.Client(base_url=url) as second,
):
    response_a = timeline.request(first, "POST", "/orders/A", lane="POST /orders/A")
    response_b = timeline.request(second, "POST", "/orders/B", lane="POST /orders/B")

ahead = timeline.at("order A: charge_card", "task end") - timeline.at("POST /orders/A", "response received")
print(f"order A: the client had {response_a.status_code} {response_a.json()} {ahead:.2f} s before its task failed")
print(f"order B: answered {response_b.status_code} while order A's task ran")
print(f"receipts sent: {receipts}")
for record in task_records + server_records:
    if record.levelno >= logging.ERROR:
        print(describe(record))
errors = [record for record in task_records if record.levelno >= logging.ERROR]
assert response_a.status_code == response_b.status_code == 200 and ahead > 0, "A's 200 came before its task failed"
assert receipts == ["B"], "A's receipt is skipped, B's is sent"
assert len(errors) == 1 and "charge_card" in errors[0].getMessage()
assert isinstance(errors[0].exc_info[1], ConnectionError)
assert [type(r.exc_info[1]) for r in server_records] == [ConnectionError]
timeline.plot("order A's task fails after its response; order B is not affected")

# %% [markdown] translates="a0428c28cb4a8f52"
# 订单 A 的 `send_receipt` 在图中没有泳道：它从未开始。也没有人告诉客户端：它的 `200` 在任务开始之前就已经发出。如果客户端必须知道结果，任务就得把结果记录在客户端能够查询的地方（一条状态记录、一个作业（job） id）；第 7 章的持久化队列（durable queue）把每个作业的结果保存在任何进程都能按作业 id 读取的地方。
#
# **事实 3.2**：在测试中，`TestClient` 会在测试本身中重新抛出任务的异常（日志行照样会写出；`capture_logs` 让它们不出现在本 notebook 的输出中）。

# %%
with shows_error(ConnectionError) as raised, capture_logs("tasks"), TestClient(app) as test_client:
    test_client.post("/orders/A")
assert type(raised.error) is ConnectionError

# %% [markdown] translates="3b1e7dc0b490dfa9"
# 这正是任务自己的 `ConnectionError`，由 `test_client.post` 在响应构建好之后抛出。如果创建客户端时传入 `raise_server_exceptions=False`，它就会返回真实客户端拿到的那个 `200`：

# %%
receipts.clear()
with capture_logs("tasks") as records, TestClient(app, raise_server_exceptions=False) as test_client:
    quiet = test_client.post("/orders/A")
print(f"{quiet.status_code} {quiet.json()}; receipts sent: {receipts}; monitored logged:")
for record in records:
    print(" ", describe(record))
assert quiet.status_code == 200 and receipts == []
assert records[-1].levelno == logging.ERROR

# %% [markdown] translates="828f8276ffca047f"
# ## 4. 用 `tenacity` 实现带退避的重试
#
# 调用其他服务的任务时不时会遇到连接被拒绝或者 `503`。手工重试（一个循环、一个计数器、一次 sleep）很容易在细节上写错；`tenacity` 是一个维护良好的库，只需几条声明就能做到：
#
# - `stop=stop_after_attempt(4)`：最多尝试 4 次，这样一个一直宕机的服务就不会让任务（以及服务器的关闭）永远等下去；
# - `wait=wait_exponential(multiplier=0.05, max=1)`：两次尝试之间依次等待 0.05 秒、0.1 秒、0.2 秒……（这里设得很小，好让 notebook 运行得快；生产环境中通常是秒级）；
# - `retry=retry_if_exception(worth_retrying)`：只重试再试一次能够解决的问题：没能送达的请求或响应（httpx 的超时（timeout）、网络错误、中途挂断的服务器）、`5xx`，以及 `429 Too Many Requests`（在 `raise_for_status()` 把状态码变成异常之后）。其他 `4xx` 不重试：服务理解了请求，但拒绝了它（卡被拒、订单格式错误），再试一次它还是会拒绝（事实 4.3）；
# - `before_sleep=before_sleep_log(logger, logging.WARNING)`：每次重试记录一行日志；
# - `reraise=True`：最后一次尝试失败后，抛出最后那个错误本身，而不是 tenacity 的 `RetryError`。
#
# `tenacity.retry` 会保持函数的类型（`async def` 函数仍然是协程函数；下一个单元格会检查这一点），所以 `monitored` 可以叠在它上面，并且仍然在正确的地方运行任务：任务有一行开始日志和一行结束日志，中间每次重试一条警告。
#
# 重试所针对的服务是一个小型支付服务商：运行在第二个真实服务器上的 FastAPI 应用。两个字典编排它的“坏日子”：`outage[order]` 表示在做任何事之前，先用 `503` 拒绝这么多次请求；`lost_answers[order]` 表示先扣款，然后这么多次回答 `504`，就像网关在响应返回途中超时时所做的那样；在 `declined` 中的订单会得到 `402 Payment Required`，即卡被拒。它像真实的支付 API 一样支持 `Idempotency-Key` 头（第 5 节）。

# %%
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

provider = FastAPI()
provider_requests: list[tuple[float, str, str | None]] = []  # (时间, 订单, 幂等键)
charges: list[str] = []  # 每次扣款一条记录：扣款对应的订单
charge_for_key: dict[str, int] = {}  # 幂等键 -> 它产生的那次扣款的编号
outage: dict[str, int] = {}
lost_answers: dict[str, int] = {}
declined: set[str] = set()


@provider.post("/charges")
async def create_charge(
    order_id: str, amount: int, response: Response, idempotency_key: str | None = Header(default=None)
) -> dict[str, int | str]:
    provider_requests.append((time.perf_counter(), order_id, idempotency_key))
    if outage.get(order_id, 0) > 0:
        outage[order_id] -= 1
        response.status_code = 503
        return {"error": "service unavailable, try again"}
    if order_id in declined:
        response.status_code = 402
        return {"error": "card declined"}
    if idempotency_key is not None and idempotency_key in charge_for_key:
        return {"charge": charge_for_key[idempotency_key], "replayed": "yes"}
    charges.append(order_id)
    if idempotency_key is not None:
        charge_for_key[idempotency_key] = len(charges)
    if lost_answers.get(order_id, 0) > 0:
        lost_answers[order_id] -= 1
        response.status_code = 504  # 卡已扣款；响应却没能送回去
        return {"error": "gateway timeout"}
    return {"charge": len(charges), "amount": amount}


def worth_retrying(error: BaseException) -> bool:
    """Could another attempt succeed? Yes if the request or its answer did not get through, or the
    service said "not now" (5xx, 429); no if it understood the request and refused it (other 4xx)."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


with_retries = retry(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.05, max=1),
    retry=retry_if_exception(worth_retrying),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)


@monitored
@with_retries
async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": amount})
        response.raise_for_status()


shop = FastAPI()


@shop.post("/orders/{order_id}/pay")
async def pay(order_id: str, amount: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(charge_order, request.app.state.provider_url, order_id, amount)
    return {"order": order_id, "status": "payment pending"}


def requests_for(order_id: str) -> list[float]:
    return [when for when, order, _ in provider_requests if order == order_id]


def short(message: str) -> str:
    """A log line without the URL and the link that httpx adds to its error messages."""
    return message.split(" for url ")[0]


# %% [markdown] translates="163d8ddd62e86828"
# **事实 4.1**：当服务商拒绝某个订单的前两次请求时，任务共发出三次请求，记录两次重试，卡只被扣款一次；两次重试之前的等待分别至少为 0.05 秒和 0.1 秒。

# %%
outage["order-1"] = 2
with capture_logs("tasks") as records, serve(provider) as provider_url, serve(shop) as url:
    shop.state.provider_url = provider_url  # 商店的配置：它的支付服务商在哪里
    response = httpx.post(f"{url}/orders/order-1/pay", params={"amount": 1999})

attempts = requests_for("order-1")
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"the client got {response.status_code} {response.json()}")
for record in records:
    print(short(describe(record)))
print(f"{len(attempts)} requests reached the provider; gaps between them: {', '.join(f'{g:.2f} s' for g in gaps)}")
print(f"charges made: {charges.count('order-1')}")
print(f"tenacity's wrapper is still a coroutine function: {inspect.iscoroutinefunction(charge_order.__wrapped__)}")
assert inspect.iscoroutinefunction(charge_order.__wrapped__)
assert response.status_code == 200 and len(attempts) == 3 and charges.count("order-1") == 1
assert [r.levelname for r in records] == ["INFO", "WARNING", "WARNING", "INFO"]
assert gaps[0] >= 0.05 and gaps[1] >= 0.1

# %% [markdown] translates="1c67673249528472"
# **事实 4.2**：如果服务商一直宕机，任务在 4 次尝试后停止，各次之间至少等待 0.05、0.1 和 0.2 秒（总共等待 0.35 秒），然后抛出服务商的最后一个错误，由 `monitored` 和 uvicorn 记录下来。没有任何扣款。

# %%
outage["order-2"] = 100
with (
    capture_logs("tasks") as records,
    capture_logs("uvicorn.error") as server_records,
    serve(provider) as provider_url,
    serve(shop) as url,
):
    shop.state.provider_url = provider_url
    httpx.post(f"{url}/orders/order-2/pay", params={"amount": 500})

attempts = requests_for("order-2")
gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
print(f"{len(attempts)} attempts over {attempts[-1] - attempts[0]:.2f} s, of which 0.35 s were tenacity's waits")
print(f"gaps between them: {', '.join(f'{g:.2f} s' for g in gaps)}")
for record in records + server_records:  # 任务的开始、三次重试、失败；然后是 uvicorn 的记录
    print(short(describe(record)))
outage.pop("order-2")
assert len(attempts) == 4 and charges.count("order-2") == 0
assert all(gap >= wait for gap, wait in zip(gaps, (0.05, 0.1, 0.2)))
assert records[-1].levelname == "ERROR" and isinstance(records[-1].exc_info[1], httpx.HTTPStatusError)
assert [type(r.exc_info[1]) for r in server_records] == [httpx.HTTPStatusError]

# %% [markdown] translates="3413542634b35901"
# **事实 4.3**：被拒的卡（`402`）在使用 `worth_retrying` 时只请求一次；如果对每个 `httpx.HTTPError` 都重试（一旦 `raise_for_status()` 抛出异常，所有错误状态码都属于这一类），则请求四次；两种情况下，任务最终都以 `402` 结束。


# %%
async def post_charge(provider_url: str, order_id: str) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": 100})
        response.raise_for_status()


retry_every_http_error = retry(
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.05, max=1),
    retry=retry_if_exception_type(httpx.HTTPError),
    reraise=True,
)
declined.add("order-9")
asked: dict[str, tuple[int, int]] = {}  # 策略 -> (order-9 的请求次数, 最终的状态码)
with capture_logs("tasks"), serve(provider) as provider_url:
    for policy, with_policy in (("every httpx.HTTPError", retry_every_http_error), ("worth_retrying", with_retries)):
        before = len(requests_for("order-9"))
        try:
            await with_policy(post_charge)(provider_url, "order-9")
        except httpx.HTTPStatusError as error:
            asked[policy] = (len(requests_for("order-9")) - before, error.response.status_code)
for policy, (requests_made, status) in asked.items():
    print(f"retry on {policy:22}: {requests_made} request(s) for the declined card, ended with {status}")
assert asked == {"every httpx.HTTPError": (4, 402), "worth_retrying": (1, 402)}
assert charges.count("order-9") == 0

# %% [markdown] translates="5298d16f15807b64"
# 上限在两方面都很重要：永远重试的任务会拖住它所在请求后面的任务（它们一个接一个地运行）；而正在优雅关闭（graceful shutdown）的服务器会等待正在运行的任务（`serve` 给它们 `graceful_seconds` 的时间；第 7 章展示停止 uvicorn 会对它们造成什么影响）。

# %% [markdown] translates="f421446302d1a3a9"
# ## 5. 幂等性：是什么让重试变得安全
#
# 重试会重复整个尝试。如果那次尝试在失败之前什么都没做（第 4 节的 `503`），这是无害的；但如果它已经完成了工作，只是响应丢失了，那么工作就会被做两次。如果一个操作做两次与做一次的效果相同，它就是*幂等*的。支付 API 用*幂等键*（idempotency key）让扣款变得幂等：客户端随请求发送一个键，服务商看到一个已有的键时，返回第一次的结果，而不会再扣一次款。
#
# 这个键必须标识*操作*，而不是某一次尝试：要么根据能标识这项工作的东西（订单 id）只生成一次，要么在端点（endpoint）中生成，再传给任务。
#
# **事实 5.1**：服务商扣款后回答一次 `504`。不带键重试，卡被扣款两次；每次尝试内部生成新键，同样两次；每个订单一个键，只扣一次。

# %%
import uuid


@monitored
@with_retries
async def charge_without_key(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post("/charges", params={"order_id": order_id, "amount": amount})
        response.raise_for_status()


@monitored
@with_retries
async def charge_with_a_key_per_attempt(provider_url: str, order_id: str, amount: int) -> None:
    key = uuid.uuid4().hex  # 在被重试的函数内部生成：每次尝试一个新键
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges", params={"order_id": order_id, "amount": amount}, headers={"Idempotency-Key": key}
        )
        response.raise_for_status()


@monitored
@with_retries
async def charge_with_a_key_per_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # 每次尝试都相同
        )
        response.raise_for_status()


variants = {
    "order-3": charge_without_key,
    "order-4": charge_with_a_key_per_attempt,
    "order-5": charge_with_a_key_per_order,
}
shop = FastAPI()


@shop.post("/orders/{order_id}/pay")
async def pay(order_id: str, amount: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(variants[order_id], request.app.state.provider_url, order_id, amount)
    return {"order": order_id, "status": "payment pending"}


with capture_logs("tasks"), serve(provider) as provider_url, serve(shop) as url:
    shop.state.provider_url = provider_url
    for order_id in variants:
        lost_answers[order_id] = 1
        httpx.post(f"{url}/orders/{order_id}/pay", params={"amount": 1999})

for order_id, task in variants.items():
    keys = {key for _, order, key in provider_requests if order == order_id}
    print(
        f"{task.__name__:30} {len(requests_for(order_id))} requests, {len(keys)} distinct key(s):"
        f" the card was charged {charges.count(order_id)} time(s)"
    )
assert [charges.count(order_id) for order_id in variants] == [2, 2, 1]
assert all(len(requests_for(order_id)) == 2 for order_id in variants)

# %% [markdown] translates="11728b56bf911d6c"
# 每个变体都正确地重试了；但只有最后一个可以安全地重试。如果你调用的服务不支持幂等键，就自己记录做过的事，并以同样的方式作为键（一行在订单 id 上带唯一约束的记录，与操作的效果写在同一个事务（transaction）中），在动手之前先检查它。第 3 章（第 5、6 节）让补偿事务（compensation）变得幂等，并在数据库中用发件箱（outbox）保存待完成的工作。

# %% [markdown] translates="359640a4e2c0d262"
# ## 6. 任务链：一个任务用前一步的结果调用下一步
#
# 用 `add_task` 逐个添加的任务会按顺序运行（第 1 章，事实 2.1），但每个任务在*被添加*时、也就是在任何任务运行之前，就已经拿到了它的参数：第二个任务无法接收第一个任务产出的东西。当后一步需要前一步的结果时，就写一个任务，依次调用这些步骤，并把每一步的结果传下去。`async def` 任务链中的 `def` 步骤，用 `run_in_threadpool` 送进线程池，和 `monitored` 的做法一样。
#
# **事实 6.1**：任务链 `fetch_upload → summarise (def, blocking) → store_summary` 把每一步的结果传给下一步；各步骤一个接一个地运行，`def` 步骤在工作线程上运行。
#
# （`summarise` 用 `time.sleep` 模拟一个阻塞调用，比如某个同步的客户端库；`time.sleep` 在等待时会释放 GIL。真正的 CPU 计算会持有 GIL，所以工作线程一次最多只能运行其中一份：这类工作应该放进进程池，如第 5 章第 5 节所示。）

# %%
timeline = Timeline()
summaries: dict[str, str] = {}


async def fetch_upload(upload_id: str) -> str:
    await asyncio.sleep(0.05)  # 从对象存储下载
    return "FastAPI runs background tasks after the response. " * 40


def summarise(text: str) -> str:
    time.sleep(0.05)  # 阻塞调用（同步库）：不要让它占用事件循环
    return f"{len(text.split())} words, starts: {text[:27]!r}"


async def store_summary(upload_id: str, summary: str) -> None:
    await asyncio.sleep(0.05)  # 写入数据库
    summaries[upload_id] = summary


@monitored
async def process_upload(upload_id: str) -> None:
    text = await timeline.track("1 fetch_upload", fetch_upload)(upload_id)
    summary = await run_in_threadpool(timeline.track("2 summarise", summarise), text)
    await timeline.track("3 store_summary", store_summary)(upload_id, summary)


app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


@app.post("/uploads/{upload_id}")
async def upload(upload_id: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(process_upload, upload_id)
    return {"upload": upload_id, "status": "processing"}


with capture_logs("tasks"), serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/uploads/u-1", lane="POST /uploads/u-1")

steps = ["1 fetch_upload", "2 summarise", "3 store_summary"]
for step in steps:
    print(f"{step:16} ran on {timeline.find(step, 'task start').thread}")
print(f"stored: {summaries}")
assert all(timeline.at(a, "task end") <= timeline.at(b, "task start") for a, b in zip(steps, steps[1:]))
assert timeline.find("2 summarise", "task start").thread == "AnyIO worker thread"
assert summaries["u-1"].startswith("280 words")
timeline.plot("one task, three steps: each result feeds the next")

# %% [markdown] translates="0830d25230142554"
# 失败的步骤会让任务链在那里终止（异常离开了 `process_upload`），这正是任务链应有的行为：`store_summary` 永远不会对一份没有生成出来的摘要运行，而 `monitored` 会像第 3 节那样记录任务链的失败。

# %% [markdown] translates="dd15fd1821a60207"
# ## 7. 在一个任务内扇出：`asyncio.TaskGroup` 还是 `asyncio.gather`
#
# 当一项工作的各部分相互独立时（就同一个订单分别通知库存服务、电子邮件服务和分析服务），一个任务可以并发（concurrency）地运行它们。Python 提供了两种方式，而它们恰好在最关键的地方有所不同，即某一部分失败时：
#
# - `async with asyncio.TaskGroup() as group: group.create_task(...)`（Python 3.11+）：如果某一部分抛出异常，任务组会**取消其他部分**，并抛出一个包含这些错误的 `ExceptionGroup`。适合各部分只有合在一起才有意义的情况。
# - `await asyncio.gather(*parts, return_exceptions=True)`：每一部分都运行到结束；错误作为值出现在结果列表中，由任务决定如何处理。适合各部分相互独立的情况。
# - 不带 `return_exceptions` 的 `await asyncio.gather(*parts)`：立即抛出第一个错误，但不会取消其他部分，它们继续运行，却已经没有人在等它们了。
#
# **事实 7.1**：一个任务中有三个通知：电子邮件在 0.1 秒时失败，另外两个在那次失败之后还要继续 0.2 秒（它们会等待这次失败发生，以免慢机器让它们先结束、掩盖了差异）。使用 `TaskGroup` 时，另外两个被取消，任务抛出 `ExceptionGroup`；使用 `gather(return_exceptions=True)` 时，两者都会完成，任务把错误作为值拿到；使用普通的 `gather` 时，任务在 0.1 秒后抛出 `ConnectionError`，另外两个稍后自行完成。三种情况下，各部分都是并发运行的：每一部分都在其中第一个结束之前就已开始。

# %%
timeline = Timeline()
outcomes: dict[str, str] = {}
task_results: dict[str, str] = {}


async def notify(strategy: str, service: str, failure: asyncio.Event, fails: bool = False) -> str:
    try:
        if fails:
            await asyncio.sleep(0.1)
            outcomes[f"{strategy}: {service}"] = "raised ConnectionError"
            failure.set()
            raise ConnectionError(f"{service} service is down")
        await failure.wait()  # 电子邮件失败时，其他部分仍在工作……
        await asyncio.sleep(0.2)  # ……并且再持续 0.2 秒：足够被取消，或者完成
    except asyncio.CancelledError:
        outcomes[f"{strategy}: {service}"] = "cancelled"
        raise
    outcomes[f"{strategy}: {service}"] = "finished"
    return service


def parts(strategy: str) -> list[Coroutine[Any, Any, str]]:
    failure = asyncio.Event()
    return [
        timeline.track(f"{strategy}: inventory", notify)(strategy, "inventory", failure),
        timeline.track(f"{strategy}: e-mail", notify)(strategy, "e-mail", failure, fails=True),
        timeline.track(f"{strategy}: analytics", notify)(strategy, "analytics", failure),
    ]


async def with_task_group() -> None:
    async with asyncio.TaskGroup() as group:
        for part in parts("TaskGroup"):
            group.create_task(part)


async def with_gather_return_exceptions() -> None:
    results = await asyncio.gather(*parts("gather(return_exceptions=True)"), return_exceptions=True)
    task_results["gather(return_exceptions=True)"] = f"returned {results!r}"


async def with_plain_gather() -> None:
    await asyncio.gather(*parts("plain gather"))


strategies = {
    "TaskGroup": with_task_group,
    "gather(return_exceptions=True)": with_gather_return_exceptions,
    "plain gather": with_plain_gather,
}


async def run_strategy(strategy: str) -> None:
    started = time.perf_counter()
    try:
        await strategies[strategy]()
    except BaseException as error:
        task_results[strategy] = f"raised {type(error).__name__}: {error} after {time.perf_counter() - started:.1f} s"
        raise


app = FastAPI()


@app.post("/fan-out/{number}")
async def fan_out(number: int, background_tasks: BackgroundTasks) -> dict[str, str]:
    strategy = list(strategies)[number]
    background_tasks.add_task(run_strategy, strategy)
    return {"strategy": strategy}


def all_parts_done() -> bool:
    return len(outcomes) == 9


with capture_logs("uvicorn.error") as server_records, serve(app) as url:
    for number in range(len(strategies)):
        httpx.post(f"{url}/fan-out/{number}")
    # 普通 gather 的各部分比它的任务活得更久，服务器不会等它们：由单元格来等
    wait_until(all_parts_done, timeout=60, what="all nine parts finished or cancelled")

for strategy in strategies:
    print(f"{strategy}: the task {task_results[strategy]}")
    for service in ("inventory", "e-mail", "analytics"):
        print(f"    {service:9} {outcomes[f'{strategy}: {service}']}")
for record in sorted(server_records, key=describe):  # 两个失败都发生在 0.1 秒时，先后顺序不定
    print(describe(record))
assert [outcomes[f"TaskGroup: {s}"] for s in ("inventory", "analytics")] == ["cancelled", "cancelled"]
assert task_results["TaskGroup"].startswith("raised ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)")
assert [outcomes[f"gather(return_exceptions=True): {s}"] for s in ("inventory", "analytics")] == ["finished"] * 2
assert "ConnectionError('e-mail service is down')" in task_results["gather(return_exceptions=True)"]
assert task_results["plain gather"].startswith("raised ConnectionError")
assert [outcomes[f"plain gather: {s}"] for s in ("inventory", "analytics")] == ["finished", "finished"]
assert sorted(type(r.exc_info[1]).__name__ for r in server_records) == ["ConnectionError", "ExceptionGroup"]
for strategy in strategies:  # 并发：每一部分都在第一个结束之前就已开始（若是一个接一个运行，则绝不会如此）
    lanes = [f"{strategy}: {s}" for s in ("inventory", "e-mail", "analytics")]
    assert max(timeline.at(lane, "task start") for lane in lanes) < min(timeline.at(lane, "task end") for lane in lanes)
timeline.plot("one failing part: TaskGroup cancels the rest, gather lets them finish")

# %% [markdown] translates="f8c40ef7ef9e1e95"
# 图中，`TaskGroup` 的条形全都停在 0.1 秒：失败的电子邮件部分是红色带交叉阴影，被它取消的两个部分是灰色带条纹。使用任一种 `gather` 时，电子邮件部分同样在 0.1 秒失败（红色），另外两个则一直运行到大约 0.3 秒（橙色：它们完成了）。只有 `gather(return_exceptions=True)` 让它的后台任务正常结束；另外两种都抛出了异常，所以 uvicorn 记录了它们，而它们所在请求后面的任务（如果有的话）都会被跳过。
#
# 使用普通的 `gather` 时，比任务活得更久的那些部分处于无人监管的状态：再也没有任何东西 await 它们。如果想处理 `TaskGroup` 的某些错误而不处理另一些，可以用 Python 3.11 新增的 `except* ConnectionError:`。

# %% [markdown] translates="112651f159549367"
# ## 8. 由依赖项添加的任务
#
# 第 1 章（第 5 节）表明，依赖项和它的端点在每个请求中共享同一个 `BackgroundTasks`。这让依赖项成为放置每个路由都需要的任务的好地方：把它挂在一个 router 上，该 router 的每个路由都会安排这个任务。带 `yield` 的依赖项则有一个陷阱。
#
# **事实 8.1**：`APIRouter` 上的依赖项会把它的任务添加到该 router 的每个路由中，排在路由自己的任务之前。在带 `yield` 的依赖项中，在 `yield` 之前添加的任务会运行；在 `yield` 之后添加的任务永远不会运行，也不会留下任何日志，因为在 FastAPI 0.163.2 上，`yield` 之后的代码要等任务都结束之后才运行。

# %%
events: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


def unit_of_work(background_tasks: BackgroundTasks):
    background_tasks.add_task(events.append, "task added before the yield")
    yield
    events.append("code after the yield runs")
    background_tasks.add_task(events.append, "task added after the yield")


router = APIRouter(prefix="/admin", dependencies=[Depends(audit)])


@router.post("/users/{user}/disable")
async def disable_user(user: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(events.append, f"revoke the sessions of {user}")
    return {"disabled": user}


@router.post("/cache/clear", dependencies=[Depends(unit_of_work)])
async def clear_cache(background_tasks: BackgroundTasks) -> dict[str, bool]:
    background_tasks.add_task(events.append, "rebuild the cache")
    return {"cleared": True}


app = FastAPI()
app.include_router(router)
with capture_logs("") as records:
    for path in ("/admin/users/ada/disable", "/admin/cache/clear"):
        with serve(app) as url:  # 每个请求一个服务器：它要等该请求的任务完成后才停止
            httpx.post(f"{url}{path}")

print(*events, sep="\n")
print(f"log records at WARNING or above: {len([r for r in records if r.levelno >= logging.WARNING])}")
assert events == [
    "audit POST /admin/users/ada/disable",
    "revoke the sessions of ada",
    "audit POST /admin/cache/clear",
    "task added before the yield",
    "rebuild the cache",
    "code after the yield runs",
]
assert not [r for r in records if r.levelno >= logging.WARNING]

# %% [markdown] translates="3bed795252cad2e2"
# `yield` 之后的代码何时运行，在不同版本之间变过（第 3 章第 7 节），在那里添加的任务的命运也随之改变。`make versions` 在下面的每个版本上，用真实的服务器运行同一个依赖项（在 `yield` 之后添加一个任务，端点再添加另一个），并在服务器停止之后（uvicorn 的关闭会等待每个请求的任务）查看在 `yield` 之后添加的任务是否运行过。
#
# **事实 8.2**：在 `yield` 之后添加的任务，在 FastAPI 0.106.0 到 0.117.0 上会运行，这些版本的退出代码（exit code，即 `yield` 之后的代码）在响应之前运行；在 0.121.0 和 0.163.2 上使用 `scope="function"` 时也会运行。在 0.103.2 和 0.105.0 上，以及从 0.118.0 起使用默认作用域时，它从不运行：在这些情况下，退出代码在任务之后才运行。本课程所回应的那篇文章，是针对 0.103.2 写的。

# %%
added_after_yield = version_table("task_after_yield", "task_after_yield_function_scope")
runs_by_default = {stack.name for stack, (default, _) in added_after_yield.rows if default.startswith("runs")}
assert runs_by_default == {"FastAPI 0.106.0", "FastAPI 0.115.0", "FastAPI 0.117.0"}
assert added_after_yield.outcome("FastAPI 0.163.2", "task_after_yield").startswith("never runs")  # 与上面相同
assert added_after_yield.outcome("FastAPI 0.163.2", "task_after_yield_function_scope").startswith("runs")
assert all(outcome.endswith("before `yield` runs)") for _, outcomes in added_after_yield.rows for outcome in outcomes
           if outcome != "n/a")
added_after_yield

# %% [markdown] translates="f51b612200bd6e5b"
# 指望其中任何一种行为的代码，都会在升级时出问题。在 `yield` *之前*添加的任务，在表中的每个版本上、两种作用域下（括号中的文字）都会运行：请把任务添加在那里。

# %% [markdown] translates="434a4be2c0f794f3"
# ## 9. `background=` 陷阱
#
# 每个 Starlette 响应都接受一个 `background=` 参数：一个 `BackgroundTask` 或一个 `BackgroundTasks`，在响应发送后运行。FastAPI 把注入的 `BackgroundTasks` 放进同一个位置，但仅当这个位置为空时。下面是从已安装的 FastAPI 中读出的代码：

# %%
import fastapi.routing

routing_lines = inspect.getsource(fastapi.routing).splitlines()
start = next(i for i, line in enumerate(routing_lines) if "if isinstance(raw_response, Response):" in line)
print(f"fastapi {version('fastapi')}, fastapi/routing.py, from line {start + 1}:")
indent = len(routing_lines[start]) - len(routing_lines[start].lstrip())
for line in routing_lines[start : start + 4]:
    print("    " + line[indent:])
assert routing_lines[start + 1].strip() == "if raw_response.background is None:"
assert routing_lines[start + 2].strip() == "raw_response.background = solved_result.background_tasks"

# %% [markdown] translates="62922a1d7e8661f9"
# 所以，如果端点返回的响应已经带有 `background`，注入的 `BackgroundTasks`（连同端点及其依赖项添加到其中的每个任务）就不会挂到任何东西上，也永远不会运行。
#
# **事实 9.1**：一个端点，它的依赖项和函数体都向注入的 `BackgroundTasks` 添加任务，而它返回 `Response(..., background=BackgroundTask(release_lock))`：只有 `release_lock` 会运行。没有错误，没有日志，也没有警告。

# %%
import warnings

events: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


app = FastAPI()
CSV = "order,total\n1,9.50\n2,12.00\n"


@app.get("/exports/{name}", dependencies=[Depends(audit)])
def export(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    return Response(CSV, media_type="text/csv", background=BackgroundTask(events.append, f"release lock {name}"))


with (
    warnings.catch_warnings(record=True) as caught,
    capture_logs("") as records,
    serve(app) as url,
):
    warnings.simplefilter("always")
    response = httpx.get(f"{url}/exports/march")

print(f"the client got {response.status_code}, {len(response.text)} characters of CSV")
print(f"tasks that ran: {events}")
loud = [r for r in records if r.levelno >= logging.WARNING]
print(f"log records at WARNING or above: {len(loud)}; Python warnings: {len(caught)}")
assert response.status_code == 200 and response.text == CSV
assert events == ["release lock march"]
assert not loud and not caught

# %% [markdown] translates="17cfba8fd7966f13"
# FastAPI 的检查（上面的 `if raw_response.background is None`）针对的是任何 `Response`，而 Starlette 的每个响应类都接受 `background=`，所以每个响应类都藏着同样的陷阱：

# %%
from starlette import responses

response_classes = [cls for cls in vars(responses).values() if isinstance(cls, type) and issubclass(cls, Response)]
without = [cls.__name__ for cls in response_classes if "background" not in inspect.signature(cls).parameters]
print(f"{len(response_classes)} response classes in starlette.responses; without a `background` parameter: {without}")
assert {"JSONResponse", "FileResponse", "StreamingResponse"} <= {cls.__name__ for cls in response_classes}
assert without == []

# %% [markdown] translates="34a833a72748f146"
#
# 有两种修复方法，两者都只保留一个任务列表：
#
# 1. 把所有任务都放到注入的 `BackgroundTasks` 上，并返回一个*不带* `background=` 的响应（FastAPI 随后会挂上注入的对象）；
# 2. 或者直接传入注入的对象本身：`Response(..., background=background_tasks)`。
#
# **事实 9.2**：无论用哪种修复方法，三个任务都会按添加的顺序运行：依赖项的任务、端点的任务，最后是释放锁。

# %%
app = FastAPI()


@app.get("/fix-1/{name}", dependencies=[Depends(audit)])
def export_fix_1(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    background_tasks.add_task(events.append, f"release lock {name}")
    return Response(CSV, media_type="text/csv")


@app.get("/fix-2/{name}", dependencies=[Depends(audit)])
def export_fix_2(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"e-mail the {name} export to accounting")
    background_tasks.add_task(events.append, f"release lock {name}")
    return Response(CSV, media_type="text/csv", background=background_tasks)


ran: dict[str, list[str]] = {}
for fix in ("fix-1", "fix-2"):
    events.clear()
    with serve(app) as url:
        httpx.get(f"{url}/{fix}/march")
    ran[fix] = list(events)
for fix, tasks in ran.items():
    print(f"{fix}: {tasks}")
expected = ["audit GET /{fix}/march", "e-mail the march export to accounting", "release lock march"]
assert ran["fix-1"] == [expected[0].format(fix="fix-1"), *expected[1:]]
assert ran["fix-2"] == [expected[0].format(fix="fix-2"), *expected[1:]]

# %% [markdown] translates="4c26c5115c346bbd"
# 这个陷阱并不新鲜。`make versions` 在下面的每个版本上，用真实的服务器运行一个端点：它添加一个注入的任务，并返回 `JSONResponse(..., background=BackgroundTask(...))`。
#
# **事实 9.3**：在测量的全部八个 FastAPI 版本上，从 0.103.2 到 0.163.2，都只有响应自己的任务运行了。

# %%
background_history = version_table("background_argument")
assert len(background_history.rows) == 8
assert {outcome for _, (outcome,) in background_history.rows} == {"only the response's own"}
background_history

# %% [markdown] translates="cb28f783c5d08205"
# ## 10. 检验常见的建议
#
# | 说法 | 在固定版本上的结论 | 证明 |
# |---|---|---|
# | “用 `async def` 装饰器包装任务来监控它们” | **对 `def` 任务是错的**：它阻塞服务器，并在工作完成之后以 `TypeError` 告终 | 第 1 节 |
# | “`functools.wraps` 可有可无” | 它保留日志和工具要读取的名字、docstring 和签名；除此之外什么也不修复 | 事实 1.3 |
# | “失败的任务会被重试” | **不会**：除非你明确要求（例如用 `tenacity`），否则没有任何东西会重试任务 | 第 3、4 节 |
# | “重试是安全的” | 只对幂等的工作才安全：一次丢失的响应，让不带键的重试扣了两次款 | 事实 5.1 |
# | “`gather` 和 `TaskGroup` 可以互换” | **不能**：出现失败时，一个会取消其他部分，另一个让它们继续运行 | 事实 7.1 |
# | “返回带 `background=` 的响应会添加一个任务” | 它会悄悄地**替换**注入的任务 | 事实 9.1 |

# %% [markdown] translates="1bd7437c27061f63"
# ## 练习
#
# 每个练习都有一个供你作答的代码单元格，以及一个用真实服务器检查答案的单元格。参考答案在 `solutions/ch04_orchestration/` 中；请先自己尝试，再对照。
#
# ### 练习 4.1：无论重试多少次，只扣款一次
#
# 编写 `charge_order(provider_url, order_id, amount)`，这是一个后台任务，它请求位于 `provider_url` 的支付服务商为一个订单扣款：`POST {provider_url}/charges`，带查询参数 `order_id` 和 `amount`，也就是第 4 节那个服务商的 API（它支持 `Idempotency-Key` 头）。使用 `tenacity`：
#
# - 重试再试一次能够解决的问题，且只重试这些（即第 4 节的 `worth_retrying`：httpx 的超时和网络错误、中途挂断的服务器，以及 `response.raise_for_status()` 抛出异常之后的 `5xx` 和 `429` 状态码），总共 5 次尝试（`stop_after_attempt(5)`），在第 2 到第 5 次尝试之前分别等待 0.05 秒、0.1 秒、0.2 秒和 0.4 秒（`wait_exponential(multiplier=0.05, max=0.5)`）；
# - 在 logger `"tasks"` 上以 `WARNING` 级别记录每次重试；
# - 最后一次尝试之后，让错误继续向上传播。
#
# 并且让它可以安全地重试：无论服务商以何种方式失败，每个订单最多只扣款一次。检查程序会让它分别面对：一个拒绝请求的服务商、一个扣款后丢失响应的服务商、一个一直宕机的服务商，以及一个拒绝该卡的服务商。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import logging

import httpx
from tenacity import before_sleep_log, retry, retry_if_exception, stop_after_attempt, wait_exponential

logger = logging.getLogger("tasks")


def worth_retrying(error: BaseException) -> bool:
    """A request or answer that did not get through, or "not now" (5xx, 429); never another 4xx."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status >= 500 or status == 429
    return isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


@retry(
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.05, max=0.5),
    retry=retry_if_exception(worth_retrying),
    before_sleep=before_sleep_log(logger, logging.WARNING),
    reraise=True,
)
async def charge_order(provider_url: str, order_id: str, amount: int) -> None:
    async with httpx.AsyncClient(base_url=provider_url) as client:
        response = await client.post(
            "/charges",
            params={"order_id": order_id, "amount": amount},
            headers={"Idempotency-Key": f"charge-{order_id}"},  # 每个订单一个键，而不是每次尝试一个
        )
        response.raise_for_status()
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch04_orchestration as checks

checks.ex01(charge_order)

# %% [markdown] translates="e0a1f4e08c89f84c"
# ### 练习 4.2：通知每个服务，不管其中某个服务出什么状况
#
# 编写 `async def notify_all(urls, event)`，它把字典 `event` 作为 JSON *同时* POST 到 `urls` 中的每个 URL，并返回一个字典，把每个 URL 映射到 `"ok"`（2xx 响应）或 `"failed"`（错误状态码，或者根本没有响应）。在 logger `"tasks"` 上以 `ERROR` 级别记录每次失败，消息中包含 URL，并附上异常（`exc_info=`）。它不能因为某个服务失败而抛出异常，一个失败也不能阻止其他通知。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import logging

import httpx

logger = logging.getLogger("tasks")


async def notify_all(urls: list[str], event: dict[str, str]) -> dict[str, str]:
    async with httpx.AsyncClient() as client:

        async def notify(url: str) -> None:
            response = await client.post(url, json=event)
            response.raise_for_status()

        outcomes = await asyncio.gather(*(notify(url) for url in urls), return_exceptions=True)
    results: dict[str, str] = {}
    for url, outcome in zip(urls, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.error("notifying %s failed", url, exc_info=outcome)
            results[url] = "failed"
        else:
            results[url] = "ok"
    return results
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.ex02(notify_all)

# %% [markdown] translates="91ce5ca2faf3c507"
# ### 练习 4.3：忘了审计的导出
#
# 这个应用有第 9 节的 bug：依赖项的审计任务永远不会运行。
#
# ```python
# app = FastAPI()
# events: list[str] = []
# CSV = "order,total\n1,9.50\n2,12.00\n"
#
#
# def audit(request: Request, background_tasks: BackgroundTasks) -> None:
#     background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")
#
#
# @app.get("/exports/{name}", dependencies=[Depends(audit)])
# def export(name: str) -> Response:
#     return Response(CSV, media_type="text/csv", background=BackgroundTask(events.append, f"release {name}"))
# ```
#
# 修复它，使 CSV 发送之后，`events` 依次得到 `"audit GET /exports/<name>"` 和 `"release <name>"`。保持 URL、响应体和媒体类型不变。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response

app = FastAPI()
events: list[str] = []
CSV = "order,total\n1,9.50\n2,12.00\n"


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(events.append, f"audit {request.method} {request.url.path}")


@app.get("/exports/{name}", dependencies=[Depends(audit)])
def export(name: str, background_tasks: BackgroundTasks) -> Response:
    background_tasks.add_task(events.append, f"release {name}")
    return Response(CSV, media_type="text/csv")  # 不带 background=：由 FastAPI 挂上 background_tasks
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(app, events)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验（quiz）
#
# 每道题会在一个单元格中显示；在它下面的单元格中作答；再下一个单元格会告诉你是否答对。答对时给出解释；答错时给出一个不泄露答案的提示（如果你更想直接看解释，随时可以用 `quiz.explain("q01")` 查看 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch04_orchestration")
quiz.ask("q01")

# %% nbgrader={"grade": false, "grade_id": "q01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q01 = "B"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q01", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q01", answer_q01)

# %% nbgrader={"grade": false, "grade_id": "q02_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q02")

# %% nbgrader={"grade": false, "grade_id": "q02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
answer_q02 = "C"
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
answer_q05 = "A"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", answer_q05)

# %% nbgrader={"grade": false, "grade_id": "q06_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz.ask("q06")

# %% nbgrader={"grade": false, "grade_id": "q06_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import Response


def respond_with(background_tasks, cleanup):
    background_tasks.add_task(cleanup)
    return Response("done")
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", respond_with)

# %% [markdown] translates="1ac3b78aef01904c"
# ## 小结
#
# - 常见的 `async def wrapper` 装饰器会把 `def` 任务放到事件循环上运行（每个请求都要等它），在工作完成之后抛出 `TypeError`，而且在没有 `functools.wraps` 时，会把每个任务都改名为 `wrapper`（第 1 节）。
# - 正确的装饰器用 `functools.wraps` 保留名字，await `async` 函数，用 `run_in_threadpool` 把其他函数送进线程池，用 `logger.exception` 记录失败，并用 `ParamSpec` 标注类型，让类型检查器看到任务真正的参数（第 2 节）。
# - 失败的任务无法改变响应（它已经发出）；它会让所在请求后面的任务被跳过，会被服务器记录到日志，不影响其他请求，并且会被 `TestClient` 重新抛出，除非设置了 `raise_server_exceptions=False`（第 3 节）。
# - 用 `tenacity` 重试：有上限（`stop_after_attempt`），有退避（`wait_exponential`），只针对重试能够解决的错误（传输错误、`5xx`、`429`；绝不重试 `402` 这样的拒绝），并记录日志（`before_sleep_log`）（第 4 节）。重试会重复整个尝试，所以工作必须是幂等的：每个操作一个幂等键，在重试之外生成（第 5 节）。
# - 后一步需要前一步结果的步骤，在一个任务内串成链；相互独立的步骤用 `gather(return_exceptions=True)` 扇出，或者在一个失败就应当取消其余部分时用 `TaskGroup`（第 6、7 节）。
# - 依赖项可以为每个路由安排任务；在带 `yield` 的依赖项中，请在 `yield` 之前添加任务（第 8 节）。
# - 在使用注入的 `BackgroundTasks` 的端点中，永远不要返回带有自己 `background=` 的响应：把所有任务都放到注入的对象上，或者把它作为 `background=` 传入（第 9 节）。
#
# 下一章：第 5 章测量性能：阻塞、线程池、各种限制与超时。
