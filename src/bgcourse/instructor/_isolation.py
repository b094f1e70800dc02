"""Where a grading kernel runs: in a sandbox made by the operating system, or (trusted cohorts) beside the grader.

The sandbox is bubblewrap's (``bwrap``, Debian's ``bubblewrap`` package): new user, PID, network,
IPC and UTS namespaces, every capability dropped, and a file system of its own in which

- the Python installation, the course's environment and the ``bgcourse`` package are read-only;
- the run's own folders (the kernel's working folder, its connection files, its log) are the only
  writable places, besides a private ``/tmp``;
- nothing else of the machine is there: not the course folder (answer keys, solutions, master
  notebooks), not the gradebook, not the other submissions, not the instructor's home.

The network namespace has only a loopback interface, so a lookup or a connection can reach
nothing outside; the PID namespace ends every process of the run when the kernel ends. Memory
(address space) is limited with ``prlimit``; the number of processes with ``prlimit`` too, except
for root, whom the kernel exempts from that limit: a root grader puts each run in a ``pids``
cgroup of its own instead (:class:`ProcessLimit`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUBBLEWRAP", "TRUSTED", "Isolation", "ProcessLimit", "SandboxUnavailableError", "choose_isolation"]

BUBBLEWRAP = "bubblewrap"
TRUSTED = "none (trusted cohort)"
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
# What the system's own programs need from /etc (the dynamic linker's cache, names of users and
# hosts, certificates, time zone, fonts); the rest of /etc stays out.
_ETC = (
    "alternatives", "ca-certificates", "fonts", "group", "host.conf", "hosts", "ld.so.cache", "ld.so.conf",
    "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "ssl",
)  # fmt: skip
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
_SHM_BYTES = 64 * 2**20


class SandboxUnavailableError(RuntimeError):
    """Grading would run learners' code without an operating-system sandbox; the message says what to do."""


