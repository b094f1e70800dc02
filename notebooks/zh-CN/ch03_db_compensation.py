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

# %% [markdown] translates="91ad8709d9bf3b4b"
# # 第 3 章：数据库事务（transaction）与补偿事务（compensation），以及任务自己的会话（session）
#
# 第 2 章把用户存放在一个字典里。真实的用户存放在数据库里，而数据库带来了两个问题，后台任务（background task）让它们变得格外尖锐。第一：注册流程已经写入了用户，后面的某一步却失败了，谁来把这个用户删掉？如果删除始终没有发生，又会怎样？第二：后台任务在响应（response）之后才运行，它可以使用哪个数据库会话？本章的一切都是真实的：在真实的数据库上使用 SQLAlchemy 的 asyncio API，在线程里和独立进程里运行的 uvicorn 服务器，以及 `kill -9`。请从上到下依次运行各单元格；每一条事实陈述之后，都跟着一个证明它的证明单元格（proof cell）。
#
# **你将学到**
#
# - SQLAlchemy 2 的 asyncio API：`AsyncEngine`、`async_sessionmaker`、`AsyncSession`，在 SQLite 上通过 `aiosqlite` 运行；当 `DATABASE_URL` 指定 PostgreSQL 时，同样的代码通过 `asyncpg` 在 PostgreSQL 上运行；
# - 补偿事务模式：后面的步骤失败后，由一个任务撤销已经提交（commit）的写入；以及它为什么脆弱：如果进程在任务运行之前就死掉，撤销就永远不会发生；
# - 更好的设计：在请求（request）的事务内撤销；重复执行也无害、即幂等（idempotent）的补偿事务；以及发件箱（outbox）：把尚待完成的工作与数据写在同一个事务里；
# - 带 `yield` 的依赖项（dependency）在什么时候关闭它的会话（相对于响应和任务而言），在 FastAPI 0.163 上如何，在之前的版本上又如何；以及 `Depends(..., scope="function")` 起什么作用；
# - 任务使用请求的会话或其 ORM 对象时会出什么问题（`MissingGreenlet`、`DetachedInstanceError`、一个没人归还的连接），以及始终可行的模式：传递 id，在任务内部打开会话。

# %% [markdown] translates="53f60f58bd25c4d4"
# ## 0. 准备工作：版本、数据库和课程的辅助函数
#
# 下面的单元格打印本章验证时所用的版本；如果你的版本与之不同，它会指出来。

# %%
import asyncio
import contextlib
import gc
import inspect
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.metadata import requires, version
from pathlib import Path
from typing import Annotated

PINNED = {
    "fastapi": "0.163.2",
    "starlette": "1.10.0",
    "uvicorn": "0.54.0",
    "httpx": "0.28.1",
    "sqlalchemy": "2.1.9",
    "aiosqlite": "0.22.1",
    "asyncpg": "0.32.0",
    "greenlet": "3.5.6",
}
for package, pinned in PINNED.items():
    installed = version(package)
    note = "" if installed == pinned else f"   (the course was proved on {pinned})"
    print(f"{package:10} {installed}{note}")
print(f"{'python':10} {platform.python_version()}")

# %% [markdown] translates="1dbd212fecbdaff2"
# **数据库。** 不做任何配置时，本章通过 `aiosqlite` 驱动使用 SQLite（一种单文件数据库）：`temporary_database()` 为每个单元格在临时文件夹中新建一个数据库文件，创建数据表，并在单元格结束时删除该文件夹。若要改在 PostgreSQL 上运行本章，请在启动 Jupyter 时设置环境变量 `DATABASE_URL`，例如 `DATABASE_URL=postgresql+asyncpg://user:password@localhost:5432/course_db`，指向一个专为本课程创建的空数据库（各单元格会自行建表，用完后再删除）。课程的测试会在这两种数据库上运行本章的每个应用。
#
# 除了 `serve`（在 notebook 的一个线程中运行的 uvicorn 服务器）之外，本章还用到课程的这些辅助函数：
#
# - `database_url()`、`make_engine(url)`、`make_sessionmaker(engine)`、`create_tables(...)`：应用连接数据库所用的工具（第 1 节）；
# - `temporary_database(metadata)`：为一个 `async with` 代码块提供一个全新的数据库；
# - `uvicorn_process(app)`：在子进程中运行的真实 `python -m uvicorn`，notebook 可以杀掉它（第 3 节）；以及 `read_module_source`，用来展示这种进程所运行的代码（下面的单元格把前者封装成 `app_process(app, NAME=value, ...)`，关键字参数即子进程的环境变量）；
# - `logged_errors(records)`：服务器记录下的异常，按类型和消息列出；
# - `version_table(...)`：`make versions` 在旧版 FastAPI 上测得的结果（第 7 节）。

# %%
import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from IPython.display import Code
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, event, func, insert, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import Select
from tqdm.auto import tqdm

from bgcourse import (
    DATABASE_URL_VARIABLE,
    ChildProcess,
    Database,
    Timeline,
    TimelineMiddleware,
    capture_logs,
    create_tables,
    find_postgres_bin,
    load_quiz,
    logged_errors,
    make_engine,
    make_sessionmaker,
    read_module_source,
    serve,
    temporary_database,
    throwaway_postgres,
    uvicorn_process,
    version_table,
)

if os.environ.get(DATABASE_URL_VARIABLE):
    print("DATABASE_URL is set: the cells run on the database it names.")
else:
    print("DATABASE_URL is not set: each cell gets a SQLite file in a temporary folder of its own.")


async def count_rows(db: Database, sql: str, **parameters: object) -> int:
    """Run a `SELECT count(*) ...` on a connection of its own, as another program would."""
    async with db.engine.connect() as connection:
        return int(await connection.scalar(text(sql), parameters) or 0)


