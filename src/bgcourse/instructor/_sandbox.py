"""Run a list of cells in a fresh kernel, in a sandbox of its own, and say, for each, what happened.

The kernel runs in the operating system's sandbox of ``_isolation.py`` (a trusted cohort's, beside
the grader), in a temporary folder of its own (its working directory; IPC sockets beside it, no TCP
port), with the guard of ``_guard.py`` as its ``sitecustomize`` (a second line: it names what was
refused, for the feedback). Each cell has a timeout (the cell is interrupted, the next one runs),
the whole run a deadline (the kernel is killed, and with it every process of the sandbox). Output
is capped in the kernel and again here. A kernel that dies or will not stop ends the run: the
cells not run get a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets.config import Config

import bgcourse
from bgcourse.instructor._guard import ALLOWED_PROGRAMS, GUARD_SOURCE, GUARD_VARIABLE, output_cap_source
from bgcourse.instructor._isolation import Isolation, ProcessLimit, choose_isolation
from bgcourse.instructor._kernel_caps import message_caps_source
from bgcourse.instructor._kernel_client import CellRun, GradingClient, new_refusals, outcome

__all__ = ["CellRun", "Limits", "Run", "run_cells"]


@dataclass(frozen=True)
class Limits:
    """How long, how much memory and how much output one submission may take."""

    cell_timeout: float = 60
    deadline: float = 600
    memory_mb: int = 4096
    output_chars: int = 100_000
    interrupt_grace: float = 10  # after interrupting a cell at its timeout, how long to wait for it to stop
    processes: int = 512  # processes and threads the sandbox may have at once


@dataclass
class Run:
    """The outcome of every cell that ran, in order, and why the rest did not run (if they did not)."""

    cells: list[CellRun] = field(default_factory=list)
    stopped: str = ""


def run_cells(
    sources: list[str],
    limits: Limits,
    *,
    protected: list[Path],
    quizzes: dict[str, str],
    warm: tuple[str, ...] = (),
    isolation: Isolation | None = None,
) -> Run:
    """Execute ``sources`` one cell each, in a new kernel; ``quizzes`` are the quiz files it may read.

    ``isolation`` defaults to the operating system's sandbox, and fails if there is none.

    The modules in ``warm`` are imported first, in a set-up cell with a timeout of its own, so
    that a learner's cell is not charged for importing the course's helpers on a busy machine.
    """
    isolation = isolation or choose_isolation(trusted=False)
    root = Path(tempfile.mkdtemp(prefix="bgcourse-grade-"))
    try:
        for name in ("work", "kernel", "site", "quizzes", "log", "kernelspecs"):
            (root / name).mkdir()
        (root / "log" / "refused.log").touch()
        (root / "site" / "sitecustomize.py").write_text(GUARD_SOURCE, encoding="utf-8")
        for name, text in quizzes.items():
            (root / "quizzes" / name).write_text(text, encoding="utf-8")
        guard = {
            "memory_bytes": limits.memory_mb * 2**20,
            "protected": sorted(str(path) for path in protected),
            "log": str(root / "log" / "refused.log"),
            "programs": list(ALLOWED_PROGRAMS),
        }
        settings = {
            GUARD_VARIABLE: json.dumps(guard),
            "BGCOURSE_QUIZZES": str(root / "quizzes"),
            "MALLOC_ARENA_MAX": "2",  # fewer malloc arenas: far less address space under RLIMIT_AS
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if isolation.sandboxed:  # only what the kernel needs: none of the instructor's variables
            env = settings | {
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
                "PYTHONPATH": str(root / "site"),
                "HOME": str(root / "work"),
                "LANG": "C.UTF-8",
                "TMPDIR": "/tmp",
            }
        else:
            env = {key: value for key, value in os.environ.items() if not key.startswith(("BGCOURSE_", "PYTHONPATH"))}
            env |= settings | {
                "PYTHONPATH": os.pathsep.join([str(root / "site"), *filter(None, [os.environ.get("PYTHONPATH")])])
            }
        limit = ProcessLimit(limits.processes) if isolation.sandboxed else None
        try:
            _write_kernelspec(root, limits, env, isolation, limit)
            return asyncio.run(_run(sources, limits, root, env, warm, isolation))
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start, or not in time
            return Run(stopped=f"the grading kernel did not start ({type(error).__name__}: {error})")
        finally:
            if limit is not None:
                limit.close()
    finally:
        _remove(root)


def _remove(root: Path) -> None:
    """Remove the run's folder, whatever the learner left in it (``rm`` also takes trees too deep for Python)."""
    with contextlib.suppress(RecursionError):  # Python's rmtree recurses: a deep tree stops it
        shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False, capture_output=True)


