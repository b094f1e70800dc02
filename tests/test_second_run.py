"""The second-run plugin (conftest.py at the top) fails a notebook that cannot be run twice alike."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_plugin_on(tmp_path: Path, *cells: str) -> subprocess.CompletedProcess[str]:
    """Run nbval with the course's plugin on a notebook made of ``cells``, in a folder of its own."""
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "nbval_sanitize.cfg", tmp_path / "tests" / "nbval_sanitize.cfg")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "example.ipynb")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # this folder is the rootdir
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax"]
    command += ["--nbval-current-env", "--nbval-sanitize-with=tests/nbval_sanitize.cfg", "-q", "example.ipynb"]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.notebook
def test_a_notebook_that_runs_alike_twice_passes(tmp_path: Path) -> None:
    result = run_plugin_on(
        tmp_path, "import time\nstarted = time.monotonic()", "print(f'took {time.monotonic() - started:.3f} s')"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # two cells twice, two thread probes, one comparison
    assert "7 passed" in result.stdout, result.stdout


@pytest.mark.notebook
def test_different_output_in_the_second_run_fails(tmp_path: Path) -> None:
    result = run_plugin_on(tmp_path, "runs = globals().get('runs', 0) + 1", "print('first' if runs == 1 else 'again')")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the second run showed something else" in result.stdout, result.stdout
    assert "'first" in result.stdout
    assert "'again" in result.stdout


@pytest.mark.notebook
def test_a_warning_on_stderr_fails(tmp_path: Path) -> None:
    result = run_plugin_on(tmp_path, "import warnings\nwarnings.warn('careful', RuntimeWarning)")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "warnings reached the learner" in result.stdout
    assert "RuntimeWarning: careful" in result.stdout


@pytest.mark.notebook
def test_a_thread_left_behind_by_every_run_fails(tmp_path: Path) -> None:
    leak = "import threading\nthreading.Thread(target=threading.Event().wait, name='poller-7', daemon=True).start()"
    result = run_plugin_on(tmp_path, leak)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "threads that every run leaves behind: ['poller-N']" in result.stdout, result.stdout