@contextlib.contextmanager
def app_process(app: str, **environment: str) -> Iterator[ChildProcess]:
    """`python -m uvicorn <app>` in a child process, with these environment variables, once it serves."""
    with uvicorn_process(app, env=environment) as server:
        server.wait_for_output("Uvicorn running on", timeout=30)  # uvicorn 拿到端口后会打印这一行
        yield server


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0) -> None:
    """Ask `condition` every 20 ms until it is true. The timeout only ends a wait that would never end."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.02)


# %% [markdown] translates="46d53ce8200ee55f"
# ## 1. SQLAlchemy 的 asyncio API：SQLite 或 PostgreSQL
#
# SQLAlchemy 2 的 asyncio API 由四部分组成，应用按以下顺序使用它们：
#
# 1. `AsyncEngine`（`make_engine(url)` 调用 `create_async_engine`）：每个进程一个；它知道要连接哪个数据库，并维护一个连接池（connection pool）；
# 2. `async_sessionmaker`（`make_sessionmaker(engine)`）：会话工厂。课程的版本设置了 `expire_on_commit=False`，使对象在提交之后仍保留其属性值（第 8 节展示不这样设置会怎样）；
# 3. `async with sessions.begin() as session:`：一个带事务的会话，代码块结束时提交，代码块抛出异常时回滚（rollback）；
# 4. `await session.execute(...)`、`await session.scalars(select(...))`：每一条发往数据库的语句都要 await。
#
# **事实 1.1**：同样的代码既能在 SQLite（临时文件夹中的一个文件，代码块结束后即被删除）上写入和读取数据行，也能在 PostgreSQL 上这样做；唯一的区别是 URL。

# %%
class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)


async with temporary_database(Base.metadata) as db:
    async with db.sessions.begin() as session:  # BEGIN；执行各条 INSERT；代码块结束时 COMMIT
        session.add_all([User(email="ada@example.com"), User(email="bob@example.com")])
    async with db.sessions() as session:
        emails = list(await session.scalars(select(User.email).order_by(User.id)))
    backend, driver = db.engine.url.get_backend_name(), db.engine.url.get_driver_name()
    sqlite_file = Path(db.engine.url.database or "") if backend == "sqlite" else None

print(f"the database: {backend}, through the {driver} driver")
print(f"two users written in one transaction, read back: {emails}")
if sqlite_file is not None:
    print(f"after the block, the SQLite file still exists: {sqlite_file.exists()}")
assert emails == ["ada@example.com", "bob@example.com"]
assert sqlite_file is None or not sqlite_file.exists()

# %% [markdown] translates="4b5315024674666e"
# 事务是本章其余内容的基础：事务里的操作，要么全部生效，要么全都不生效。
#
# **事实 1.2**：如果 `sessions.begin()` 代码块抛出异常，它写入的任何内容都不会保留，即使某一行的 `INSERT` 已经执行过（`session.flush()` 会把它发送出去，该行也已拿到 id）。

# %%
class LaterStepFailed(Exception):
    pass


async with temporary_database(Base.metadata) as db:
    try:
        async with db.sessions.begin() as session:
            user = User(email="cy@example.com")
            session.add(user)
            await session.flush()  # INSERT 此时执行
            id_inside = user.id
            raise LaterStepFailed("a later step failed")
    except LaterStepFailed:
        pass
    rows_after = await count_rows(db, "SELECT count(*) FROM users")

print(f"inside the transaction the INSERT had given the user id {id_inside}")
print(f"after the block raised, the table holds {rows_after} rows: the transaction was rolled back")
assert id_inside is not None and rows_after == 0

# %% [markdown] translates="ee4b704546f40baf"
# asyncio API 还需要一个包。SQLAlchemy 的 ORM 是用普通的、阻塞（blocking）式的 Python 写成的；它的 asyncio API 在一个 *greenlet* 中运行这些代码——greenlet 是 `greenlet` 包提供的轻量级协程（coroutine）——并在驱动需要 `await` 的地方挂起该 greenlet。SQLAlchemy 2.1 默认不再安装 `greenlet`。它的文档写道："Changed in version 2.1: greenlet is no longer installed by default; to use the asyncio extension, the `sqlalchemy[asyncio]` target must be used."（2.1 版变更：默认不再安装 greenlet；要使用 asyncio 扩展，必须安装 `sqlalchemy[asyncio]` 这个目标。）所以请这样安装：
#
# ```
# pip install "sqlalchemy[asyncio]"
# ```
#
# 课程的安装要求也是这样写的。
#
# **事实 1.3**：SQLAlchemy 自身的包元数据只把 `greenlet` 列为其 `asyncio` extra 所需的包，而这里已经安装了 `greenlet`。在一个 `import greenlet` 会失败的全新 Python 进程中（单元格屏蔽了它，就像没有安装一样），导入 `sqlalchemy.ext.asyncio` 会抛出 `ImportError`，提示安装 `sqlalchemy[asyncio]`。

# %%
greenlet_requirements = [line for line in requires("sqlalchemy") or [] if line.startswith("greenlet")]
without_greenlet = subprocess.run(
    [sys.executable, "-c", "import sys; sys.modules['greenlet'] = None; import sqlalchemy.ext.asyncio"],
    capture_output=True, text=True, timeout=120,
)
error_line = without_greenlet.stderr.strip().splitlines()[-1]
print(f"SQLAlchemy {version('sqlalchemy')} asks for greenlet as: {greenlet_requirements}")
print(f"greenlet installed here: {version('greenlet')}")
print(f"without greenlet, `import sqlalchemy.ext.asyncio` exits with {without_greenlet.returncode}:\n    {error_line}")
assert greenlet_requirements == ['greenlet>=1; extra == "asyncio"']
assert without_greenlet.returncode != 0
assert error_line.startswith("ImportError: The SQLAlchemy asyncio module requires that the Python 'greenlet' library")
assert "pip install sqlalchemy[asyncio]" in error_line

# %% [markdown] translates="a6496de9ad079c20"
# ## 2. 带补偿事务任务的注册流程
#
# 本章的例子是一个分两步的注册：先写入用户，再到计费服务（另一个系统；它拒绝所有 `fail.example` 下的地址）开一个账户。第一种设计立即提交用户，因为它不想在等待另一个服务时一直占着一个数据库事务。计费服务拒绝时，用户必须再被删掉；这种撤销，即**补偿事务**，很慢（它代表撤销其他服务已经做过的事情），所以放进后台任务中，客户端则立刻拿到它的 `502 Bad Gateway`。
#
# 应用像在生产环境中一样，作为一个真实的 `python -m uvicorn` 进程运行；它是课程中的一个模块，代码如下：

# %%
Code(read_module_source("solutions.ch03_db_compensation.registration_app"), language="python")

# %% [markdown] translates="4141bf8d1bc547fe"
# 注意其中的两个选择：端点（endpoint）*返回*它的 `502`，而不是抛出 `HTTPException`（事实 2.2 说明原因）；任务拿到的是用户的 *id*，并自己打开一个会话（第 7 至 9 节说明原因）。
#
# **事实 2.1**：被拒绝的注册立即返回 `502`；客户端拿到这个响应时，用户那一行还在表里，补偿事务随后才把它删除，不会早于它所需的半秒（`UNDO_SECONDS`）。成功的注册则保留它那一行。（启动应用进程需要几秒钟；进度条会显示各个步骤。）

# %%
REGISTRATION_APP = "solutions.ch03_db_compensation.registration_app:app"
UNDO_SECONDS = 0.5  # 应用的补偿事务在删除该行之前要花多长时间


async def users_with(db: Database, email: str) -> int:
    return await count_rows(db, "SELECT count(*) FROM users WHERE email = :email", email=email)


async def no_user(db: Database, email: str) -> bool:
    return await users_with(db, email) == 0


with tqdm(total=2, desc="start the app's process; register ada and bob") as progress:
    async with temporary_database() as db:  # 应用启动时自己建表
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS=str(UNDO_SECONDS)) as server:
            progress.update()
            accepted = httpx.post(f"{server.url}/register", params={"email": "ada@example.com"})
            refused_sent = time.monotonic()
            refused = httpx.post(f"{server.url}/register", params={"email": "bob@fail.example"})
            refused_answered = time.monotonic()
            bob_rows_at_response = await users_with(db, "bob@fail.example")
            await eventually(lambda: no_user(db, "bob@fail.example"), "the compensation's delete of bob's row")
            bob_gone = time.monotonic()
            progress.update()
        ada_rows = await users_with(db, "ada@example.com")

print(f"ada@example.com:  {accepted.status_code} {accepted.json()}; rows for ada afterwards: {ada_rows}")
print(f"bob@fail.example: {refused.status_code} {refused.json()['detail']!r}")
print(f"when the client had the 502, the table held {bob_rows_at_response} row for bob;"
      f" the compensation removed it {bob_gone - refused_answered:.1f} s later")
assert accepted.status_code == 201 and ada_rows == 1
assert refused.status_code == 502 and bob_rows_at_response == 1
# 任务在响应之后开始，并等待 UNDO_SECONDS 后才删除：这是一个下限，永远不会过紧。
assert bob_gone - refused_sent >= UNDO_SECONDS, "the row went only after the compensation's UNDO_SECONDS"

# %% [markdown] translates="189009ee612e3cab"
# 补偿事务正是在返回错误响应的地方安排的，而返回错误的常见做法是抛出 `HTTPException`。FastAPI 把任务列表挂在端点*返回*的响应上；抛出的异常会被异常处理器转换成一个新的响应，而这个新响应上没有任务。
#
# **事实 2.2**：在端点抛出 `HTTPException(502)` 之前添加的任务永远不会运行。同样的任务，如果把 `502` 作为 `JSONResponse` 返回，就会运行。

# %%
app = FastAPI()
ran: list[str] = []


@app.post("/raises")
async def raises(background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(ran.append, "the task of the endpoint that raised")
    raise HTTPException(status_code=502, detail="the billing service refused")


@app.post("/returns", response_model=None)
async def returns(background_tasks: BackgroundTasks) -> JSONResponse:
    background_tasks.add_task(ran.append, "the task of the endpoint that returned")
    return JSONResponse({"detail": "the billing service refused"}, status_code=502)


with serve(app) as url:  # 代码块结束时，服务器已经运行完它的所有任务
    answers = {path: httpx.post(f"{url}{path}").status_code for path in ("/raises", "/returns")}

print(f"answers: {answers}")
print(f"tasks that ran: {ran}")
assert answers == {"/raises": 502, "/returns": 502}
assert ran == ["the task of the endpoint that returned"]

# %% [markdown] translates="d1f46e4e70c5476f"
# ## 3. 为什么它很脆弱：进程可能在任务运行之前就死掉
#
# 后台任务只存在于响应该请求的那个进程的内存中，关于它的任何信息都没有写到别处。如果该进程在任务运行之前就结束了（`kill -9`、操作系统在内存耗尽时的 OOM killer、机器崩溃、部署时旧进程的任务还没做完就被停掉），任务就没了，也没有任何其他进程知道它曾经存在过。
#
# **事实 3.1**：进程返回 `502` 之后、补偿事务还在等待时，用 `SIGKILL` 杀掉它，被拒绝的用户就会留在表里；重新启动的进程也不会删除它：新进程会执行它自己的补偿事务（针对一次新的被拒注册），而第一个用户那一行依然还在。
#
# 为了确保在补偿事务等待期间杀掉进程，第一个进程的补偿事务被设得很慢（`UNDO_SECONDS=60`）；重启后的进程则使用通常的半秒。

# %%
with tqdm(total=3, desc="start; register cy; kill -9; restart; register dan") as progress:
    async with temporary_database() as db:
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="60") as server:
            progress.update()
            refused = httpx.post(f"{server.url}/register", params={"email": "cy@fail.example"})
            server.send_signal(signal.SIGKILL)  # kill -9：没有关闭流程，没有 finally，也没有任务
            exit_status = server.wait(timeout=30)
        rows_after_kill = await users_with(db, "cy@fail.example")
        progress.update()
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS=str(UNDO_SECONDS)) as restarted:
            dan = httpx.post(f"{restarted.url}/register", params={"email": "dan@fail.example"})
            await eventually(lambda: no_user(db, "dan@fail.example"), "the restarted process's compensation for dan")
            rows_after_restart = await users_with(db, "cy@fail.example")
        progress.update()

print(f"the client had its {refused.status_code}; then the process was killed (exit status {exit_status})")
print(f"rows for cy@fail.example after the kill: {rows_after_kill}; after a restart, once the new process had"
      f" undone a refused registration of its own (dan's, {dan.status_code}): {rows_after_restart}")
assert refused.status_code == 502 and exit_status == -signal.SIGKILL
assert dan.status_code == 502
assert rows_after_kill == 1 and rows_after_restart == 1, "the compensation was lost with the process"

# %% [markdown] translates="102d0f977fdf1076"
# 用户 cy 现在存在于数据库中，却没有计费账户，而系统中没有任何东西记得应该删除它。在进程内重试（retry）这个任务（第 4 章）也无济于事：重试同样只存在于这块内存中。接下来的几节分别让撤销变得不再必要、可以安全重复，或者持久可靠。

# %% [markdown] translates="600bab390026d7eb"
# ## 4. 更好的做法：在请求的事务内撤销
#
# 如果后面的步骤可以在事务仍然打开时运行，就没有什么需要补偿的：在一个事务中完成插入和调用，让失败把插入回滚掉（事实 1.2）。上面模块中的 `POST /register-atomic` 就是这么做的：在一个 `async with sessions.begin()` 代码块内，它添加用户，调用 `await session.flush()`，然后 await 计费调用；代码块结束时提交，如果调用抛出异常则回滚。
#
# **事实 4.1**：在模块的源码中，`register_atomic` 依次打开事务、执行 flush、调用计费服务。在一个通过事件记录每条语句的 engine 上按同样的步骤运行，一次成功的注册依次得到：`BEGIN`、`INSERT`（之后用户有了 id）、计费调用（期间另一个连接看不到该用户的行），最后才是 `COMMIT`。一次被拒绝的注册，前三步相同，然后是 `ROLLBACK`。

# %%
registration_source = read_module_source("solutions.ch03_db_compensation.registration_app")
atomic_source = registration_source[registration_source.index("async def register_atomic"):]
steps = ["async with sessions.begin() as session:", "await session.flush()", "await create_billing_account(email)"]
print("register_atomic, in the order its source has them:", *sorted(steps, key=atomic_source.index), sep="\n    ")
assert sorted(steps, key=atomic_source.index) == steps and all(step in atomic_source for step in steps)


class BillingRefused(Exception):
    pass


async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    async with engine.connect():  # 第一个连接会运行方言自己的初始化查询：不记录它们
        pass
    trace: list[str] = []
    event.listen(engine.sync_engine, "begin", lambda connection: trace.append("BEGIN"))
    event.listen(engine.sync_engine, "before_cursor_execute", lambda _c, _k, sql, *_: trace.append(sql.split()[0]))
    event.listen(engine.sync_engine, "commit", lambda connection: trace.append("COMMIT"))
    event.listen(engine.sync_engine, "rollback", lambda connection: trace.append("ROLLBACK"))
    sessions = make_sessionmaker(engine)

    async def create_billing_account(email: str) -> None:
        trace.append(f"billing call (rows for the user seen by another connection: {await users_with(db, email)})")
        if email.endswith("@fail.example"):
            raise BillingRefused(email)

    traces: dict[str, list[str]] = {}
    for email in ("dee@example.com", "eve@fail.example"):
        with contextlib.suppress(BillingRefused):
            async with sessions.begin() as session:  # register_atomic 的各个步骤
                user = User(email=email)
                session.add(user)
                await session.flush()
                trace.append(f"flush() returned: the user has id {user.id}")
                await create_billing_account(email)
        traces[email] = trace.copy()
        trace.clear()
    rows_after = {email: await users_with(db, email) for email in traces}
    await engine.dispose()

for email, steps_run in traces.items():
    print(f"{email}: " + " -> ".join(steps_run) + f"; rows afterwards: {rows_after[email]}")
billing_step = "billing call (rows for the user seen by another connection: 0)"
for email, last in (("dee@example.com", "COMMIT"), ("eve@fail.example", "ROLLBACK")):
    assert [step if not step.startswith("flush()") else "flush" for step in traces[email]] == [
        "BEGIN", "INSERT", "flush", billing_step, last
    ], traces[email]
assert rows_after == {"dee@example.com": 1, "eve@fail.example": 0}

# %% [markdown] translates="57624386d609d429"
# **事实 4.2**：用同样的方式处理（一次被拒的注册，然后在 `502` 之后立刻 `kill -9`），补偿式端点会留下一行，事务式端点则什么都不留；一次成功的事务式注册，在客户端拿到 `201` 时，它的行已经提交。

# %%
outcomes: dict[str, tuple[int, int, int]] = {}
with tqdm(total=3, desc="a process for each: /register, /register-atomic, then a good /register-atomic") as progress:
    async with temporary_database() as db:
        for path in ("/register", "/register-atomic"):
            email = f"{path.strip('/')}@fail.example"
            # UNDO_SECONDS=60：确保在补偿事务仍在等待时杀掉进程。
            with app_process(REGISTRATION_APP, DATABASE_URL=db.url, UNDO_SECONDS="60") as server:
                answer = httpx.post(f"{server.url}{path}", params={"email": email})
                rows_at_response = await users_with(db, email)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=30)
            outcomes[path] = (answer.status_code, rows_at_response, await users_with(db, email))
            progress.update()
        with app_process(REGISTRATION_APP, DATABASE_URL=db.url) as server:
            welcome = httpx.post(f"{server.url}/register-atomic", params={"email": "dee@example.com"})
            dee_rows_at_response = await users_with(db, "dee@example.com")
        progress.update()

print(f"{'endpoint':18} {'answer':>6} {'rows at the answer':>19} {'rows after kill -9':>19}")
for path, (code, at_response, after_kill) in outcomes.items():
    print(f"{path:18} {code:>6} {at_response:>19} {after_kill:>19}")
print(f"a successful /register-atomic: {welcome.status_code}, and {dee_rows_at_response} row when the client had it")
assert outcomes["/register"] == (502, 1, 1)
assert outcomes["/register-atomic"] == (502, 0, 0)
assert welcome.status_code == 201 and dee_rows_at_response == 1

# %% [markdown] translates="304d5024af07d94b"
# 代价是：事务以及它所用的连接，会在计费调用的整个过程中保持打开（在 SQLite 上，整个数据库的写锁也会被持有这么久）。对于几毫秒的调用，这是正确的取舍；对于缓慢或不可靠的调用，第 6 节给出一种什么都不占用的设计。另外，事务只能撤销数据库里的东西：已经发出的电子邮件是收不回来的。

# %% [markdown] translates="a3b232c1d28bd919"
# ## 5. 让补偿事务幂等
#
# 补偿事务可能运行不止一次：超时（timeout）后的重试，而那次调用其实已经成功了（第 4 章）；崩溃后被再次执行的消息（第 6 节）。所以它必须是**幂等**的：第二次运行既不改变任何东西，也不抛出任何异常。直接说明结果应当是什么的语句（`DELETE FROM users WHERE id = ...`）是幂等的；先加载对象、再对它进行操作的代码通常不是。
#
# **事实 5.1**：由同一个请求运行两次（一次补偿事务加上它的重试），`DELETE ... WHERE id` 第一次删除一行，第二次一行也不删，悄无声息。用 `session.get` 加载用户、再交给 `session.delete`，第一次可行；第二次则抛出 `UnmappedInstanceError: Class 'builtins.NoneType' is not mapped`（用户已经没了，`get` 返回了 `None`）。

# %%
async with temporary_database(Base.metadata) as db:
    async with db.sessions.begin() as session:
        session.add_all([User(id=1, email="eve@example.com"), User(id=2, email="fay@example.com")])
    runs: dict[str, list[str]] = {"delete": [], "get": []}

    async def remove_with_delete(user_id: int) -> None:
        async with db.sessions.begin() as session:
            result = await session.execute(delete(User).where(User.id == user_id))
            runs["delete"].append(f"deleted {result.rowcount} row(s)")

    async def remove_with_get(user_id: int) -> None:
        async with db.sessions.begin() as session:
            user = await session.get(User, user_id)
            await session.delete(user)
            runs["get"].append("deleted 1 row")

    app = FastAPI()

    @app.post("/undo/{how}/{user_id}")
    async def undo(how: str, user_id: int, background_tasks: BackgroundTasks) -> dict[str, str]:
        compensation = remove_with_delete if how == "delete" else remove_with_get
        background_tasks.add_task(compensation, user_id)
        background_tasks.add_task(compensation, user_id)  # 重试
        return {"undoing": how}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        httpx.post(f"{url}/undo/delete/1")
        httpx.post(f"{url}/undo/get/2")
    errors = logged_errors(records)
    users_left = await count_rows(db, "SELECT count(*) FROM users")

print(f"DELETE ... WHERE id, run twice:  {runs['delete']}")
print(f"get, then delete, run twice:     {runs['get']}, then the second run raised:")
for error in errors:
    print(f"    {error.type}: {error.message}")
print(f"users left: {users_left}")
assert runs == {"delete": ["deleted 1 row(s)", "deleted 0 row(s)"], "get": ["deleted 1 row"]}
assert [error.type for error in errors] == ["UnmappedInstanceError"] and users_left == 0

# %% [markdown] translates="64885e2c88276f91"
# 同样的思路也适用于*标记*某行而不是删除它的补偿事务：把它所期望的状态写进 `WHERE` 子句（`UPDATE users SET status = 'refused' WHERE id = ... AND status = 'pending'`），第 6 节的发件箱工作进程（worker）就是这么做的，这样第二次运行就找不到可改的东西。如果补偿事务还要归还某样东西（一个座位、一笔额度），那么只有在本次运行确实改动了该行时才归还；练习（exercise）3.2 就是这么做的。

# %% [markdown] translates="6a70485b326d8cb7"
# ## 6. 发件箱：在同一个事务中记下还要做的事
#
# “稍后再做这件事”的持久化版本，是数据库里的一行记录。注册流程在一个事务中写入用户（状态为 `pending`）*以及*一条发件箱消息（“为用户 7 开通计费账户”），然后返回 `202 Accepted`。工作进程读取未完成的消息，完成工作，然后在一个事务中记录结果（用户变为 `active`，或者 `refused`：由补偿事务标记该行），并把消息标记为已完成。如果进程在这中间的任何地方死掉，消息仍然在那里、处于未完成状态，下一个工作进程会去完成它。这里的工作进程是由应用的生命周期（lifespan）启动的一个循环，与应用在同一个进程中：

# %%
Code(read_module_source("solutions.ch03_db_compensation.outbox_app"), language="python")

# %% [markdown] translates="dcc63445e381b94d"
# **事实 6.1**：两次注册（其中一次会被拒绝）都得到 `202`；紧接着进程被杀掉，此时它的工作进程最多刚开始第一次计费调用（在该进程中每次调用需要一分钟，`BILLING_SECONDS=60`，因此被杀之前一次也完成不了）。两个用户都是 `pending`，两条消息都未完成。一个新进程使用快速的计费调用把它们处理完：一个用户变为 `active`，另一个变为 `refused`，所有消息都已完成。

# %%
OUTBOX_APP = "solutions.ch03_db_compensation.outbox_app:app"


async def outbox_state(db: Database) -> tuple[dict[str, str], int]:
    """The users' statuses by e-mail, and how many outbox messages are not done."""
    async with db.engine.connect() as connection:
        rows = await connection.execute(text("SELECT email, status FROM users ORDER BY id"))
        statuses = {email: state for email, state in rows}
    return statuses, await count_rows(db, "SELECT count(*) FROM outbox WHERE done_at IS NULL")