@dataclass(frozen=True)
class Isolation:
    """How grading kernels are isolated: ``mode`` is :data:`BUBBLEWRAP` or :data:`TRUSTED`."""

    mode: str
    bwrap: str = ""

    @property
    def sandboxed(self) -> bool:
        return self.mode == BUBBLEWRAP

    def command(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        readable: Iterable[Path],
        writable: Iterable[Path],
        workdir: Path,
        memory_bytes: int,
        processes: int,
        disk_bytes: int = 256 * 2**20,
    ) -> list[str]:
        """``argv`` as it must be started: inside the sandbox, with only ``env`` and these folders.

        ``workdir`` and ``/tmp`` are the sandbox's own, in memory, of ``disk_bytes`` each; a file in
        the ``writable`` folders (which the grader reads) may not grow past ``disk_bytes`` either.
        """
        if not self.sandboxed:
            return argv
        limits = ["prlimit", f"--as={memory_bytes}", f"--nproc={_own_processes() + processes}", "--core=0"]
        limits += [f"--fsize={disk_bytes}", "--"]
        # --unshare-all alone leaves a root grader in the first user namespace: ask for a new one.
        sandbox = [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
        sandbox += ["--new-session"]
        sandbox += ["--cap-drop", "ALL"]
        sandbox += ["--hostname", "grading", "--clearenv"]
        for name, value in env.items():
            sandbox += ["--setenv", name, value]
        for folder in _SYSTEM:
            sandbox += ["--ro-bind-try", folder, folder]
        for name in _ETC:
            sandbox += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        # The kernel's settings stay read-only: a root grader's sandbox is uid 0 to the kernel, which
        # decides who may write /proc/sys by that uid alone, whatever the capabilities.
        sandbox += ["--proc", "/proc", *(arg for name in _PROC_READ_ONLY for arg in ("--ro-bind-try", name, name))]
        sandbox += ["--dev", "/dev", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm"]
        sandbox += ["--size", str(disk_bytes), "--tmpfs", "/tmp"]
        # After /tmp: the run's own folders usually live in it.
        for folder in dict.fromkeys(_real(path) for path in readable):
            sandbox += ["--ro-bind", folder, folder]
        for folder in dict.fromkeys(_real(path) for path in writable):
            sandbox += ["--bind", folder, folder]
        sandbox += ["--size", str(disk_bytes), "--tmpfs", _real(workdir)]
        # Last: the sandbox's own root (a tmpfs without a size) becomes read-only; the mounts on it do not.
        sandbox += ["--remount-ro", "/", "--chdir", _real(workdir), "--"]
        return [*limits, *sandbox, *argv]


class ProcessLimit:
    """A ``pids`` cgroup for one run, so that a root grader's sandbox has a process limit too.

    ``wrap(argv)`` starts ``argv`` inside the cgroup (a shell moves itself in, then runs it), so
    every process of the run is counted from the first. Without root, or without a writable
    ``pids`` controller, it does nothing: ``prlimit``'s limit applies instead.
    """

    def __init__(self, processes: int) -> None:
        self.folder: Path | None = None
        if not _root():
            return
        for root in _CGROUP_ROOTS:
            controllers = root / "cgroup.controllers"
            v1 = root.name == "pids" and (root / "cgroup.procs").exists()
            if v1 or (controllers.exists() and "pids" in controllers.read_text().split()):
                folder = root / f"bgcourse-grading-{os.getpid()}-{id(self)}"
                try:
                    folder.mkdir()
                    (folder / "pids.max").write_text(str(processes))
                except OSError:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                    continue
                self.folder = folder
                return

    def wrap(self, argv: list[str]) -> list[str]:
        if self.folder is None:
            return argv
        enter = f'echo $$ > "{self.folder / "cgroup.procs"}" && exec "$@"'
        return ["/bin/sh", "-c", enter, "bgcourse-grading", *argv]

    def close(self) -> None:
        """Kill what is left of the run and remove the cgroup (it can be removed once it is empty)."""
        if self.folder is None:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for pid in (self.folder / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                self.folder.rmdir()
                break
            except OSError:  # busy: a killed process has not been reaped yet
                time.sleep(0.01)
        self.folder = None


def choose_isolation(*, trusted: bool) -> Isolation:
    """The sandbox when this machine can make one; without one, only for a cohort declared ``trusted``."""
    problem = _sandbox_problem()
    if problem is None:
        return Isolation(BUBBLEWRAP, shutil.which("bwrap") or "bwrap")
    if trusted:
        return Isolation(TRUSTED)
    raise SandboxUnavailableError(
        f"learners' code would run without a sandbox: {problem}. Install bubblewrap "
        "(`apt-get install bubblewrap`, with user namespaces enabled, as they are by default on Debian and "
        "Ubuntu), or, only if you trust every learner of this cohort, pass --trusted-cohort (the gradebook "
        "then says that no sandbox was used)"
    )


@functools.cache
def _sandbox_problem() -> str | None:
    """Why no sandbox can be made here, or ``None`` if one can (tried once: bwrap runs ``true``)."""
    if not sys.platform.startswith("linux"):
        return f"the operating system is {sys.platform}, and bubblewrap needs Linux"
    missing = [program for program in ("bwrap", "prlimit") if shutil.which(program) is None]
    if missing:
        return f"{', '.join(missing)} not found"
    probe = Isolation(BUBBLEWRAP, shutil.which("bwrap") or "bwrap").command(
        ["/bin/true"], env={}, readable=[], writable=[], workdir=Path("/tmp/work"), memory_bytes=2**30, processes=64
    )
    try:
        tried = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not be started ({error})"
    if tried.returncode != 0:
        return f"bubblewrap could not make a sandbox ({tried.stderr.strip() or f'exit code {tried.returncode}'})"
    return None


def _root() -> bool:
    return os.geteuid() == 0


def _own_processes() -> int:
    """How many tasks (processes and threads) this user has now: RLIMIT_NPROC counts them all."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
    return count


def _real(path: Path) -> str:
    return os.path.realpath(path)