_KERNEL_NAME = "bgcourse-grading"


def _write_kernelspec(
    root: Path, limits: Limits, env: dict[str, str], isolation: Isolation, limit: ProcessLimit | None
) -> None:
    """The kernel's command: ipykernel, inside the sandbox (its interrupts by message: no signal crosses it)."""
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if isolation.sandboxed:
        package = Path(bgcourse.__file__).resolve().parent
        readable = [Path(sys.base_prefix), Path(sys.prefix), package.parent, root / "site", root / "quizzes"]
        argv = isolation.command(
            argv,
            env=env,
            readable=readable,
            # The log is bound as a file, not its folder: the learner can write lines into it, but not
            # replace it (with a link the grader would follow) or add files beside it.
            writable=[root / "kernel", root / "log" / "refused.log"],
            workdir=root / "work",
            memory_bytes=limits.memory_mb * 2**20,
            processes=limits.processes,
        )
        argv = limit.wrap(argv) if limit is not None else argv
    spec = {"argv": argv, "display_name": "bgcourse grading", "language": "python", "interrupt_mode": "message"}
    folder = root / "kernelspecs" / _KERNEL_NAME
    folder.mkdir()
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def _setup_source(limits: Limits, warm: tuple[str, ...]) -> str:
    """The set-up cell: caps on what the kernel prints and sends, then the imports to warm."""
    imports = "".join(f"try:\n    __import__({module!r})\nexcept ImportError:\n    pass\n" for module in warm)
    return output_cap_source(limits.output_chars) + message_caps_source(limits.output_chars) + imports