async def outbox_empty(db: Database) -> bool:
    return (await outbox_state(db))[1] == 0


with tqdm(total=2, desc="start; register ada and bob; kill -9; restart; wait for the outbox") as progress:
    async with temporary_database() as db:
        with app_process(OUTBOX_APP, DATABASE_URL=db.url, BILLING_SECONDS="60") as server:
            answers = [httpx.post(f"{server.url}/register", params={"email": email})
                       for email in ("ada@example.com", "bob@fail.example")]
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
        after_kill = await outbox_state(db)
        progress.update()
        with app_process(OUTBOX_APP, DATABASE_URL=db.url) as restarted:
            started = time.monotonic()
            await eventually(lambda: outbox_empty(db), "the restarted worker's emptying of the outbox")
            finished_after = time.monotonic() - started
        after_restart = await outbox_state(db)
        progress.update()

print("answers:", [(answer.status_code, answer.json()["status"]) for answer in answers])
print(f"after kill -9:    users {after_kill[0]}, messages not done: {after_kill[1]}")
print(f"after a restart:  users {after_restart[0]}, messages not done: {after_restart[1]}"
      f" ({finished_after:.1f} s after it started)")
assert [answer.status_code for answer in answers] == [202, 202]
assert after_kill == ({"ada@example.com": "pending", "bob@fail.example": "pending"}, 2)
assert after_restart == ({"ada@example.com": "active", "bob@fail.example": "refused"}, 0)

