"""The whole chapter, run on PostgreSQL: the notebook's cells pass unchanged when DATABASE_URL names it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "ch03_db_compensation.ipynb"


@pytest.mark.notebook
def test_every_cell_passes_on_postgresql(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's temporary files, too, go under tmp_path
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    config = Config({"KernelManager": {"transport": "ipc", "ip": str(tmp_path / "kernel")}})
    client = NotebookClient(notebook, kernel_name="python3", timeout=180, config=config)
    client.execute(cwd=str(ROOT / "notebooks"))  # raises CellExecutionError, naming the cell, if one fails
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )
    assert "DATABASE_URL is set: the cells run on the database it names." in printed
    assert "the database: postgresql, through the asyncpg driver" in printed
    warnings = [
        output.text
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]
    assert not warnings, f"warnings reached the learner: {warnings}"