async def _run(
    sources: list[str], limits: Limits, root: Path, env: dict[str, str], warm: tuple[str, ...], isolation: Isolation
) -> Run:
    setup = nbformat.v4.new_code_cell(_setup_source(limits, warm), metadata={"bgcourse_setup": True})
    cells = [setup]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    notebook = nbformat.v4.new_notebook(cells=cells)
    config = Config(
        {
            "KernelManager": {
                "transport": "ipc",
                "ip": str(root / "kernel" / "k"),
                "connection_file": str(root / "kernel" / "connection.json"),
            }
        }
    )
    kernels = KernelSpecManager(kernel_dirs=[str(root / "kernelspecs")], ensure_native_kernel=False)
    manager = AsyncKernelManager(kernel_name=_KERNEL_NAME, kernel_spec_manager=kernels, config=config)
    timeout = max(1, round(limits.cell_timeout))
    client = GradingClient(
        notebook,
        km=manager,
        output_chars=limits.output_chars,
        kernel_name=_KERNEL_NAME,
        timeout=timeout,
        timeout_func=lambda cell: max(timeout, 120) if "bgcourse_setup" in cell.metadata else timeout,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "TimeoutError", "evalue": f"still running after {timeout} s", "traceback": []},
        raise_on_iopub_timeout=True,
        iopub_timeout=max(1, round(limits.interrupt_grace)),
        allow_errors=True,
        shutdown_kernel="immediate",
        config=config,
    )
    run, offset = Run(), 0
    # Opened before the kernel starts, so what is read is always this file, however the path changes.
    log = os.open(root / "log" / "refused.log", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    deadline_passed, overfilled = asyncio.Event(), asyncio.Event()
    # cleanup_kc: shut the kernel down and close its client at the end, although the manager is ours.
    async with client.async_setup_kernel(
        cwd=str(root / "work"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cleanup_kc=True
    ):
        assert client.km is not None  # set up by async_setup_kernel
        assert client.km.provisioner is not None
        kernel: Any = client.km.provisioner  # a LocalProvisioner: it has the process and its group
        watchdog = asyncio.get_running_loop().call_later(limits.deadline, _kill, kernel.pgid, deadline_passed)
        folder_watch = asyncio.create_task(_watch_kernel_folder(root / "kernel", kernel.pgid, overfilled))
        if isolation.sandboxed:
            _seal(root / "kernel")
        try:
            for index, cell in enumerate(notebook.cells):
                client.start_cell()
                try:
                    await client.async_execute_cell(cell, index, execution_count=index)
                except DeadKernelError:
                    code = await kernel.poll() if kernel.process else None
                    run.stopped = _death(deadline_passed.is_set(), limits.deadline, code)
                    if overfilled.is_set():
                        run.stopped = _OVERFILLED
                    break
                except CellTimeoutError:  # interrupted at the timeout, and still not idle after it
                    _kill(kernel.pgid, None)
                    grace = max(1, round(limits.interrupt_grace))
                    run.stopped = f"it did not stop when interrupted at the {timeout} s timeout ({grace} s later)"
                    break
                refused, offset = new_refusals(log, offset)
                run.cells.append(outcome(cell, client.timed_out, client.truncated, refused, str(root)))
        finally:
            watchdog.cancel()
            folder_watch.cancel()
            os.close(log)
            group = kernel.pgid
    # The kernel is shut down; in the sandbox it is bubblewrap's process, whose group is killed here
    # for certain: with it goes the sandbox's first process and, with that, every process inside.
    _kill(group, None)
    run.cells = run.cells[1:]  # the set-up cell
    return run


_MAX_KERNEL_FOLDER_ENTRIES = 64  # the connection file and the kernel's five sockets, and room to spare
_MAX_KERNEL_FOLDER_BYTES = 16 * 2**20
_OVERFILLED = "it wrote files into the kernel's own folder (not its working folder): grading stopped there"


async def _watch_kernel_folder(folder: Path, group: int | None, overfilled: asyncio.Event) -> None:
    """Kill the kernel if its folder on the host's disk holds more than the sockets it needs."""
    while True:
        await asyncio.sleep(0.25)
        entries, size = _folder_usage(folder, _MAX_KERNEL_FOLDER_ENTRIES + 1)
        if entries > _MAX_KERNEL_FOLDER_ENTRIES or size > _MAX_KERNEL_FOLDER_BYTES:
            overfilled.set()
            _kill(group, None)
            return


_NOBODY = 65534


def _seal(folder: Path) -> None:
    """As root, once the kernel's sockets exist, give their folder to nobody: the kernel can no longer change it.

    The sandbox's processes have no capabilities, so a folder of another user's is closed to them:
    no file added, none removed or replaced by a link (which the grader's client would follow when
    it reconnects). Without root, the folder cannot be given away; it is watched instead.
    """
    if os.geteuid() == 0:
        os.chown(folder, _NOBODY, _NOBODY)
        os.chmod(folder, 0o755)


def _folder_usage(folder: Path, limit: int) -> tuple[int, int]:
    """How many entries (at most ``limit``: a deep tree is not walked to the end) and bytes ``folder`` holds."""
    entries, size, pending = 0, 0, [folder]
    while pending and entries < limit:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as listing:
            for entry in listing:
                entries += 1
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    else:
                        size += entry.stat(follow_symlinks=False).st_size
                if entries >= limit:
                    break
    return entries, size


def _kill(group: int | None, flag: asyncio.Event | None) -> None:
    if flag is not None:
        flag.set()
    if group:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def _death(deadline_passed: bool, deadline: float, code: int | None) -> str:
    if deadline_passed:
        return f"grading stopped at this notebook's deadline of {deadline:g} s"
    how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}" if code is not None else ""
    return "the kernel died" + (f" ({how})" if how else "") + ": the code exited or crashed the Python process"


if sys.platform == "win32":  # pragma: no cover - the course runs on Linux and macOS
    raise ImportError("grading needs a POSIX system (process groups, resource limits)")