# %% [markdown] translates="722fe1a8bcf23b12"
# 这个最简单的发件箱能给你什么、不能给你什么：
#
# - **不会丢失**：意图与用户一起提交了，所以崩溃只会让它推迟。
# - **至少一次投递（at-least-once delivery），而非恰好一次（exactly once）**：只有在结果提交之后，消息才算完成；所以如果进程死掉时某次计费调用正在进行，下一个进程会再调用一次。对方服务必须能接受重复的请求，例如把消息 id 当作幂等键（idempotency key）；工作进程自己的步骤也必须幂等（第 5 节：状态只会从 `pending` 改变）。
# - **只有一个工作进程**：两个运行这个循环的进程都会取走最早的那条消息（事实 6.2）。在 PostgreSQL 上，`SELECT ... FOR UPDATE SKIP LOCKED` 让多个工作进程可以共享这张表（事实 6.3）。
#
# 第 7 章用持久化队列（durable queue）补全这幅图景：由一个独立的工作进程取代这个循环。
#
# 两个工作进程共享发件箱，意味着有两个连接，各自有自己的事务，同时提出工作进程的那个问题（“最早的未完成消息是哪条”）。下面的单元格在一张有三条消息的发件箱表上提出这个问题：第一个工作进程在它的事务中取走一条，在该事务仍然打开时，第二个工作进程也来问。
#
# **事实 6.2**：没有锁时，两个工作进程都取到消息 1。SQLite 中不存在 `FOR UPDATE SKIP LOCKED`：直接写出来是语法错误，而 SQLAlchemy 的 `.with_for_update(skip_locked=True)` 会被直接从 SQL 中省略，所以两个工作进程仍然都取到消息 1。

# %%
outbox_tables = MetaData()
outbox = Table("outbox", outbox_tables, Column("id", Integer, primary_key=True), Column("done_at", DateTime))
oldest_not_done = select(outbox.c.id).where(outbox.c.done_at.is_(None)).order_by(outbox.c.id).limit(1)
skipping_locked = oldest_not_done.with_for_update(skip_locked=True)


async def two_workers_take(engine: AsyncEngine, query: Select[tuple[int]]) -> tuple[int | None, int | None]:
    """Three messages; worker 1 takes one in its transaction, and while that is open worker 2 asks too."""
    async with engine.begin() as connection:
        await connection.execute(delete(outbox))
        await connection.execute(insert(outbox), [{"id": number} for number in (1, 2, 3)])
    async with engine.connect() as first, engine.connect() as second:
        async with first.begin():
            first_took = await first.scalar(query)
            async with second.begin():
                second_took = await second.scalar(query)
    return first_took, second_took


async with temporary_database(outbox_tables) as db:
    backend = db.engine.dialect.name
    without_lock = await two_workers_take(db.engine, oldest_not_done)
    print(f"{backend}, without a lock: worker 1 took message {without_lock[0]}, worker 2 message {without_lock[1]}")
    assert without_lock == (1, 1)
    if backend == "sqlite":
        try:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"))
            written_out = "accepted"
        except OperationalError as error:
            written_out = str(error.orig)
        compiled = " ".join(str(skipping_locked.compile(db.engine)).split())
        with_for_update = await two_workers_take(db.engine, skipping_locked)
        print(f"sqlite, FOR UPDATE SKIP LOCKED written out: {written_out}")
        print(f"sqlite, .with_for_update(skip_locked=True) compiles to: {compiled}")
        print(f"sqlite, with it: worker 1 took message {with_for_update[0]}, worker 2 message {with_for_update[1]}")
        assert written_out == 'near "FOR": syntax error'
        assert "FOR UPDATE" not in compiled and with_for_update == (1, 1)

# %% [markdown] translates="8988e3256364504e"
# **事实 6.3**：在 PostgreSQL 上使用 `FOR UPDATE SKIP LOCKED` 时，工作进程 1 的查询会锁住消息 1，直到它的事务结束；工作进程 2 的查询跳过被锁住的行，取到消息 2。如果本章的数据库是 PostgreSQL，单元格就在它上面运行；否则，如果这台机器装有 PostgreSQL，就在一个临时的 PostgreSQL 服务器上运行（`throwaway_postgres()`，来自课程的辅助函数）。两者都没有时，单元格会说明这条事实无法在这台机器上展示。

# %%
async def skip_locked_on(engine: AsyncEngine) -> tuple[str, tuple[int | None, int | None]]:
    compiled = " ".join(str(skipping_locked.compile(engine)).split())
    return compiled, await two_workers_take(engine, skipping_locked)


if backend == "postgresql":
    async with temporary_database(outbox_tables) as db:
        compiled, taken = await skip_locked_on(db.engine)
elif find_postgres_bin() is not None:
    with throwaway_postgres() as postgres:
        engine = make_engine(postgres.url(), pooled=False)
        try:
            await create_tables(engine, outbox_tables)
            compiled, taken = await skip_locked_on(engine)
        finally:
            await engine.dispose()
else:
    compiled, taken = "", (None, None)
    print("PostgreSQL is not installed here (and DATABASE_URL does not name it): Fact 6.3 is not shown on this machine.")
if compiled:
    print(f"postgresql, the query: {compiled}")
    print(f"postgresql, FOR UPDATE SKIP LOCKED: worker 1 took message {taken[0]}, worker 2 message {taken[1]}")
    assert compiled.endswith("FOR UPDATE SKIP LOCKED") and taken == (1, 2)

