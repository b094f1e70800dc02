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

# %% [markdown] translates="45e61dfd9a3882e2"
# # 第 6 章：排查 `RuntimeError: No response returned.` 及相关错误
#
# 后台任务（background task）出错的地方，离安排它的代码很远：在响应（response）之后，在另一个线程或循环上，回溯（traceback）里满是框架的栈帧。本章挑出大家最常遇到的错误，逐个在真实的服务器上复现，在库的源码里找到消息写在哪里，然后修复。和每一章一样，每条事实后面都跟着一个单元格，在固定版本上证明它。
#
# **你将学到**
#
# - 后台任务的返回值会被忽略，所以从任务里返回响应，不可能导致 `RuntimeError: No response returned.`；
# - 这条消息真正的来源（`BaseHTTPMiddleware`，即 `@app.middleware("http")` 背后的类），至今仍会产生它的两个原因，以及各自的修复方法；
# - 哪些原因只属于旧版 Starlette，它们在哪里被报告、又在哪里被修复；
# - 后台任务相关错误一览：失败的任务、`TestClient` 重新抛出它的异常、`coroutine ... was never awaited`、`MissingGreenlet` 和 `DetachedInstanceError`、“bound to a different event loop”的 asyncio 锁，以及笔记本里的事件循环（event loop）错误；
# - 一套可以用在下一条错误消息上的调试方法：读最内层的栈帧，找到库在哪里写下这条消息，最小化复现。

# %% [markdown] translates="a2ee35b0287d2141"
# ## 0. 准备：版本和课程的辅助函数
#
# 行为会随版本变化，而本章讲的恰恰就是这类变化，所以版本比平时更重要。

# %%
import platform
from importlib.metadata import version

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "sqlalchemy": "2.1.9",
    "aiosqlite": "0.22.1",
    "nest-asyncio": "1.6.0",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:12} {installed}{note}")
print(f"{'python':12} {platform.python_version()}")

# %% [markdown] translates="d597a7c078b02bea"
# 除了第 1 章的 `serve` 和 `capture_logs`，本章还用到几个专为排错写的辅助函数：
#
# - `logged_errors(records)` 把服务器写下的日志记录变成简短的描述：异常的类型、消息，以及它的**最内层栈帧**，也就是抛出它的那一行。
# - `find_in_source(package, text)` 在已安装包的每个 `.py` 文件中搜索一段文本，把每处结果返回为 `file:line in function`，用 `.excerpt()` 可以显示其前后几行。
# - `version_table(...)` 显示 `make versions` 在旧版本上测得的结果（第 5 节）。

# %%
import asyncio
import functools
import gc
import inspect
import linecache
import logging
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import anyio
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response
from tqdm.auto import tqdm

from bgcourse import (
    capture_logs,
    find_in_source,
    load_quiz,
    logged_errors,
    run_in_fresh_kernel,
    serve,
    shows_error,
    version_table,
)

# %% [markdown] translates="43f870e3940ca5b9"
# ## 1. 检验一个流行的解释：返回响应的任务
#
# 有一种流传很广的说法：`RuntimeError: No response returned.` 是因为在后台任务里返回了响应对象。我们就照这样做，并且放在 `@app.middleware("http")` 后面，因为（第 2 节会说明原因）凡是遇到这条消息的应用，都有一个 `BaseHTTPMiddleware`，而这个装饰器（decorator）是得到它最常见的途径。
#
# **事实 6.1**：后台任务返回一个 `JSONResponse`，什么也不会改变：客户端收到的是端点（endpoint）的响应，任务的响应无处可去，服务器也不记录任何错误。

# %%
app = FastAPI()
produced: list[Response] = []


