"""One execution of every chapter, kept in a jupyter-cache so that the next build reuses it.

The website shows what the notebooks print on the pinned versions, so its outputs come from
running them: each notebook with nbclient, in its own folder (as a learner's kernel starts),
``jobs`` at a time. What was run is stored in a jupyter-cache (one per edition), keyed by the
notebook's code cells; a build whose code cells, helper package, quizzes and locks are unchanged
runs nothing. The cache's folder is named by a digest of those inputs, so changing a helper or a
pin starts a fresh cache rather than reusing outputs the new code would not print.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.cache.db import NbCacheRecord
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from traitlets.config import Config

__all__ = ["Execution", "ExecutionFailed", "cache_folder", "executions"]

# The packages whose versions a page names (what its claims are proved on).
VERSIONED = ("fastapi", "starlette", "uvicorn", "httpx", "sqlalchemy")
# A cell that runs longer than this is stuck; none takes a tenth of it on a 2-core machine.
CELL_TIMEOUT_S = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Metadata nbclient adds while running (timings): stored with it, no cache key would match twice.
_RUN_METADATA = ("execution",)
# The name of the kernel spec that points at the course's interpreter (see _kernel_spec).
_KERNEL = "bgcourse-course"


@dataclass(frozen=True)
class Execution:
    """An executed notebook and what the page says about its run."""

    notebook: nbformat.NotebookNode
    record: dict[str, Any]  # executed_at (ISO 8601, UTC), seconds, python, versions, machine, cpus


def cache_folder(course: Path, root: Path) -> Path:
    """The cache for the current inputs: ``root/<digest of helper package, quizzes, locks>``.

    The helper package is what the chapters import: all of ``bgcourse`` but this page builder
    (``bgcourse.website``), whose changes alter the pages, not what a chapter prints, and so
    rebuild the pages without executing the chapters again.
    """
    digest = hashlib.sha256()
    package = course / "src" / "bgcourse"
    inputs: Iterable[Path] = sorted(
        [
            *(path for path in package.rglob("*.py") if (package / "website") not in path.parents),
            *(package / "locale").rglob("*.po"),
            *(course / "quizzes").rglob("*.toml"),
            course / "requirements.lock",
            course / "requirements-site.lock",
        ]
    )
    for path in inputs:
        digest.update(str(path.relative_to(course)).encode())
        digest.update(path.read_bytes())
    return root / digest.hexdigest()[:16]


def _clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in notebook.cells:
        for key in _RUN_METADATA:
            cell.metadata.pop(key, None)
    return notebook


def _versions(python: str) -> dict[str, Any]:
    """The interpreter's version and the pinned packages' versions, as the kernel saw them."""
    probe = (
        "import json, platform; from importlib import metadata; "
        f"print(json.dumps({{'python': platform.python_version(), "
        f"'versions': {{n: metadata.version(n) for n in {VERSIONED!r}}}}}))"
    )
    found = json.loads(subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout)
    return {**found, "machine": f"{platform.system()} {platform.machine()}", "cpus": os.cpu_count() or 1}


class ExecutionFailed(RuntimeError):
    """A chapter raised while the site was executing it: the site shows only chapters that pass."""


def _kernel_spec(folder: Path, python: str) -> KernelSpecManager:
    """A kernel spec for the course's own interpreter, in ``folder``.

    The builder (Sphinx) lives in an environment of its own; the chapters must run where a
    learner's do, on the course's pinned packages (chapter 4 runs that environment's mypy).
    """
    spec = folder / "kernels" / _KERNEL
    spec.mkdir(parents=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "course", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(folder / "kernels")])


def _run(path: str, python: str) -> tuple[str, str, dict[str, Any]]:
    """In a worker process: execute one notebook in its folder; its JSON and its record."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    executed_at = datetime.now(UTC).isoformat(timespec="seconds")
    # IPC sockets in a private temporary folder (as the course's own fresh kernels): no TCP port,
    # no "running over TCP without encryption" warning in the build's log.
    with tempfile.TemporaryDirectory(prefix="bgcourse-site-") as folder:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})
        specs = _kernel_spec(Path(folder), python)
        manager = KernelManager(kernel_name=_KERNEL, kernel_spec_manager=specs, config=config)
        client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT_S, config=config)
        try:
            # nbclient stops a kernel it was handed only when told to; else it would live on, with
            # its servers and memory, until this worker process exits.
            client.execute(cwd=str(Path(path).parent), cleanup_kc=True)
        except CellExecutionError as error:
            # Only the message crosses the process boundary (the error object does not pickle well).
            # The end of nbclient's message is the traceback, which ends with what was raised.
            raise ExecutionFailed(
                f"{path} stopped with {error.ename}: {error.evalue}\n{_last_lines(str(error))}\n"
                f"Run the chapter in JupyterLab (make lab-master) to see it; the site shows only chapters that pass."
            ) from None
    versions = _versions(python)
    record = {"executed_at": executed_at, "seconds": round(time.perf_counter() - started, 1), **versions}
    return path, nbformat.writes(_clean(notebook)), record


def _last_lines(text: str, count: int = 20) -> str:
    """The end of a traceback, without IPython's colours (escape codes in a terminal's log)."""
    return "\n".join(_ANSI.sub("", text).strip().splitlines()[-count:])


def _cached(cache_root: Path, notebook: nbformat.NotebookNode) -> Execution | None:
    cache = get_cache(cache_root)
    try:
        pk, merged = cache.merge_match_into_notebook(notebook, cell_meta=())
    except KeyError:
        return None
    record: NbCacheRecord = cache.get_cache_record(pk)
    return Execution(merged, dict(record.data))


def executions(
    notebooks: dict[Path, Path], *, python: str, jobs: int = 2, say: Callable[[str], None] = print
) -> dict[Path, Execution]:
    """Every notebook executed: from its cache when it matches, else run now (``jobs`` at a time).

    ``notebooks`` maps each notebook to its edition's cache folder; ``python`` is the course's
    interpreter, the one the kernels run. Raises ``ExecutionFailed`` if a chapter fails.
    """
    found: dict[Path, Execution] = {}
    for path, cache_root in notebooks.items():
        hit = _cached(cache_root, nbformat.read(path, as_version=4))
        if hit is not None:
            found[path] = hit
    missing = [path for path in notebooks if path not in found]
    if not missing:
        say(f"All {len(notebooks)} notebooks' outputs are in the cache: nothing to execute.")
        return found
    say(
        f"Executing {len(missing)} notebooks, {jobs} at a time, on the pinned versions "
        f"({len(found)} more from the cache). Each takes a minute or two; the next build reuses them."
    )
    started = time.perf_counter()
    # Longest first (chapters 7 and 5 run longest), so that the last to finish is a short one.
    order = sorted(missing, key=lambda path: ("ch07" not in path.name, "ch05" not in path.name, str(path)))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run, str(path), python) for path in order]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                text, executed, record = future.result()
                path = Path(text)
                # Stored at once: a later failure leaves the chapters that passed in the cache.
                bundle = CacheBundleIn(nbformat.reads(executed, as_version=4), str(path), data=record)
                get_cache(notebooks[path]).cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
                found[path] = Execution(nbformat.reads(executed, as_version=4), record)
                elapsed = time.perf_counter() - started
                say(
                    f"  [{done}/{len(missing)}] {path.parent.name}/{path.name} "
                    f"in {record['seconds']:.0f} s ({elapsed:.0f} s so far)"
                )
        except BaseException:
            # The chapters not yet started are not run: the build stops at its first failure.
            for future in futures:
                future.cancel()
            raise
    return found
