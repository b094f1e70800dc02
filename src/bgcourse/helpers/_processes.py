"""Real child processes for the length of a ``with`` block: a uvicorn server, a huey consumer, any program.

A notebook's own server runs in a thread (``serve``), which is enough to watch requests and tasks;
but what a *signal* does to a server (Ctrl-C, ``kill``, ``kill -9``) can only be seen in a process
of its own.  These helpers start one, wait (bounded) until it is ready, let the caller signal it,
keep what it printed, and always kill it and remove its files when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = [
    "ChildProcess",
    "child_process",
    "huey_consumer_process",
    "read_module_source",
    "uvicorn_process",
    "wait_until",
]

_POLL_SECONDS = 0.01
# A port picked by binding to 0 is free when we close it; another process could take it before
# the child binds it.  Rare, so a failed start for that one reason is simply tried again.
_PORT_ATTEMPTS = 3


def wait_until(condition: Callable[[], object], *, timeout: float, what: str = "the condition") -> float:
    """Poll ``condition`` until it is true; return the seconds it took, or raise ``TimeoutError``."""
    started = time.monotonic()
    deadline = started + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(_POLL_SECONDS)
    return time.monotonic() - started


def _course_root() -> Path:
    """The folder with ``solutions/``, so that a child can import the chapter's modules by name."""
    checkout = Path(__file__).resolve().parents[3]  # src/bgcourse/helpers/_processes.py in an editable install
    for folder in (checkout, Path.cwd(), *Path.cwd().parents):
        if (folder / "solutions").is_dir():
            return folder
    return Path.cwd()


class ChildProcess:
    """A running child process: its ``pid``, what it printed so far (``output``), and its ``url`` if it serves."""

    def __init__(self, argv: list[str], popen: subprocess.Popen[bytes], log: Path, url: str = "") -> None:
        self.argv = argv
        self.popen = popen
        self.url = url
        self._log = log
        self._final_output: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited with {self.returncode}"
        return f"<ChildProcess {self.pid} {state}: {' '.join(self.argv[1:4])} ...>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """``None`` while it runs; then its exit status, negative if a signal ended it (``-9``: SIGKILL)."""
        return self.popen.poll()

    @property
    def output(self) -> str:
        """Everything it wrote to stdout and stderr so far (kept after the block has ended)."""
        if self._final_output is not None:
            return self._final_output
        return self._log.read_text(encoding="utf-8", errors="replace")

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` (``signal.SIGTERM``, ``signal.SIGINT``, ``signal.SIGKILL``...) if it still runs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for it to exit and return its exit status; ``TimeoutError`` if it still runs after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"process {self.pid} still runs after {timeout} s; what it printed:\n{self.output}"
            ) from None

    def wait_for_output(self, text: str, timeout: float) -> float:
        """Wait until ``text`` appears in its output; ``TimeoutError`` (with the output) if it does not."""

        def printed() -> bool:
            if text in self.output:
                return True
            if self.returncode is not None:
                raise ChildProcessError(f"process {self.pid} exited ({self.returncode}) before printing {text!r}:\n"
                                        f"{self.output}")  # fmt: skip
            return False

        return wait_until(printed, timeout=timeout, what=f"the output {text!r}")

    def _finish(self) -> None:
        """Kill it if it still runs, reap it, and keep its output."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._final_output = self._log.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def child_process(
    argv: list[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None
) -> Iterator[ChildProcess]:
    """Run ``argv`` for the length of the block; on the way out kill it if it still runs.

    ``env`` is added to this process's environment; ``cwd`` defaults to the course's folder, so
    that ``solutions.<chapter>.<module>`` can be imported by name.  Its output goes to a file in a
    temporary folder (a pipe could fill up and block it), which is removed afterwards; the text
    stays readable as ``.output``.  The child gets a session of its own, so a Ctrl-C meant for
    the notebook or the test run does not reach it: it receives exactly the signals sent to it.
    """
    folder = Path(tempfile.mkdtemp(prefix="bgcourse-process-"))
    try:
        log = folder / "output.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=cwd if cwd is not None else _course_root(),
                # Unbuffered, so that .output is up to date; no bytecode written into the course folder.
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
                start_new_session=True,
            )
        process = ChildProcess(argv, popen, log)
        try:
            yield process
        finally:
            process._finish()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def uvicorn_process(
    app: str,
    *options: str,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[ChildProcess]:
    """Run ``python -m uvicorn <app> <options>`` on ``127.0.0.1`` and a free port; yield it once it answers.

    ``app`` is an import string (``"solutions.ch07_durable_queue.shutdown_app:app"``); ``options``
    are uvicorn's command-line options (``"--timeout-graceful-shutdown", "2"``).  The process's
    ``url`` is its base URL.  Readiness is a TCP connection being accepted, polled every 10 ms up
    to ``start_timeout`` seconds; if uvicorn exits first, ``ChildProcessError`` shows its output.
    """
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *options]
        with child_process(argv, env=env, cwd=cwd) as process:
            process.url = f"http://127.0.0.1:{port}"

            def ready(process: ChildProcess = process, port: int = port) -> bool:
                return process.returncode is not None or _answers(port)

            wait_until(ready, timeout=start_timeout, what=f"uvicorn answering on port {port}")
            if process.returncode is None:
                yield process
                return
            if "address already in use" not in process.output.lower() or attempt == _PORT_ATTEMPTS:
                raise ChildProcessError(f"uvicorn exited ({process.returncode}) before it answered:\n{process.output}")


@contextlib.contextmanager
def huey_consumer_process(
    huey: str,
    *options: str,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[ChildProcess]:
    """Run huey's consumer, ``huey_consumer <huey> <options>``, as a child process; yield it once it has started.

    ``huey`` is the import path of a ``Huey`` instance (``"solutions.ch07_durable_queue.jobs.huey"``);
    ``options`` are the consumer's (``"--workers", "2"``).  It is started with this environment's
    Python (``python -m huey.bin.huey_consumer``, the module behind the ``huey_consumer`` script),
    and is ready when it has logged that it started and has installed its signal handlers.
    """
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", huey, *options]
    with child_process(argv, env=env, cwd=cwd) as process:
        process.wait_for_output("Huey consumer started", timeout=start_timeout)

        # huey installs its signal handlers after that line and its threads: a signal sent in
        # between would meet Python's defaults.  Linux shows the handlers in /proc; elsewhere, wait.
        def handlers_installed() -> bool:
            if process.returncode is not None:
                raise ChildProcessError(f"huey_consumer exited ({process.returncode}):\n{process.output}")
            return bool(_catches(process.pid, signal.SIGTERM))

        if _catches(process.pid, signal.SIGTERM) is None:
            time.sleep(0.5)
        else:
            wait_until(handlers_installed, timeout=start_timeout, what="huey's signal handlers")
        yield process


def _catches(pid: int, signum: int) -> bool | None:
    """Whether process ``pid`` has a handler for ``signum``; ``None`` where ``/proc`` cannot tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return None


def read_module_source(module: str) -> str:
    """The source of a course module such as ``"solutions.ch07_durable_queue.jobs"``, read, not imported.

    It is the file that :func:`child_process` and friends let a child import by that name, so a
    notebook can show the code a child process runs without running it itself.
    """
    path = _course_root().joinpath(*module.split(".")).with_suffix(".py")
    return path.read_text(encoding="utf-8")
