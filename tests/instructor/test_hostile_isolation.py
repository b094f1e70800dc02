"""Hostile code in a grading kernel, against the operating system's sandbox (not the in-process guard).

Each cell tries one route of a hostile learner and ends with an ``assert`` that the route failed:
a cell whose status is "ok" is a route the sandbox closed. Routes that skip the guard's audit hook
(ctypes, a Python started with ``-I``, a program renamed ``python``) show that the sandbox, not the
guard, is what holds. After the run, the host is checked too: nothing was written, nothing runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import bgcourse
from bgcourse.instructor._isolation import Isolation
from bgcourse.instructor._sandbox import Limits, Run, run_cells

SECRET = "the answer key says B"
MARKER = "bgcourse-hostile-marker"


@pytest.fixture
def sandbox(grading_isolation: Isolation) -> Isolation:
    if not grading_isolation.sandboxed:
        pytest.skip("no sandbox on this machine (bubblewrap): the routes below are only closed by one")
    return grading_isolation


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder with an answer key, and another learner's submission beside it."""
    (tmp_path / "course" / "quizzes").mkdir(parents=True)
    (tmp_path / "course" / "quizzes" / "ch01.toml").write_text(SECRET)
    (tmp_path / "submissions" / "bob").mkdir(parents=True)
    (tmp_path / "submissions" / "bob" / "ch01.ipynb").write_text("bob's answers")
    return tmp_path


def run(cells: list[str], sandbox: Isolation, processes: int = 512) -> Run:
    # The guard is told of no protected folder: what holds here is the sandbox alone.
    limits = Limits(cell_timeout=30, processes=processes)
    return run_cells(cells, limits, protected=[], quizzes={}, isolation=sandbox)


def assert_all_closed(result: Run, routes: list[str]) -> None:
    assert result.stopped == ""
    opened = {route: cell.error for route, cell in zip(routes, result.cells, strict=True) if cell.status != "ok"}
    assert opened == {}, "routes the sandbox left open (the cell's assert failed)"


def test_no_route_reads_the_answer_key_or_another_learner(sandbox: Isolation, course: Path) -> None:
    key, other = course / "course" / "quizzes" / "ch01.toml", course / "submissions" / "bob" / "ch01.ipynb"
    routes = {
        "a Python child without site (-I -S -E)": f"""
import subprocess, sys
child = subprocess.run([sys.executable, "-I", "-S", "-E", "-c", "print(open({str(key)!r}).read())"],
                       capture_output=True, text=True)
assert {SECRET!r} not in child.stdout and "No such file" in child.stderr, child""",
        "libc through ctypes": f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.open({str(key).encode()!r}, 0)
assert fd == -1 and ctypes.get_errno() == 2, fd  # ENOENT: the file is not there at all""",
        "a program renamed python": f"""
import os, shutil, subprocess
shutil.copy("/bin/cat", "python")
os.chmod("python", 0o755)
child = subprocess.run(["./python", {str(key)!r}], capture_output=True, text=True)
assert {SECRET!r} not in child.stdout, child""",
        "an open relative to a directory's fd": f"""
import os
root = os.open("/", os.O_RDONLY)
try:
    os.open({str(key).lstrip("/")!r}, os.O_RDONLY, dir_fd=root)
    raise AssertionError("opened")
except FileNotFoundError:
    pass""",
        "a hard link": f"""
import os
try:
    os.link({str(key)!r}, "key.toml")
    raise AssertionError("linked")
except FileNotFoundError:
    pass""",
        "another learner's notebook": f"""
import os
assert not os.path.exists({str(other)!r}) and not os.path.exists({str(other.parent.parent)!r})""",
        "the grading worker's memory": """
import os
pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
# A PID namespace of its own: the grader, its workers and other kernels are not even listed.
assert max(pids) < 50 and os.getppid() == 1, pids""",
        "another kernel's connection files and log": """
import glob, os
own = os.path.dirname(os.getcwd())  # the run's folder: work/ is the kernel's working folder
runs = glob.glob(os.path.join(os.path.dirname(own), "bgcourse-grade-*"))
assert runs == [own] and sorted(os.listdir(own)) == ["kernel", "log", "quizzes", "site", "work"], runs""",
        "the instructor's home": """
import os
assert not any(os.path.exists(path) for path in ("/root/.bashrc", "/root/.ssh", "/root/.cache", "/home/runner"))
assert not os.path.exists("/home") or os.listdir("/home") == []""",
    }
    assert_all_closed(run(list(routes.values()), sandbox), list(routes))


