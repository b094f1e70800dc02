"""Child processes: they start, answer, receive signals, and are gone (with their files) after the block."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from bgcourse import ChildProcess, huey_consumer_process, read_module_source, uvicorn_process, wait_until
from bgcourse.helpers._processes import child_process

BACKGROUND_APP = "solutions.ch07_durable_queue.background_app:app"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_uvicorn_process_answers_and_is_killed_after_the_block(tmp_path: Path) -> None:
    with uvicorn_process(BACKGROUND_APP, env={"TASK_LOG": str(tmp_path / "tasks.log")}) as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = httpx.post(f"{server.url}/jobs", params={"count": 1, "seconds": 0})
        assert response.status_code == 202, response.text
        assert server.returncode is None
        log_folder = server._log.parent
    assert server.returncode == -signal.SIGKILL, "still running at the end of the block: killed"
    assert gone(server.pid)
    assert "Uvicorn running on" in server.output, "the output is kept after the block"
    assert not log_folder.exists(), "the folder that held its output is removed"


def test_a_signal_reaches_the_child_and_its_status_says_so(tmp_path: Path) -> None:
    with uvicorn_process(BACKGROUND_APP, env={"TASK_LOG": str(tmp_path / "tasks.log")}) as server:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == -signal.SIGTERM
        server.send_signal(signal.SIGTERM)  # no longer running: nothing to do, no error
    assert "Shutting down" in server.output


def test_an_app_that_cannot_be_imported_reports_uvicorns_output() -> None:
    with pytest.raises(ChildProcessError, match="Could not import module"), uvicorn_process("no_such_module:app"):
        pass  # pragma: no cover - never reached


def test_the_child_is_killed_even_when_the_block_raises() -> None:
    started: list[ChildProcess] = []

    def fail_inside_the_block() -> None:
        with child_process(SLEEPER) as child:
            started.append(child)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside_the_block()
    assert started[0].returncode == -signal.SIGKILL
    assert gone(started[0].pid)


def test_waiting_for_a_child_that_keeps_running_times_out_with_its_output() -> None:
    argv = [sys.executable, "-c", "print('still here', flush=True); import time; time.sleep(60)"]
    with child_process(argv) as child:
        child.wait_for_output("still here", timeout=30)
        with pytest.raises(TimeoutError, match="still here"):
            child.wait(timeout=0.1)


def test_waiting_for_output_from_a_child_that_exited_says_so() -> None:
    with child_process([sys.executable, "-c", "print('bye')"]) as child, pytest.raises(ChildProcessError, match="bye"):
        child.wait_for_output("hello", timeout=30)


def test_huey_consumer_process_starts_and_stops_gracefully_on_sigint(tmp_path: Path) -> None:
    env = {"QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}", "JOB_LOG": str(tmp_path / "jobs.log")}
    with huey_consumer_process("solutions.ch07_durable_queue.jobs.huey", env=env) as consumer:
        consumer.send_signal(signal.SIGINT)
        assert consumer.wait(timeout=30) == 0
    assert "solutions.ch07_durable_queue.jobs.process" in consumer.output, "it lists the tasks it runs"


def test_wait_until_returns_the_time_taken_or_names_what_did_not_happen() -> None:
    assert wait_until(lambda: True, timeout=1) < 1
    with pytest.raises(TimeoutError, match=r"the moon to turn blue did not happen within 0\.05 s"):
        wait_until(lambda: False, timeout=0.05, what="the moon to turn blue")


def test_read_module_source_reads_the_file_without_importing_it(course_root: Path) -> None:
    source = read_module_source("solutions.ch07_durable_queue.jobs")
    assert source == (course_root / "solutions" / "ch07_durable_queue" / "jobs.py").read_text(encoding="utf-8")
    assert "solutions.ch07_durable_queue.jobs" not in sys.modules
