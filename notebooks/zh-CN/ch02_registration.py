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

# %% [markdown] translates="0eac2963519593e7"
# # 第 2 章：生产环境示例：用户注册与欢迎邮件
#
# 第 1 章讲了后台任务（background task）何时、在哪里、以什么顺序运行。本章把它们用在最经典的场景里：用户注册，API 立即返回，欢迎邮件在响应（response）之后发出。一切都是真实的：uvicorn 服务器、SMTP 服务器、真实的密码哈希，以及可以直接在 notebook 里阅读的真实邮件。请从上到下运行各个单元格；每条事实陈述后面都跟着一个证明单元格（proof cell）。
#
# **你将学到**
#
# - 在 notebook 里运行一个真实的 SMTP 服务器，并读取它收到的邮件；
# - 构建 `POST /register` 端点（endpoint）：带 `EmailStr` 的 Pydantic 模型、`201 Created`，以及一个绝不返回密码的响应模型；
# - 存储密码的哈希（argon2，通过 `pwdlib`），而不是密码本身；
# - 在后台任务中用 `aiosmtplib` 发送欢迎邮件，以及为什么阻塞（blocking）的 `smtplib` 只能放在 `def` 任务里，绝不能放进 `async def` 任务；
# - 针对错误输入返回的 `422` 说明了什么，以及何时该返回 `409 Conflict`；
# - 邮件服务器宕机或变慢时会发生什么（客户端照样拿到它的 `201`），以及如何让任务记录日志、设置超时（timeout）并重试（retry）。

# %% [markdown] translates="bf7beaa764a64a98"
# ## 0. 准备：版本与课程的辅助工具
#
# 下面的单元格打印本章验证时所用的版本；如果你的版本不同，它会指出来。

# %%
import asyncio
import inspect
import json
import logging
import platform
import smtplib
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from email.message import EmailMessage
from importlib.metadata import version
from typing import Annotated, Any

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "pydantic": "2.14.4",
    "email-validator": "2.4.0",
    "pwdlib": "0.3.1",
    "argon2-cffi": "25.1.0",
    "aiosmtpd": "1.4.6",
    "aiosmtplib": "5.1.3",
    "tenacity": "9.2.1",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:16} {installed}{note}")
print(f"{'python':16} {platform.python_version()}")

# %% [markdown] translates="4782379d7fba2353"
# 除了第 1 章的 `serve(app)`、`Timeline` 和 `capture_logs`，本章还用到 `smtp_server()`：一个 `with` 块，在单独的线程里运行一个真实的 SMTP 服务器（aiosmtpd 提供），监听 `127.0.0.1` 上的一个空闲端口。它给你一个对象，其中有服务器的 `host` 和 `port`、它收到的 `messages`（由 Python 的 `email` 包解析），以及 `wait_for(count)`：一直等到收到这么多封邮件为止。`smtp_server(delay=0.5)` 让服务器在向每个客户端发出问候语之前先等半秒（一个慢速服务器）；`smtp_server(refuse=2)` 以 `421 Service not available` 拒绝接下来的两个客户端（一个暂时不收邮件的服务器）。

# %%
import aiosmtplib
import email_validator
import httpx
from fastapi import BackgroundTasks, FastAPI, HTTPException, status
from pwdlib import PasswordHash
from pydantic import BaseModel, EmailStr, Field, SecretStr, ValidationError
from tenacity import before_sleep_log, retry, retry_if_exception, retry_if_exception_type, stop_after_attempt, wait_exponential
from tqdm.auto import tqdm

from bgcourse import RaceWindow, Timeline, TimelineMiddleware, capture_logs, load_quiz, serve, smtp_server

# %% [markdown] translates="49937e9178dea399"
# ## 1. notebook 里的真实邮件服务器
#
# **事实 1.1**：`smtp_server()` 说的是真正的 SMTP：标准库的 `smtplib` 连接上去，收到 `220` 问候语，发送一封邮件，服务器收到了它。`with` 块结束时，服务器线程已经结束，它的端口会拒绝连接。

# %%
note = EmailMessage()
note["From"] = "course@example.com"
note["To"] = "ada@example.com"
note["Subject"] = "Is anybody there?"
note.set_content("A first message, sent with smtplib.")

with smtp_server() as mail:
    smtp = smtplib.SMTP(timeout=5)
    code, banner = smtp.connect(mail.host, mail.port)
    refused = smtp.send_message(note)
    smtp.quit()
    received = mail.wait_for(1)
    address, thread_name = (mail.host, mail.port), f"smtp-{mail.port}"

try:
    socket.create_connection(address, timeout=2).close()
    afterwards = "a server still answers"
except ConnectionRefusedError:
    afterwards = "connection refused"
threads_left = [thread.name for thread in threading.enumerate() if thread.name == thread_name]

print(f"the server greeted smtplib with: {code} {banner.decode()}")
print(f"recipients it refused: {refused or 'none'}; messages it received: {len(received)}")
print(f"the message: {received[0]['Subject']!r} for {received[0]['To']}")
print(f"after the block: connecting to the port gives '{afterwards}'; server threads left: {threads_left}")
assert code == 220 and refused == {} and len(received) == 1
assert received[0]["Subject"] == "Is anybody there?"
assert afterwards == "connection refused" and threads_left == []

# %% [markdown] translates="127c5779813da6f2"
# ## 2. 欢迎邮件
#
# 邮件用 Python 的 `email` 包构建，用 `aiosmtplib` 发送。`aiosmtplib` 是面向 asyncio 的 SMTP 客户端：`await aiosmtplib.send(...)` 负责建立连接、完成整个 SMTP 交互并把邮件交出去；在它等待服务器的时候，事件循环（event loop）可以去做别的工作（第 4 节会测量这一点）。邮件服务器的地址来自一个小小的配置对象；真实的应用会从环境中读取它。

# %%
@dataclass
class MailSettings:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "Example <welcome@example.com>"


mail_settings = MailSettings()


