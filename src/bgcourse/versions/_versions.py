"""The version matrix: the course's version-dependent facts, measured on real stacks, as a table.

``bgcourse versions`` (``make versions``) makes one environment per stack of ``stacks.toml``
with uv, runs ``_version_probes.py`` in each, and writes ``results.json``; the chapters show
it with :func:`version_table`.  The results carry a fingerprint of the probes and the stacks, so a
test can tell a table that no longer describes them; ``bgcourse versions --check`` measures again
and compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FACTS",
    "PROBES_FILE",
    "RESULTS_FILE",
    "STACKS_FILE",
    "Stack",
    "VersionTable",
    "compare",
    "fingerprint",
    "load_results",
    "load_stacks",
    "measure_all",
    "measure_stack",
    "version_table",
    "write_results",
]

_HERE = Path(__file__).resolve().parent
PROBES_FILE = _HERE / "_version_probes.py"
STACKS_FILE = _HERE / "stacks.toml"
RESULTS_FILE = _HERE / "results.json"

# The column heading of each probe, in the order the tables show them.
FACTS: dict[str, str] = {
    "yield_exit": "exit code of a `yield` dependency runs",
    "yield_exit_function_scope": 'the same, `scope="function"`',
    "task_after_yield": "a task added after `yield`",
    "task_after_yield_function_scope": 'the same, `scope="function"`',
    "background_argument": "injected tasks and `background=` on the returned response",
    "failing_task": "three tasks, the 2nd raises: status; the 3rd; logged",
    "test_client": "`TestClient`: waits for tasks; a task's exception",
    "asgi_transport": "`httpx.ASGITransport` and a task's exception",
    "middleware_keep_alive": "behind `BaseHTTPMiddleware`, a task running: the client gets",
    "middleware_failing_task_kept_alive": "behind it, a failing task, client kept alive",
    "middleware_failing_task_hung_up": "behind it, a task failing after the client hung up",
    "task_set_in_dispatch": "`response.background` set in `dispatch`",
    "gate_without_response": "an app inside it returns no response",
    "nested_middleware_hang_ups": "5 nested, 10 clients hang up on a slow endpoint",
}

# Outcomes that differ from run to run only in a count: compared by whether the count is zero.
_COUNTED = re.compile(r"(?P<count>\d+) of (?P<total>\d+)")


@dataclass(frozen=True)
class Stack:
    """One set of releases to measure: ``pins`` are exact versions; ``date`` bounds everything else."""

    name: str
    pins: dict[str, str]
    date: str | None = None
    note: str = ""
    pinned: bool = False

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9.]+", "-", self.name.lower()).strip("-")


def load_stacks(path: Path = STACKS_FILE) -> list[Stack]:
    with path.open("rb") as file:
        entries = tomllib.load(file)["stack"]
    return [Stack(**entry) for entry in entries]


def fingerprint(probes: Path = PROBES_FILE, stacks: Path = STACKS_FILE) -> str:
    """What the results were measured with: the probes' source and the stacks, hashed together."""
    digest = hashlib.sha256()
    for path in (probes, stacks):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _environment(stack: Stack, root: Path, uv: str) -> Path:
    """The Python of ``stack``'s environment under ``root``, made (or brought up to date) with uv."""
    if stack.pinned:
        return Path(sys.executable)
    folder = root / stack.slug
    python = folder / "bin" / "python"
    wanted = json.dumps({"pins": stack.pins, "date": stack.date, "python": sys.version}, sort_keys=True)
    marker = folder / ".stack.json"
    if marker.exists() and marker.read_text() == wanted:
        return python
    subprocess.run([uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(folder)], check=True)
    install = [uv, "pip", "install", "--quiet", "--python", str(python)]
    if stack.date:
        install += ["--exclude-newer", f"{stack.date}T00:00:00Z"]
    subprocess.run(install + [f"{name}=={version}" for name, version in stack.pins.items()], check=True)
    marker.write_text(wanted)
    return python


def _find_uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise FileNotFoundError("uv is needed to make the stacks' environments: `make versions` installs it")
    return found