# %% [markdown] translates="cefa361f0dff455a"
# ## 7. 带 `yield` 的依赖项什么时候关闭它的会话？
#
# 为端点提供会话的常见方式，是一个带 `yield` 的依赖项：`yield` 之前的代码打开会话，之后的代码关闭它。FastAPI 的文档把后半部分称为依赖项的 *exit code*（退出代码：指一段代码，而不是一个数字）。只有当任务开始时退出代码还没有运行，后台任务才能使用请求的会话。
#
# 退出代码的运行时机已经变过两次，而从 FastAPI 0.121.0 起，你可以自己选择。这个选择就是依赖项的*作用域*（scope），它是 `Depends` 的一个参数：
#
# - `Depends(get_session, scope="function")`：退出代码在端点函数返回之后、响应发送之前运行；
# - `scope="request"`，带 `yield` 的依赖项的默认值：退出代码在响应发送之后运行，而且（事实 7.1 表明）也在后台任务之后。
#
# FastAPI 把需要运行的退出代码放在一个*退出栈*（exit stack，即一个 `contextlib.AsyncExitStack`）中，每个请求的每个作用域各有一个；关闭这个栈就会按后进先出的顺序运行它们。所以“会话什么时候关闭？”这个问题，就是“FastAPI 什么时候关闭那个栈？”。
#
# **事实 7.1**：在 FastAPI 0.163.2 上，一个使用默认作用域、带 `yield` 的依赖项，会在响应发送之后*并且在后台任务结束之后*才运行它的退出代码。使用 `scope="function"` 时，退出代码在响应发送之前运行，因此也在任务开始之前。

# %%
timeline = Timeline()
app = FastAPI()
app.add_middleware(TimelineMiddleware, timeline=timeline)


def resource_for(lane: str) -> Callable[[], AsyncIterator[str]]:
    async def dependency() -> AsyncIterator[str]:
        timeline.record(lane, "dependency set-up")
        yield "a session, say"
        timeline.record(lane, "dependency exit code")

    return dependency


async def slow_task(lane: str) -> None:
    timeline.record(lane, "task start")
    await asyncio.sleep(0.3)
    timeline.record(lane, "task end")


request_scoped = resource_for("default scope")
function_scoped = resource_for('scope="function"')


@app.post("/default")
async def with_default_scope(
    background_tasks: BackgroundTasks, resource: Annotated[str, Depends(request_scoped)]
) -> dict[str, str]:
    background_tasks.add_task(slow_task, "default scope")
    return {"scope": "request"}


@app.post("/function")
async def with_function_scope(
    background_tasks: BackgroundTasks, resource: Annotated[str, Depends(function_scoped, scope="function")]
) -> dict[str, str]:
    background_tasks.add_task(slow_task, 'scope="function"')
    return {"scope": "function"}


with serve(app) as url, httpx.Client(base_url=url) as client:
    timeline.request(client, "POST", "/default", lane="default scope")
    timeline.request(client, "POST", "/function", lane='scope="function"')

server_side = ("dependency set-up", "dependency exit code", "response sent", "task start", "task end")
orders = {}
for lane in ("default scope", 'scope="function"'):
    orders[lane] = [event.what for event in timeline.events if event.lane == lane and event.what in server_side]
    print(f"{lane:17} " + " -> ".join(orders[lane]))
exit_after_task = timeline.at("default scope", "dependency exit code") - timeline.at("default scope", "task end")
print(f"default scope: the exit code ran {1000 * exit_after_task:.1f} ms after the task ended")
assert orders["default scope"] == [
    "dependency set-up", "response sent", "task start", "task end", "dependency exit code"
]
assert orders['scope="function"'] == [
    "dependency set-up", "dependency exit code", "response sent", "task start", "task end"
]

# %% [markdown] translates="8a8de232825d8ee9"
# 从 0.163.2 的 `fastapi/routing.py` 中可以看出原因：请求的退出栈只在 `await response(...)` 之后才关闭，而 Starlette 的响应正是在这个调用内部运行它的后台任务。
#
# 旧版本的行为则不同。课程在每个版本上都测量了这一点：`make versions` 把下面的每个版本分别安装到独立的环境中，在真实的 uvicorn 服务器上运行同一个小应用，并记录事件的顺序（退出代码、响应离开应用、任务）。表格就是它记录下的结果；课程中的一个测试会重新测量。
#
# **事实 7.2**：在 FastAPI 0.103.2 和 0.105.0 上，默认的退出代码在响应和任务之后运行；在 0.106.0 到 0.117.0 上，在*响应之前*运行；从 0.118.0 起，又回到响应和任务之后运行。`scope="function"` 从 0.121.0 开始存在，它让退出代码在响应之前运行。最后一行是本课程固定的版本：结果与上面的单元格相同。

# %%
exit_code_history = version_table("yield_exit", "yield_exit_function_scope")
default_exit = {stack.name: outcomes[0] for stack, outcomes in exit_code_history.rows}
assert {name for name, outcome in default_exit.items() if outcome.startswith("before")} == {
    "FastAPI 0.106.0", "FastAPI 0.115.0", "FastAPI 0.117.0"
}
assert exit_code_history.outcome("FastAPI 0.163.2", "yield_exit") == "after the response and the tasks"
assert exit_code_history.outcome("FastAPI 0.163.2", "yield_exit_function_scope").startswith("before the response")
exit_code_history

# %% [markdown] translates="d8437a67cc430b25"
# FastAPI 的发布说明也是这么说的：
#
# - 0.106.0，在 *Breaking Changes* 一节中："Using resources from dependencies with `yield` in background tasks is no longer supported."（不再支持在后台任务中使用带 `yield` 的依赖项所提供的资源。）在此之前，退出代码是按设计在 "*after* the response was sent"（响应发送*之后*）运行的，"to allow using the same objects 'yielded' by dependencies inside of background tasks"（以便在后台任务中使用依赖项 yield 出来的同一批对象）。
# - 0.118.0："This behavior was reverted in 0.118.0, to make the exit code after `yield` be executed after the response is sent."（0.118.0 回退了这一行为，让 `yield` 之后的退出代码在响应发送之后执行。）
# - 0.121.0："Add support for dependencies with scopes"（为依赖项增加作用域支持）。（这条说明称 `scope="request"` 是在响应之前退出的那一个；但文档、代码和表格一致表明，那是 `"function"`。）
#
# 所以，同一份代码在 FastAPI 0.163（以及 0.106 之前）上交给后台任务的是一个打开的会话，而在 0.106 到 0.117 上，或者使用 `scope="function"` 时，交给它的是一个已关闭的会话。下一节展示这两种情况；两种都不是你想要的。

# %% [markdown] translates="6f2b6e6ef9ed5271"
# ## 8. 任务使用请求的会话时会出什么问题
#
# 第 7 节表明，被交给请求会话的后台任务，拿到的会话要么已经关闭，要么仍然打开，取决于 FastAPI 版本和依赖项的作用域。两种情况都不安全，该会话加载的对象也不安全：
#
# - **已关闭的会话**不会报错。它悄悄地在一个新连接上开始一个新事务，而这个连接没有人归还（事实 8.1）；这样的请求多了，连接池就再也无连接可给，下一个请求就会失败（事实 8.2）。
# - **打开的会话**能用，但请求的连接会一直被占用，它的提交也要等到任务完成（事实 8.3）。
# - **请求的 ORM 对象**：提交之后，读取它们的某个属性可能需要再次访问数据库，而在 asyncio 下，普通的属性读取无法访问数据库（事实 8.4）。
# - **整个应用共用一个会话**：一旦有两个任务同时使用它，就会失败（事实 8.5）。
#
# 第 9 节给出避开这四个问题的模式。
#
# *单元格的写法。* 每个应用都有自己的 engine（`make_engine(db.url)`，带连接池），只由服务器的事件循环（event loop）使用，并在应用的生命周期中 dispose，和真实的应用一样。`count_connections` 借助 SQLAlchemy 的两个连接池事件，统计从连接池取出和归还的连接数。有些任务会捕获遇到的错误，并通过 `what_went_wrong` 只保留其文本；该函数中的注释说明了它为什么还要清除错误的回溯（traceback）。


# %%
def count_connections(engine: AsyncEngine) -> Counter[str]:
    """Count the connections `engine`'s pool hands out ("taken") and gets back ("returned")."""
    counts: Counter[str] = Counter()
    event.listen(engine.sync_engine, "checkout", lambda *_: counts.update(["taken"]))
    event.listen(engine.sync_engine, "checkin", lambda *_: counts.update(["returned"]))
    return counts


def what_went_wrong(error: BaseException) -> str:
    """The error's type and the first line of its message; then its traceback's frames are cleared."""
    # 在这里、在服务器的线程中清除：MissingGreenlet 的回溯持有抛出它的那个 greenlet；
    # 当这样的回溯比服务器的线程活得更久时，课程的测试曾看到 Python 在之后的某次垃圾回收中崩溃
    # （greenlet 3.5.6 中的段错误），大约每四十次运行出现一次。
    text = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    caught: BaseException | None = error
    while caught is not None:
        traceback.clear_frames(caught.__traceback__)
        caught = caught.__cause__ or caught.__context__
    return text


# %% [markdown] translates="4f529c8c0ded41f0"
# **事实 8.1**：使用 `scope="function"` 时（按照上面的发布说明，这正是 FastAPI 0.106 到 0.117 默认采用的时机），任务拿到的会话已经关闭。使用它不会抛出任何异常：已关闭的 `AsyncSession` 只是从连接池中取出一个*新*连接，开始一个新事务。没有人再去关闭这个会话，所以在请求及其任务都完成之后，那个连接仍然被占用着。