def test_no_route_writes_outside_the_working_folder(sandbox: Isolation, course: Path) -> None:
    site = next(Path(path) for path in sys.path if path.endswith("site-packages"))
    other = course / "submissions" / "bob" / "ch01.ipynb"
    routes = {
        # Should one of these two succeed, the cell undoes it before it fails: a broken sandbox must
        # not break the checkout it runs in.
        "a .pth file in the environment": f"""
import os
try:
    open({str(site / "evil.pth")!r}, "w").write("import os; os.system('id')")
except OSError as error:
    assert error.errno == 30, error  # EROFS: the environment is read-only
else:
    os.remove({str(site / "evil.pth")!r})
    raise AssertionError("written")""",
        "renaming the package": f"""
import os
try:
    os.rename({str(Path(bgcourse.__file__).parent)!r}, {str(Path(bgcourse.__file__).parent) + ".stolen"!r})
except OSError as error:
    assert error.errno == 30, error
else:
    os.rename({str(Path(bgcourse.__file__).parent) + ".stolen"!r}, {str(Path(bgcourse.__file__).parent)!r})
    raise AssertionError("renamed")""",
        # The sandbox's /tmp is its own: what these make there is gone with it (the host is checked below).
        "a folder in the course": f"""
import os
assert not os.path.exists({str(course / "course")!r})
os.makedirs({str(course / "course" / "quizzes" / "new")!r})""",
        "emptying another learner's notebook": f"""
import os
assert not os.path.exists({str(other)!r})
os.makedirs({str(other.parent)!r}, exist_ok=True)
open({str(other)!r}, "w").close()""",
        "the working folder itself": """
open("scratch.txt", "w").write("a learner may write here")""",
    }
    assert_all_closed(run(list(routes.values()), sandbox), list(routes))
    assert not (site / "evil.pth").exists()
    assert other.read_text() == "bob's answers"
    assert not (course / "course" / "quizzes" / "new").exists()
    assert (course / "course" / "quizzes" / "ch01.toml").read_text() == SECRET


def test_nothing_reaches_the_network_and_nothing_outlives_the_kernel(sandbox: Isolation) -> None:
    routes = {
        "only a loopback interface": """
import socket
assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()""",
        "a name lookup through libc (skipping the guard)": """
import ctypes
libc = ctypes.CDLL(None)
result = ctypes.c_void_p()
assert libc.getaddrinfo(b"example.com", b"80", None, ctypes.byref(result)) != 0""",
        "a reverse lookup": """
import ctypes, socket
libc = ctypes.CDLL(None)
address = socket.inet_aton("8.8.8.8")
assert not libc.gethostbyaddr(address, 4, socket.AF_INET)""",
        "a server on every interface, and a daemon in a session of its own": f"""
import socket, subprocess, sys
server = socket.create_server(("0.0.0.0", 0))
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {MARKER!r}],
                          start_new_session=True)
assert daemon.poll() is None""",
    }
    result = run(list(routes.values()), sandbox)
    assert_all_closed(result, list(routes))
    _wait_until_gone(MARKER)


def _wait_until_gone(marker: str) -> None:
    """The processes whose command line holds ``marker`` end with the kernel (waited for, bounded)."""
    deadline = time.monotonic() + 30
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], "a process of the sandbox outlived its kernel"


def test_a_fork_bomb_stops_at_the_process_limit_and_harms_no_one_else(sandbox: Isolation) -> None:
    bomb = f"""
import os, sys
children, stopped = 0, None
try:
    while children < 10_000:
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {MARKER!r}])
        children += 1
except OSError as error:
    stopped = error.errno
assert stopped == 11 and children < 1_000, (children, stopped)  # EAGAIN, well before 10,000"""
    result = run([bomb], sandbox, processes=200)
    assert [cell.status for cell in result.cells] == ["ok"], [cell.error for cell in result.cells]
    _wait_until_gone(MARKER)
    after = run(["import threading\nthreading.Thread(target=print).start()"], sandbox)
    assert [cell.status for cell in after.cells] == ["ok"], "the next learner's kernel runs as usual"


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_files_are_bounded_in_size_and_leave_nothing_on_the_host(sandbox: Isolation) -> None:
    fill = """
import errno
chunk = b"x" * 2**20
for where in ("big.bin", "/tmp/big.bin"):
    written = 0
    try:
        with open(where, "wb") as file:
            while written < 2**31:
                file.write(chunk)
                written += len(chunk)
    except OSError as error:
        # The sandbox's own folder (in memory) is full, or the file reached the size limit: not the host's disk.
        assert error.errno in (errno.ENOSPC, errno.EFBIG), error
    assert written < 2**31, where"""
    result = run([fill], sandbox)
    assert [cell.status for cell in result.cells] == ["ok"], [cell.error for cell in result.cells]


