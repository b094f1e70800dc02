"""Each notebook runs under nbval twice in one kernel: the second run must give the same result.

nbval executes a notebook's code cells as test items in one kernel.  Rather than executing every
notebook again elsewhere to test that it can be re-run (as a learner does with "Run All" twice),
this plugin appends a second pass of the same cells to nbval's own items, in the same kernel, and
then an item that compares the two passes:

- every cell of the second pass must run as it did in the first (nbval's usual checks);
- the sanitised output of each cell (tests/nbval_sanitize.cfg: ports, durations, counts) must be
  the same in both passes, and no warning may reach the learner's stderr;
- no thread the first pass left behind may have a second copy after the second pass (a leak grows
  with every run).

With pytest-xdist, ``--dist loadfile`` keeps a notebook's items together on one worker, in order (they
share its kernel). This hook also orders the work so that the longest units start first.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from nbformat import NotebookNode
from nbval.plugin import IPyNbCell, IPyNbFile

ROOT = Path(__file__).resolve().parent
SECOND_RUN = "second run"

# Printed into the kernel's stdout after each pass: the names of the threads still running, with
# numbers masked (ports, counters), leaving out the pools whose idle workers come and go on their own.
THREAD_PROBE = """\
import re as _re, threading as _threading
print(sorted(_re.sub(r"\\d+", "N", _t.name) for _t in _threading.enumerate()
             if not _t.name.startswith(("AnyIO worker thread", "asyncio_", "ThreadPoolExecutor"))))
del _re, _threading
"""


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The same rules nbval uses (tests/nbval_sanitize.cfg)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "tests" / "nbval_sanitize.cfg", encoding="utf-8")
    return [(re.compile(parser[section]["regex"]), parser[section]["replace"]) for section in parser.sections()]


def summary(outputs: Sequence[NotebookNode], rules: list[tuple[re.Pattern[str], str]]) -> list[tuple[str, str]]:
    """What a cell showed, with run-to-run differences (ports, times, counts) sanitised away."""
    shown: list[tuple[str, str]] = []
    for output in outputs:
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
        if kind.startswith("stream") and shown and shown[-1][0] == kind:
            # The kernel may split one cell's printing into several stream outputs depending on
            # timing; that is display, not a different result, so join them.
            shown[-1] = (kind, shown[-1][1] + text)
        else:
            shown.append((kind, text))
    return shown


def stderr_warnings(outputs: Sequence[NotebookNode]) -> list[str]:
    return [
        output.text
        for output in outputs
        if output.output_type == "stream" and output.name == "stderr" and "Warning" in output.text
    ]


class SecondRunComparison(pytest.Item):
    """Compares what each cell showed in the first and in the second pass."""

    def __init__(self, *, first: list[IPyNbCell], second: list[IPyNbCell], probes: list[IPyNbCell], **kwargs: Any):
        super().__init__(**kwargs)
        self.first, self.second, self.probes = first, second, probes

    def runtest(self) -> None:
        passes = [*self.first, *self.second, *self.probes]
        unrun = [cell.name for cell in passes if cell.test_outputs is None and not cell.options["skip"]]
        if unrun:
            pytest.fail(f"not compared: {len(unrun)} cells did not run (the first was {unrun[0]}); see their failures")
        rules = sanitizers()
        differing = [
            f"{first.name}: first run {summary(first.test_outputs, rules)}\n"
            f"{' ' * len(first.name)}  second run {summary(second.test_outputs, rules)}"
            for first, second in zip(self.first, self.second, strict=True)
            if summary(first.test_outputs or [], rules) != summary(second.test_outputs or [], rules)
        ]
        assert not differing, "the second run showed something else:\n" + "\n".join(differing)
        warnings = [
            (cell.name, text) for cell in self.first + self.second for text in stderr_warnings(cell.test_outputs or [])
        ]
        assert not warnings, f"warnings reached the learner: {warnings}"
        after_first, after_second = (
            ast.literal_eval("".join(o.text for o in probe.test_outputs)) for probe in self.probes
        )
        grown = sorted({name for name in after_second if after_second.count(name) > after_first.count(name)})
        assert not grown, f"threads that every run leaves behind: {grown} (after the first run: {after_first})"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.name}: {self.name}"


def probe(parent: IPyNbFile, name: str) -> IPyNbCell:
    cell = NotebookNode(cell_type="code", source=THREAD_PROBE, metadata={}, outputs=[], execution_count=None)
    return IPyNbCell.from_parent(parent, name=name, cell_num=-1, cell=cell, options={"check": False, "skip": False})


# Started first, since a worker that starts a long unit last finishes last: the website's test (it
# executes all 14 chapters), every notebook, then the test files that execute notebooks, grade them
# or drive them in a browser (each a unit of its own under --dist loadfile).
LONG_UNITS = (
    "tests/browser/test_site.py",
    "notebooks/",
    "tests/instructor/",
    "tests/browser/",
    "tests/versions/",
    "tests/ch03_db_compensation/test_notebook_on_postgres.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    notebooks: dict[IPyNbFile, list[IPyNbCell]] = {}
    others: list[pytest.Item] = []
    for item in items:
        if isinstance(item, IPyNbCell) and isinstance(item.parent, IPyNbFile):
            notebooks.setdefault(item.parent, []).append(item)
        else:
            others.append(item)
    ordered: list[pytest.Item] = []
    for notebook, first in notebooks.items():
        second = [
            IPyNbCell.from_parent(
                notebook,
                name=f"{cell.name} ({SECOND_RUN})",
                cell_num=cell.cell_num,
                cell=cell.cell,
                options=cell.options,
            )
            for cell in first
        ]
        probes = [probe(notebook, "threads after the first run"), probe(notebook, f"threads after the {SECOND_RUN}")]
        compare = SecondRunComparison.from_parent(
            notebook, name=f"{SECOND_RUN}: same result", first=first, second=second, probes=probes
        )
        ordered += [*first, probes[0], *second, probes[1], compare]
    rank = {prefix: number for number, prefix in enumerate(LONG_UNITS)}

    def order(item: pytest.Item) -> int:  # sorted() is stable: the order within a rank stays
        where = item.nodeid.split("::")[0]
        return min((rank[prefix] for prefix in LONG_UNITS if where.startswith(prefix)), default=len(LONG_UNITS))

    items[:] = sorted(ordered + others, key=order)
