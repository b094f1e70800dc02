"""Each notebook runs top to bottom twice in one kernel, with the same result and no warnings."""

from __future__ import annotations

import configparser
import re
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("ch*.ipynb"))


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The same rules nbval uses (tests/nbval_sanitize.cfg)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "tests" / "nbval_sanitize.cfg", encoding="utf-8")
    return [(re.compile(parser[section]["regex"]), parser[section]["replace"]) for section in parser.sections()]


def summary(notebook: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """What each cell showed, with run-to-run differences (ports, times, counts) sanitised away."""
    rules = sanitizers()
    shown: list[tuple[int, str, str]] = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            kind = output.output_type
            if kind == "stream":
                kind = f"stream:{output.name}"
                text = output.text if output.name == "stdout" else ""  # logs differ; that there were any does not
            elif kind == "error":
                text = output.ename
            else:
                text = " ".join(sorted(output.get("data", {})))  # the kinds of output: an image stays an image
            for pattern, replacement in rules:
                text = pattern.sub(replacement, text)
            if kind.startswith("stream") and shown and shown[-1][:2] == (index, kind):
                # The kernel may split one cell's printing into several stream outputs depending on
                # timing; that is display, not a different result, so join them.
                shown[-1] = (index, kind, shown[-1][2] + text)
            else:
                shown.append((index, kind, text))
    return shown


def run_all(client: NotebookClient, notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for index, cell in enumerate(notebook.cells):
        client.execute_cell(cell, index)
    return notebook


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_runs_twice_in_one_kernel_with_the_same_result(path: Path, tmp_path: Path) -> None:
    first = nbformat.read(path, as_version=4)
    second = nbformat.read(path, as_version=4)
    config = Config({"KernelManager": {"transport": "ipc", "ip": str(tmp_path / "kernel")}})
    client = NotebookClient(
        first, kernel_name="python3", timeout=180, config=config, resources={"metadata": {"path": str(tmp_path)}}
    )
    threads_before = threading.active_count()
    with client.setup_kernel(cwd=str(ROOT / "notebooks")):
        run_all(client, first)
        client.nb = second
        run_all(client, second)
    assert summary(first) == summary(second)
    warnings = [
        (index, output.text)
        for index, cell in enumerate(second.cells)
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]
    assert not warnings, f"warnings reached the learner: {warnings}"
    assert threading.active_count() <= threads_before + 1