def test_a_root_graders_kernel_folder_is_closed_to_the_kernel(sandbox: Isolation) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root grader can give the kernel's folder away (elsewhere the folder is watched)")
    routes = {
        "a file beside the sockets": """
import os
folder = os.path.join(os.path.dirname(os.environ["BGCOURSE_QUIZZES"]), "kernel")
try:
    open(os.path.join(folder, "big.bin"), "wb").write(b"x" * 2**20)
    raise AssertionError("written")
except PermissionError:
    pass""",
        "a socket replaced by a link": """
import os
folder = os.path.join(os.path.dirname(os.environ["BGCOURSE_QUIZZES"]), "kernel")
socket = next(name for name in os.listdir(folder) if name.startswith("k-"))
path = os.path.join(folder, socket)
for attempt in (lambda: os.unlink(path), lambda: os.rename(path, path + "-old"), lambda: os.chmod(folder, 0o777)):
    try:
        attempt()
        raise AssertionError("changed")
    except PermissionError:
        pass""",
    }
    assert_all_closed(run(list(routes.values()), sandbox), list(routes))


def test_the_kernels_settings_memory_and_namespaces_stay_closed(sandbox: Isolation) -> None:
    routes = {
        "a kernel setting (/proc/sys), as root would": """
try:
    open("/proc/sys/kernel/core_pattern", "w").write(open("/proc/sys/kernel/core_pattern").read())
except OSError as error:
    assert error.errno == 30, error  # EROFS
else:
    raise AssertionError("written")""",
        "memory through /dev/shm": """
import errno
try:
    with open("/dev/shm/fill", "wb") as file:
        for _ in range(1024):
            file.write(b"x" * 2**20)
except OSError as error:
    assert error.errno == errno.ENOSPC, error
else:
    raise AssertionError("1 GiB in /dev/shm")""",
        "memory through the sandbox's root": """
import os
try:
    os.mkdir("/fill")
except OSError as error:
    assert error.errno == 30, error
else:
    raise AssertionError("made")""",
        "a user namespace of its own (to mount more)": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x10000000) == -1, "CLONE_NEWUSER allowed\"""",
    }
    assert_all_closed(run(list(routes.values()), sandbox), list(routes))


def test_the_grader_reads_its_own_log_and_its_own_folder_only(sandbox: Isolation) -> None:
    replace_log = """
import os
log = os.path.join(os.path.dirname(os.environ["BGCOURSE_QUIZZES"]), "log", "refused.log")
try:
    os.unlink(log)
except OSError as error:
    assert error.errno in (13, 16, 30), error  # a mount point: it cannot be replaced by a link
else:
    os.symlink("/proc/kmsg", log)
    raise AssertionError("replaced")
open(log, "a").write("network\\t" + "x" * 10_000 + "\\n")"""
    deep_tree = """
import os
folder = os.open(os.path.join(os.path.dirname(os.environ["BGCOURSE_QUIZZES"]), "kernel"), os.O_RDONLY)
for _ in range(1500):  # deeper than Python's recursion limit, and more entries than the kernel needs
    os.mkdir("d", dir_fd=folder)
    folder = os.open("d", os.O_RDONLY, dir_fd=folder)
import time
time.sleep(30)"""
    result = run([replace_log, deep_tree, "print('not reached')"], sandbox)
    assert result.cells[0].status == "ok", result.cells[0].error
    assert result.cells[0].refused == ("network\t" + "x" * 292,), "a line of the log is cut at 300 characters"
    if os.geteuid() == 0:  # the folder is nobody's: not even the first folder can be made
        assert result.cells[1].error == "PermissionError: [Errno 13] Permission denied: 'd'"
        return
    assert [cell.status for cell in result.cells] == ["ok"], [cell.error for cell in result.cells]
    assert (
        result.stopped == "it wrote files into the kernel's own folder (not its working folder): grading stopped there"
    )


def test_huge_and_many_error_messages_are_cut_in_the_grader(sandbox: Isolation) -> None:
    flood = """
shell = get_ipython()
for _ in range(5):
    shell._showtraceback(RuntimeError, "E" * 5 * 2**20, ["line"] * 1000)"""
    result = run([flood], sandbox)
    [cell] = result.cells
    assert cell.status == "error"
    assert cell.error.startswith("RuntimeError: EEE")
    assert len(cell.error) <= len("RuntimeError: ") + 2_000
