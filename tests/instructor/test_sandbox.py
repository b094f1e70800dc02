"""The grading kernel: answer keys unreadable, no network but loopback, memory and time bounded."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from bgcourse.instructor._sandbox import Limits, run_cells

ROOT = Path(__file__).resolve().parents[2]
QUIZ = ROOT / "quizzes" / "ch01_core_mechanics.toml"


def test_the_guard_refuses_answer_keys_network_and_programs_and_allows_loopback(tmp_path: Path) -> None:
    cells = [
        f"open({str(QUIZ)!r}).read()",
        f"import os\nos.listdir({str(ROOT / 'solutions')!r})",
        "import socket\nsocket.socket().connect(('192.0.2.1', 80))",
        "import socket\nsocket.getaddrinfo('example.com', 443)",
        "import subprocess\nsubprocess.run(['cat', '/etc/hostname'])",
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {f'open({str(QUIZ)!r})'!r}], check=True)",
        # Loopback works: the exercise checks start servers on 127.0.0.1.
        "import socket\nserver = socket.create_server(('127.0.0.1', 0))\n"
        "client = socket.create_connection(server.getsockname(), timeout=2)\nclient.close(); server.close()",
        "from bgcourse import load_quiz\nprint(load_quiz('ch01_core_mechanics').questions[0].id)",
        "open('scratch.txt', 'w').write('a learner may write in the working folder')",
    ]
    run = run_cells(cells, Limits(cell_timeout=30), protected=[ROOT / "quizzes", ROOT / "solutions"], quizzes={
        "ch01_core_mechanics.toml": 'title = "t"\nassessed = true\n[[question]]\nid = "q01"\nkind = "choice"\n'
        'points = 1\nprompt = "p"\n[question.choices]\nA = "a"\nB = "b"\n',
    })  # fmt: skip
    assert run.stopped == ""
    statuses = [cell.status for cell in run.cells]
    assert statuses == ["error"] * 6 + ["ok"] * 3, [cell.error for cell in run.cells]
    assert run.cells[0].error.startswith("PermissionError: not allowed while grading: reading")
    assert run.cells[0].refused == (f"read\t{QUIZ}",)
    assert run.cells[1].refused == (f"read\t{ROOT / 'solutions'}",)
    assert run.cells[2].refused == ("network\t192.0.2.1:80",)
    assert run.cells[3].refused == ("network\texample.com",)
    assert run.cells[4].refused == ("program\tcat",)
    assert run.cells[5].error.startswith("CalledProcessError"), "a Python child process has the same guard"
    assert run.cells[5].refused == (f"read\t{QUIZ}",)
    assert run.cells[7].refused == ()


def test_memory_output_and_time_are_limited() -> None:
    cells = [
        "block = bytearray(3 * 2**30)",  # over the 1 GiB limit
        "print('x' * 1_000_000)",
        "import time\nwhile True:\n    time.sleep(0.01)",
        "print('the next cell still runs')",
    ]
    started = time.monotonic()
    run = run_cells(cells, Limits(cell_timeout=3, memory_mb=1024, output_chars=10_000), protected=[], quizzes={})
    assert time.monotonic() - started < 60
    memory, printed, loop, after = run.cells
    assert memory.error.startswith("MemoryError")
    assert printed.status == "ok"
    assert printed.truncated
    assert loop.status == "timeout"
    assert after.status == "ok"


def test_a_kernel_that_dies_ends_the_run_with_its_exit_code() -> None:
    run = run_cells(["x = 1", "import os\nos._exit(7)", "y = 2"], Limits(), protected=[], quizzes={})
    assert [cell.status for cell in run.cells] == ["ok"]
    assert run.stopped == "the kernel died (exit code 7): the code exited or crashed the Python process"


def test_a_cell_that_ignores_the_interrupt_is_killed() -> None:
    stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    run = run_cells([stubborn, "x = 1"], Limits(cell_timeout=2, interrupt_grace=2), protected=[], quizzes={})
    assert run.cells == []
    assert run.stopped == "it did not stop when interrupted at the 2 s timeout (2 s later)"


def test_the_whole_notebook_has_a_deadline() -> None:
    naps = ["import time\ntime.sleep(2)"] * 10
    started = time.monotonic()
    run = run_cells(naps, Limits(cell_timeout=30, deadline=5), protected=[], quizzes={})
    assert time.monotonic() - started < 30
    assert 1 <= len(run.cells) < 10
    assert run.stopped == "grading stopped at this notebook's deadline of 5 s"


def test_the_kernel_leaves_no_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run_cells(["open('scratch.txt', 'w').write('x')"], Limits(), protected=[], quizzes={})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("source", ["import socket\nprint(socket.gethostname())", "import json"])
def test_ordinary_code_is_unaffected(source: str) -> None:
    run = run_cells([source], Limits(), protected=[ROOT / "quizzes"], quizzes={})
    assert [cell.status for cell in run.cells] == ["ok"]
