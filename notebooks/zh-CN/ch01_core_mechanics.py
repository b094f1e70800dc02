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

# %% [markdown] translates="8123cfca36a26d30"
# # 第 1 章：FastAPI 后台任务（background task）的核心机制
#
# **从这里开始。** 这是本课程的第一章。请从上到下依次运行各个单元格（Shift+Enter，或 *Run → Run All Cells*）。每条事实陈述后面都跟着一个证明单元格（proof cell）：它启动一个真实的服务器，通过回环接口发送真实的 HTTP 请求（request），打印实际发生了什么，再用 `assert` 断言。如果哪条断言在你的机器上失败了，错的是课程，不是你。
#
# **你将学到**
#
# - 后台任务何时运行：在响应（response）发送之后，在同一个进程里；
# - 以什么顺序运行：同一个请求的任务依次执行，不同请求的任务相互重叠；
# - 在哪里运行：`def` 任务在工作线程（worker thread）上，`async def` 任务在事件循环（event loop）所在的线程上；
# - 任务列表如何到达你的代码：每个请求一个 `BackgroundTasks` 对象，由端点（endpoint）和它的依赖项（dependency）共享；
# - 为什么 `TestClient` 和 `httpx.ASGITransport` 看不出这种时序；
# - 一个失败的任务会对它之后的任务造成什么影响；
# - 为什么 notebook 需要把服务器放在线程里运行，而不是调用 `uvicorn.run()`。
#
# 后续各章：2 带欢迎邮件的用户注册，3 数据库与补偿事务（compensation），4 任务编排，5 性能，6 故障排查，7 `BackgroundTasks` 不够用的时候。

# %% [markdown] translates="c35b7056c4bf8b4f"
# ## 0. 准备：版本与课程的辅助工具
#
# 行为会随版本变化，所以每一章都会打印它验证时所用的版本。本课程在 `pyproject.toml` 锁定的版本上验证过；如果你的版本不同，下面的单元格会指出来。

# %%
import asyncio
import platform
import threading
import time
from importlib.metadata import version

PINNED = {"fastapi": "0.163.2", "starlette": "1.10.0", "uvicorn": "0.54.0", "httpx": "0.28.1"}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown] translates="3c06d1a4f5d45524"
# 课程的辅助包 `bgcourse` 为每一章提供三件工具：
#
# - `serve(app)`：一个 `with` 块，在后台线程里为 `app` 运行一个真实的 uvicorn 服务器，监听 `127.0.0.1` 上的一个空闲端口，并给出它的 URL。`with` 块结束时，服务器已经停止，端口也已释放（第 8 节解释为什么需要线程）。
# - `Timeline`：一只统一的时钟，记录客户端、服务器和任务各自做了什么。中间件（middleware）`TimelineMiddleware` 记录请求何时到达、响应何时发完；`timeline.track(lane, func)` 记录任务何时开始、何时结束，以及运行在哪个线程上；`timeline.request(...)` 记录客户端何时发出请求、何时收到完整的响应。`timeline.plot()` 把这些画成图。
# - `load_quiz(...)`：本章末尾的测验（quiz）。
#
# 另外，对于使用较旧版本的读者，`version_table(...)` 会列出 `make versions` 在各个版本上测得的结果（第 7 节）。

# %%
import fastapi.background
import httpx
import starlette.background
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.testclient import TestClient
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

# %% [markdown] translates="7c021dd3bd3b07a5"
# ## 1. 响应先发出，任务后运行
#
# 端点用 `background_tasks.add_task(func, *args)` 添加一个任务，然后返回。此时任务还不会运行：FastAPI 把任务列表挂到响应上（见 `fastapi/routing.py`；前提是该响应自己没有 `background`，否则这些任务会怎样，见第 4 章第 9 节），而 Starlette 的 `Response.__call__`（在 `starlette/responses.py` 中）先发送状态行、响应头和完整的响应体，然后才 await 这些任务。所以：
#
# **事实 1.1**：服务器在第一个任务开始*之前*就发完了完整的响应；任务还在运行时，客户端已经拿到了响应。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def send_welcome_email(address: str) -> None:
    await asyncio.sleep(0.5)  # 模拟一个慢速邮件服务器


