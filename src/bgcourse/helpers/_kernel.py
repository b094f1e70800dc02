"""Run a snippet in a fresh Jupyter kernel, for demonstrations that must not change the current one."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat

__all__ = ["KernelRun", "run_in_fresh_kernel"]


@dataclass(frozen=True)
class KernelRun:
    """What one cell printed (``output``) and the error it ended with (``error``, empty if none)."""

    output: str
    error: str


def run_in_fresh_kernel(code: str, *, timeout: float = 60) -> KernelRun:
    """Execute ``code`` as one cell in a new kernel of the current environment, then shut it down.

    Used for things that patch the interpreter for good (``nest_asyncio.apply()``) or that must
    show a kernel's own behaviour.  A cell still running after ``timeout`` seconds is reported as
    an error, not raised, so that a demonstration of a hang cannot hang the notebook.
    """
    # Imported here: nbformat's schema validation takes about a second to import, which every
    # `import bgcourse` (and every process-pool worker) would otherwise pay.
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    from traitlets.config import Config

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    # IPC sockets in a private temporary folder: no TCP port, no "running over TCP without
    # encryption" warning, and nothing written where the notebook runs.
    with tempfile.TemporaryDirectory(prefix="bgcourse-kernel-") as folder:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})
        client = NotebookClient(notebook, kernel_name="python3", timeout=timeout, allow_errors=True, config=config)
        try:
            client.execute(cwd=folder)
        except CellTimeoutError:
            return KernelRun(output=_text_of(notebook), error=f"still running after {timeout} s (stopped)")
    outputs = notebook.cells[0].outputs
    errors = [f"{output.ename}: {output.evalue}" for output in outputs if output.output_type == "error"]
    return KernelRun(output=_text_of(notebook), error=errors[0] if errors else "")


def _text_of(notebook: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in notebook.cells[0].outputs if output.output_type == "stream")