# %%
async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    handed_over: list[AsyncSession] = []
    task_saw: dict[str, object] = {}
    task_done = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for session in handed_over:  # 演示结束后，在服务器自己的事件循环上清理
            await session.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def count_users_later(session: AsyncSession) -> None:
        handed_over.append(session)
        task_saw["taken before its query"] = connections["taken"]
        task_saw["in a transaction before"] = session.in_transaction()
        task_saw["users"] = await session.scalar(select(func.count()).select_from(User))
        task_saw["in a transaction after"] = session.in_transaction()
        task_done.set()

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.commit()
        background_tasks.add_task(count_users_later, session)
        return {"created": email}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        created = httpx.post(f"{url}/users", params={"email": "gus@example.com"})
        assert task_done.wait(timeout=60), "the task did not finish"
        still_taken = connections["taken"] - connections["returned"]
        totals = dict(connections)
    errors = logged_errors(records)

print(f"{created.status_code} {created.json()}; errors logged: {len(errors)}")
print(f"before the task's query the pool had handed out {task_saw['taken before its query']} connection"
      " (the request's, given back when its session closed)")
print(f"the task's query on the closed session counted {task_saw['users']} user, on a new connection,"
      f" in a new transaction (in a transaction before: {task_saw['in a transaction before']},"
      f" after: {task_saw['in a transaction after']})")
print(f"after the request and the task: taken {totals['taken']}, returned {totals['returned']}:"
      f" {still_taken} connection still taken, by a session nobody will close")
assert created.status_code == 200 and not errors
assert task_saw == {
    "taken before its query": 1, "in a transaction before": False, "users": 1, "in a transaction after": True
}
assert totals == {"taken": 2, "returned": 1} and still_taken == 1

# %% [markdown] translates="a7df1b830a842f24"
# 这个连接会一直被占用，直到有人提交、回滚或关闭那个会话。像这里这样三件事都不做的任务，只能把它留给垃圾回收器。（这里由应用的生命周期关闭了这些会话，所以没有东西泄漏到单元格之外。）在真实的应用中，每个这样的请求都会一直占着一个连接，直到那时为止，而连接池里的连接是有限的。SQLAlchemy 的 `QueuePool`（对 asyncio engine 而言是 `AsyncAdaptedQueuePool`）保持 `pool_size` 个连接，当它们全部被占用时最多再开 `max_overflow` 个；再申请一个连接的请求会等待 `pool_timeout` 秒，然后放弃。
#
# **事实 8.2**：本章的 engine 就有这样一个连接池：默认 5 个连接、10 个溢出连接、30 秒超时。把连接池设为 2 个连接、不允许溢出、超时半秒，然后依次发出四个与事实 8.1 相同的请求（每个都在前一个请求的任务完成后才发出）：前两个得到 `200`，它们的任务让两个连接都处于被占用状态。连接池再也没有连接可给，所以之后的每个请求都等待半秒，然后以 `500` 失败：端点的提交抛出了 SQLAlchemy 的 `TimeoutError: QueuePool limit of size 2 overflow 0 reached`。

# %%
defaults = inspect.signature(QueuePool.__init__).parameters
async with temporary_database(Base.metadata) as db:
    default_engine = make_engine(db.url)
    default_pool = type(default_engine.pool).__name__, default_engine.pool.size(), default_engine.pool.timeout()
    await default_engine.dispose()

    POOL_SIZE, POOL_TIMEOUT, REQUESTS = 2, 0.5, 4
    engine = make_engine(db.url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    handed_over = []
    task_done = threading.Semaphore(0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for session in handed_over:
            await session.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def count_users_later(session: AsyncSession) -> None:
        handed_over.append(session)
        await session.scalar(select(func.count()).select_from(User))  # 一个新连接，永远不会归还
        task_done.release()

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.commit()
        background_tasks.add_task(count_users_later, session)
        return {"created": email}

    answers: list[tuple[int, float]] = []
    with capture_logs("uvicorn.error") as records, serve(app) as url:
        for number in range(REQUESTS):
            sent = time.monotonic()
            code = httpx.post(f"{url}/users", params={"email": f"user{number}@example.com"}, timeout=60).status_code
            answers.append((code, time.monotonic() - sent))
            if code == 200:  # 等到它的任务取走了连接
                assert task_done.acquire(timeout=60), "the task did not finish"
        still_taken = connections["taken"] - connections["returned"]
    errors = logged_errors(records)

print(f"by default: {default_pool[0]} of {default_pool[1]} connections, waiting up to {default_pool[2]} s;"
      f" QueuePool's defaults: pool_size={defaults['pool_size'].default},"
      f" max_overflow={defaults['max_overflow'].default}, timeout={defaults['timeout'].default}")
print(f"a pool of {POOL_SIZE}, no overflow, pool_timeout={POOL_TIMEOUT}: the answers, in order: {[c for c, _ in answers]}")
print(f"connections taken by tasks and never given back: {still_taken}")
for error in errors:
    print(f"    {error.type}: {error.message.splitlines()[0]}")
print(f"each failed request waited at least pool_timeout: {all(took >= POOL_TIMEOUT for c, took in answers if c == 500)}")
assert default_pool == ("AsyncAdaptedQueuePool", 5, 30.0)
assert (defaults["pool_size"].default, defaults["max_overflow"].default, defaults["timeout"].default) == (5, 10, 30.0)
assert [code for code, _ in answers] == [200] * POOL_SIZE + [500] * (REQUESTS - POOL_SIZE)
assert still_taken == POOL_SIZE
assert [error.type for error in errors] == ["TimeoutError"] * (REQUESTS - POOL_SIZE)
assert all(error.message.startswith(f"QueuePool limit of size {POOL_SIZE} overflow 0 reached") for error in errors)
assert all(took >= POOL_TIMEOUT for code, took in answers if code == 500)

# %% [markdown] translates="cd60a5493e2fb032"
# **事实 8.3**：在 FastAPI 0.163 上使用默认作用域时，任务拿到的请求会话仍然打开，而且能正常工作。但在任务运行期间，请求的连接一直被占用；在退出代码中提交的依赖项（`async with sessions.begin()`）要等任务结束后才提交：客户端已经拿到了响应，而新用户对其他任何人都还不可见。

# %%
async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    task_running = threading.Event()
    cell_has_looked = threading.Event()
    task_saw = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session_in_a_transaction() -> AsyncIterator[AsyncSession]:
        async with sessions.begin() as session:  # 在退出代码中提交
            yield session

    async def send_welcome_later(session: AsyncSession) -> None:
        task_running.set()
        # 一个慢邮件服务器，需要多慢就多慢：单元格查看过数据库之后，任务才继续。
        await asyncio.to_thread(cell_has_looked.wait, 60)
        task_saw["users"] = await session.scalar(select(func.count()).select_from(User))

    @app.post("/users")
    async def create_user(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session_in_a_transaction)],
    ) -> dict[str, str]:
        session.add(User(email=email))
        await session.flush()
        background_tasks.add_task(send_welcome_later, session)
        return {"created": email}

    with serve(app) as url:
        created = httpx.post(f"{url}/users", params={"email": "hal@example.com"})
        assert task_running.wait(timeout=60), "the task did not start"
        visible_during_task = await count_rows(db, "SELECT count(*) FROM users")
        taken_during_task = connections["taken"] - connections["returned"]
        cell_has_looked.set()
    visible_after = await count_rows(db, "SELECT count(*) FROM users")
    taken_after = connections["taken"] - connections["returned"]

print(f"the client had {created.status_code} {created.json()}")
print(f"while the task ran: {visible_during_task} users visible to another connection,"
      f" {taken_during_task} connection taken by the request")
print(f"the task, on the request's session, saw {task_saw['users']} user (its own uncommitted INSERT)")
print(f"after the task and the exit code: {visible_after} user visible, {taken_after} connections taken")
assert created.status_code == 200 and task_saw["users"] == 1
assert visible_during_task == 0 and taken_during_task == 1
assert visible_after == 1 and taken_after == 0

# %% [markdown] translates="78141149e7a4116f"
# 在 FastAPI 0.106.0 到 0.117.0 上，默认的退出代码在响应之前运行（事实 7.2）：在那些版本上，这个依赖项会在响应之前提交并关闭会话，任务就会陷入事实 8.1 的处境。指望退出代码在某个特定时机运行的代码，会在一次小版本升级后改变行为。
#
# 请求的会话加载或添加的 ORM 对象，还有它们自己的问题。下面四个概念依次解释这个问题。
#
# **过期的属性。** 会话提交时，SQLAlchemy 默认会让该会话中每个对象的每个属性*过期*（expire）：它忘掉这些值，因为从此刻起，其他事务可能会修改该行。这就是 sessionmaker 的 `expire_on_commit=True`，SQLAlchemy 的默认设置。
#
# **懒加载。** 读取一个未加载的属性，比如一个已过期的 `user.email`，会让 SQLAlchemy 当场在属性访问内部从数据库获取它。这就是*懒加载*（lazy load），它需要对象的会话和一个连接。
#
# **`MissingGreenlet`。** 在 asyncio 下，SQLAlchemy 只能在你 `await` 的调用内部等待驱动（该调用的代码运行在事实 1.3 提到的 greenlet 中）。普通的属性访问没有被 await，所以在那里发生的懒加载无法等待数据库，于是抛出 `MissingGreenlet`。
#
# **游离的实例。** 会话一旦关闭，对象就变成*游离*（detached）状态：它不属于任何会话，没有什么能加载它的属性，懒加载会抛出 `DetachedInstanceError`。
#
# 课程的 `make_sessionmaker` 设置了 `expire_on_commit=False`：对象保留提交时的值，读取这些值不需要访问数据库。但它只保留这些值；未加载的属性仍然需要懒加载。
#
# **事实 8.4**：端点提交一个 `User`，并把这个对象本身交给一个读取 `user.email` 的任务：
#
# 1. `expire_on_commit=True`，会话仍然打开（默认作用域）：懒加载抛出 `MissingGreenlet: greenlet_spawn has not been called; can't call await_() here. Was IO attempted in an unexpected place?`。在 PostgreSQL（asyncpg）上，它原样抛出。在 SQLite 上，aiosqlite 在执行语句的中途遇到它，因此它以包装后的形式出现，即 `StatementError: (sqlalchemy.exc.MissingGreenlet) ...`，随后 Python 还会警告有一个协程从未被 await。
# 2. `expire_on_commit=True`，会话已关闭（`scope="function"`）：`DetachedInstanceError: Instance <User at 0x...> is not bound to a Session; attribute refresh operation cannot proceed`。
# 3. `expire_on_commit=False`，默认作用域：读取成功，得到的是请求提交时的地址。
# 4. `expire_on_commit=False`，会话已关闭，但端点在提交之后让 `email` 过期了（`session.expire(user, ["email"])`）：又是 `DetachedInstanceError`，与情况 2 相同。
#
# 第一个单元格构建应用，每种情况一个端点；第二个单元格运行它。