@app.post("/signup")
async def signup(address: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track("welcome e-mail", send_welcome_email), address)
    return {"status": "signed up"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    response = timeline.request(client, "POST", "/signup", params={"address": "ada@example.com"}, lane="signup")

print(response.status_code, response.json())
sent = timeline.at("signup", "response sent")
received = timeline.at("signup", "response received")
task_start = timeline.at("welcome e-mail", "task start")
task_end = timeline.at("welcome e-mail", "task end")
print(f"the server sent the response {1000 * (task_start - sent):.2f} ms before the task started")
print(f"the client had the response {task_end - received:.2f} s before the task ended")
assert response.status_code == 200
assert sent <= task_start, "the response is sent before the task starts"
assert received < task_end, "the client does not wait for the task"
timeline.plot("POST /signup: the response leaves, then the task runs")

# %% [markdown] translates="e3873719f6ee0065"
# 图中蓝色条表示客户端在等待响应（很窄：只有几毫秒）。蓝色条上边缘的深色向下三角形，是服务器收到请求的时刻；下边缘的紫色向上三角形，是服务器发完响应的时刻。橙色条是任务，标签上写着它运行所在的线程。虚线标出客户端收到响应的时刻。

# %% [markdown] translates="1bbeb9de2615b9f3"
# 事实 1.1 保证两件事：*服务器*在任务开始之前发完响应；客户端在任务*结束*之前拿到响应。至于客户端收到响应和任务*开始*谁先谁后，它什么也没保证，因为“发出”和“收到”是两个不同的时刻。服务器把最后几个字节交给操作系统，就直接去执行任务；客户端的线程稍后才读到这些字节。服务器里没有任何机制规定这次读取与任务开始的先后：两者谁先发生是一场*竞态*（race），每个请求的赢家都可能不同。
#
# 竞态只有在多次尝试中才会显现，所以下一个单元格先发送 30 个请求，其端点添加一个很短的 `async def` 任务；再发送 30 个请求，其端点添加一个很短的 `def` 任务。两类任务的启动延迟不同：`async def` 任务立即在事件循环上开始，`def` 任务要先交给一个工作线程（第 4 节）。再下一个单元格针对每个请求，把任务的开始时刻与两个时刻作比较，并计数：
#
# - **响应在任务开始前已发出**：服务器一侧，即事实 1.1 的保证。单元格断言两类任务各 30 个请求全部满足这一点。
# - **客户端在任务开始前已拿到响应**：客户端一侧，即那场竞态。这个计数没有任何保证，所以单元格只打印它。

# %%
race = Timeline()
race_app = FastAPI()
race_app.add_middleware(TimelineMiddleware, timeline=race)


async def quick_async_task() -> None:
    await asyncio.sleep(0.001)


def quick_def_task() -> None:
    time.sleep(0.001)


@race_app.get("/race/{kind}/{n}")
async def race_endpoint(kind: str, n: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    task = quick_async_task if kind == "async" else quick_def_task
    background_tasks.add_task(race.track(f"{kind} task {n}", task))
    return {"n": n}


with serve(race_app) as url, httpx.Client(base_url=url) as client:
    for kind in ("async", "def"):
        for n in range(30):
            race.request(client, "GET", f"/race/{kind}/{n}", lane=f"{kind} request {n}")

# %%
for kind in ("async", "def"):
    lanes = [(f"{kind} request {n}", f"{kind} task {n}") for n in range(30)]
    server_first = sum(race.at(req, "response sent") <= race.at(task, "task start") for req, task in lanes)
    client_first = sum(race.at(req, "response received") < race.at(task, "task start") for req, task in lanes)
    print(f"{kind:5} tasks: response sent before the task started in {server_first} of 30;"
          f" client had it before the task started in {client_first} of 30")
    assert server_first == 30

# %% [markdown] translates="77bc11401cb75e5c"
# 两个计数的含义：第一个对两类任务都是 30，正如事实 1.1 所保证的。第二个取决于这次运行的竞态结果，没有任何保证。因此，客户端不能因为拿到了响应，就断定任务还没开始。它能依赖的只有事实 1.1：“我的响应回来了，而那时任务还没结束”。永远不是“我等过任务了”。

# %% [markdown] translates="d26c3509f707286c"
# ## 2. 同一个请求的任务按添加顺序依次运行
#
# 端点收到的对象是 FastAPI 的 `fastapi.background.BackgroundTasks`，它是 Starlette 同名类的子类（第 5 节会检查它的类）。在锁定的 FastAPI 0.163.2 中，它的 `__call__`（`fastapi/background.py`）就是一个普通循环 `for task in self.tasks: await task()`，每次调用都包在 FastAPI 的遥测 `_operation` 里；除非配置了链路追踪，`_operation` 什么也不做。
#
# **事实 2.1**：每个任务都要等前一个任务结束后才开始，顺序与 `add_task` 的调用顺序一致，无论任务是 `def` 还是 `async def`。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


async def async_step() -> None:
    await asyncio.sleep(0.2)


def sync_step() -> None:
    time.sleep(0.2)


@app.post("/three-steps")
def three_steps(background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(timeline.track("step 1 (async def)", async_step))
    background_tasks.add_task(timeline.track("step 2 (def)", sync_step))
    background_tasks.add_task(timeline.track("step 3 (async def)", async_step))
    return {"steps": 3}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/three-steps", lane="request")

steps = ["step 1 (async def)", "step 2 (def)", "step 3 (async def)"]
for earlier, later in zip(steps, steps[1:]):
    gap = timeline.at(later, "task start") - timeline.at(earlier, "task end")
    print(f"{later} started {1000 * gap:.1f} ms after {earlier} ended")
    assert gap >= 0, f"{later} overlapped {earlier}"
assert [e.lane for e in timeline.events if e.what == "task start"] == steps
timeline.plot("one request, three tasks: strictly one after another")

# %% [markdown] translates="cb44fe56a001da08"
# ## 3. 不同请求的任务相互重叠
#
# 每个请求都有自己的任务列表，由它自己的 ASGI 调用来运行；服务器同时处理许多请求，所以它们的任务也同时运行。
#
# **事实 3.1**：同时发送两个请求，各带一个 0.5 s 的任务：每个任务都在另一个结束之前开始，因此两者同时运行，全部完成所需的时间少于两者时长之和（依次运行需要 1 s）。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


@app.post("/report/{name}")
async def report(name: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(timeline.track(f"{name}: build report", asyncio.sleep), 0.5)
    return {"queued": name}


with serve(app) as url:
    async with httpx.AsyncClient(base_url=url) as client:
        await asyncio.gather(
            timeline.arequest(client, "POST", "/report/A", lane="A"),
            timeline.arequest(client, "POST", "/report/B", lane="B"),
        )

a_start, a_end = timeline.at("A: build report", "task start"), timeline.at("A: build report", "task end")
b_start, b_end = timeline.at("B: build report", "task start"), timeline.at("B: build report", "task end")
overlap = min(a_end, b_end) - max(a_start, b_start)
span = max(a_end, b_end) - min(a_start, b_start)
one_after_the_other = (a_end - a_start) + (b_end - b_start)
print(f"the two tasks ran side by side for {overlap:.2f} s; both were done {span:.2f} s after the first began,"
      f" {one_after_the_other - span:.2f} s sooner than one after the other")
# 若依次运行，B 要等 A 结束才开始（或 A 等 B 结束）：完全不会重叠。
assert a_start < b_end and b_start < a_end, "each task started before the other had ended"
assert span < one_after_the_other
timeline.plot("two requests: their tasks overlap")

# %% [markdown] translates="508dd002ca7f3b69"
# ## 4. 任务在哪个线程上运行？
#
# Starlette 的 `BackgroundTask.__call__` 会先看函数的类型：`async def` 函数在事件循环上被 await；其他函数一律交给 `run_in_threadpool`，由它放到 AnyIO 的某个工作线程上运行。
#
# **事实 4.1**：`def` 任务运行在名为 `AnyIO worker thread` 的线程上；`async def` 任务运行在事件循环的线程上，也就是处理请求的那个线程（这里是服务器线程 `uvicorn-<port>`）。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
handled_on: dict[str, str] = {}


def def_task() -> None:
    time.sleep(0.05)


async def async_def_task() -> None:
    await asyncio.sleep(0.05)


@app.post("/threads")
async def threads(background_tasks: BackgroundTasks) -> dict[str, str]:
    handled_on["async def endpoint"] = threading.current_thread().name
    background_tasks.add_task(timeline.track("def task", def_task))
    background_tasks.add_task(timeline.track("async def task", async_def_task))
    return {"ok": "yes"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/threads", lane="request")

def_thread = timeline.find("def task", "task start").thread
async_thread = timeline.find("async def task", "task start").thread
print(f"{'async def endpoint':18} ran on {handled_on['async def endpoint']}")
print(f"{'def task':18} ran on {def_thread}")
print(f"{'async def task':18} ran on {async_thread}")
assert def_thread == "AnyIO worker thread"
assert async_thread == handled_on["async def endpoint"] != def_thread

# %% [markdown] translates="0b17f551a156ff5b"
# 由此可知：`async def` 任务绝不能阻塞（blocking），因为在它阻塞期间，事件循环上的其他代码都无法运行，其他所有请求也在其中。
#
# **事实 4.2**：一个 `async def` 任务用 `time.sleep(0.5)`（一个阻塞调用）休眠时，另一个客户端在任务运行期间发出的 `GET /ping`，要等任务结束后才得到响应。同样的任务写成 `def`，就会在工作线程上运行，任务还在运行时 `/ping` 就已得到响应。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)
task_kind = {"async": "async def", "def": "def"}
ping_lane = {kind: f"/ping, {name} task" for kind, name in task_kind.items()}


async def blocking_async_task() -> None:
    time.sleep(0.5)  # async def 里的阻塞调用：事件循环停摆 0.5 s


def blocking_def_task() -> None:
    time.sleep(0.5)  # 同样的调用放在 def 任务里：只有一个工作线程在等


@app.post("/work/{kind}")
async def start_work(kind: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task = blocking_async_task if kind == "async" else blocking_def_task
    background_tasks.add_task(timeline.track(f"{task_kind[kind]} task", task))
    return {"started": kind}


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"pong": True}


with serve(app) as url, httpx.Client(base_url=url) as client, httpx.Client(base_url=url) as other_client:
    for kind in ("async", "def"):
        client.post(f"/work/{kind}")  # 立即返回；任务随后马上开始
        timeline.request(other_client, "GET", "/ping", lane=ping_lane[kind])

for kind, lane in ping_lane.items():
    answered, task_end = timeline.at(lane, "response sent"), timeline.at(f"{task_kind[kind]} task", "task end")
    when = "after" if answered > task_end else "before"
    print(f"/ping sent while a blocking {task_kind[kind]:9} task ran: answered {abs(answered - task_end):.2f} s"
          f" {when} the task ended")
waits = {kind: timeline.at(lane, "response received") - timeline.at(lane, "request sent")
         for kind, lane in ping_lane.items()}
print(f"/ping waited {waits['async'] / waits['def']:.0f} times as long while the async def task held the loop")
assert timeline.at(ping_lane["async"], "request sent") < timeline.at("async def task", "task end"), (
    "the /ping was sent while the async def task was running"
)
assert timeline.at(ping_lane["async"], "response sent") > timeline.at("async def task", "task end"), (
    "the blocked loop could not answer /ping"
)
assert timeline.at(ping_lane["def"], "response sent") < timeline.at("def task", "task end"), (
    "a def task leaves the loop free"
)

# %% [markdown] translates="69681f8fd9726f3d"
# 第 5 章会进一步测量这一点：线程池（thread pool）的容量上限，以及如何运行阻塞型或 CPU 密集型工作而不拖住服务器。

# %% [markdown] translates="dc44bc68ea0bcfb0"
# ## 5. `BackgroundTasks` 从哪里来
#
# 你从来不用自己创建 `BackgroundTasks`：声明一个该类型的参数就够了。FastAPI 为每个请求创建**一个**对象（在 `fastapi/dependencies/utils.py` 的 `solve_dependencies` 中），并把这同一个对象传给端点，以及每一个声明了它的依赖项，无论嵌套多深。端点返回后，FastAPI 把它挂到响应上（`fastapi/routing.py`），由响应的 `__call__` 来运行它。
#
# **事实 5.1**：在同一个请求内，依赖项、子依赖项和端点看到的是同一个对象；下一个请求会得到一个新对象。同一个请求的任务按添加顺序运行，所以依赖项的任务先于端点的任务运行。
#
# 这个单元格检查的是每个请求自己的顺序，而不是两个请求之间的顺序。这些任务（`ran.append`）是普通函数，Starlette 把它们放到工作线程上运行（第 4 节）；而客户端一拿到请求 1 的响应就发送请求 2，这时请求 1 的任务还没有运行完（第 1 节）：两个请求的任务可能同时运行。

# %%
app = FastAPI()
seen: list[tuple[str, int, int]] = []  # （谁、第几个请求、对象的 id）
ran: list[str] = []
kinds: set[type] = set()  # 端点收到的对象的类


def sub_dependency(request_number: int, background_tasks: BackgroundTasks) -> None:
    seen.append(("sub-dependency", request_number, id(background_tasks)))
    background_tasks.add_task(ran.append, f"sub-dependency task, request {request_number}")


def dependency(
    request_number: int, background_tasks: BackgroundTasks, _: None = Depends(sub_dependency)
) -> None:
    seen.append(("dependency", request_number, id(background_tasks)))
    background_tasks.add_task(ran.append, f"dependency task, request {request_number}")


@app.get("/shared/{request_number}", dependencies=[Depends(dependency)])
def shared(request_number: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    seen.append(("endpoint", request_number, id(background_tasks)))
    kinds.add(type(background_tasks))
    background_tasks.add_task(ran.append, f"endpoint task, request {request_number}")
    return {"tasks": len(background_tasks.tasks)}


with serve(app) as url, httpx.Client(base_url=url) as client:
    first = client.get("/shared/1").json()
    second = client.get("/shared/2").json()

for who, request_number, object_id in seen:
    print(f"request {request_number}: {who:14} got BackgroundTasks object {object_id:#x}")
in_order = {n: [task for task in ran if task.endswith(f"request {n}")] for n in (1, 2)}
for request_number, tasks in in_order.items():
    print(f"request {request_number}'s tasks ran in this order: " + ", ".join(tasks))
(kind,) = kinds
print(f"its class: {kind.__module__}.{kind.__qualname__}, a subclass of {kind.__mro__[1].__module__}.BackgroundTasks")
assert kind is fastapi.background.BackgroundTasks
assert issubclass(kind, starlette.background.BackgroundTasks)
ids = {request_number: {object_id for _, number, object_id in seen if number == request_number} for request_number in (1, 2)}
assert len(ids[1]) == 1 and len(ids[2]) == 1, "one object per request"
assert first == second == {"tasks": 3}
for request_number, tasks in in_order.items():
    assert tasks == [f"{who} task, request {request_number}" for who in ("sub-dependency", "dependency", "endpoint")]

# %% [markdown] translates="bb878de6cd4630fd"
# （两个请求甚至可能显示相同的地址：第一个对象在第二个对象创建之前已被释放，Python 复用了那块内存。关键在于同一个请求内只有一个对象。）

# %% [markdown] translates="b1ff9844a90f0e49"
# ## 6. 掩盖时序的测试：`TestClient` 与 `httpx.ASGITransport`
#
# Starlette 的 `TestClient` 和 httpx 的 `ASGITransport` 不走网络：它们直接调用 ASGI 应用，等应用的协程（coroutine）返回时才返回，而这个协程包含了后台任务。所以用它们写的测试，只能在任务*之后*才看到响应。这很方便（副作用已经发生，可以直接断言），但它永远无法呈现真实客户端看到的时序。
#
# **事实 6.1**：任务耗时 0.5 s 时，真实服务器的响应在任务结束之前就到达客户端；`TestClient` 和 `ASGITransport` 要等任务结束后才返回，因此至少要花掉任务的 0.5 s。

# %%
timeline = Timeline()
app = FastAPI()


@app.post("/slow-task")
async def slow_task(caller: str, background_tasks: BackgroundTasks) -> dict[str, bool]:
    background_tasks.add_task(timeline.track(f"{caller}: task", asyncio.sleep), 0.5)
    return {"accepted": True}


callers = ["real server + httpx.Client", "TestClient", "httpx.ASGITransport"]
with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/slow-task", params={"caller": callers[0]}, lane=callers[0])

with TestClient(app) as test_client:
    timeline.request(test_client, "POST", "/slow-task", params={"caller": callers[1]}, lane=callers[1])

async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as asgi_client:
    await timeline.arequest(asgi_client, "POST", "/slow-task", params={"caller": callers[2]}, lane=callers[2])

returned = {how: timeline.at(how, "response received") for how in callers}
task_end = {how: timeline.at(f"{how}: task", "task end") for how in callers}
waited = {how: returned[how] - timeline.at(how, "request sent") for how in callers}
for how in callers:
    when = "before" if returned[how] < task_end[how] else "after"
    print(f"{how:28} returned {abs(returned[how] - task_end[how]):.2f} s {when} its task ended")
assert returned["real server + httpx.Client"] < task_end["real server + httpx.Client"]
assert returned["TestClient"] >= task_end["TestClient"] and waited["TestClient"] >= 0.5
assert returned["httpx.ASGITransport"] >= task_end["httpx.ASGITransport"] and waited["httpx.ASGITransport"] >= 0.5

# %% [markdown] translates="59651860b5fa44e6"
# 用 `TestClient` 测试任务*做了什么*；用真实服务器（就像 `serve` 那样）测试任务*何时*做。
#
# 关于锁定版本 Starlette（1.10）上的 `TestClient`，还有一点：它基于 `httpx` 的后继者 `httpx2` 构建，没有安装 `httpx2` 时会退回到 `httpx`，同时发出一条警告（`starlette/testclient.py`）。本课程两者都装了，所以你在这里看不到这条警告；你自己的项目如果只装了 `httpx`，就会看到。
#
# **事实 6.2**：在无法导入 `httpx2` 的内核中，导入 `starlette.testclient` 会发出 `StarletteDeprecationWarning`，提示在 `starlette.testclient` 中使用 `httpx` 已被弃用、应改为安装 `httpx2`；之后 `TestClient` 基于 `httpx` 照常工作。（这在一个单独的全新内核中进行，好让本 notebook 保留它的 `httpx2`。）

# %%
with tqdm(total=1, desc="TestClient without httpx2, in a fresh kernel") as progress:
    without_httpx2 = run_in_fresh_kernel(
        """import sys, warnings
sys.modules["httpx2"] = None  # as if it were not installed: importing it raises ModuleNotFoundError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from starlette.testclient import TestClient
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
from fastapi import FastAPI
app = FastAPI()
app.get("/")(lambda: {"ok": True})
with TestClient(app) as client:
    print("TestClient on", type(client).__mro__[1].__module__.split(".")[0], "answered", client.get("/").status_code)
"""
    )
    progress.update()
print(without_httpx2.output.strip())
assert not without_httpx2.error, without_httpx2.error
assert (
    "StarletteDeprecationWarning: Using `httpx` with `starlette.testclient` is deprecated; install `httpx2` instead."
    in without_httpx2.output
)
assert "TestClient on httpx answered 200" in without_httpx2.output

# %% [markdown] translates="9929bd7f886ce3c2"
# ## 7. 任务失败时
#
# 第 2 节的任务循环里没有 `try`：一个任务抛出异常，整个循环就结束了。
#
# **事实 7.1**：三个任务中第二个抛出异常时，第三个永远不会运行。客户端已经拿到了它的 `200`；服务器把回溯（traceback）写进日志，即 uvicorn 在 `uvicorn.error` logger 上记录的 `Exception in ASGI application`；其他请求的任务不受影响。

# %%
app = FastAPI()
done: list[str] = []


def record(name: str) -> None:
    done.append(name)


def fail(name: str) -> None:
    raise ValueError(f"{name} could not reach the mail server")


@app.post("/fragile")
def fragile(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(record, "first")
    background_tasks.add_task(fail, "second")
    background_tasks.add_task(record, "third")
    return {"status": "accepted"}


@app.post("/other")
def other(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(record, "other request's task")
    return {"status": "accepted"}


with capture_logs("uvicorn.error") as records, serve(app) as url:
    fragile_response = httpx.post(f"{url}/fragile")
    other_response = httpx.post(f"{url}/other")

print(f"/fragile answered {fragile_response.status_code} {fragile_response.json()}")
# 每个请求自己的顺序：/other 的任务也在工作线程上运行，可能排在 "first" 之前。
fragile_ran = [name for name in done if name in ("first", "second", "third")]
other_ran = [name for name in done if name not in fragile_ran]
print(f"/fragile's tasks that ran: {fragile_ran}; /other's: {other_ran}")
for log_record in records:
    print(f"uvicorn logged: {log_record.getMessage().strip()!r} with {log_record.exc_info[0].__name__}")
assert fragile_response.status_code == 200 and other_response.status_code == 200
assert fragile_ran == ["first"], "'third' was skipped"
assert other_ran == ["other request's task"], "another request's tasks are not affected"
assert any(r.exc_info and r.exc_info[0] is ValueError for r in records)

# %% [markdown] translates="d631931575239c75"
# 除了日志，谁也不知道这次失败：客户端得到的答复是 “accepted”。第 4 章给出几种补救办法：记录日志后继续执行的包装器、重试（retry）、把相互独立的工作拆成不同的任务；下面的练习（exercise）1.3 会实现其中最简单的一种。
#
# 还有第二个更隐蔽的影响。HTTP/1.1 客户端会保持连接打开，并在下一个请求中复用它。任务抛出异常时，uvicorn 已经无法再发送错误响应（响应已经发出去了），于是它关闭连接。客户端如果恰好在不巧的时刻在这条连接上发送下一个请求，就会得到 `httpx.RemoteProtocolError: Server disconnected without sending a response`，而这个请求与那次失败毫无关系。
#
# **事实 7.2**：某个响应的任务抛出异常后，服务器会关闭连接：在这条连接上发送的下一个请求得不到响应。如果响应的任务都成功了，服务器就保持连接打开，连接上的下一个请求会得到响应。
#
# 为了等第一个请求的任务全部结束后再发送下一个请求，单元格会等待这些任务留下的痕迹：uvicorn 关于这次失败的日志记录（uvicorn 在关闭连接之前写下它），或者成功的任务在 `done` 中留下的条目。

# %%
import http.client
from collections.abc import Callable


def next_request_after(path: str, server_url: str, tasks_over: Callable[[], bool]) -> str:
    """Send one request on a keep-alive connection, wait until its tasks are over, then send a second one on it."""
    host, port = server_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path)
        first = connection.getresponse()
        first.read()
        wait_until(tasks_over, timeout=10, what=f"the end of the tasks of POST {path}")
        try:
            connection.request("POST", "/other")  # 在同一条连接上：http.client 会复用它
            second = connection.getresponse()
            second.read()
        except ConnectionError:  # RemoteDisconnected、连接被重置或管道破裂：服务器已经关闭了连接
            return f"{first.status}, then the next request on the connection got no answer: the server had closed it"
    finally:
        connection.close()
    return f"{first.status}, then the next request on the same connection got {second.status}"


done.clear()
with capture_logs("uvicorn.error") as records, serve(app) as url:
    after_failure = next_request_after("/fragile", url, lambda: bool(records))
    after_success = next_request_after("/other", url, lambda: "other request's task" in done)
print("task raised:    ", after_failure)
print("tasks succeeded:", after_success)
assert after_failure == "200, then the next request on the connection got no answer: the server had closed it"
assert after_success == "200, then the next request on the same connection got 200"

# %% [markdown] translates="952cf4b2728528f2"
# 在测试中，失败反而很显眼：`TestClient` 会在测试里重新抛出任务的异常，除非创建它时传入 `raise_server_exceptions=False`。
#
# 下面的单元格就让异常抛出来。`shows_error(ValueError)`（来自课程的辅助工具）会捕获它预期的错误，显示错误的类型、消息和关键的几行，把完整的回溯（几十个栈帧，穿过 Starlette 和 AnyIO）折叠在下面，然后让 notebook 继续执行：下面的单元格照样运行。

# %%
with shows_error(ValueError) as raised, TestClient(app) as test_client:
    test_client.post("/fragile")
assert str(raised) == "ValueError: second could not reach the mail server"

# %% [markdown] translates="7e3011d9fbab4946"
# 这正是 `fail` 抛出的那个真实的 `ValueError`：它在响应构建完成之后，在测试里被抛出。告诉 `TestClient` 不要重新抛出，同样的调用就会返回客户端收到的那个 `200`：

# %%
with TestClient(app, raise_server_exceptions=False) as test_client:
    quiet = test_client.post("/fragile")
print(quiet.status_code, quiet.json())
assert quiet.status_code == 200

# %% [markdown] translates="956d00907c44538c"
# `httpx.ASGITransport` 的行为相同：它直接调用应用，并重新抛出应用抛出的异常（任务的异常也不例外），除非创建它时传入 `raise_app_exceptions=False`。
#
# **事实 7.3**：通过 `httpx.ASGITransport`，同样的请求会抛出任务的 `ValueError`；传入 `raise_app_exceptions=False` 时，它返回 `200`。


# %%
async def post_fragile_in_process(raise_app_exceptions: bool) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
        return await client.post("/fragile")


with shows_error(ValueError) as raised:
    await post_fragile_in_process(raise_app_exceptions=True)
quiet = await post_fragile_in_process(raise_app_exceptions=False)
print("raise_app_exceptions=False:", quiet.status_code, quiet.json())
assert str(raised) == "ValueError: second could not reach the mail server"
assert quiet.status_code == 200

# %% [markdown] translates="c53efbb6d12d47bf"
# 这些结果取决于 FastAPI 的版本吗？`make versions` 在下列每个 FastAPI 版本上运行了同样的实验（在真实服务器上运行三个任务，其中第二个抛出异常；在 `TestClient` 和 `httpx.ASGITransport` 下运行一个慢任务和一个失败的任务），每个版本都装在独立的环境中，搭配当时的 Starlette 和 uvicorn。
#
# **事实 7.4**：在测量过的全部八个版本上，从 0.103.2（本课程所回应的那篇文章当时针对的版本）到锁定的 0.163.2，结果都与本节一致：客户端拿到了 `200`，第三个任务从未运行，服务器记录了 `ValueError`；`TestClient` 等待任务完成并抛出任务的异常；`httpx.ASGITransport` 会抛出它，除非被告知不要抛出。

# %%
failure_history = version_table("failing_task", "test_client", "asgi_transport")
releases = [stack.name for stack, _ in failure_history.rows]
assert len(releases) == 8 and releases[0] == "FastAPI 0.103.2" and releases[-1] == "FastAPI 0.163.2"
assert len({outcomes for _, outcomes in failure_history.rows}) == 1, "the same on every release measured"
assert failure_history.outcome("FastAPI 0.163.2", "failing_task").startswith("200; the third never runs")
failure_history

# %% [markdown] translates="0052303c8285153d"
# ## 8. 为什么把服务器放在线程里，以及 `nest_asyncio` 能做什么、不能做什么
#
# `uvicorn.run(app)` 无法在 notebook 单元格里运行：它要在单元格所在的线程里启动一个事件循环，而内核的事件循环已经在那里运行了。所以课程的 `serve(app)` 把 uvicorn 放在一个单独的线程上运行，那个线程有它自己的事件循环。
#
# 常被推荐的替代方案 `nest_asyncio.apply()`，能让 `asyncio.run()` 在一个正在运行的事件循环内部启动。这对自己调用 `asyncio.run()` 的第三方代码有帮助，但并不能让 `uvicorn.run()` 正常工作。下面的事实 8.1 到 8.3 逐一证明这些说法。

# %% [markdown] translates="2850757d0a7b51cd"
# 先要知道两件事。Jupyter 内核在主线程中运行着一个事件循环：所以在单元格顶层可以直接写 `await`。而 asyncio 规定每个线程只能有一个正在运行的事件循环。`uvicorn.run(app)` 会在调用它的线程里启动一个新的事件循环，并在这个循环上运行服务器，直到你停止它。
#
# **事实 8.1**：在 notebook 单元格中执行 `uvicorn.run(app)`，会立即失败并抛出 `RuntimeError`。
#
# 错误消息因 Python 版本而异，因为 uvicorn 0.54 有两种启动事件循环的方式（`uvicorn/_compat.py`）。在 Python 3.12 及更高版本上，它调用 `asyncio.run(..., loop_factory=...)`，后者会立即拒绝：`RuntimeError: asyncio.run() cannot be called from a running event loop`。Python 3.11 的 `asyncio.run` 没有 `loop_factory` 参数，所以 uvicorn 在那里改用 `with asyncio.Runner(...) as runner: runner.run(...)`。`Runner` 是一个 `with` 块：它拥有一个新的事件循环，在上面运行协程，并在块结束时关闭这个循环。
#
# 在 3.11 上会先后发生两个错误，最终到达你这里的是第二个：
#
# 1. `Runner.run()` 发现内核的事件循环正在运行，于是拒绝：`RuntimeError: Runner.run() cannot be called from a running event loop`。
# 2. 这个错误离开 `with` 块，触发 `Runner.close()`。关闭时要再运行一次 Runner 的事件循环来收尾，而这一步也失败了：`RuntimeError: Cannot run the event loop while another loop is running`。最终抛出的是这第二个错误。
#
# Python 会把第一个错误保存为第二个错误的 `__context__`（即抛出新异常时正在处理的那个异常）。单元格会把两个都打印出来。

# %% [markdown] translates="a962edc68dc5d9a1"
# 这个证明在一个单独的全新内核中运行，是有原因的。失败的启动会留下一些从未运行过的协程，Python 回收它们时会逐个发出警告（`RuntimeWarning: coroutine 'Server.serve' was never awaited`），而回收发生在什么时候，警告就落在当时恰好在运行的那个单元格里。为了不让这样的零散警告落到你后面的某个单元格里，单元格会主动回收它们（`gc.collect()`），而且是在一个随后就会关闭的内核里。
#
# `bgcourse.run_in_fresh_kernel(code)` 启动这个内核，把 `code` 作为一个单元格在其中运行，然后关闭内核，并报告单元格打印的内容（`.output`）以及它最后抛出的错误（`.error`）。启动内核需要几秒钟；进度条会显示它正在工作。

# %%
import sys

from bgcourse import run_in_fresh_kernel

with tqdm(total=1, desc="uvicorn.run in a fresh kernel") as progress:
    uvicorn_in_a_cell = run_in_fresh_kernel(
        """import gc, warnings, uvicorn
from fastapi import FastAPI
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        uvicorn.run(FastAPI(), host="127.0.0.1", port=0, log_config=None)
    except RuntimeError as error:
        print(f"{type(error).__name__}: {error}")
        if error.__context__ is not None:  # Python 3.11: the error that came first
            print(f"  raised while handling {type(error.__context__).__name__}: {error.__context__}")
    gc.collect()  # collect what the failed start left behind, so its warnings show here
for warning in caught:
    print(f"{warning.category.__name__}: {warning.message}")
"""
    )
    progress.update()
print(uvicorn_in_a_cell.output)
assert "coroutine 'Server.serve' was never awaited" in uvicorn_in_a_cell.output
if sys.version_info < (3, 12):
    assert uvicorn_in_a_cell.output.startswith(
        "RuntimeError: Cannot run the event loop while another loop is running\n"
        "  raised while handling RuntimeError: Runner.run() cannot be called from a running event loop\n"
    )
else:
    assert uvicorn_in_a_cell.output.startswith("RuntimeError: asyncio.run() cannot be called from a running event loop\n")

# %% [markdown] translates="3da7752d23fe9074"
# 这就是 `serve(app)` 通过把服务器放在单独的线程上所避免的失败。
#
# 接下来看 `nest_asyncio`。`nest_asyncio.apply()` 给 `asyncio.run` 和事件循环类打补丁，让正在运行的事件循环可以被重入：此后 `asyncio.run()` 会在已经运行的事件循环上运行它的协程，而不是拒绝。这对在运行中的事件循环内部调用 `asyncio.run()` 的代码有帮助，比如某个库为其异步 API 提供的同步包装。这个补丁一直有效，直到内核退出，所以这些证明也都在全新内核中运行。
#
# **事实 8.2**：在 notebook 中，`asyncio.run(...)` 会失败；执行 `nest_asyncio.apply()` 之后它就能工作。

# %%
fresh_kernel_code = {
    "no patch": "import asyncio\nasyncio.run(asyncio.sleep(0))",
    "patched": "import asyncio, nest_asyncio\nnest_asyncio.apply()\nprint(asyncio.run(asyncio.sleep(0, 'it ran')))",
}
runs = {name: run_in_fresh_kernel(code) for name, code in tqdm(fresh_kernel_code.items(), desc="fresh kernels")}
without_patch, with_patch = runs["no patch"], runs["patched"]
print("asyncio.run, no patch:  ", without_patch.error)
print("asyncio.run, patched:   ", with_patch.output.strip())
assert "cannot be called from a running event loop" in without_patch.error
assert with_patch.output.strip() == "it ran" and not with_patch.error

# %% [markdown] translates="ba2422d265cdcd61"
# **事实 8.3**：无论在导入 uvicorn 之前还是之后应用 `nest_asyncio`，它都不能让 `uvicorn.run()` 在单元格里正常工作。原因取决于 Python 版本：
#
# - 在 3.11 上，uvicorn 用 `asyncio.Runner` 启动事件循环，而 `nest_asyncio` 并不给它打补丁：两种顺序下都是 `RuntimeError: Runner.run() cannot be called from a running event loop`。这一次你看到的就是这个错误，而不是来自 `Runner.close()` 的错误：打过补丁的事件循环类允许 `close()` 在正在运行的循环内部运行 Runner 的循环，所以第一个错误不会被替换掉。
# - 在 3.12 和 3.13 上，uvicorn 调用的是它被导入时找到的那个 `asyncio.run`。如果在 `apply()` 之前导入，那就是原版，它拒绝在运行中的事件循环内运行（`RuntimeError: asyncio.run() cannot be called from a running event loop`）。如果在之后导入，那就是 `nest_asyncio` 的替代版本，它没有 `loop_factory` 参数（`TypeError: ... got an unexpected keyword argument 'loop_factory'`）。
#
# 单元格会打印你所用的 Python 上的实际结果。

# %%
run_uvicorn = "from fastapi import FastAPI\nuvicorn.run(FastAPI(), host='127.0.0.1', port=0)"
orders = {
    "uvicorn imported, then apply()": "import uvicorn, nest_asyncio\nnest_asyncio.apply()\n" + run_uvicorn,
    "apply(), then uvicorn imported": "import nest_asyncio\nnest_asyncio.apply()\nimport uvicorn\n" + run_uvicorn,
}
outcomes = {order: run_in_fresh_kernel(code, timeout=30) for order, code in tqdm(orders.items(), desc="fresh kernels")}
for order, outcome in outcomes.items():
    print(f"{order}: {outcome.error}")
    assert outcome.error.startswith(("RuntimeError", "TypeError")), outcome
if sys.version_info < (3, 12):
    for outcome in outcomes.values():
        assert outcome.error == "RuntimeError: Runner.run() cannot be called from a running event loop", outcome
else:
    imported_first, applied_first = outcomes.values()
    assert imported_first.error == "RuntimeError: asyncio.run() cannot be called from a running event loop"
    assert applied_first.error.startswith("TypeError")
    assert "unexpected keyword argument 'loop_factory'" in applied_first.error

# %% [markdown] translates="7d7459d8d770877b"
# 在 notebook 里：你自己的异步代码，优先在单元格顶层直接 `await`；服务器放在单独的线程上运行；`nest_asyncio` 只留给那些坚持自己调用 `asyncio.run()` 的第三方代码。第 6 章会再次讨论这些错误。

# %% [markdown] translates="328e36f7d561a0d6"
# ## 9. 检验常见的说法
#
# 许多教程用几条说法来描述后台任务。下面把每一条与上面各单元格在锁定版本上的结果逐一对照。
#
# | 说法 | 结论 | 证明 |
# |---|---|---|
# | 任务在响应发送之后运行 | 正确：服务器在任务开始之前发完响应 | 第 1 节 |
# | 任务按添加顺序运行 | 正确，而且严格依次执行 | 第 2 节 |
# | `BackgroundTasks` 通过依赖注入（dependency injection）获得 | 正确：每个请求一个对象，与依赖项共享 | 第 5 节 |
# | 任务在整个应用的“后台”运行 | 部分正确：不同请求的任务相互重叠，但一个阻塞的 `async def` 任务会拖住所有请求 | 第 3、4 节 |
# | “一个任务失败不会影响其他任务” | 对同一个请求而言**错误**：后面的任务会被跳过。对其他请求而言正确。 | 第 7 节 |
# | 你能在测试中看到时序 | 用 `TestClient`/`ASGITransport` 时**错误**：它们会等待任务完成 | 第 6 节 |

# %% [markdown] translates="a147736b25f413e5"
# ## 练习
#
# 每道练习都有一个供你作答的代码单元格，以及一个用真实服务器检查答案的单元格。参考答案在 `solutions/ch01_core_mechanics/` 中；先自己尝试，再对照。
#
# ### 练习 1.1：立即受理，稍后发送回执
#
# 编写一个应用，提供 `POST /orders`：立即以 `202 Accepted` 响应，响应体为 `{"order_id": <a new id string>, "status": "accepted"}`；然后在一个后台任务中等待 0.2 s（模拟慢速邮件服务器），再把订单 id 追加到列表 `receipts` 中。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import asyncio
import uuid

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()
receipts: list[str] = []


async def send_receipt(order_id: str) -> None:
    await asyncio.sleep(0.2)  # 慢速邮件服务器
    receipts.append(order_id)


@app.post("/orders", status_code=status.HTTP_202_ACCEPTED)
async def place_order(background_tasks: BackgroundTasks) -> dict[str, str]:
    order_id = uuid.uuid4().hex
    background_tasks.add_task(send_receipt, order_id)
    return {"order_id": order_id, "status": "accepted"}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch01_core_mechanics as checks

checks.ex01(app, receipts)

# %% [markdown] translates="3ccb321051298482"
# ### 练习 1.2：审计依赖项
#
# 编写一个应用，提供 `GET /items/{item_id}`（`item_id` 为 `int`），返回 `{"item_id": item_id}`。依赖项 `audit` 添加一个任务，把 `"<METHOD> <path>"`（例如 `"GET /items/7"`）追加到 `audit_log`；端点添加一个任务，追加 `"cache <item_id>"`。哪个先运行？

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import BackgroundTasks, Depends, FastAPI, Request

app = FastAPI()
audit_log: list[str] = []


def audit(request: Request, background_tasks: BackgroundTasks) -> None:
    background_tasks.add_task(audit_log.append, f"{request.method} {request.url.path}")


@app.get("/items/{item_id}", dependencies=[Depends(audit)])
def read_item(item_id: int, background_tasks: BackgroundTasks) -> dict[str, int]:
    background_tasks.add_task(audit_log.append, f"cache {item_id}")
    return {"item_id": item_id}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex02(app, audit_log)

# %% [markdown] translates="ef4ffdcd0cb6fde4"
# ### 练习 1.3：失败后继续执行
#
# 编写 `keep_going(func)`：它返回一个包装任务函数的包装器。包装器调用该函数；如果函数抛出异常，就在名为 `"tasks"` 的 logger 上记录这次失败及其回溯（使用 `logger.exception`，并在消息中写明函数名），然后返回 `None`，让该请求后面的任务照样运行。保持函数的种类：`async def` 函数要得到 `async def` 包装器（在事件循环上被 await），`def` 函数要得到 `def` 包装器（在线程中运行）。用 `functools.wraps` 保留函数名。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("tasks")


def keep_going(func: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception:
                logger.exception("background task %s failed", func.__name__)
                return None

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            logger.exception("background task %s failed", func.__name__)
            return None

    return wrapper
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
checks.ex03(keep_going)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验
#
# 每道题会在一个单元格中显示；在它下面的单元格里作答；再下一个单元格会告诉你是否答对。答对了会附上解释；答错了会给出提示，但不会泄露答案（如果你更想直接读解释，`quiz.explain("q01")` 随时可以显示 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch01_core_mechanics")
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
def schedule(background_tasks, log):
    background_tasks.add_task(log.append, "first")
    background_tasks.add_task(log.append, "second")
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", schedule)

# %% [markdown] translates="65cbc0d851193b8a"
# ## 小结
#
# - 后台任务在同一个进程中、在服务器发完整个响应之后运行：客户端永远不必等它（第 1 节）。
# - 同一个请求的任务严格按添加顺序依次运行；不同请求的任务同时运行（第 2、3 节）。
# - `def` 任务运行在 AnyIO 的工作线程上；`async def` 任务运行在事件循环上，绝不能阻塞它（第 4 节）。
# - 在任何需要的地方声明 `background_tasks: BackgroundTasks` 即可：端点和它的依赖项在每个请求中共享同一个对象（第 5 节）。
# - `TestClient` 和 `ASGITransport` 在任务完成之后才返回：适合测试任务做了什么，却看不出任务何时做（第 6 节）。
# - 抛出异常的任务会让该请求后面的任务被跳过，而且只在服务器日志里留下记录（第 7 节）。
# - 在 notebook 中，把服务器放在单独的线程上运行；`nest_asyncio` 能让 `asyncio.run` 嵌套运行，但不能让 `uvicorn.run` 在单元格里工作（第 8 节）。
#
# 下一章：第 2 章构建一个发送真实欢迎邮件的注册端点。