@app.middleware("http")
async def add_timing_header(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["x-process-time"] = f"{time.perf_counter() - started:.4f}"
    return response


def task_that_returns_a_response() -> Response:
    response = JSONResponse({"error": "from the task"}, status_code=418)
    produced.append(response)
    return response


@app.post("/orders")
async def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(task_that_returns_a_response)
    return {"status": "accepted"}


with capture_logs("uvicorn.error") as records, serve(app) as url:
    response = httpx.post(f"{url}/orders")

print(f"the client received {response.status_code} {response.json()}")
print(f"the task ran and returned a {type(produced[0]).__name__} with status {produced[0].status_code}")
print(f"errors the server logged: {logged_errors(records)}")
assert response.status_code == 200 and response.json() == {"status": "accepted"}
assert len(produced) == 1 and produced[0].status_code == 418
assert records == []

# %% [markdown] translates="5bcb804525f0d9c1"
# **事实 6.2**：返回值是被有意丢弃的：Starlette 的 `BackgroundTask.__call__`（`starlette/background.py`）await 这个函数，或在线程中运行它，什么也不保留。

# %%
source = inspect.getsource(BackgroundTask.__call__)
print(source)
assert "return" not in source, "nothing the function returns is passed on"

# %% [markdown] translates="42eda47a09508b9b"
# 所以这个解释是错的。下一节找出这条消息真正的来源。

# %% [markdown] translates="164570daf42db4f9"
# ## 2. 消息从哪里来
#
# 错误消息就是某人源码里的一个字符串。在已安装的包里搜索它。
#
# **事实 6.3**：在固定版本上，`No response returned` 只写在一个地方：`starlette/middleware/base.py` 中的 `call_next`，也就是 `BaseHTTPMiddleware.__call__` 交给你的 `dispatch` 的那个函数。FastAPI 和 uvicorn 从不抛出它。

# %%
found = {package: find_in_source(package, "No response returned") for package in ("fastapi", "starlette", "uvicorn")}
for package, hits in found.items():
    print(f"{package}: {len(hits)} place(s)", *hits, sep="\n    ")
[origin] = found["starlette"]
assert origin.file == "starlette/middleware/base.py"
assert origin.function == "BaseHTTPMiddleware.__call__.<locals>.call_next"
assert found["fastapi"] == found["uvicorn"] == []

# %% [markdown] translates="1bdeca13b0825a4f"
# 分三步阅读它周围的代码。先说两个术语：
#
# - 这里的*任务*指 AnyIO 任务：一个与启动它的协程（coroutine）同时运行、位于同一个事件循环中的协程；
# - *内存流*是 AnyIO 在单个进程内的队列，有两端：`send_stream` 和 `recv_stream`。关闭发送端，就是告诉接收方不会再有东西来了：在发送端已关闭的空流上调用 `receive()`，会抛出 `anyio.EndOfStream`。
#
# **第 1 步**：`call_next` 在一个单独的任务（嵌套函数 `coro`）中运行你的应用，即中间件（middleware）内部的一切。应用拿到的 `send` 是 `send_no_error`，它把应用发出的每条消息放进内存流。应用返回时，`with send_stream:` 关闭发送端；应用抛出的异常保存在 `app_exc` 中。

# %%
[run_the_app] = find_in_source("starlette", "await self.app(scope, receive_or_disconnect, send_no_error)")
print(run_the_app.excerpt(before=5, after=2))
assert run_the_app.function == f"{origin.function}.<locals>.coro"

# %% [markdown] translates="acdb861e30a180a1"
# **第 2 步**：接着，`call_next` 等待应用的第一条消息，即 `recv_stream.receive()`：它应当是 `http.response.start`。如果在任何消息到来之前发送端就关闭了，这次等待会抛出 `anyio.EndOfStream`，并在这里被捕获：

# %%
[end_of_stream] = [hit for hit in find_in_source("starlette", "except anyio.EndOfStream:") if hit.file == origin.file]
print(end_of_stream.excerpt(before=9, after=0))
assert end_of_stream.function == origin.function
assert "message = await recv_stream.receive()" in end_of_stream.excerpt(before=9, after=0)

# %% [markdown] translates="8841a5967740c517"
# **第 3 步**：这个 `except` 里有两种情况：应用抛出了异常，于是把它再次抛出；或者应用没有抛出异常，于是 `call_next` 抛出这条消息。

# %%
print(origin.excerpt(before=1, after=0))
assert "raise app_exc" in origin.excerpt(before=1, after=0)

# %% [markdown] translates="f7d56cd0f5ffce44"
# 所以这条消息的意思是：**`BaseHTTPMiddleware` 内部的应用已经结束，既没有发送 `http.response.start`，也没有抛出异常**。哪些中间件是 `BaseHTTPMiddleware`？所有继承 `starlette.middleware.base.BaseHTTPMiddleware` 的类（许多第三方中间件都是），以及所有 `@app.middleware("http")`：FastAPI 的这个装饰器（`FastAPI.middleware`，在 `fastapi/applications.py` 中）把函数注册为一个 `BaseHTTPMiddleware` 的 `dispatch`。下面的内容对两者都成立。
#
# **事实 6.4**：第 1 节的应用有一个 `BaseHTTPMiddleware`，由 `add_timing_header` 生成。

# %%
print([(layer.cls.__name__, layer.kwargs["dispatch"].__name__) for layer in app.user_middleware])
assert app.user_middleware[0].cls is BaseHTTPMiddleware
assert app.user_middleware[0].kwargs["dispatch"] is add_timing_header

# %% [markdown] translates="cfc52f99a6b5c0d8"
# 有两种情况会让应用不发送响应就结束。第 3 节和第 4 节分别在固定版本上复现它们。

# %% [markdown] translates="02bac00bfceb8003"
# ## 3. 原因 1：中间件内部的应用没有响应就返回了
#
# 手写的 ASGI 中间件或挂载的 ASGI 应用，可能干脆 `return`，什么也不发送，这通常出现在本意是拒绝请求（request）的分支上。下面是一个带着这个缺陷的 API 密钥关卡，放在第 1 节的计时中间件里面（最后添加的中间件在最外层，所以先添加关卡）。
#
# **事实 6.5**：被关卡拒绝的请求得到 `500 Internal Server Error`，服务器记录 `RuntimeError: No response returned.`，由 `starlette/middleware/base.py` 的 `call_next` 抛出。

# %%
class RequireApiKey:
    """A pure ASGI middleware that turns away requests without the right key: with a bug."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (b"x-api-key", b"secret") not in scope["headers"]:
            return  # 缺陷：它用 return 来拒绝，从不发送响应
        await self.app(scope, receive, send)


def shop_app(gate, *, timing: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/report")
    async def report() -> dict[str, int]:
        return {"orders": 3}

    app.add_middleware(gate)
    if timing:
        app.middleware("http")(add_timing_header)  # 第 1 节的 BaseHTTPMiddleware
    return app


app = shop_app(RequireApiKey, timing=True)
with capture_logs("uvicorn.error") as records, serve(app) as url:
    refused = httpx.get(f"{url}/report")
    allowed = httpx.get(f"{url}/report", headers={"x-api-key": "secret"})
errors = logged_errors(records)
print("middleware, outermost first:", [layer.cls.__name__ for layer in app.user_middleware])
print(f"without the key: {refused.status_code} {refused.text!r}")
print(f"with the key:    {allowed.status_code} {allowed.json()}")
print("the server logged:", *errors, sep="\n  ")
assert refused.status_code == 500 and allowed.status_code == 200
assert [(error.type, error.message) for error in errors] == [("RuntimeError", "No response returned.")]
assert (errors[0].file, errors[0].function) == ("starlette/middleware/base.py", "call_next")

# %% [markdown] translates="4635040159034607"
# 测试也能看到它：`TestClient` 会在测试中抛出应用的异常（详见第 6.2 节）。
#
# **事实 6.6**：使用 `TestClient` 时，同样的请求会在测试中抛出同样的 `RuntimeError`，其异常链中有一个来自 AnyIO 任务组的 `ExceptionGroup`。（单元格捕获它以便展示：异常链中带 `ExceptionGroup` 的异常，IPython 会以纯文本而不是错误的形式打印，见 `IPython/core/interactiveshell.py` 中的 `InteractiveShell.showtraceback`。）

# %%
with TestClient(shop_app(RequireApiKey, timing=True)) as test_client:
    try:
        test_client.get("/report")
    except RuntimeError as exc:
        raised = f"{type(exc).__name__}: {exc}"
        chained = type(exc.__context__).__name__
print(f"TestClient raised {raised}, during the handling of an {chained}")
assert raised == "RuntimeError: No response returned." and chained == "ExceptionGroup"

# %% [markdown] translates="ee93f49089eba941"
# 中间件只是传话的。没有它，同样的缺陷依然存在，由服务器用自己的话报告出来。
#
# **事实 6.7**：没有 `@app.middleware("http")` 时，uvicorn 记录 `ASGI callable returned without starting response.`，并自己应答 500（`uvicorn/protocols/http/h11_impl.py` 中的 `RequestResponseCycle.run_asgi`，见下文）。注意它的条件：`not self.disconnected`。客户端已经离开时，uvicorn 不会抱怨；第 4 节会再回到这一点。

# %%
with capture_logs("uvicorn.error") as records, serve(shop_app(RequireApiKey, timing=False)) as url:
    refused = httpx.get(f"{url}/report")
messages = [record.getMessage() for record in records]
[h11_check] = [hit for hit in find_in_source("uvicorn", "returned without starting response")
               if hit.file == "uvicorn/protocols/http/h11_impl.py"]
print(f"without the key: {refused.status_code} {refused.text!r}; the server logged {messages}")
print(h11_check, h11_check.excerpt(before=1, after=2), sep="\n")
assert refused.status_code == 500
assert messages == ["ASGI callable returned without starting response."]

# %% [markdown] translates="68d3b86b47c7cbc8"
# **修复：ASGI 应用的每条路径都要发送响应**。拒绝请求的关卡发送 `401`（任何 Starlette `Response` 本身就是一个 ASGI 应用，所以可以用同样的 `scope, receive, send` 来 await 它）。
#
# **事实 6.8**：修复后的关卡在没有密钥时应答 `401`，有密钥时应答 `200`，放在同样的计时中间件后面，服务器什么也不记录。

# %%
class RequireApiKeyFixed(RequireApiKey):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (b"x-api-key", b"secret") not in scope["headers"]:
            refusal = JSONResponse({"detail": "missing or wrong API key"}, status_code=401)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


with capture_logs("uvicorn.error") as records, serve(shop_app(RequireApiKeyFixed, timing=True)) as url:
    refused = httpx.get(f"{url}/report")
    allowed = httpx.get(f"{url}/report", headers={"x-api-key": "secret"})
print(f"without the key: {refused.status_code} {refused.json()}")
print(f"with the key:    {allowed.status_code} {allowed.json()}, x-process-time: {'x-process-time' in allowed.headers}")
assert refused.status_code == 401 and allowed.status_code == 200 and "x-process-time" in allowed.headers
assert records == []

# %% [markdown] translates="f29e662666bc9f1f"
# ## 4. 原因 2：应用应答之前，客户端就离开了
#
# 有些应用本来就要等待：长轮询会一直等到有新消息，再作应答。如果客户端先放弃，服务器会用一条 `http.disconnect` 消息通知应用，而自然的反应是停下来返回：反正已经没人读应答了。
#
# **事实 6.9**：在 `@app.middleware("http")` 后面，一个在客户端离开时直接返回的长轮询，会让服务器记录 `RuntimeError: No response returned.`（随后的 500 无处可去：客户端已经走了）。没有这个中间件时，同一个应用什么也不记录，因为对于已离开的客户端，uvicorn 本就不期待响应（事实 6.7）。

# %%
left: list[str] = []


async def wait_for_news(scope, receive, send):
    """A long poll in plain ASGI. (A real one would also wait on a news feed and answer with the news.)"""
    while (await receive())["type"] != "http.disconnect":
        pass
    left.append("the client left")  # 没人需要应答，于是：return


def news_app(long_poll, *, timing: bool) -> FastAPI:
    app = FastAPI()
    app.mount("/news", long_poll)
    if timing:
        app.middleware("http")(add_timing_header)
    return app


def leave_early(url: str, path: str) -> None:
    """Send a GET request and hang up at once, as a browser tab closed mid-request does."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def wait_until(condition, timeout: float = 30.0) -> bool:
    """Poll until ``condition()`` holds; the deadline only ends a wait for something that never happens."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


logged: dict[str, list] = {}
for timing in (True, False):
    left.clear()
    with capture_logs("uvicorn.error") as records, serve(news_app(wait_for_news, timing=timing)) as url:
        leave_early(url, "/news/")
        assert wait_until(lambda: left), "the long poll never heard that the client left"
    logged["behind @app.middleware('http')" if timing else "without it"] = logged_errors(records) + [
        record.getMessage() for record in records if not record.exc_info
    ]
for where, what in logged.items():
    print(f"{where}: the client left; the server logged", *(what or ["nothing"]), sep="\n  ")
[error] = logged["behind @app.middleware('http')"]
assert (error.type, error.message, error.function) == ("RuntimeError", "No response returned.", "call_next")
assert logged["without it"] == []

# %% [markdown] translates="e82fb09a7be3fa67"
# **修复 A：照样应答**。向已离开的客户端发送是无害的：连接关闭后，uvicorn 的 `send` 不写任何东西就返回（`h11_impl.py` 中的 `if self.disconnected: return`），中间的每一层都看到一个完整的响应。
#
# **事实 6.10**：客户端离开时应答 `204 No Content` 的长轮询，放在同样的中间件后面，不会引起任何错误。

# %%
async def wait_for_news_fixed(scope, receive, send):
    while (await receive())["type"] != "http.disconnect":
        pass
    left.append("the client left")
    await Response(status_code=204)(scope, receive, send)  # 没人读它；但每一层都看到了应答


left.clear()
with capture_logs("uvicorn.error") as records, serve(news_app(wait_for_news_fixed, timing=True)) as url:
    leave_early(url, "/news/")
    assert wait_until(lambda: left), "the long poll never heard that the client left"
print(f"{left[0]}; the server logged {logged_errors(records) or 'nothing'}")
assert records == []

# %% [markdown] translates="48bab9ebebb716c6"
# **修复 B：纯 ASGI 中间件能做的事，不要用 `BaseHTTPMiddleware` 来做**。计时头只需要包装 `send`；纯 ASGI 中间件只是透传消息，对不应答的应用也没有意见。练习（exercise）6.1 要求你写出它。
#
# 在固定版本上*不会*引起这个错误的情况：客户端在普通 FastAPI 端点工作期间离开。端点总会返回一个响应，FastAPI 会把它发出去，所以 `call_next` 总能拿到第一条消息。
#
# **事实 6.11**：在五层嵌套的 `@app.middleware("http")` 之下，客户端在慢端点和 `StreamingResponse` 上挂断（各五次），都不会引起错误。慢端点每次仍然运行到底；流则会提前停止，因为 `StreamingResponse` 会监听断开连接。

# %%
app = FastAPI()
finished: list[str] = []
stream_lengths: list[int] = []


@app.get("/slow")
async def slow() -> dict[str, bool]:
    await asyncio.sleep(0.3)
    finished.append("slow endpoint returned")
    return {"late": True}


async def ticks():
    sent = 0
    try:
        for n in range(100):  # 如果客户端一直在，就发两秒的 tick
            yield f"tick {n}\n"
            sent += 1
            await asyncio.sleep(0.02)
    finally:
        stream_lengths.append(sent)


@app.get("/ticks")
async def tick_stream() -> StreamingResponse:
    return StreamingResponse(ticks(), media_type="text/plain")


for _ in range(5):
    app.middleware("http")(add_timing_header)

with capture_logs("uvicorn.error") as records, serve(app) as url:
    for _ in range(5):
        leave_early(url, "/slow")
        leave_early(url, "/ticks")
    # 等服务器处理完全部十个；现在离开会丢掉尚未被接受的连接。
    assert wait_until(lambda: len(finished) == 5 and len(stream_lengths) == 5), (finished, stream_lengths)
print(f"{len(app.user_middleware)} BaseHTTPMiddleware layers, 10 clients that left early")
print(f"slow endpoints that ran to the end: {len(finished)} of 5")
print(f"streams that stopped early: {sum(length < 100 for length in stream_lengths)} of 5")
print(f"errors logged: {logged_errors(records) or 'none'}")
assert len(app.user_middleware) == 5 and all(length < 100 for length in stream_lengths)
assert records == []

# %% [markdown] translates="de29b64fe19f6346"
# ## 5. 属于旧版 Starlette 的原因
#
# 这条消息由来已久，有一段时间，它的某些原因还是 Starlette 自身的缺陷。本课程测量了其中两段历史：`make versions` 安装较旧的版本，每个都装在独立的环境里，并在其中用真实的 uvicorn 服务器运行小应用（FastAPI 0.103.2 是本课程所回应的那篇文章写作时针对的版本，它带的是 Starlette 0.27.0）。它记录下的结果用 `version_table` 显示如下；课程的一个测试会重新测量一遍。
#
# **嵌套中间件与挂断的客户端**。Issue #2516（在 Starlette 0.37.1 上报告）描述了一个竞态（race）：多个 `BaseHTTPMiddleware` 嵌套，而客户端在端点应答之前断开。Starlette 0.38.3 修复了它（PR #2620，“Don't poll for disconnects in BaseHTTPMiddleware via StreamingResponse”）。第 4 节已在固定版本上做过这个实验：五层中间件，十个客户端在慢端点上挂断（事实 6.11）。
#
# **事实 6.12**：事实 6.11 的实验在 Starlette 0.28.0、0.29.0、0.31.1 和 0.38.2 上，对全部十个客户端都记录了 `No response returned.`；在 0.27.0（FastAPI 0.103 到 0.106 这几行）上以及从 0.38.3 起，一次也没有。不返回响应的应用（第 3 节的关卡）在每个版本上都得到 `500` 和这条消息；抛出它时正在处理的那个异常，在 Starlette 0.29.0 及以前（AnyIO 3）是 AnyIO 的 `EndOfStream`，从 0.31.1（AnyIO 4）起是 `ExceptionGroup`。

# %%
message_history = version_table("nested_middleware_hang_ups", "gate_without_response")
raced = {stack.name for stack, (hang_ups, _) in message_history.rows if not hang_ups.endswith(" 0 of 10")}
assert raced == {"Starlette 0.28.0", "Starlette 0.29.0", "Starlette 0.31.1", "Starlette 0.38.2"}
assert all(gate.startswith("500; RuntimeError: No response returned.") for _, (_, gate) in message_history.rows)
assert message_history.outcome("FastAPI 0.163.2", "nested_middleware_hang_ups").endswith(" 0 of 10")  # 事实 6.11
message_history

# %% [markdown] translates="b62df74305ca6d72"
# 更早的一个原因只作引用，未经测量：在 Starlette 0.15.0 到 0.20.4 上，客户端恰好在 `StreamingResponse` 开始时断开，即使应用正在响应，也可能产生这条消息（issue #1634，“seemingly random”；由 0.21.0 中的 PR #1715 修复）。
#
# **`BaseHTTPMiddleware` 后面的后台任务**也有自己的历史，任务和这条消息也许就是这样被混为一谈的。三个实验，每个都是一个中间件后面跟一个任务：
#
# - 一个仍在运行的任务（它等实验放行）：客户端能拿到响应体吗？它在同一个 keep-alive 连接上的*下一个*请求会得到应答吗？
# - 一个抛出异常的任务：客户端保持连接时，以及客户端读完应答并挂断、任务随后才抛出异常时，它会被记录吗？
# - 一个 `dispatch`，在 `call_next` 交给它的响应上设置 `response.background`：那个任务会运行吗？
#
# **事实 6.13**：在 Starlette 0.27.0 和 0.28.0 上，客户端立刻拿到了响应体，但它在同一连接上的下一个请求要等任务结束后才得到应答（0.29.0 改变了这一点，PR #2194）。在那两个版本上，失败的任务只有在客户端保持连接时才会被记录；在 0.29.0 到 0.45.3（以及 0.38.5，即 FastAPI 0.115.0 那一行）上完全不记录；从 0.46.0（PR #2812）起，两种情况下都会记录。在 `dispatch` 中设置的任务，在 0.38.3 和 0.38.4 上从不运行（0.38.5 恢复，PR #2688）。

# %%
task_history = version_table(
    "middleware_keep_alive", "middleware_failing_task_kept_alive", "middleware_failing_task_hung_up",
    "task_set_in_dispatch",
)  # fmt: skip
rows = {stack.name: outcomes for stack, outcomes in task_history.rows}
waited = {name for name, (keep_alive, *_) in rows.items() if keep_alive.endswith("after the task")}
silent = {name for name, (_, kept, hung_up, _) in rows.items() if kept == hung_up == "nothing logged"}
dropped = {name for name, (*_, dispatch) in rows.items() if dispatch == "never runs"}
assert waited == {"FastAPI 0.103.2", "FastAPI 0.105.0", "FastAPI 0.106.0", "Starlette 0.28.0"}
assert all(outcomes[0].startswith("the body at once") for outcomes in rows.values())
assert silent == {"FastAPI 0.115.0", "Starlette 0.29.0", "Starlette 0.31.1", "Starlette 0.38.2",
                  "Starlette 0.38.3", "Starlette 0.38.4", "Starlette 0.45.3"}  # fmt: skip
assert dropped == {"Starlette 0.38.3", "Starlette 0.38.4"}
assert rows["FastAPI 0.163.2"][1] == rows["FastAPI 0.163.2"][2] == "logged: ValueError"
task_history

# %% [markdown] translates="79a00e757c452b03"
# 在固定版本上，可以看到取代旧行为的是什么：在 `call_next` 内部，断开连接以消息的形式到达应用（`receive_or_disconnect`），而 `BaseHTTPMiddleware` 向服务器转发的响应完全不监听断开；只有 Starlette 公开的 `StreamingResponse` 才监听。
#
# **事实 6.14**：在 Starlette 1.10.0 上，`starlette/middleware/base.py` 在 `receive_or_disconnect` 中把断开连接转成一条 `http.disconnect` 消息，并且其中没有 `listen_for_disconnect`。

# %%
disconnect_messages = [hit for hit in find_in_source("starlette", '{"type": "http.disconnect"}')
                       if hit.file == "starlette/middleware/base.py"]
listeners = {hit.file for hit in find_in_source("starlette", "listen_for_disconnect")}
print(*disconnect_messages, sep="\n")
print(f"files that listen for disconnects: {sorted(listeners)}")
assert any(hit.function.endswith("receive_or_disconnect") for hit in disconnect_messages)
assert "starlette/middleware/base.py" not in listeners

# %% [markdown] translates="61fce4012be53873"
# ## 6. 后台任务相关错误一览
#
# 每一条都在真实的服务器上复现一个错误，解释它，并在下一个单元格中修复。前两条第 1 章已经见过；放在这里，是为了让这份清单完整。
#
# ### 6.1 任务抛出异常：其后的任务被跳过
#
# **事实 6.15**：三个任务中，第二个抛出 `ValueError`：第三个永远不会运行，客户端早已拿到 `200`，uvicorn 记录 `Exception in ASGI application` 以及这个 `ValueError`（第 1 章第 7 节）。

# %%
done: list[str] = []


def record(name: str) -> None:
    done.append(name)


def fail(name: str) -> None:
    raise ValueError(f"{name}: the mail server said no")


def fragile_app(wrap=lambda func: func) -> FastAPI:
    app = FastAPI()

    @app.post("/fragile")
    def fragile(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(wrap(record), "first")
        background_tasks.add_task(wrap(fail), "second")
        background_tasks.add_task(wrap(record), "third")
        return {"status": "accepted"}

    return app


done.clear()
with capture_logs("uvicorn.error") as records, serve(fragile_app()) as url:
    response = httpx.post(f"{url}/fragile")
errors = logged_errors(records)
print(f"the client got {response.status_code}; tasks that ran: {done}")
print(f"uvicorn logged {records[0].getMessage().strip()!r}:", *errors, sep="\n  ")
assert response.status_code == 200 and done == ["first"]
assert [(error.type, error.function) for error in errors] == [("ValueError", "fail")]

# %% [markdown] translates="775d20db8c541898"
# **修复**：让每个任务自己捕获并记录失败，这样运行任务的那个循环就能继续下去。第 1 章的练习 1.3 构建了完整版本，它让 `async def` 函数保持异步；第 4 章又加入了重试（retry）。
#
# **事实 6.16**：每个任务都包装之后，第三个任务照常运行，失败连同回溯一起记录在 `tasks` 日志记录器上，uvicorn 什么也不记录。

# %%
task_log = logging.getLogger("tasks")


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception:
            task_log.exception("background task %s failed", func.__name__)
            return None

    return wrapper


done.clear()
with (
    capture_logs("uvicorn.error") as server_records,
    capture_logs("tasks") as task_records,
    serve(fragile_app(logged)) as url,
):
    response = httpx.post(f"{url}/fragile")
print(f"tasks that ran: {done}")
print(f"the 'tasks' logger: {task_records[0].getMessage()!r}, with", *logged_errors(task_records), sep="\n  ")
assert done == ["first", "third"] and server_records == []
assert len(task_records) == 1 and task_records[0].exc_info is not None

# %% [markdown] translates="877cfadf1e8cdfee"
# ### 6.2 `TestClient` 重新抛出任务的异常
#
# `TestClient` 在测试所在的进程中运行应用，默认情况下，应用抛出的任何异常（包括后台任务的异常）都会在测试中重新抛出。这是一个特性：测试正是靠它发现失败的任务。
#
# **事实 6.17**：针对 6.1 中未包装的任务，`test_client.post(...)` 会在调用它的单元格中抛出任务的 `ValueError`。

# %%
with shows_error(ValueError) as raised, TestClient(fragile_app()) as test_client:
    test_client.post("/fragile")
assert type(raised.error) is ValueError

# %% [markdown] translates="039ce768d5d74856"
# **修复**：修应用，不要修测试。像 6.1 那样包装任务后，同一个测试就能通过，还能对日志做断言。（`TestClient(app, raise_server_exceptions=False)` 则是让异常静默；第 1 章第 7 节演示过。用它来测试客户端看到了什么，而不是用来掩盖缺陷。）
#
# **事实 6.18**：任务包装之后，`TestClient` 返回 `200`，失败记录在 `tasks` 日志中。

# %%
done.clear()
with capture_logs("tasks") as task_records, TestClient(fragile_app(logged)) as test_client:
    response = test_client.post("/fragile")
print(f"{response.status_code} {response.json()}; tasks that ran: {done}; failures logged: {len(task_records)}")
assert response.status_code == 200 and done == ["first", "third"] and len(task_records) == 1

# %% [markdown] translates="a3f0aecc03c1ee21"
# ### 6.3 `RuntimeWarning: coroutine '...' was never awaited`
#
# 调用 `async def` 函数并不会运行它：调用只是创建一个协程对象，只有 `await` 才会运行它。普通的 `def` 不能 `await`，所以调用异步函数的同步包装函数（wrapper），会创建协程，然后把它丢掉。什么也没有发出，也没有抛出异常，等这个对象被垃圾回收时，Python 发出一个 `RuntimeWarning`。（单元格用 `warnings.catch_warnings` 记录这个警告，以免它漏进本笔记本的输出。）
#
# **事实 6.19**：一个 `def` 任务调用 `send_email(address)` 却没有 `await`，结果什么也没发出去；请求得到 `200`；Python 警告 `coroutine 'send_email' was never awaited`，并指向调用所在的那一行。

# %%
sent: list[str] = []


async def send_email(address: str) -> None:
    await asyncio.sleep(0.01)  # 邮件服务器
    sent.append(address)


def notify(address: str) -> None:
    send_email(address)  # 缺陷：创建了协程，又把它丢掉


app = FastAPI()


@app.post("/notify")
def post_notify(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(notify, "ada@example.com")
    return {"status": "accepted"}


sent.clear()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        response = httpx.post(f"{url}/notify")
    gc.collect()
never_awaited = [w for w in caught if "was never awaited" in str(w.message)]
print(f"{response.status_code}; e-mails sent: {sent}; exceptions logged: {len(records)}")
for w in never_awaited:
    print(f"{w.category.__name__}: {w.message}\n    at: {linecache.getline(w.filename, w.lineno).strip()}")
assert response.status_code == 200 and sent == [] and records == []
assert [str(w.message) for w in never_awaited] == ["coroutine 'send_email' was never awaited"]
assert never_awaited[0].category is RuntimeWarning
assert linecache.getline(never_awaited[0].filename, never_awaited[0].lineno).strip().startswith("send_email(address)")

# %% [markdown] translates="050fcfdad5bc4b5d"
# **修复**：把 `async def` 函数本身交给 `add_task`；Starlette 会在事件循环上 await 它。如果某个 `def` 任务必须调用异步代码，比如它同时还要做阻塞（blocking）的工作，就用 `anyio.from_thread.run(...)` 在服务器的循环上运行协程：`def` 任务运行在 AnyIO 的工作线程（worker thread）上，这个线程知道自己属于哪个循环。
#
# **事实 6.20**：两种修复都把邮件发了出去，也没有记录到任何警告。

# %%
def notify_from_thread(address: str) -> None:
    anyio.from_thread.run(send_email, address)  # 在服务器的循环上运行；本线程等待


app = FastAPI()


@app.post("/notify")
def post_notify_fixed(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(send_email, "ada@example.com")  # async 函数本身
    background_tasks.add_task(notify_from_thread, "grace@example.com")
    return {"status": "accepted"}


sent.clear()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        response = httpx.post(f"{url}/notify")
    gc.collect()
print(f"{response.status_code}; e-mails sent: {sent}; warnings: {[str(w.message) for w in caught]}")
assert sent == ["ada@example.com", "grace@example.com"] and caught == [] and records == []

# %% [markdown] translates="7b7807e45b2e0f65"
# ### 6.4 `MissingGreenlet` 与 `DetachedInstanceError`：来自请求的 ORM 对象
#
# 端点用请求的数据库会话（session）加载一个用户，把这个**对象**交给任务，任务随后读取 `user.orders`：这是一个 SQLAlchemy 延迟加载的关系，首次访问时才加载。第 3 章对此有详细论述（第 7 到 9 节：会话何时关闭、会出什么问题，以及始终可行的模式）；这里是简短版本，作为清单中的一条。商店的模型放在 `bgcourse.checks.ch06_troubleshooting` 中，这样练习 6.2 的检查也能使用它们：`User(id, name, orders)` 和 `Order(id, user_id, item)`。数据库是临时文件夹中的一个 SQLite 文件，在 6.4 结束时删除。

# %%
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
from sqlalchemy.pool import NullPool

from bgcourse.checks.ch06_troubleshooting import Order, ShopBase, User

shop_folder = tempfile.TemporaryDirectory(prefix="bgcourse-ch06-")
# NullPool：每个会话在使用它的循环上打开自己的连接（这里是本笔记本的循环，
# 下面是服务器的循环），用完再关闭。
engine = create_async_engine(f"sqlite+aiosqlite:///{Path(shop_folder.name) / 'shop.db'}", poolclass=NullPool)
async with engine.begin() as connection:
    await connection.run_sync(ShopBase.metadata.create_all)
sessions = async_sessionmaker(engine, expire_on_commit=False)
async with sessions() as session:
    session.add(User(id=1, name="Ada", orders=[Order(item="book"), Order(item="pen")]))
    await session.commit()
print("a shop with one user and two orders, in shop.db in a temporary folder")

# %% [markdown] translates="c152cca83ba9be28"
# 请求的会话何时关闭？FastAPI 0.163 允许 `yield` 依赖项（dependency）自己选择（`Depends(..., scope=...)`）：使用默认的 `"request"` 作用域时，它的退出代码在响应**及其后台任务**之后运行（`fastapi/routing.py` 中的 `request_response` 在依赖项的退出栈内 await 响应，任务也包括在内）；使用 `scope="function"` 时，它在响应发送之前运行。
#
# **事实 6.21**：使用默认作用域时，任务读取 `user.orders` 时会话仍然打开，但读取会失败，报 `MissingGreenlet`（SQLAlchemy 把它包在一个 `StatementError` 里）：延迟加载是一次需要 I/O 的普通属性访问，而在 asyncio 下，SQLAlchemy 只能在自己的 greenlet 中做 I/O；`await session...` 这类调用会建立这个 greenlet，属性访问则不会。这次失败的加载还让 aiosqlite 的 `Connection.cursor` 协程一直没有被 await。
#
# **事实 6.22**：使用 `scope="function"` 时，任务运行前会话就已关闭，对象处于分离（detached）状态，读取失败，报 `DetachedInstanceError`。

# %%
def summary_app(scope: str, summaries: list[str], events: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        try:
            async with sessions() as session:
                yield session
        finally:
            events.append("session closed")

    async def summarize(user: User) -> None:
        events.append("task started")
        summaries.append(f"{user.name}: {len(user.orders)} orders")  # user.orders：一次延迟加载

    @app.post("/users/{user_id}/summary", status_code=202)
    async def summary(
        user_id: int,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope=scope)],
    ) -> dict[str, str]:
        user = await session.get(User, user_id)
        background_tasks.add_task(summarize, user)  # 缺陷：传的是对象，它绑定在请求的会话上
        return {"queued": user.name}

    return app


outcomes = {}
for scope in ("request", "function"):
    summaries, events = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture_logs("uvicorn.error") as records, serve(summary_app(scope, summaries, events)) as url:
            response = httpx.post(f"{url}/users/1/summary")
        errors = logged_errors(records)  # 释放回溯，连同它持有的协程
        gc.collect()
    outcomes[scope] = (response, summaries, events, errors, [f"{w.category.__name__}: {w.message}" for w in caught])

for scope, (response, summaries, events, errors, warned) in outcomes.items():
    print(f'scope="{scope}": {response.status_code} {response.json()}; order of events: {events}; '
          f"summaries: {summaries}")
    print(*errors, *warned, sep="\n  ", end="\n\n")
    assert response.status_code == 202 and summaries == []
[missing_greenlet], warned = outcomes["request"][3:]
[detached], _ = outcomes["function"][3:]
assert warned == ["RuntimeWarning: coroutine 'Connection.cursor' was never awaited"]
assert outcomes["request"][2] == ["task started", "session closed"], "default scope: closed after the task"
assert outcomes["function"][2] == ["session closed", "task started"], "function scope: closed before the task"
assert missing_greenlet.type == "StatementError" and "(sqlalchemy.exc.MissingGreenlet)" in missing_greenlet.message
assert detached.type == "DetachedInstanceError" and "lazy load operation of attribute 'orders'" in detached.message

# %% [markdown] translates="b6c2d65f89924c15"
# 版本间的差异：在 FastAPI 0.106.0 到 0.117.0 上，`yield` 依赖项的退出代码默认在响应之前运行，就像上面的 `scope="function"`；在 0.106.0 之前以及从 0.118.0 起，它在任务之后运行（第 3 章事实 7.2，在每个版本上都测量过）。所以无论是哪种时机，上面两种失败总有一种在等着你：问题出在对象上，而不在版本。
#
# **修复**：交给任务普通的数据，而不是 ORM 对象。要么在端点中加载任务需要的东西并传值（见下文），要么传 id，让任务自己打开一个会话（练习 6.2）。
#
# **事实 6.23**：在端点中加载订单（`selectinload`），并把名字和商品列表交给任务，两种作用域都能生成摘要，而且没有任何日志或警告。

# %%
def summary_app_fixed(scope: str, summaries: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def summarize(name: str, items: list[str]) -> None:
        summaries.append(f"{name}: {len(items)} orders")

    @app.post("/users/{user_id}/summary", status_code=202)
    async def summary(
        user_id: int,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope=scope)],
    ) -> dict[str, str]:
        user = await session.scalar(select(User).where(User.id == user_id).options(selectinload(User.orders)))
        background_tasks.add_task(summarize, user.name, [order.item for order in user.orders])  # 传值
        return {"queued": user.name}

    return app


fixed = {}
for scope in ("request", "function"):
    summaries = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture_logs("uvicorn.error") as records, serve(summary_app_fixed(scope, summaries)) as url:
            response = httpx.post(f"{url}/users/1/summary")
        gc.collect()
    fixed[scope] = (response.status_code, summaries, logged_errors(records), [str(w.message) for w in caught])
for scope, (status_code, summaries, errors, warned) in fixed.items():
    print(f'scope="{scope}": {status_code}; summaries: {summaries}; errors: {errors}; warnings: {warned}')
    assert status_code == 202 and summaries == ["Ada: 2 orders"] and errors == [] and warned == []

await engine.dispose()
shop_folder.cleanup()
assert not Path(shop_folder.name).exists()

# %% [markdown] translates="2f3f603cb48394e7"
# ### 6.5 `RuntimeError: ... is bound to a different event loop`
#
# asyncio 的 `Lock` 属于第一个需要在它上面等待的事件循环（`asyncio/mixins.py` 中的 `_LoopBoundMixin._get_loop`，第 7 节展示了这一行），`Semaphore`、`Event`、`Condition` 和 `Queue` 也一样，它们共用这个方法。因此，一个只创建一次（在导入时，或在某个笔记本单元格中）、却被两个循环使用的对象，会在第二个循环上出错。每个 `serve(app)` 都运行自己的循环，所以把同一个应用服务两次的测试套件会遇到这个问题；在笔记本中，重新运行服务器单元格、却没有重新运行创建锁的单元格，也会遇到。
#
# **事实 6.24**：一个只创建一次、由同一应用的各任务共享的锁：第一次服务时，两封时间上重叠的邮件依次发出；第二次服务时，需要等待的那个任务失败，报 `RuntimeError: <asyncio.locks.Lock object at 0x... [locked]> is bound to a different event loop`，只发出了一封邮件。

# %%
mail_lock = asyncio.Lock()  # 在任何循环之外只创建一次：就像模块级的全局变量
arrived: list[int] = []
sent: list[str] = []


async def send_in_turn(lock: asyncio.Lock, n: int) -> None:
    arrived.append(n)
    async with lock:  # 第二个任务必须在这里等待，而等待会把锁绑定到这个循环
        deadline = time.monotonic() + 30  # 只是为了出错时单元格不会永远卡住
        while len(arrived) < 2 and time.monotonic() < deadline:  # 一直持有，直到另一个任务开始等待
            await asyncio.sleep(0.01)
        sent.append(f"e-mail {n}")


mailer = FastAPI()


@mailer.post("/emails/{n}")
async def queue_email(n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(send_in_turn, mail_lock, n)
    return {"queued": n}


def serve_twice(app: FastAPI) -> dict[str, tuple[list[str], list]]:
    """Serve the same app twice, one server after the other; two requests each time."""
    results = {}
    for run in ("first", "second"):
        arrived.clear()
        sent.clear()
        with capture_logs("uvicorn.error") as records, serve(app) as url:
            httpx.post(f"{url}/emails/1")
            httpx.post(f"{url}/emails/2")
        results[run] = (list(sent), logged_errors(records))
    return results


results = serve_twice(mailer)
for run, (sent_then, errors) in results.items():
    print(f"{run} server: sent {sent_then}", *errors, sep="\n  ")
assert results["first"] == (["e-mail 1", "e-mail 2"], [])
second_sent, [bound_error] = results["second"]
assert second_sent == ["e-mail 1"]
assert bound_error.type == "RuntimeError" and bound_error.message.endswith("is bound to a different event loop")
assert (bound_error.file, bound_error.function) == ("asyncio/mixins.py", "_get_loop")
assert all(cls._get_loop is asyncio.Lock._get_loop for cls in (asyncio.Semaphore, asyncio.Event, asyncio.Condition, asyncio.Queue))

# %% [markdown] translates="96cc059a0ca47e1f"
# **修复**：在使用锁的循环上创建它，也就是在应用的生命周期（lifespan）中创建：每个服务器每次启动时，生命周期都会在该服务器的循环上运行；任务从 `request.app.state` 中取得这把锁。
#
# **事实 6.25**：在生命周期中创建锁之后，两个服务器都发出了两封邮件。

# %%
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.mail_lock = asyncio.Lock()  # 在这个服务器的循环上，每次启动时创建
    yield


mailer = FastAPI(lifespan=lifespan)


@mailer.post("/emails/{n}")
async def queue_email_fixed(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(send_in_turn, request.app.state.mail_lock, n)
    return {"queued": n}


results = serve_twice(mailer)
for run, (sent_then, errors) in results.items():
    print(f"{run} server: sent {sent_then}; errors: {errors or 'none'}")
assert all(outcome == (["e-mail 1", "e-mail 2"], []) for outcome in results.values())

# %% [markdown] translates="f8fd6f881ca6403e"
# ### 6.6 在笔记本中：`Cannot run the event loop while another loop is running`
#
# Jupyter 内核在主线程中运行一个事件循环，而 asyncio 每个线程只允许一个正在运行的循环，所以在单元格中启动循环的任何操作都会失败：`uvicorn.run(app)`、`asyncio.run(...)`、`loop.run_until_complete(...)`。第 1 章（第 8 节）展示过 `uvicorn.run` 的失败，以及 `nest_asyncio` 的作用。这里把所有情况集中在一处；由于 `nest_asyncio.apply()` 会永久地修补解释器，它在一个单独的全新内核中运行（`run_in_fresh_kernel`）。
#
# **事实 6.26**：在笔记本中，`uvicorn.run`、`asyncio.run` 和 `run_until_complete` 全都失败。执行 `nest_asyncio.apply()` 之后，`asyncio.run` 和 `run_until_complete` 可以工作，`uvicorn.run` 仍然失败。在 Python 3.11 上，uvicorn 的失败信息在打补丁前是 `RuntimeError: Cannot run the event loop while another loop is running`，打补丁后是 `RuntimeError: Runner.run() cannot be called from a running event loop`（uvicorn 用 `asyncio.Runner` 启动它的循环，而 `nest_asyncio` 不修补它）；在 3.12 和 3.13 上，消息有所不同（第 1 章事实 8.3）。

# %%
probe = '''
import asyncio
import nest_asyncio
import uvicorn
from fastapi import FastAPI


def attempt(what, start):
    coroutine = asyncio.sleep(0, "it ran")
    try:
        print(f"-> {what}: {start(coroutine)}")
    except Exception as exc:
        print(f"-> {what}: {type(exc).__name__}: {exc}")
    finally:
        coroutine.close()  # if it never ran, close it, or Python warns that it was never awaited


def run_uvicorn(coroutine):
    return uvicorn.run(FastAPI(), host="127.0.0.1", port=0, log_config=None)


def all_three(when):
    attempt(f"{when}, uvicorn.run(app)", run_uvicorn)
    attempt(f"{when}, asyncio.run(...)", asyncio.run)
    attempt(f"{when}, loop.run_until_complete(...)", asyncio.get_event_loop().run_until_complete)


all_three("without nest_asyncio")
nest_asyncio.apply()
all_three("after nest_asyncio.apply()")
'''
with tqdm(total=1, desc="running the probe in a fresh kernel") as progress:
    outcome = run_in_fresh_kernel(probe, timeout=60)
    progress.update()
lines = [line.removeprefix("-> ") for line in outcome.output.splitlines() if line.startswith("-> ")]
print(*lines, sep="\n")
assert not outcome.error and len(lines) == 6, outcome
before, after = lines[:3], lines[3:]
assert all("Error" in line for line in before), "in a notebook, all three fail"
assert after[1].endswith(": it ran") and after[2].endswith(": it ran"), "nest_asyncio lets these two nest"
assert "Error" in after[0], "but uvicorn.run still fails"
if sys.version_info[:2] == (3, 11):
    assert before[0].endswith("RuntimeError: Cannot run the event loop while another loop is running")
    assert after[0].endswith("RuntimeError: Runner.run() cannot be called from a running event loop")

# %% [markdown] translates="b49129fc4981aeea"
# **修复**：在笔记本中，直接在单元格顶层 `await` 协程（本课程的每个单元格都是这样做的），并把服务器放在它自己的线程上运行，那个线程有自己的循环：`with serve(app) as url:`。`nest_asyncio` 留给那些坚持自己调用 `asyncio.run()` 的第三方代码。

# %% [markdown] translates="3195d16467502fed"
# ## 7. 一套可复用的调试方法
#
# 上面每一条都是用同样的方法解决的，分三步。
#
# 1. **读最内层的栈帧**。回溯的最后一帧是异常被抛出的地方；它上面的各帧只说明程序是怎么走到那里的。对于服务器日志，`logged_errors` 会把它打印出来；在你自己的代码中，用 `traceback.extract_tb(exc.__traceback__)[-1]`，这正是测验（quiz）最后一题的内容。
# 2. **找到库在哪里写下这条消息**。在已安装的包中，搜索消息里能写在一行之内的片段（消息常常被拆成两个字符串字面量，或是格式化生成的）：`find_in_source(package, text)`。它给出的是文本本身所在的行，可能比回溯所指的行低一两行：回溯指向的是 `raise` 语句开始的那一行，而写在同一条语句下一行的消息，会在下一行被找到。然后阅读它周围的代码：`raise` 前面的条件才是真正的解释。拿着确切的消息和你的版本号，去查项目的 issue 跟踪器和发布说明，就能知道这是不是缺陷、哪个版本修复了它（第 5 节就是这样写出来的）。
# 3. **最小化复现**：在真实的服务器上展示该错误的最小应用，就像上面每个单元格那样。如果复现不出来，说明解释是错的（第 1 节）。
#
# **事实 6.27**：本章的每条消息都能这样找到，连同写下它的函数。`coroutine ... was never awaited` 在 `warnings.py` 中：解释器销毁一个从未运行过的协程时，会调用 `warnings._warn_unawaited_coroutine`。

# %%
messages = [
    ("starlette", "No response returned"),
    ("uvicorn", "ASGI callable returned without starting response"),
    ("warnings", "was never awaited"),
    ("sqlalchemy", "greenlet_spawn has not been called"),
    ("sqlalchemy", "lazy load operation of attribute"),
    ("asyncio", "is bound to a different event loop"),
    ("asyncio", "Cannot run the event loop while another loop is running"),
]
where = {text: find_in_source(package, text) for package, text in messages}
assert all(where.values()), "every message is found"
for text, hits in where.items():
    more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
    print(f"{text!r}\n    {hits[0].file}:{hits[0].line} in {hits[0].function}{more}")
print(where["was never awaited"][0].excerpt(before=3, after=0))
assert where["was never awaited"][0].function == "_warn_unawaited_coroutine"

# %% [markdown] translates="815861dd8035f96e"
# 关于第 1 步和内存，还要提醒一点：回溯会让每一帧的每个局部变量都保持存活。6.4 中失败的延迟加载在其中一帧里留下了一个没有被 await 的协程；如果它的回溯一直留在 `records` 列表中，那个 `RuntimeWarning` 就会在垃圾回收器碰巧运行时冒出来，出现在后面某个毫不相干的单元格里。因此 `logged_errors` 读完这些帧之后，就会把它们清理掉（`traceback.clear_frames`）。

# %% [markdown] translates="6a553ffc10179b5c"
# ## 练习
#
# 每个练习都有一个代码单元格供你作答，还有一个单元格用真实的服务器检查答案。参考答案在 `solutions/ch06_troubleshooting/` 中；先自己尝试，再对照。
#
# ### 练习 6.1：不用 `BaseHTTPMiddleware` 的计时头
#
# 写一个 `ProcessTimeMiddleware`：一个**纯 ASGI** 中间件类（`__init__(self, app)` 和 `async __call__(self, scope, receive, send)`），给每个 HTTP 响应加上头 `x-process-time`，其值是从请求到达中间件到响应开始之间的秒数，写成一个数字（`"0.100123"`）。所有不是 `"http"` 的 scope（例如 `"lifespan"`）都直接交给应用。检查会把它加到一个带 0.1 s 端点和第 4 节长轮询的应用上，并在长轮询上挂断：不能有任何日志记录。（`starlette.datastructures.MutableHeaders(scope=message)` 可以编辑 `http.response.start` 消息的头。）

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ProcessTimeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan 和 websocket 直接透传
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("x-process-time", f"{time.perf_counter() - started:.6f}")
            await send(message)

        await self.app(scope, receive, send_with_time)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch06_troubleshooting as checks

checks.ex01(ProcessTimeMiddleware)

# %% [markdown] translates="ed4598f8e7fef81e"
# ### 练习 6.2：把 id 交给任务
#
# 写 `create_app(sessions, summaries)`，返回一个带 `POST /users/{user_id}/summary` 的应用。端点用一个 `yield` 依赖项提供的会话加载用户（`async with sessions() as session: yield session`）；id 不存在时应答 `404`；否则以 `202` 应答 `{"queued": <the user's name>}`，并添加一个后台任务。任务拿到的是用户的 **id**：它打开自己的会话，加载用户及其订单，并把 `"<name>: <number of orders> orders"` 追加到列表 `summaries`。使用第 6.4 节的模型（`from bgcourse.checks.ch06_troubleshooting import User`）；检查会在一个临时文件夹中用它们初始化数据库。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bgcourse.checks.ch06_troubleshooting import User


def create_app(sessions: async_sessionmaker[AsyncSession], summaries: list[str]) -> FastAPI:
    app = FastAPI()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def write_summary(user_id: int) -> None:
        async with sessions() as session:
            user = await session.scalar(select(User).where(User.id == user_id).options(selectinload(User.orders)))
            if user is not None:
                summaries.append(f"{user.name}: {len(user.orders)} orders")

    @app.post("/users/{user_id}/summary", status_code=status.HTTP_202_ACCEPTED)
    async def summary(
        user_id: int, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, str]:
        user = await session.get(User, user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        background_tasks.add_task(write_summary, user.id)  # 传 id，而不是对象
        return {"queued": user.name}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(create_app)

# %% [markdown] translates="79a18a5c30d906b0"
# ### 练习 6.3：同时两个，在任何循环上
#
# 邮件服务器同时只接受两个连接。写 `create_app(log)`，返回一个带 `POST /emails/{n}`（`n` 为 `int`）的应用：它以 `202` 应答 `{"queued": n}`，并添加一个发送第 `n` 封邮件的任务：把 `"start <n>"` 追加到 `log`，等待 0.2 s（`await asyncio.sleep(0.2)`），再追加 `"end <n>"`。同时进行中的邮件绝不能超过两封，而且检查会**把同一个应用服务两次**（就像测试套件那样），每次同时发出四个请求。（`asyncio.Semaphore(2)` 可以把数量限制为两个；它必须在哪里创建？）

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request, status


async def send_email(slots: asyncio.Semaphore, n: int, log: list[str]) -> None:
    async with slots:
        log.append(f"start {n}")
        await asyncio.sleep(0.2)  # 一个慢的邮件服务器
        log.append(f"end {n}")


def create_app(log: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mail_slots = asyncio.Semaphore(2)  # 每次启动时，在各服务器自己的循环上创建
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails/{n}", status_code=status.HTTP_202_ACCEPTED)
    async def queue_email(n: int, request: Request, background_tasks: BackgroundTasks) -> dict[str, int]:
        background_tasks.add_task(send_email, request.app.state.mail_slots, n, log)
        return {"queued": n}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(create_app)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验
#
# 每道题显示在一个单元格里；在它下面的单元格作答；再下一个单元格告诉你是否答对。答对时附上解释；答错时给出提示，但不泄露答案（如果你更想直接读解释，`quiz.explain("q01")` 随时可以显示 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch06_troubleshooting")
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
def raised_in(exc):
    import traceback

    return traceback.extract_tb(exc.__traceback__)[-1].name
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", raised_in)

# %% [markdown] translates="cc42137f22ac41ca"
# ## 小结
#
# - 后台任务的返回值会被忽略；从任务中返回响应，既不改变任何事，也不抛出任何异常（第 1 节）。
# - `RuntimeError: No response returned.` 只在一个地方抛出，即 `starlette/middleware/base.py` 中的 `call_next`：`BaseHTTPMiddleware`（每个 `@app.middleware("http")` 都是）内部的应用已经结束，既没有发送响应，也没有抛出异常（第 2 节）。
# - 在固定版本上，它有两个原因：ASGI 应用或中间件不应答就返回（修复：总是发送响应），以及应用在客户端离开时直接返回（修复：照样应答，或改用纯 ASGI 中间件）。FastAPI 端点总会应答，所以在固定版本上，客户端提前离开端点不会引起任何问题（第 3 节和第 4 节）。
# - 旧版 Starlette 还有更多原因：经过测量的，是 0.28.0 到 0.38.2 上嵌套的 `BaseHTTPMiddleware` 与挂断的客户端之间的竞态（0.27.0 上没有；0.38.3 修复，PR #2620）；仅作引用的，是 0.15.0 到 0.20.4 上流式响应刚开始时的断开连接（0.21.0 修复，PR #1715）。`BaseHTTPMiddleware` 后面的任务也有变化：在 0.28.0 及以前会占住 keep-alive 连接，在 0.29.0 到 0.45.3 上失败不会被记录，在 0.38.3 和 0.38.4 上 `dispatch` 中设置的任务会被丢弃（第 5 节）。
# - 错误一览（第 6 节）：失败的任务会让其后的任务被跳过（包装每个任务）；`TestClient` 会重新抛出它（修应用，不要修测试）；同步调用异步函数会导致“never awaited”（把异步函数本身交给 `add_task`，或用 `anyio.from_thread.run`）；来自请求的 ORM 对象在任务中会因 `MissingGreenlet` 或 `DetachedInstanceError` 失败（传值或传 id）；asyncio 原语只创建一次、却被两个循环使用时，会报“bound to a different event loop”（在生命周期中创建它们）；笔记本无法在自己的线程里再启动一个循环（用 `await`，或者把服务器放在它自己的线程上；`nest_asyncio` 救不了 `uvicorn.run`）。
# - 方法：最内层栈帧、`find_in_source`、在真实的服务器上最小化复现（第 7 节）。
#
# 下一章：第 7 章，`BackgroundTasks` 不够用的时候怎么办。
