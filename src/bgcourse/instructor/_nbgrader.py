"""nbgrader's cell metadata, checksums and solution / hidden-test regions, done as nbgrader 0.9 does them.

The rules are nbgrader's own (``nbgrader/utils.py`` and the ``ClearSolutions``, ``ClearHiddenTests``
and ``ComputeChecksums`` preprocessors), so that a notebook released here is one that ``nbgrader
validate`` and ``nbgrader autograde`` accept; a test compares the two cell by cell.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import nbformat

__all__ = [
    "CODE_STUB",
    "ReleaseError",
    "clear_hidden_tests",
    "compute_checksum",
    "grade_id",
    "is_grade",
    "is_locked",
    "is_solution",
    "replace_solution_region",
    "student_cell",
]

# nbgrader's default ``ClearSolutions.code_stub["python"]`` and ``text_stub``.
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


class ReleaseError(ValueError):
    """A master notebook cannot be released as it is; the message names the notebook, cell and problem."""


def _flags(cell: Any) -> dict[str, Any]:
    metadata = cell.get("metadata", {})
    flags = metadata.get("nbgrader", {}) if isinstance(metadata, dict) else {}
    return flags if isinstance(flags, dict) else {}  # damaged metadata (a learner's cell) has no flags


def is_grade(cell: Any) -> bool:
    return bool(_flags(cell).get("grade", False))


def is_solution(cell: Any) -> bool:
    return bool(_flags(cell).get("solution", False))


def is_locked(cell: Any) -> bool:
    """nbgrader's rule: solution cells never are, grade cells always are, others if marked."""
    if not _flags(cell) or is_solution(cell):
        return False
    return is_grade(cell) or bool(_flags(cell).get("locked", False))


def grade_id(cell: Any) -> str | None:
    value = _flags(cell).get("grade_id")
    return value if isinstance(value, str) else None


def compute_checksum(cell: Any) -> str:
    """nbgrader's ``utils.compute_checksum``: MD5 of source, type, flags, id and points, in that order."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in (cell.source, cell.cell_type, str(is_grade(cell)), str(is_solution(cell)), str(is_locked(cell))):
        digest.update(part.encode("utf-8"))
    digest.update(_flags(cell)["grade_id"].encode("utf-8"))
    if is_grade(cell):
        digest.update(str(float(_flags(cell)["points"])).encode("utf-8"))
    return digest.hexdigest()


def replace_solution_region(source: str, stub: str, where: str) -> tuple[str, bool]:
    """Replace each ``BEGIN SOLUTION`` .. ``END SOLUTION`` region by ``stub``, indented like the marker."""
    lines: list[str] = []
    inside = replaced = False
    for line in source.split("\n"):
        if BEGIN_SOLUTION in line:
            if inside:
                raise ReleaseError(f"{where}: nested {BEGIN_SOLUTION}")
            inside = replaced = True
            indent = re.match(r"\s*", line).group(0)  # type: ignore[union-attr]  # \s* always matches
            lines += [indent + stub_line for stub_line in stub.split("\n")]
        elif END_SOLUTION in line:
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ReleaseError(f"{where}: {BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(lines), replaced


def clear_hidden_tests(source: str, where: str) -> tuple[str, bool]:
    """Remove ``BEGIN HIDDEN TESTS`` .. ``END HIDDEN TESTS`` regions, markers included."""
    lines: list[str] = []
    inside = removed = False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            if inside:
                raise ReleaseError(f"{where}: nested {BEGIN_HIDDEN}")
            inside = removed = True
        elif END_HIDDEN in line:
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ReleaseError(f"{where}: {BEGIN_HIDDEN} without {END_HIDDEN}")
    return "\n".join(lines), removed


def student_cell(cell: nbformat.NotebookNode, stub: str, where: str) -> nbformat.NotebookNode:
    """One cell as nbgrader's ``generate_assignment`` leaves it (before checksums): locked, stubbed, no hidden tests."""
    # LockCells: what JupyterLab shows as non-deletable / read-only.
    if is_solution(cell):
        cell.metadata["deletable"] = False
    elif is_locked(cell):
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False
    # ClearSolutions.
    code_stub = stub if cell.cell_type == "code" else TEXT_STUB
    cell.source, replaced = replace_solution_region(cell.source, code_stub, where)
    if replaced and not is_solution(cell):
        raise ReleaseError(f"{where}: a solution region in a cell that is not a solution cell")
    if is_solution(cell) and not replaced:
        cell.source = code_stub
    # ClearOutput (nbconvert's: outputs, count, and the metadata that belongs to outputs).
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
        for key in ("collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    # ClearHiddenTests.
    cell.source, removed = clear_hidden_tests(cell.source, where)
    if removed and not is_grade(cell):
        raise ReleaseError(f"{where}: a hidden-tests region in a cell that is not a grade cell")
    # ComputeChecksums.
    if is_grade(cell) or is_solution(cell) or is_locked(cell):
        cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
        cell.metadata.nbgrader["cell_type"] = cell.cell_type
    return cell