def welcome_message(address: str, username: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail_settings.sender
    message["To"] = address
    message["Subject"] = f"Welcome to Example, {username}!"
    message.set_content(f"Hello {username},\n\nyour account is ready. Sign in with your username and password.\n")
    return message


async def send_welcome_email(address: str, username: str) -> None:
    """The background task: one SMTP exchange, on the event loop."""
    await aiosmtplib.send(welcome_message(address, username), hostname=mail_settings.host, port=mail_settings.port)


# %% [markdown] translates="5b735bc7a2da4c83"
# **事实 2.1**：在单元格里 await `send_welcome_email`，会投递一封真实的邮件；下面就是邮件服务器收到的样子，包括邮件头和正文。

# %%
with smtp_server() as mail:
    mail_settings.port = mail.port
    await send_welcome_email("ada@example.com", "ada")
    (welcome,) = mail.wait_for(1)

print(welcome.as_string())
assert welcome["To"] == "ada@example.com" and welcome["From"] == "Example <welcome@example.com>"
assert welcome["Subject"] == "Welcome to Example, ada!"
assert welcome.get_content().startswith("Hello ada,")

# %% [markdown] translates="f19d4126a68666d3"
# ## 3. 注册端点
#
# 三个模型，三种职责：
#
# - `Registration` 是客户端在请求（request）中发来的内容。Pydantic 在端点运行之前就检查它：用户名为 3 到 20 个小写字母、数字或下划线；一个电子邮件地址（`EmailStr` 交给 `email-validator` 包校验）；以及至少 8 个字符的密码。密码是 `SecretStr`，所以打印模型或把它写进日志时，显示的是 `**********`。
# - `UserOut` 是 API 返回的内容。把它声明为端点的 `response_model`，它就会过滤响应：无论端点返回什么，离开服务器的只有 `username` 和 `email`。
# - `StoredUser` 是应用保存的内容：密码的哈希，而不是密码本身。
#
# 哈希由 `pwdlib` 计算：`PasswordHash.recommended()` 用 argon2id 做哈希，这是一个刻意设计得很慢、而且需要大量内存的函数；`verify()` 用哈希校验密码。目前用户存放在一个字典里（第 3 章会引入数据库）；`create_app()` 每次都创建一个带空字典的新应用，所以每个实验都从头开始。（它的 `users` 和 `users_lock` 参数是给事实 5.4 用的：那里要观察“检查后插入”的过程，并把锁拿掉。）

# %%
class Registration(BaseModel):
    username: Annotated[str, Field(min_length=3, max_length=20, pattern=r"^[a-z0-9_]+$")]
    email: EmailStr
    password: Annotated[SecretStr, Field(min_length=8)]


class UserOut(BaseModel):
    username: str
    email: EmailStr


@dataclass
class StoredUser:
    username: str
    email: str
    password_hash: str


password_hash = PasswordHash.recommended()


def create_app(
    send_welcome: Callable[[str, str], Any] = send_welcome_email,
    *,
    users: dict[str, StoredUser] | None = None,
    users_lock: AbstractContextManager[Any] | None = None,
) -> FastAPI:
    app = FastAPI()
    users = {} if users is None else users
    users_lock = threading.Lock() if users_lock is None else users_lock
    app.state.users = users

    @app.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
    def register(registration: Registration, background_tasks: BackgroundTasks) -> StoredUser:
        hashed = password_hash.hash(registration.password.get_secret_value())
        with users_lock:  # 检查与插入作为一步完成：两个请求可能争抢同一个用户名（事实 5.4）
            if registration.username in users:
                raise HTTPException(status.HTTP_409_CONFLICT, f"the username {registration.username!r} is taken")
            user = users[registration.username] = StoredUser(registration.username, registration.email, hashed)
        background_tasks.add_task(send_welcome, user.email, user.username)
        return user

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


# %% [markdown] translates="17852386d808ecb2"
# **事实 3.1**：`POST /register` 返回 `201 Created`，只带用户名和电子邮件地址。密码既不在响应里，也不在存储的记录里；记录里保存的是 argon2id 哈希，它能验证正确的密码，拒绝错误的密码。

# %%
ADA = {"username": "ada", "email": "ada@example.com", "password": "correct horse battery staple"}

app = create_app()
with smtp_server() as mail:
    mail_settings.port = mail.port
    # timeout=60：每次注册都要计算一次密码哈希（argon2id），在繁忙的机器上要花好几秒
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/register", json=ADA)

stored = app.state.users["ada"]
right = password_hash.verify(ADA["password"], stored.password_hash)
wrong = password_hash.verify("correct horse battery", stored.password_hash)
print(f"{response.status_code} {response.json()}")
print(f"the stored record holds: {sorted(vars(stored))}")
print(f"its hash begins with {stored.password_hash[:31]!r}")
print(f"the password is in the answer: {ADA['password'] in response.text}; in the record: {ADA['password'] in repr(stored)}")
print(f"verify(right password): {right}; verify(wrong password): {wrong}")
assert response.status_code == 201 and response.json() == {"username": "ada", "email": "ada@example.com"}
assert stored.password_hash.startswith("$argon2id$")
assert ADA["password"] not in response.text and ADA["password"] not in repr(stored)
assert right and not wrong

# %% [markdown] translates="3274113e3624099a"
# 哈希运算故意做得很慢，好让猜密码的代价变得高昂。这就是 `register` 写成普通 `def` 的原因：FastAPI 在工作线程（worker thread）上运行 `def` 端点，就像 Starlette 对待 `def` 任务一样。如果写成 `async def`，同样的哈希就会在事件循环上运行，其他每个请求都得等它。
#
# **事实 3.2**：一次 argon2id 哈希就要花上零点几秒，足以察觉。同时发送三个注册请求，并在第一个哈希开始后立即发送一个健康检查。如果哈希在 `def` 端点里运行，健康检查会在哈希仍在运行时得到响应。如果哈希在 `async def` 端点里运行，服务器要等到健康检查发出时正在运行的那个哈希结束之后，才会去读取这个健康检查，甚至可能等得更久：比它先到达事件循环的注册请求会先依次做完哈希。哈希在事件循环上运行期间，事件循环对什么都不作响应。

# %%
started = time.perf_counter()
password_hash.hash("correct horse battery staple")
hash_seconds = time.perf_counter() - started

timeline = Timeline()
hash_app = FastAPI()
hash_app.add_middleware(TimelineMiddleware, timeline=timeline)
first_hash_began = threading.Event()


def hash_a_password(lane: str) -> None:
    """Hash a password, noting on the timeline when the hash began and ended."""
    timeline.record(lane, "hash start")
    first_hash_began.set()
    password_hash.hash("correct horse battery staple")
    timeline.record(lane, "hash end")


@hash_app.post("/hash-in-def/{n}")
def hash_in_def(n: int) -> dict[str, bool]:
    hash_a_password(f"def hash {n}")
    return {"hashed": True}


@hash_app.post("/hash-in-async-def/{n}")
async def hash_in_async_def(n: int) -> dict[str, bool]:
    hash_a_password(f"async def hash {n}")  # 运行期间阻塞事件循环
    return {"hashed": True}


@hash_app.get("/health")
async def hash_app_health() -> dict[str, str]:
    return {"status": "ok"}


async def health_check_during(client: httpx.AsyncClient, kind: str) -> None:
    """Send three registrations at once and, as soon as the first hash has begun, a health check."""
    first_hash_began.clear()

    async def health_check() -> None:
        # 等待这个事件（在线程里等，好让本事件循环继续发送请求），而不是等一个猜测的时长。
        assert await asyncio.to_thread(first_hash_began.wait, 30), "no hash began within 30 s"
        await timeline.arequest(client, "GET", "/health", lane=f"health, {kind}")

    path = "/hash-in-def" if kind == "def" else "/hash-in-async-def"
    await asyncio.gather(*(client.post(f"{path}/{n}") for n in range(3)), health_check())


with serve(hash_app) as url:
    # 最后一个注册要依次等三次哈希：在繁忙的机器上会超过 httpx 默认的 5 s。
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await health_check_during(client, "def")
        await health_check_during(client, "async def")


def hash_spans(kind: str) -> list[tuple[float, float]]:
    """When each of the three hashes of `kind` began and ended."""
    lanes = [f"{kind} hash {n}" for n in range(3)]
    return [(timeline.at(lane, "hash start"), timeline.at(lane, "hash end")) for lane in lanes]


def health(kind: str, what: str) -> float:
    return timeline.at(f"health, {kind}", what)


# def：有一个哈希在健康检查到达之前开始，在它得到响应之后才结束。
def_hashes_around_it = [
    (start, end)
    for start, end in hash_spans("def")
    if start < health("def", "request received") and health("def", "response sent") < end
]
# async def：健康检查发出时正在运行的那个哈希；事件循环在它结束之后才处理健康检查。
running_when_sent = [
    (start, end) for start, end in hash_spans("async def") if start < health("async def", "request sent") < end
]
assert running_when_sent, "the health check was sent while an async def endpoint was hashing"
async_hash_when_sent = running_when_sent[0]
waited = {kind: health(kind, "response received") - health(kind, "request sent") for kind in ("def", "async def")}
last_def_hash_end = max(end for _, end in hash_spans("def"))
print(f"one argon2id hash took {hash_seconds:.2f} s")
print(f"def endpoint:       the health check was answered {last_def_hash_end - health('def', 'response sent'):.2f} s"
      " before the last hash ended")
print(f"async def endpoint: the health check arrived while a hash ran; the server read it only"
      f" {health('async def', 'request received') - async_hash_when_sent[1]:.2f} s after that hash ended")
print(f"the health check waited {waited['async def'] / waited['def']:.1f} times as long with the async def endpoint")
assert hash_seconds > 0.02
assert def_hashes_around_it, "a def endpoint hashes on a worker thread: the loop answers while a hash runs"
assert health("async def", "request received") > async_hash_when_sent[1], "the hash held the event loop"

# %% [markdown] translates="60a65de303240918"
# 现在来看邮件。端点只是*添加*任务；Starlette 在响应之后运行它。
#
# **事实 3.3**：邮件服务器需要 0.5 s 才发出问候语时，客户端在欢迎邮件投递之前就拿到了它的 `201`；客户端拿到响应的时候，邮件服务器还什么都没收到。

# %%
timeline = Timeline()
app = create_app(timeline.track("welcome e-mail", send_welcome_email))
app.add_middleware(TimelineMiddleware, timeline=timeline)

with smtp_server(delay=0.5) as mail:
    mail_settings.port = mail.port
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = timeline.request(client, "POST", "/register", json=ADA, lane="POST /register")
        messages_when_answered = len(mail.messages)
    messages_after_the_task = len(mail.messages)

answered = timeline.at("POST /register", "response received")
delivered = timeline.at("welcome e-mail", "task end")
print(f"{response.status_code} {response.json()}")
print(f"messages at the mail server when the client had its answer: {messages_when_answered}")
print(f"messages once the task had run: {messages_after_the_task}")
print(f"the e-mail was delivered {delivered - answered:.1f} s after the client had its answer")
assert response.status_code == 201
assert messages_when_answered == 0 and messages_after_the_task == 1
assert answered < delivered
timeline.plot("POST /register: the 201 first, the welcome e-mail after")

# %% [markdown] translates="a54aec2bd4b4193c"
# 蓝色条是请求，大部分时间花在密码哈希上；它下边缘的紫色三角形标出服务器发出 `201` 的时刻。橙色条是邮件任务：它在响应离开时开始，运行在事件循环的线程（`uvicorn-<port>`）上，大约有半秒时间在等待慢速邮件服务器发出问候语。

# %% [markdown] translates="65cebf7d786d5bad"
# ## 4. 阻塞的邮件客户端不能放在 `async def` 任务里
#
# 标准库的客户端 `smtplib` 是阻塞的：它等待邮件服务器时，调用它的线程什么也做不了。在 `def` 任务中，这个线程是工作线程，事件循环照常运转。在 `async def` 任务中，它就是事件循环自己的线程，所有请求都得等着。
#
# **事实 4.1**：邮件服务器需要 0.5 s 才发出问候语时，看欢迎邮件发送途中发出的健康检查：如果任务在 `async def` 中使用 `aiosmtplib`，或在 `def` 中使用 `smtplib`，健康检查会在邮件任务结束之前得到响应；如果任务在 `async def` 中使用 `smtplib`，健康检查要等任务结束之后才得到响应。三种写法都能投递邮件。

# %%
def send_welcome_email_with_smtplib(address: str, username: str) -> None:
    """Right: a def task runs on a worker thread, so only that thread waits."""
    with smtplib.SMTP(mail_settings.host, mail_settings.port) as smtp:
        smtp.send_message(welcome_message(address, username))


async def send_welcome_email_with_smtplib_on_the_loop(address: str, username: str) -> None:
    """Wrong: the same blocking calls inside async def hold the event loop."""
    with smtplib.SMTP(mail_settings.host, mail_settings.port) as smtp:
        smtp.send_message(welcome_message(address, username))


variants = {
    "aiosmtplib in async def": send_welcome_email,
    "smtplib in def": send_welcome_email_with_smtplib,
    "smtplib in async def": send_welcome_email_with_smtplib_on_the_loop,
}
timeline = Timeline()
delivered_count: dict[str, int] = {}
for name, task in tqdm(variants.items(), desc="a mail server and an app for each task"):
    app = create_app(timeline.track(f"{name}: e-mail", task))
    app.add_middleware(TimelineMiddleware, timeline=timeline)
    with smtp_server(delay=0.5) as mail:
        mail_settings.port = mail.port
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client, httpx.Client(base_url=url, timeout=60) as other_client:
            client.post("/register", json=ADA)  # 立即得到响应；任务随后马上开始
            timeline.request(other_client, "GET", "/health", lane=f"{name}: health")  # 另一个客户端
        delivered_count[name] = len(mail.messages)

health_answered = {name: timeline.at(f"{name}: health", "response sent") for name in variants}
task_ended = {name: timeline.at(f"{name}: e-mail", "task end") for name in variants}
for name in variants:
    when = "before" if health_answered[name] < task_ended[name] else "after"
    print(f"{name:24} health check answered {abs(health_answered[name] - task_ended[name]):.2f} s {when} the"
          f" e-mail task ended; e-mails delivered: {delivered_count[name]}")
assert all(count == 1 for count in delivered_count.values())
assert all(timeline.at(f"{name}: health", "request sent") < task_ended[name] for name in variants), (
    "each health check was sent while the e-mail task ran"
)
assert health_answered["aiosmtplib in async def"] < task_ended["aiosmtplib in async def"]
assert health_answered["smtplib in def"] < task_ended["smtplib in def"]
assert health_answered["smtplib in async def"] > task_ended["smtplib in async def"], (
    "the blocked event loop could not answer"
)

# %% [markdown] translates="53a502ac03d0999c"
# 结论：在 `async def` 任务里用 `aiosmtplib`（或任何异步客户端），或者在 `def` 任务里用阻塞客户端。绝不要在 `async def` 任务里做阻塞调用。

# %% [markdown] translates="e27cb367eb7f1a7f"
# ## 5. 错误输入：`422`，以及用户名被占用时的 `409`
#
# FastAPI 在 `register` 运行之前，先按 `Registration` 校验请求体。校验失败时，客户端得到 `422 Unprocessable Content` 和一个错误列表，什么都不会被存储或发送。每个错误包含：
#
# - `type`：所违反规则的机器可读名称（`missing`、`string_too_long`……），客户端应当判断的正是它；
# - `loc`：出错的位置：`["body", "email"]` 表示 JSON 请求体中的 `email` 字段；
# - `msg`：给人看的一句说明；
# - `input`：未通过校验的值（对缺失的字段而言：缺少该字段的那个对象）；
# - `ctx`（部分规则才有）：规则的参数，比如 `max_length`。
#
# **事实 5.1**：无效的电子邮件地址、缺失的字段、过长的用户名、该传字符串却传了数字，这几种情况各得到一个 `422`，其中只有一个错误，指明字段和规则；什么都不会被存储，也不会发送邮件。电子邮件错误的 `msg` 以 `email-validator` 自己对该地址的说法结尾（“It should have a period”），它的 `type` 是通用的 `value_error`。

# %%
bad_bodies = {
    "invalid e-mail": {**ADA, "email": "ada@example"},
    "missing field": {"username": "ada", "password": ADA["password"]},
    "over-long username": {**ADA, "username": "a" * 21},
    "wrong type": {**ADA, "username": 42},
}
app = create_app()
with smtp_server() as mail:
    mail_settings.port = mail.port
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        answers = {case: client.post("/register", json=body) for case, body in bad_bodies.items()}
    sent = len(mail.messages)

for case, answer in answers.items():
    (error,) = answer.json()["detail"]
    print(f"{case:18} {answer.status_code}  type={error['type']:16} loc={error['loc']}  msg={error['msg']!r}")
print(f"users stored: {len(app.state.users)}; e-mails sent: {sent}")
print("\nThe whole answer to the invalid e-mail address:")
print(json.dumps(answers["invalid e-mail"].json(), indent=2))
assert all(answer.status_code == 422 for answer in answers.values())
assert [answer.json()["detail"][0]["type"] for answer in answers.values()] == [
    "value_error",
    "missing",
    "string_too_long",
    "string_type",
]
assert all(answer.json()["detail"][0]["loc"][0] == "body" for answer in answers.values())
assert app.state.users == {} and sent == 0
try:
    email_validator.validate_email("ada@example", check_deliverability=False)
except email_validator.EmailNotValidError as error:
    validator_says = str(error)
print(f"\nemail-validator itself says about 'ada@example': {validator_says!r}")
assert answers["invalid e-mail"].json()["detail"][0]["msg"].endswith(validator_says)
assert "It should have a period" in validator_says

# %% [markdown] translates="151e4efe5624f6d5"
# 由于电子邮件错误的 `type` 是通用的 `value_error`，想区分电子邮件错误的客户端要看 `loc`。
#
# 注意 `input` 字段：`422` 会把客户端发来的内容原样复述一遍。对发送它的客户端来说，这无害。对你的日志来说则不然。
#
# **事实 5.2**：缺少字段时，`input` 装着整个请求体，密码也在其中；密码太短时，`input` 就是密码本身。`SecretStr` 在这里帮不上忙。Pydantic 确实会先创建 `SecretStr`，再在校验之后对它检查长度规则（所以短密码的消息说的是 “items after validation”，而不是字符：这是 Pydantic 2.14 对 `SecretStr` 上长度规则的措辞）；但错误的 `input` 是客户端发来的原始内容，即普通字符串。单元格用一个 `SecretStr` 子类来展示这个顺序，它会记下每一个被创建的实例。

# %%
with serve(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
    missing_email = client.post("/register", json=bad_bodies["missing field"])
    short_password = client.post("/register", json={**ADA, "password": "hunter2"})

for case, answer in (("missing field", missing_email), ("short password", short_password)):
    (error,) = answer.json()["detail"]
    print(f"{case:15} {answer.status_code} type={error['type']!r} msg={error['msg']!r}")
    print(f"{'':15} input={error['input']!r}")
print(f"\na valid password inside a Registration prints as: {Registration(**ADA).password!r}")
assert missing_email.json()["detail"][0]["input"]["password"] == ADA["password"]
assert short_password.json()["detail"][0]["input"] == "hunter2"
assert "at least 8 items after validation" in short_password.json()["detail"][0]["msg"]
assert "correct horse" not in repr(Registration(**ADA))

secrets_made: list[str] = []


class NotedSecretStr(SecretStr):
    def __init__(self, secret_value: str) -> None:
        secrets_made.append(secret_value)
        super().__init__(secret_value)


class NotedRegistration(Registration):
    password: Annotated[NotedSecretStr, Field(min_length=8)]


try:
    NotedRegistration(**{**ADA, "password": "hunter2"})
except ValidationError as error:
    (rejected,) = error.errors()
print(f"SecretStr values made before the length rule rejected the password: {secrets_made}")
print(f"the error's input: {rejected['input']!r}, a {type(rejected['input']).__name__}")
assert secrets_made == ["hunter2"] and type(rejected["input"]) is str

# %% [markdown] translates="9abd3c0f61039ee3"
# 所以，对于接收密码的端点，绝不要把 `422` 的响应体（或请求体）写进日志；要记录，就记录校验后的模型：它的 `SecretStr` 会打印成星号。
#
# 重复的用户名不是校验错误：请求体本身没问题，但它与服务器的状态相冲突。这时应返回 `409 Conflict`，并附上说明冲突内容的消息。
#
# **事实 5.3**：再次注册 `ada`（换一个电子邮件地址、换一个密码）会得到带原因的 `409`。第一条记录保持不变，而且只发出一封欢迎邮件。

# %%
app = create_app()
with smtp_server() as mail:
    mail_settings.port = mail.port
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        first = client.post("/register", json=ADA)
        second = client.post("/register", json={**ADA, "email": "imposter@example.com", "password": "a different one"})
    welcomes = mail.messages

stored = app.state.users["ada"]
first_password_verifies = password_hash.verify(ADA["password"], stored.password_hash)
print(f"first:  {first.status_code} {first.json()}")
print(f"second: {second.status_code} {second.json()}")
print(f"stored e-mail: {stored.email}; the first password still verifies: {first_password_verifies}")
print(f"welcome e-mails sent: {len(welcomes)}, to {[message['To'] for message in welcomes]}")
assert first.status_code == 201 and second.status_code == 409
assert second.json() == {"detail": "the username 'ada' is taken"}
assert stored.email == "ada@example.com" and first_password_verifies
assert [message["To"] for message in welcomes] == ["ada@example.com"]

# %% [markdown] translates="30b31cd905c7a601"
# 上面那两个请求是一前一后到达的。请求也可能在同一时刻到达：`register` 是 `def` 端点，所以每个请求都在各自的工作线程上运行；当一个线程检查 `ada` 是否空闲时，另一个线程可能正处在它自己的检查和插入之间。这就是 `register` 要在锁内完成检查和插入的原因：持有锁的线程做完检查和插入之后，其他线程才能检查。
#
# 指望两个请求凭运气在那几微秒的窗口里相遇，什么也证明不了。课程辅助工具里的 `RaceWindow(n)` 会让它们必然相遇：应用从它那里拿到字典（`window.store()`），字典的 `in` 会在每个请求检查之后把它拦住，直到其他每个请求也都检查过、或者正在等锁；应用还从它那里拿到锁（`window.guard(lock)`，或者 `window.guard(None)`，表示完全不加锁）。
#
# **事实 5.4**：同一时刻有四个 `ada` 的注册请求，各带自己的电子邮件地址和密码，每个都在检查和插入之间被拦住，直到其他请求赶上来。有锁时，只有一次检查发现用户名空闲：一个 `201` 和三个 `409`，一封欢迎邮件，存储的记录属于胜出者。没有锁时，四次检查都发现用户名空闲：四个 `201` 和四封欢迎邮件，却只有一条记录，即最后写入的那条。有三个客户端被告知账户已经建好，而它们的密码打不开这个账户。

# %%
RACERS = 4
racing_bodies = [{"username": "ada", "email": f"ada{n}@example.com", "password": f"password number {n}"}
                 for n in range(RACERS)]
race: dict[str, dict[str, Any]] = {}
for case, lock in (("with the lock", threading.Lock()), ("without a lock", None)):
    window = RaceWindow(RACERS)
    app = create_app(users=window.store(), users_lock=window.guard(lock))
    with smtp_server() as mail:
        mail_settings.port = mail.port
        with serve(app) as url:  # with 块结束时，服务器已经运行完它的所有任务
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                answers = await asyncio.gather(*(client.post("/register", json=body) for body in racing_bodies))
        welcomes = mail.messages
    stored = app.state.users["ada"]
    race[case] = {
        "free checks": window.free_checks,
        "answers": Counter(answer.status_code for answer in answers),
        "winners": sorted(answer.json()["email"] for answer in answers if answer.status_code == 201),
        "welcomes": len(welcomes),
        "records": len(app.state.users),
        "stored": stored.email,
        "opens it": [body["email"] for body in racing_bodies if password_hash.verify(body["password"], stored.password_hash)],
    }

for case, seen in race.items():
    print(f"{case:15} checks that found 'ada' free: {seen['free checks']}; answers: {dict(sorted(seen['answers'].items()))};"
          f" welcome e-mails: {seen['welcomes']}; records: {seen['records']}")
    print(f"{'':15} clients told 201: {len(seen['winners'])}; the record holds the address of one of them:"
          f" {seen['stored'] in seen['winners']}; passwords that open it: {len(seen['opens it'])} of {RACERS}")
locked, unlocked = race["with the lock"], race["without a lock"]
assert locked["free checks"] == 1 and locked["answers"] == {201: 1, 409: RACERS - 1}
assert locked["welcomes"] == 1 and locked["records"] == 1
assert locked["winners"] == [locked["stored"]] == locked["opens it"]
assert unlocked["free checks"] == RACERS and unlocked["answers"] == {201: RACERS}
assert unlocked["welcomes"] == RACERS and unlocked["records"] == 1
assert len(unlocked["winners"]) == RACERS and unlocked["opens it"] == [unlocked["stored"]]

# %% [markdown] translates="fb3a4541818905d0"
# ## 6. 邮件服务器宕机或变慢时
#
# 任务在响应之后运行。无论任务发生什么，客户端都已经被告知 `201 Created`。
#
# **事实 6.1**：邮件服务器宕机（它的端口上没有任何程序监听）时，注册照样返回 `201`（如果异常发生在端点里，响应就会变成 `500`），用户已被存储，而任务以 `aiosmtplib.SMTPConnectError` 失败。唯一的痕迹在服务器日志里：uvicorn 的 `Exception in ASGI application` 和一段回溯（traceback），而回溯并不说明是哪个用户没收到邮件。

# %%
with smtp_server() as stopped:
    pass
mail_settings.port = stopped.port  # 服务器已停止：这个端口上没有任何程序监听


def show(records: list[logging.LogRecord]) -> None:
    """Print log records as a server log would, with the last line of each traceback."""
    for record in records:
        print(f"{record.levelname} [{record.name}] {record.getMessage().strip()}")
        if record.exc_info and record.exc_info[1] is not None:
            print(f"    {traceback.format_exception_only(record.exc_info[1])[-1].strip()}")


app = create_app()
with capture_logs("uvicorn.error") as server_log, serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
    response = client.post("/register", json=ADA)

print(f"the client got: {response.status_code} {response.json()}")
print(f"the user is stored: {'ada' in app.state.users}")
print("the server logged:")
show(server_log)
assert response.status_code == 201 and "ada" in app.state.users
assert [record.getMessage().strip() for record in server_log] == ["Exception in ASGI application"]
assert server_log[0].exc_info is not None and isinstance(server_log[0].exc_info[1], aiosmtplib.SMTPConnectError)
assert "ada" not in server_log[0].getMessage() + "".join(traceback.format_exception(*server_log[0].exc_info))

# %% [markdown] translates="7b776eadc92cf412"
# 慢速邮件服务器的危害更隐蔽：任务只是干等。要等多久，取决于客户端的超时设置。
#
# **事实 6.2**：`aiosmtplib.send` 的默认超时是 60 s，而 `smtplib` 没有超时（它的默认值是 socket 的默认值 `None`：永远等下去）。面对一个需要 1 s 才发出问候语的邮件服务器，默认的 `aiosmtplib.send` 会等满这一秒并投递成功；设置 `timeout=0.3` 时，它在 0.3 s 后放弃，此时还没等到问候语，抛出 `SMTPConnectTimeoutError`。`smtplib` 设置 `timeout=0.3` 时放弃得同样快，但报告的是 `SMTPServerDisconnected`，它*不是* `TimeoutError`。这是问候语太慢的情况。根本无法及时建立的连接（比如防火墙丢弃了数据包）则以另一种方式结束：`smtplib` 用 `socket.create_connection` 建立连接（在 `smtplib.SMTP._get_socket` 中），它的超时抛出的是普通的 `TimeoutError`。选择重试哪些错误时，这两种情况都要记住。

# %%
aiosmtplib_default = inspect.signature(aiosmtplib.send).parameters["timeout"].default


def send_with_smtplib(message: EmailMessage, port: int, timeout: float) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as smtp:
        smtp.send_message(message)


outcomes: dict[str, tuple[str, float]] = {}
with smtp_server(delay=1.0) as mail:
    message = welcome_message("ada@example.com", "ada")
    attempts = {
        "aiosmtplib, default timeout": lambda: aiosmtplib.send(message, hostname=mail.host, port=mail.port),
        "aiosmtplib, timeout=0.3": lambda: aiosmtplib.send(message, hostname=mail.host, port=mail.port, timeout=0.3),
        "smtplib, timeout=0.3": lambda: asyncio.to_thread(send_with_smtplib, message, mail.port, 0.3),
    }
    for how, attempt in attempts.items():
        started = time.perf_counter()
        try:
            await attempt()
            outcome = "delivered"
        except (aiosmtplib.SMTPException, smtplib.SMTPException) as error:
            outcome = f"{type(error).__name__}: {error}"
        outcomes[how] = (outcome, time.perf_counter() - started)

print(f"default timeouts: aiosmtplib.send {aiosmtplib_default} s; smtplib the socket default, {socket.getdefaulttimeout()}")
for how, (outcome, seconds) in outcomes.items():
    print(f"{how:28} after {seconds:.1f} s: {outcome}")
assert aiosmtplib_default == 60 and socket.getdefaulttimeout() is None
assert outcomes["aiosmtplib, default timeout"][0] == "delivered" and outcomes["aiosmtplib, default timeout"][1] > 0.9
assert outcomes["aiosmtplib, timeout=0.3"][0].startswith("SMTPConnectTimeoutError")
assert outcomes["smtplib, timeout=0.3"][0].startswith("SMTPServerDisconnected")
assert not issubclass(smtplib.SMTPServerDisconnected, TimeoutError)
# 每次超时的尝试都等满了 0.3 s，并且远在使用默认超时的那次尝试收到问候语之前就放弃了。
for how in ("aiosmtplib, timeout=0.3", "smtplib, timeout=0.3"):
    assert 0.25 < outcomes[how][1] < outcomes["aiosmtplib, default timeout"][1], (how, outcomes[how])
# smtplib 自己如何建立连接，以及这个调用超时时抛出什么：
connect_line = next(line.strip() for line in inspect.getsource(smtplib.SMTP._get_socket).splitlines()
                    if "create_connection" in line)
print(f"smtplib.SMTP._get_socket: {connect_line}; socket.timeout is TimeoutError: {socket.timeout is TimeoutError}")
assert connect_line.startswith("return socket.create_connection(") and socket.timeout is TimeoutError

# %% [markdown] translates="e03bf46276bbc9aa"
# 修复分三部分，每部分只需几行：
#
# 1. **超时**：让挂起的邮件服务器无法把任务拖住一分钟，甚至永远拖住。
# 2. **有上限的重试**，用 `tenacity` 实现，针对那些往往会自行恢复的失败：被拒绝或超时的连接、`421`。`stop_after_attempt(3)` 限定次数；`wait_exponential` 按指数退避（exponential backoff）拉开间隔；`before_sleep_log` 记录每次重试；`reraise=True` 抛出最后一次真实的异常，而不是 tenacity 的 `RetryError`。（这里的等待时间只有十分之几秒，好让 notebook 跑得快；在生产环境中应该是若干秒。）tenacity 的 `@retry` 作用在 `async def` 函数上时，得到的仍是一个协程（coroutine）函数（单元格会检查这一点），需要 await。
# 3. **一条带回溯和关键事实的日志**：最后一次尝试失败时，任务记录下哪个地址没收到邮件（`logger.exception` 会附上回溯），然后返回，这样它后面的任务照样运行（第 1 章第 7 节）。
#
# **事实 6.3**：使用修复后的任务，面对一个以 `421` 拒绝前两次连接的邮件服务器，客户端拿到它的 `201`，邮件在第三次尝试时送达，此前记录了两次重试。uvicorn 什么都不记录。

# %%
log = logging.getLogger("registration")
MAIL_TIMEOUT_SECONDS = 2.0


def may_pass(error: BaseException) -> bool:
    """Worth another attempt? By SMTP's reply code when there is one (4xx: try again later; 5xx:
    never), else if the connection failed or timed out."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):  # 每个被拒绝的收件人各有一条回复
        return all(400 <= refused.code < 500 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):  # 554 问候语也属于这一类
        return 400 <= error.code < 500
    return isinstance(error, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected))



@retry(
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.1),  # 先 0.1 s，再 0.2 s
    retry=retry_if_exception(may_pass),
    before_sleep=before_sleep_log(log, logging.WARNING),
    reraise=True,
)
async def deliver(message: EmailMessage) -> None:
    await aiosmtplib.send(message, hostname=mail_settings.host, port=mail_settings.port, timeout=MAIL_TIMEOUT_SECONDS)


async def send_welcome_email_reliably(address: str, username: str) -> None:
    try:
        await deliver(welcome_message(address, username))
    except Exception:
        log.exception("welcome e-mail to %s (user %r) not sent", address, username)


def register_ada() -> tuple[httpx.Response, list[logging.LogRecord], list[logging.LogRecord]]:
    """Register ada with the reliable task; return the answer, uvicorn's log and the app's log."""
    with capture_logs("uvicorn.error") as server_log, capture_logs("registration") as app_log:
        with serve(create_app(send_welcome_email_reliably)) as url, httpx.Client(base_url=url, timeout=60) as client:
            response = client.post("/register", json=ADA)
    return response, server_log, app_log


with smtp_server(refuse=2) as mail:
    mail_settings.port = mail.port
    response, server_log, app_log = register_ada()
    delivered, connections = len(mail.messages), mail.connections

print(f"deliver is still a coroutine function after @retry: {inspect.iscoroutinefunction(deliver)}")
print(f"the client got {response.status_code}; connections to the mail server: {connections}; e-mails delivered: {delivered}")
print(f"uvicorn logged {len(server_log)} records; the app logged:")
show(app_log)
assert inspect.iscoroutinefunction(deliver)
assert response.status_code == 201 and server_log == []
assert connections == 3 and delivered == 1
assert [record.levelname for record in app_log] == ["WARNING", "WARNING"]

# %% [markdown] translates="e989fe720c56dc9e"
# **事实 6.4**：邮件服务器宕机时，修复后的任务尝试三次，然后记录一条写明地址、附带回溯的错误。任务没有抛出异常，所以 uvicorn 什么都不记录；客户端和之前一样拿到了它的 `201`。

# %%
mail_settings.port = stopped.port  # 那里没有程序监听：邮件服务器宕机了
response, server_log, app_log = register_ada()

print(f"the client got {response.status_code}; uvicorn logged {len(server_log)} records; the app logged:")
show(app_log)
error = app_log[-1]
print(f"the error record carries a traceback of {len(traceback.format_exception(*error.exc_info))} lines")
assert response.status_code == 201 and server_log == []
assert [record.levelname for record in app_log] == ["WARNING", "WARNING", "ERROR"]
assert "ada@example.com" in error.getMessage() and isinstance(error.exc_info[1], aiosmtplib.SMTPConnectError)

# %% [markdown] translates="13ed7d2521df9216"
# 关于这个修复，有三点说明：
#
# - 只重试有可能恢复的错误。SMTP（RFC 5321）规定 `4xx` 回复是临时性的，`5xx` 回复是永久性的（`550`：邮箱不存在），所以只要有回复码，`may_pass` 就按回复码判断，而不是按异常的类：aiosmtplib 对 `421` 问候语（“现在不行”）和 `554` 问候语（“这里永远不行”）抛出的都是 `SMTPConnectResponseError`（`SMTPConnectError` 的子类），对 `450`（“邮箱忙”）和 `550` 抛出的都是 `SMTPRecipientsRefused`。事实 6.5 展示这两种情况，以及按异常类的列表来判断会怎样。
# - 重试会让任务持续更久：三次尝试、每次 2 秒超时，再加上等待时间，可能超过 6 s。把上限设得紧一些；第 7 章会说明什么时候真正的任务队列（task queue）更合适。
# - 用户已被存储，也被告知了 `201`，却没有收到邮件，而只有那条日志记下了这件事。总得有什么来处理它：一个“重新发送欢迎邮件”的按钮，或者在用户记录里设一个标志，由之后的作业（job）来处理。第 3 章会在数据库场景下遇到同样的问题。

# %% [markdown] translates="57a70fe9ae53d773"
# **事实 6.5**：以 `554` 问候语应答的邮件服务器只尝试一次；第一次以 `450` 回复 `RCPT` 的服务器会被再次尝试，并投递成功。如果按异常类重试，即针对 `(SMTPConnectError, SMTPTimeoutError, SMTPServerDisconnected)`，就会对 `554` 服务器尝试三次，而对 `450` 立即放弃。

# %%
BY_CLASS = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected)
deliver_by_class = retry(
    stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.1), retry=retry_if_exception_type(BY_CLASS),
    reraise=True,
)(deliver.__wrapped__)  # 同样的投递，改为按异常的类重试
servers = {"554 greeting": {"refuse": 100, "refusal": "554 5.3.2 No mail accepted here"}, "450 on RCPT": {"busy_recipients": 1}}
tried: dict[tuple[str, str], tuple[int, str]] = {}  # （服务器, 策略）-> （连接数, 结果）
for server, behaviour in servers.items():
    for policy, send in (("may_pass", deliver), ("by class", deliver_by_class)):
        with capture_logs("registration"), smtp_server(**behaviour) as mail:
            mail_settings.port = mail.port
            try:
                await send(welcome_message("ada@example.com", "ada"))
                outcome = "delivered"
            except aiosmtplib.SMTPException as error:
                outcome = type(error).__name__
            tried[server, policy] = (mail.connections, outcome)
for (server, policy), (connections, outcome) in tried.items():
    print(f"{server:13} retried {policy:9}: {connections} connection(s), {outcome}")
assert tried["554 greeting", "may_pass"] == (1, "SMTPConnectResponseError")
assert tried["554 greeting", "by class"] == (3, "SMTPConnectResponseError")
assert tried["450 on RCPT", "may_pass"] == (2, "delivered")
assert tried["450 on RCPT", "by class"] == (1, "SMTPRecipientsRefused")

# %% [markdown] translates="ce99e4970fb77c13"
# ## 练习（exercise）
#
# 每道练习都有一个供你作答的代码单元格，以及一个用真实服务器和真实邮件服务器检查答案的单元格。参考答案在 `solutions/ch02_registration/` 中；先自己尝试，再对照。
#
# ### 练习 2.1：邮件故障中也不丢失的审计日志
#
# 编写一个应用，提供 `POST /register`：接收 `{"username": ..., "email": ...}`（`username` 为 `str`，`email` 为 `EmailStr`），返回 `201`，响应体为 `{"username": <the username>}`。响应之后，两件事在后台任务中完成：
#
# - 一个 `async def` 任务用 `aiosmtplib` 向该地址发送欢迎邮件，发往 `settings.smtp_host` 和 `settings.smtp_port`（一个名为 `settings` 的 `Settings` dataclass 实例；检查单元格会让它指向自己的邮件服务器），并设置 `timeout=5`；
# - 一个任务把 `"registered <username>"` 追加到列表 `audit_log`。
#
# 审计条目必须在响应之后写入，而且**即使邮件服务器宕机**也必须写入。检查单元格两种情况都会测试。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from fastapi import BackgroundTasks, FastAPI, status
from pydantic import BaseModel, EmailStr


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


class NewUser(BaseModel):
    username: str
    email: EmailStr


settings = Settings()
audit_log: list[str] = []
app = FastAPI()


async def send_welcome_email(address: str) -> None:
    message = EmailMessage()
    message["From"] = "welcome@example.com"
    message["To"] = address
    message["Subject"] = "Welcome!"
    message.set_content("Your account is ready.")
    await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port, timeout=5)


def audit(entry: str) -> None:
    audit_log.append(entry)


@app.post("/register", status_code=status.HTTP_201_CREATED)
async def register(new_user: NewUser, background_tasks: BackgroundTasks) -> dict[str, str]:
    # 审计任务放在前面：如果邮件任务抛出异常，它后面的任务会被跳过。
    background_tasks.add_task(audit, f"registered {new_user.username}")
    background_tasks.add_task(send_welcome_email, new_user.email)
    return {"username": new_user.username}
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch02_registration as checks

checks.ex01(app, settings, audit_log)

# %% [markdown] translates="f37bee4d2dfba6c5"
# ### 练习 2.2：会重试的阻塞客户端
#
# 你的项目必须使用 `smtplib`。编写 `send_welcome_email(address)`：一个任务，通过 `settings.smtp_host` 和 `settings.smtp_port` 向 `address` 发送欢迎邮件，并且：
#
# - 不阻塞事件循环（它必须是哪种函数？）；
# - 一次连接 0.5 s 后放弃（`timeout=0.5`）；
# - 当服务器拒绝连接（`smtplib.SMTPConnectError`）、无法连通（`ConnectionError`）或者超时的时候（问候语太慢和连接无法及时建立，报告方式不同：见事实 6.2），用 `tenacity` 总共最多尝试 3 次，每次间隔 0.05 s；
# - 如果最后一次尝试也失败，就在名为 `"mail"` 的 logger 上记录它并附上回溯，写明地址，然后正常返回。
#
# 检查单元格会把它作为后台任务运行，分别面对一个拒绝两次的邮件服务器、一个始终拒绝的邮件服务器，以及一个从不应答的邮件服务器。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


settings = Settings()
logger = logging.getLogger("mail")
TRANSIENT = (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError)


@retry(stop=stop_after_attempt(3), wait=wait_fixed(0.05), retry=retry_if_exception_type(TRANSIENT), reraise=True)
def deliver(message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
        smtp.send_message(message)


def send_welcome_email(address: str) -> None:
    message = EmailMessage()
    message["From"] = "welcome@example.com"
    message["To"] = address
    message["Subject"] = "Welcome!"
    message.set_content("Your account is ready.")
    try:
        deliver(message)
    except Exception:
        logger.exception("welcome e-mail to %s not sent", address)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.ex02(send_welcome_email, settings)

# %% [markdown] translates="f2b3592572ee824e"
# ### 练习 2.3：测试这个端点
#
# 编写一个测试 `test_registration(client, mail)`。`client` 是一个 `httpx.Client`，它的 `base_url` 指向一个正在运行的注册应用（与本章的应用类似）；`mail` 是该应用发信的邮件服务器（`smtp_server()` 给出的对象）。测试必须检查：
#
# - 注册 `{"username": "grace", "email": "grace@example.com", "password": "correct horse battery staple"}` 时，返回 `201`，内容恰好是 `{"username": "grace", "email": "grace@example.com"}`（因此不含密码）；
# - 再次注册 `grace` 时返回 `409`；
# - 有一封欢迎邮件送达 `grace@example.com`。邮件在响应之后才发送，所以要用 `mail.wait_for(1, timeout=2)` 等待它。
#
# 检查单元格会让你的测试先针对一个正确的应用运行，此时测试必须通过；再针对四个有缺陷的应用运行，此时测试必须失败。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
import httpx

from bgcourse import MailServer

GRACE = {"username": "grace", "email": "grace@example.com", "password": "correct horse battery staple"}


def test_registration(client: httpx.Client, mail: MailServer) -> None:
    first = client.post("/register", json=GRACE)
    assert first.status_code == 201, first.text
    assert first.json() == {"username": "grace", "email": "grace@example.com"}
    again = client.post("/register", json=GRACE)
    assert again.status_code == 409, again.text
    (welcome,) = mail.wait_for(1, timeout=2)
    assert welcome["To"] == "grace@example.com"
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
checks.ex03(test_registration)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验（quiz）
#
# 每道题会在一个单元格中显示；在它下面的单元格里作答；再下一个单元格会告诉你是否答对。答对了会附上解释；答错了会给出提示，但不会泄露答案（如果你更想直接读解释，`quiz.explain("q01")` 随时可以显示 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch02_registration")
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
from pydantic import BaseModel


class UserOut(BaseModel):
    username: str
    email: str
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q05", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q05", UserOut)

# %% [markdown] translates="0500e3196ab9eec0"
# ## 小结
#
# - `smtp_server()` 为 notebook 或测试提供一个真实的 SMTP 服务器；它收到的邮件是普通的 `email` 对象，可以直接拿来断言（第 1、2 节）。
# - `POST /register` 用 Pydantic 模型校验输入（`EmailStr`、长度和格式规则、`SecretStr` 类型的密码），返回 `201`，并且只返回 `response_model=UserOut` 放行的内容。密码通过 `pwdlib` 用 argon2id 做哈希，放在 `def` 端点里，因为哈希故意做得很慢（第 3 节）。
# - 欢迎邮件是一个后台任务：客户端拿到 `201` 时，邮件服务器还什么都没收到（第 3 节）。
# - 在 `async def` 任务中用 `aiosmtplib`，或在 `def` 任务中用 `smtplib`；`async def` 任务中的阻塞客户端会拖住所有请求（第 4 节）。
# - 错误输入得到 `422`，其中的错误给出 `type`、`loc` 和 `msg`，并复述 `input`，所以不要把它们写进日志；已被占用的用户名得到 `409`，而在同一把锁内完成检查和插入，可以防止两个同时到达的请求都占用它（第 5 节）。
# - 失败的任务改变不了客户端已经拿到的 `201`。给任务设置超时、针对临时性错误的有上限的重试，以及一条带回溯和地址的日志（第 6 节）。
#
# 下一章：第 3 章把用户存进数据库，并说明在事务（transaction）已提交（commit）之后任务才失败时该怎么办。