def measure_stack(stack: Stack, root: Path, uv: str | None = None) -> dict[str, str]:
    """Run every probe on ``stack`` (in its own environment under ``root``) and return the outcomes."""
    python = _environment(stack, root, uv or _find_uv())
    run = subprocess.run(
        [str(python), "-W", "ignore", str(PROBES_FILE)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if run.returncode != 0:
        raise RuntimeError(f"the probes failed on {stack.name}:\n{run.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    if measured["versions"] != stack.pins:
        raise RuntimeError(f"{stack.name}: the environment has {measured['versions']}, not {stack.pins}")
    results: dict[str, str] = measured["results"]
    return results


def measure_all(
    root: Path,
    stacks: Sequence[Stack] | None = None,
    *,
    jobs: int = 2,
    progress: Callable[[Stack], None] | None = None,
) -> dict[str, dict[str, str]]:
    """Measure every stack, ``jobs`` at a time; the results keep the stacks' order."""
    chosen = list(stacks if stacks is not None else load_stacks())
    uv = _find_uv()

    def one(stack: Stack) -> dict[str, str]:
        results = measure_stack(stack, root, uv)
        if progress is not None:
            progress(stack)
        return results

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip((stack.name for stack in chosen), pool.map(one, chosen), strict=True))


def write_results(results: dict[str, dict[str, str]], path: Path = RESULTS_FILE) -> None:
    document = {"fingerprint": fingerprint(), "results": results}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def load_results(path: Path = RESULTS_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _essence(outcome: str) -> str:
    """An outcome with its counts reduced to "none" or "some": what must agree between two runs."""
    return _COUNTED.sub(lambda match: "none" if match["count"] == "0" else "some", outcome)


def compare(recorded: dict[str, dict[str, str]], measured: dict[str, dict[str, str]]) -> list[str]:
    """Each place where a new measurement disagrees with the recorded table, as a sentence."""
    differences = []
    for stack in sorted(recorded.keys() | measured.keys()):
        before, now = recorded.get(stack, {}), measured.get(stack, {})
        for probe in sorted(before.keys() | now.keys()):
            was, is_now = before.get(probe, "(missing)"), now.get(probe, "(missing)")
            if _essence(was) != _essence(is_now):
                differences.append(f"{stack}, {probe}: the table says {was!r}, measured now {is_now!r}")
    return differences


@dataclass(frozen=True, repr=False)
class VersionTable:
    """Rows of stacks, columns of facts: shown as a Markdown table in a notebook."""

    facts: tuple[str, ...]
    rows: tuple[tuple[Stack, tuple[str, ...]], ...]

    def outcome(self, stack_name: str, fact: str) -> str:
        for stack, outcomes in self.rows:
            if stack.name == stack_name:
                return outcomes[self.facts.index(fact)]
        raise KeyError(stack_name)

    def to_markdown(self) -> str:
        head = ["stack", *(FACTS[fact] for fact in self.facts)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for stack, outcomes in self.rows:
            name = stack.name + (f" ({stack.note})" if stack.note else "")
            pins = ", ".join(f"{package} {version}" for package, version in stack.pins.items() if package != "fastapi")
            cells = [f"**{name}**<br>{pins}", *(outcome.replace("|", "/") for outcome in outcomes)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return self.to_markdown()


def version_table(*facts: str, stacks: Iterable[str] | None = None) -> VersionTable:
    """The measured outcomes of ``facts`` on every stack that answers them (or on ``stacks``)."""
    unknown = [fact for fact in facts if fact not in FACTS]
    if unknown:
        raise KeyError(f"no such fact: {', '.join(unknown)}; the facts are {', '.join(FACTS)}")
    recorded = load_results()
    if recorded["fingerprint"] != fingerprint():
        raise RuntimeError("the version table is out of date: run `make versions`")
    chosen = set(stacks) if stacks is not None else None
    rows = []
    for stack in load_stacks():
        outcomes = tuple(recorded["results"][stack.name][fact] for fact in facts)
        wanted = chosen is None or stack.name in chosen
        if wanted and any(outcome != "n/a" for outcome in outcomes):
            rows.append((stack, outcomes))
    return VersionTable(tuple(facts), tuple(rows))
