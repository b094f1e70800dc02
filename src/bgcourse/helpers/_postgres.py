"""A real, throwaway PostgreSQL server: a new cluster in a temporary folder, started, used, removed."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresNotFoundError", "PostgresServer", "find_postgres_bin", "throwaway_postgres"]

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A port found free by binding to 0 can be taken by another process before the server binds it.
_PORT_ATTEMPTS = 3


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server programs (initdb, pg_isready, postgres) were found on this machine."""


def find_postgres_bin() -> Path | None:
    """The folder with ``initdb``, ``pg_isready`` and ``postgres``: the newest Debian/Ubuntu one, else ``PATH``'s."""

    def major(folder: Path) -> int:
        version = folder.parent.name
        return int(version) if version.isdigit() else 0

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    on_path = shutil.which("initdb")
    candidates = [*debian, *([Path(on_path).parent] if on_path else [])]
    for folder in candidates:
        if all((folder / program).is_file() for program in ("initdb", "pg_isready", "postgres")):
            return folder
    return None


@dataclass(frozen=True)
class PostgresServer:
    """A running server on ``127.0.0.1:port`` that trusts local connections as user ``postgres``."""

    port: int
    bin_dir: Path

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` through asyncpg, the driver the course uses."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        self._client(["createdb"], name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        self._client(["dropdb", "--force"], name)

    def _client(self, command: list[str], name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a plain lower-case database name")
        program, *options = command
        _run([str(self.bin_dir / program), *options, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name])


def _run(command: Sequence[str], *, user: int | None = None, group: int | None = None) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, user=user, group=group, extra_groups=_no_groups(user)
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _no_groups(user: int | None) -> list[int] | None:
    """Switching from root to another user, leave root's supplementary groups behind too."""
    return [] if user is not None else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def throwaway_postgres(
    bin_dir: Path | None = None, *, parent: str | os.PathLike[str] | None = None, start_timeout: float = 60.0
) -> Iterator[PostgresServer]:
    """Start a new PostgreSQL cluster for the length of the block, then stop it and delete it.

    The cluster lives in a new folder in ``parent`` (by default the system's temporary directory,
    which the ``postgres`` user can reach when we run as root; see below); ``fsync`` is off
    (the data is thrown away anyway), and only ``127.0.0.1`` and a Unix socket inside that folder
    are listened on.  The server is a child process of this one, in its process group, so an
    interrupted test run (Ctrl+C) stops it too.  Raises :class:`PostgresNotFoundError` if the
    server programs are missing.
    """
    bin_dir = bin_dir or find_postgres_bin()
    if bin_dir is None:
        raise PostgresNotFoundError(
            "PostgreSQL's server programs (initdb, pg_isready, postgres) were not found in /usr/lib/postgresql/*/bin "
            "or on PATH; install the server (Debian/Ubuntu: apt-get install postgresql)."
        )
    # PostgreSQL refuses to run as root.  When we are root (containers, CI), initdb and the server
    # run as the `postgres` user that the distribution's package created (subprocess switches user
    # in the child, just before exec).  That user must be able to reach its data folder, so the
    # folder is made with mkdtemp in the system temporary directory (world-traversable, sticky)
    # and handed to `postgres`, rather than placed under pytest's tmp_path, whose parents are
    # private to root (0700).  As any other user, everything runs as ourselves.
    user: int | None = None
    group: int | None = None
    folder = Path(tempfile.mkdtemp(prefix="bgcourse-postgres-", dir=parent))
    try:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresNotFoundError(
                    "running as root, and there is no `postgres` user to run the server as"
                ) from None
            user, group = owner.pw_uid, owner.pw_gid
            os.chown(folder, user, group)
        data = folder / "data"
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
        _run(initdb, user=user, group=group)
        server, port = _start_server(bin_dir, data, user, group, start_timeout)
        try:
            yield PostgresServer(port=port, bin_dir=bin_dir)
        finally:
            _stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start_server(
    bin_dir: Path, data: Path, user: int | None, group: int | None, timeout: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``postgres`` on a free port of 127.0.0.1, its socket and log next to ``data``; wait until it answers."""
    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    log_path = data.parent / "server.log"
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        command = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
        command += [
            "-k",
            str(data.parent),
            *(option for key, value in settings.items() for option in ("-c", f"{key}={value}")),
        ]
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, user=user, group=group, extra_groups=_no_groups(user)
            )
        try:
            if _ready(bin_dir, port, server, timeout):
                return server, port
        except BaseException:
            _stop(server)
            raise
        output = log_path.read_text(errors="replace")
        # Another process took the port between our choosing it and the server binding it: try another.
        if "already in use" not in output or attempt == _PORT_ATTEMPTS:
            raise RuntimeError(f"PostgreSQL exited with {server.returncode} while starting:\n{output}")
    raise AssertionError("unreachable")  # pragma: no cover


def _ready(bin_dir: Path, port: int, server: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the server accepts connections; False if it exited first; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    probe = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    while subprocess.run(probe, check=False).returncode != 0:
        if server.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL did not accept connections on port {port} within {timeout} s")
        time.sleep(0.05)
    return True


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, disconnect, stop
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