# %%
GREETING_CASES = {  # 情况：(expire_on_commit, 依赖项的作用域, 提交后是否让 email 过期)
    "expire_on_commit=True,  default scope                ": (True, "request", False),
    'expire_on_commit=True,  scope="function"             ': (True, "function", False),
    "expire_on_commit=False, default scope                ": (False, "request", False),
    'expire_on_commit=False, scope="function", expire()   ': (False, "function", True),
}


def greeting_app(engine: AsyncEngine, reads: dict[str, str]) -> FastAPI:
    """`POST /case/<n>` commits a user and hands the ORM object itself to a task that reads `user.email`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def greet(case: str, user: User) -> None:
        try:
            reads[case] = f"read {user.email!r}"
        except Exception as error:
            reads[case] = what_went_wrong(error)

    def add_endpoint(number: int, case: str, expire_on_commit: bool, scope: str, expire_email: bool) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=expire_on_commit)

        async def get_session() -> AsyncIterator[AsyncSession]:
            async with sessions() as session:
                yield session

        @app.post(f"/case/{number}")
        async def create_user(
            email: str, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session, scope=scope)]
        ) -> dict[str, str]:
            user = User(email=email)
            session.add(user)
            await session.commit()
            if expire_email:
                session.expire(user, ["email"])
            background_tasks.add_task(greet, case, user)  # ORM 对象本身
            return {"created": email}

    for number, (case, options) in enumerate(GREETING_CASES.items()):
        add_endpoint(number, case, *options)
    return app


# %%
async with temporary_database(Base.metadata) as db:
    reads: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with serve(greeting_app(make_engine(db.url), reads)) as url:
            for number in range(len(GREETING_CASES)):
                httpx.post(f"{url}/case/{number}", params={"email": f"user{number}@example.com"})
        gc.collect()  # 失败的重新加载留下了一些对象；趁警告仍被捕获，现在就回收它们

for number, case in enumerate(GREETING_CASES, start=1):
    print(f"{number}. {case}: {reads[case]}")
for warning in caught:
    print(f"and, when the failed reload was cleaned up, Python warned: {warning.category.__name__}: {warning.message}")
outcomes = [reads[case] for case in GREETING_CASES]
detached = ("is not bound to a Session; attribute refresh operation cannot proceed"
            " (Background on this error at: https://sqlalche.me/e/21/bhk3)")
assert outcomes[0].startswith(("MissingGreenlet: ", "StatementError: (sqlalchemy.exc.MissingGreenlet) "))
assert "greenlet_spawn has not been called; can't call await_() here." in outcomes[0]
assert outcomes[1].startswith("DetachedInstanceError: Instance <User at 0x") and outcomes[1].endswith(detached)
assert outcomes[2] == "read 'user2@example.com'"
assert outcomes[3].startswith("DetachedInstanceError: Instance <User at 0x") and outcomes[3].endswith(detached)

# %% [markdown] translates="f8964ce67aed1356"
# 那么，整个应用只创建一次、共用一个会话，让它永远不会过早关闭，行不行？`AsyncSession` 是单个工作单元（unit of work），不能被两个任务同时使用；而不同请求的任务确实会并发（concurrency）运行（第 1 章第 3 节）。
#
# **事实 8.5**：两个请求的任务在同一时刻查询同一个全局共享会话：一个查询成功，另一个抛出 `InvalidRequestError: This session is provisioning a new connection; concurrent operations are not permitted`。

# %%
async with temporary_database(Base.metadata) as db:
    shared_session = db.sessions()  # 整个应用共用一个会话：错误就在这里
    both_tasks_running = asyncio.Barrier(2)
    task_outcomes: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await shared_session.close()

    app = FastAPI(lifespan=lifespan)

    async def count_users_now() -> None:
        async with asyncio.timeout(60):  # 只用于结束对一个永远不来的第二个任务的等待
            await both_tasks_running.wait()  # 从这里开始，两个任务同时运行
        try:
            users = await shared_session.scalar(select(func.count()).select_from(User))
            task_outcomes.append(f"counted {users} users")
        except Exception as error:
            task_outcomes.append(what_went_wrong(error))

    @app.post("/count")
    async def count(background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(count_users_now)
        return {"counting": "later"}

    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            await asyncio.gather(client.post("/count"), client.post("/count"))

print(*sorted(task_outcomes), sep="\n")
failed, worked = sorted(task_outcomes)
assert failed.startswith(
    "InvalidRequestError: This session is provisioning a new connection; concurrent operations are not permitted"
)
assert worked == "counted 0 users"

# %% [markdown] translates="845c410f09ff47c5"
# ## 9. 始终可行的模式：传递 id，在任务中打开会话
#
# FastAPI 文档从 0.106 起推荐的做法，与退出代码何时运行无关，因为任务从不碰请求的会话：把 *id* 交给任务（再加上会话工厂，或者让它使用应用的会话工厂），让任务自己打开会话和事务，读取它需要的数据，提交它做的修改。（FastAPI 文档原文："instead of passing the object from the database as a parameter to the background task function, you would pass the ID of that object and then obtain the object again inside the background task function."，即：不要把数据库中的对象作为参数传给后台任务函数，而是传入该对象的 ID，再在后台任务函数内部重新获取这个对象。）
#
# **事实 9.1**：无论请求的会话来自默认作用域还是 `scope="function"`，同一个任务（传入 id，内部使用 `async with sessions.begin()`）都能读到已提交的用户，提交它的修改，不抛出任何异常；任务完成后，没有任何连接处于被占用状态。

# %%
class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    welcomed: Mapped[bool] = mapped_column(default=False)


async with temporary_database(Base.metadata) as db:
    engine = make_engine(db.url)
    connections = count_connections(engine)
    sessions = make_sessionmaker(engine)
    welcomed_now: list[str] = []
    tasks_done = threading.Semaphore(0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def welcome(member_id: int) -> None:
        async with sessions.begin() as session:  # 任务自己的会话和事务
            member = await session.get(Member, member_id)
            if member is not None and not member.welcomed:  # 运行两次也无害
                welcomed_now.append(member.email)
                member.welcomed = True
        tasks_done.release()

    @app.post("/members/default")
    async def join_default(
        email: str, background_tasks: BackgroundTasks, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, int]:
        member = Member(email=email)
        session.add(member)
        await session.commit()
        background_tasks.add_task(welcome, member.id)  # 传 id，而不是对象
        return {"id": member.id}

    @app.post("/members/function")
    async def join_function(
        email: str,
        background_tasks: BackgroundTasks,
        session: Annotated[AsyncSession, Depends(get_session, scope="function")],
    ) -> dict[str, int]:
        member = Member(email=email)
        session.add(member)
        await session.commit()
        background_tasks.add_task(welcome, member.id)
        return {"id": member.id}

    with capture_logs("uvicorn.error") as records, serve(app) as url:
        answers = []
        for scope in ("default", "function"):
            answers.append(httpx.post(f"{url}/members/{scope}", params={"email": f"{scope}@example.com"}))
            # 每个任务完成后才发下一个请求，所以 welcomed_now 按请求的顺序排列
            assert tasks_done.acquire(timeout=60), "a task did not finish"
        taken_after_tasks = connections["taken"] - connections["returned"]
    errors = logged_errors(records)
    async with db.sessions() as session:
        stored = list(await session.execute(select(Member.email, Member.welcomed).order_by(Member.id)))

print("answers:", [answer.status_code for answer in answers], "errors logged:", len(errors))
print("welcomed by the tasks:", welcomed_now)
print("in the database:", [f"{email} welcomed={welcomed}" for email, welcomed in stored])
print(f"connections still taken once the tasks were done: {taken_after_tasks}")
assert [answer.status_code for answer in answers] == [200, 200] and not errors
assert welcomed_now == ["default@example.com", "function@example.com"]
assert [tuple(row) for row in stored] == [("default@example.com", True), ("function@example.com", True)]
assert taken_after_tasks == 0

# %% [markdown] translates="c9b0f63d713baf4f"
# 现在，端点和它的任务之间只共享一个整数。无论请求的会话是打开还是关闭，这个任务都能工作，并自行提交；它还可以原封不动地搬到一个工作进程中去（第 7 章），而请求的会话是永远不可能跟过去的。

# %% [markdown] translates="014c40ed61265fd8"
# ## 10. 几种设计的对比
#
# | 设计 | 在响应与撤销之间 `kill -9` 后留下什么 | 慢步骤期间是否占着事务 | 证明 |
# |---|---|---|---|
# | 先提交，再在后台任务中撤销 | 那一行，永久留下 | 否 | 第 2、3 节 |
# | 用一个事务包住两个步骤 | 什么都不留 | 是 | 第 4 节 |
# | 发件箱：意图写在同一个事务中，由工作进程执行 | 不会丢失：下一个工作进程会完成这项工作 | 否 | 第 6 节 |
#
# 无论选择哪种设计，撤销都必须是幂等的（第 5 节），而访问数据库的任务要根据 id 打开自己的会话（第 8、9 节）。

# %% [markdown] translates="b53f02b3d3d4ef55"
# ## 练习
#
# 每个练习都有一个供你作答的代码单元格，以及一个用真实服务器和真实数据库（SQLite，或者 `DATABASE_URL` 指定的数据库）检查答案的单元格。数据表和计费服务来自 `bgcourse.checks.ch03_db_compensation`。参考答案在 `solutions/ch03_db_compensation/` 中；请先自己尝试，再对照。
#
# ### 练习 3.1：在事务内撤销
#
# 编写 `make_app(sessions)`，它返回一个带有 `POST /register?email=...` 的应用。它在**一个**事务中添加一个 `User`，并 await `create_billing_account(email)`。成功时返回 `201 Created`，内容为 `{"user_id": <the new id>}`；当计费服务抛出 `BillingError` 时，返回 `502`，以错误的文本作为 `detail`，并且不留下任何行，哪怕片刻也不行：检查程序会在计费调用进行期间，从另一个连接查看这张表。

# %% nbgrader={"grade": false, "grade_id": "ex01_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from fastapi import FastAPI, HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import BillingError, User, create_billing_account


def make_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    app = FastAPI()

    @app.post("/register", status_code=status.HTTP_201_CREATED)
    async def register(email: str) -> dict[str, int]:
        try:
            async with sessions.begin() as session:
                user = User(email=email)
                session.add(user)
                await session.flush()
                await create_billing_account(email)
        except BillingError as error:
            raise HTTPException(status_code=status.HTTP_502_BAD_GATEWAY, detail=str(error)) from error
        return {"user_id": user.id}

    return app
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex01", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
from bgcourse.checks import ch03_db_compensation as checks

await checks.ex01(make_app)

# %% [markdown] translates="f3ec97d5d43447a6"
# ### 练习 3.2：重复执行也无害的补偿事务
#
# 数据表 `Event`（`id`、`name`、`seats_left`）和 `Booking`（`id`、`event_id`、`email`）。编写 `async def cancel_booking(sessions, booking_id)`，作为付款失败的预订的补偿事务：在它自己的会话的一个事务中，删除该预订并归还座位（`seats_left + 1`）。它会对同一个预订运行不止一次（检查程序的端点会把它添加三次：一次补偿事务和两次重试），之后的运行必须不改变任何东西，也不抛出任何异常。提示：`delete(Booking).where(...).returning(Booking.event_id)` 能告诉你是不是*这一次*运行删掉了预订。

# %% nbgrader={"grade": false, "grade_id": "ex02_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import Booking, Event


async def cancel_booking(sessions: async_sessionmaker[AsyncSession], booking_id: int) -> None:
    async with sessions.begin() as session:
        deleted = await session.execute(delete(Booking).where(Booking.id == booking_id).returning(Booking.event_id))
        event_id = deleted.scalar_one_or_none()
        if event_id is not None:
            await session.execute(update(Event).where(Event.id == event_id).values(seats_left=Event.seats_left + 1))
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex02", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
await checks.ex02(cancel_booking)

# %% [markdown] translates="9259645a2b434aa4"
# ### 练习 3.3：发件箱工作进程
#
# 数据表 `User`（`id`、`email`、`status`）和 `OutboxMessage`（`id`、`user_id`、`done_at`）。检查程序的 `POST /register` 在一个事务中写入一个状态为 `"pending"` 的用户和一条对应的消息；它的工作循环（worker loop）每 20 毫秒调用一次你的 `process_outbox(sessions, open_account)`。对每条未完成的消息，按从旧到新的顺序：`await open_account(<the user's email>)`，然后在一个事务中把用户的状态设为 `"active"`（如果它抛出了 `BillingError`，则设为 `"refused"`），并把消息的 `done_at` 设为当前时间。如果 `open_account` 抛出其他异常（计费服务宕机了），这条消息必须保持原样，留待下一轮处理：让异常继续向上传播。返回本次处理了多少条消息。

# %% nbgrader={"grade": false, "grade_id": "ex03_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bgcourse.checks.ch03_db_compensation import BillingError, OutboxMessage, User


async def process_outbox(
    sessions: async_sessionmaker[AsyncSession], open_account: Callable[[str], Awaitable[None]]
) -> int:
    async with sessions() as session:
        pending = (
            await session.execute(
                select(OutboxMessage.id, User.id, User.email)
                .join(User, User.id == OutboxMessage.user_id)
                .where(OutboxMessage.done_at.is_(None))
                .order_by(OutboxMessage.id)
            )
        ).all()
    for message_id, user_id, email in pending:
        try:
            await open_account(email)
            outcome = "active"
        except BillingError:
            outcome = "refused"
        async with sessions.begin() as session:
            await session.execute(update(User).where(User.id == user_id).values(status=outcome))
            await session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message_id).values(done_at=datetime.now(UTC))
            )
    return len(pending)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "ex03", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
await checks.ex03(process_outbox)

# %% [markdown] translates="bc69c0b95f8e48b7"
# ## 测验（quiz）
#
# 每道题会在一个单元格中显示；在它下面的单元格中作答；再下一个单元格会告诉你是否答对。答对时给出解释；答错时给出一个不泄露答案的提示（如果你更想直接看解释，随时可以用 `quiz.explain("q01")` 查看 q01 的解释）。

# %% nbgrader={"grade": false, "grade_id": "q01_question", "locked": true, "schema_version": 3, "solution": false, "task": false}
quiz = load_quiz("ch03_db_compensation")
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
answer_q03 = "A"
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
def schedule_removal(background_tasks, remove_user, user):
    background_tasks.add_task(remove_user, user.id)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "q06", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
quiz.check("q06", schedule_removal)

# %% [markdown] translates="86bb541ac8c4d414"
# ## 小结
#
# - SQLAlchemy 的 asyncio API 由每个进程一个的 `AsyncEngine`、一个 `async_sessionmaker`，以及用于事务的 `async with sessions.begin()` 组成；同样的代码可以在 SQLite（`aiosqlite`）和 PostgreSQL（`asyncpg`）上运行，由 `DATABASE_URL` 决定。它需要 `greenlet`，而 SQLAlchemy 2.1 只有在 `pip install "sqlalchemy[asyncio]"` 时才会安装它（第 1 节）。
# - 后台任务中的补偿事务在进程存活时有效（第 2 节），但会随进程一起丢失：`kill -9` 之后，那一行会永久留下（第 3 节）。
# - 只要可以，就把写入和可能失败的步骤放进同一个事务：失败时回滚，也就没有什么需要撤销的（第 4 节）。让每个补偿事务都幂等：直接说明结果应当是什么（`DELETE ... WHERE id`），而不是对已加载的对象进行操作（第 5 节）。
# - 对于必须在崩溃后依然完成的工作，在同一个事务中把它记下来（发件箱），让工作进程至少执行一次（第 6 节）；第 7 章把这件事交给持久化队列。两个这样的工作进程会取走同一条消息；在 PostgreSQL 上，`FOR UPDATE SKIP LOCKED` 让第二个工作进程跳过第一个已锁住的行（第 6 节）。
# - 带 `yield` 的依赖项的退出代码：在 FastAPI 0.103.2 和 0.105.0 上于任务之后运行；在 0.106.0 到 0.117.0 上于响应之前运行；在 0.118.0、0.121.0 以及固定版本 0.163.2 上，又回到响应和任务之后运行；`scope="function"`（从 0.121.0 起）选择提前退出（第 7 节，逐个版本实测）。
# - 使用请求会话的任务，要么遇到一个已关闭的会话：它悄悄地在一个新连接上开始新事务，这个连接在会话被提交、回滚或关闭（或被垃圾回收）之前一直被占用，这样的请求一多，连接池就会被耗尽，下一个请求以 `TimeoutError` 失败；要么遇到一个打开的会话：它占着请求的连接，并推迟请求的提交。请求的 ORM 对象中未加载的属性（因提交或 `session.expire` 而过期）会以 `MissingGreenlet` 或 `DetachedInstanceError` 失败（使用 `expire_on_commit=False` 时，提交前已加载的值仍然可以读取）；全局共享会话在并发下会失败（第 8 节）。
# - 所以：传递 id，并在任务中用 `async_sessionmaker` 打开会话（第 9 节）。
#
# 下一章：第 4 章编排多个任务：执行顺序、重试，以及其中一个失败时该怎么办。
