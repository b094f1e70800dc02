"""A real, throwaway Redis server: ``redis-server`` on 127.0.0.1 and a free port, its files in a temporary folder."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

__all__ = ["RedisNotFoundError", "RedisServer", "find_redis_server", "throwaway_redis"]

_PORT_ATTEMPTS = 3


class RedisNotFoundError(RuntimeError):
    """No ``redis-server`` program was found on this machine."""


def find_redis_server() -> Path | None:
    """The ``redis-server`` program on ``PATH`` (or Debian's ``/usr/bin/redis-server``), or ``None``."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    return Path(found) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process: start it, kill it as a crash would, start it again on the same files.

    ``appendonly=True`` turns on Redis's append-only file with an ``fsync`` after every write, so
    what was acknowledged survives a crash; without it (the default here) nothing is written to
    disk at all and a crash loses everything the server held.
    """

    def __init__(self, program: Path, folder: Path, *, appendonly: bool = False, start_timeout: float = 30.0) -> None:
        self.program = program
        self.folder = folder
        self.appendonly = appendonly
        self.start_timeout = start_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, for huey or the redis client."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def _argv(self) -> list[str]:
        durability = ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        return [
            str(self.program),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--save", "",  # no snapshots: only the append-only file, if asked for, reaches the disk
            *durability,
            "--logfile", str(self.folder / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip

    def start(self) -> None:
        """Start the server (on a new free port the first time, on the same port afterwards); wait for PING."""
        if self.pid is not None:
            raise RuntimeError(f"redis-server is already running (pid {self.pid})")
        attempts = _PORT_ATTEMPTS if self.port == 0 else 1
        for attempt in range(1, attempts + 1):
            if attempts > 1:
                self.port = _free_port()
            process = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            self._process = process
            if self._wait_for_ping(process):
                return
            process.kill()
            process.wait()
            log = self._log()
            if "address already in use" not in log.lower() or attempt == attempts:
                raise RuntimeError(f"redis-server did not start on port {self.port}; its log:\n{log}")

    def _wait_for_ping(self, process: subprocess.Popen[bytes]) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + self.start_timeout
        try:
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.01)
            return False
        finally:
            client.close()

    def _log(self) -> str:
        log = self.folder / "redis.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.exists() else "(no log)"

    def kill(self) -> None:
        """End the server with SIGKILL, as a crash or the out-of-memory killer would: no chance to save."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM), waiting at most 10 s before killing it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def throwaway_redis(*, appendonly: bool = False, program: Path | None = None) -> Iterator[RedisServer]:
    """Run a new ``redis-server`` for the length of the block, then stop it and delete its folder.

    It listens on ``127.0.0.1`` only, on a free port, with its working folder (and append-only
    file, if ``appendonly``) in a new temporary folder.  Raises :class:`RedisNotFoundError` if
    ``redis-server`` is not installed.
    """
    program = program or find_redis_server()
    if program is None or not program.is_file():
        raise RedisNotFoundError(
            "redis-server was not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server, "
            "macOS: brew install redis) to run the Redis variant."
        )
    folder = Path(tempfile.mkdtemp(prefix="bgcourse-redis-"))
    server = RedisServer(program, folder, appendonly=appendonly)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
