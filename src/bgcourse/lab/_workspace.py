"""The learner's own copy of the course: a folder of practice notebooks that nothing overwrites.

``make lab`` (``bgcourse lab``) copies ``release/practice/notebooks/`` into the learner's folder
(``my-course/``, which git ignores) and records, for each chapter, the SHA-256 of the released
notebook it copied. Run again after the course has changed, it:

- adds the chapters that are new;
- replaces a chapter the learner has not changed since it was copied (its bytes are still the
  ones written: nothing of theirs is lost);
- leaves a chapter the learner has changed alone, and puts the new version beside it, as
  ``<chapter>.updated.ipynb`` (once per new version; an edited ``.updated`` copy is kept too);
- copies a chapter again if the learner deleted it.

The record, ``.course-copy.json``, also marks the folder as a practice copy, so that its check
cells say "not yet" instead of raising (:mod:`bgcourse.helpers._feedback`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgcourse.helpers._feedback import COPY_MARKER
from bgcourse.instructor._files import write_atomic
from bgcourse.instructor._release import copy_marker, release_tree

__all__ = ["UPDATED_SUFFIX", "WorkspaceReport", "for_this_python", "prepare_workspace"]

UPDATED_SUFFIX = ".updated.ipynb"
_SOURCE = "practice/notebooks/"


@dataclass
class WorkspaceReport:
    """What :func:`prepare_workspace` did, chapter by chapter (notebook file names)."""

    folder: Path
    created: list[str] = field(default_factory=list)  # new here (first time, or a new chapter)
    restored: list[str] = field(default_factory=list)  # the learner had deleted it
    refreshed: list[str] = field(default_factory=list)  # unchanged by the learner, replaced by the new version
    offered: list[str] = field(default_factory=list)  # changed by the learner: the new version is beside it
    kept: list[str] = field(default_factory=list)  # already current
    blocked: list[str] = field(default_factory=list)  # an edited .updated copy that a newer version would replace

    def lines(self) -> list[str]:
        """What to tell the learner, one line per kind of change (nothing when all was current)."""
        said = []
        if self.created:
            said.append(f"Copied {_names(self.created)} into {self.folder}.")
        if self.restored:
            said.append(f"Copied again (it had been deleted): {_names(self.restored)}.")
        if self.refreshed:
            said.append(f"Updated to the course's new version (you had not changed it): {_names(self.refreshed)}.")
        for name in self.offered:
            said.append(
                f"The course changed {name}, which you have edited: your copy is untouched, and the new "
                f"version is beside it as {name.removesuffix('.ipynb')}{UPDATED_SUFFIX}."
            )
        for name in self.blocked:
            said.append(
                f"The course changed again, but you have edited {name}: move it away to get the newest version."
            )
        return said


def prepare_workspace(course: Path, folder: Path, language: str = "en") -> WorkspaceReport:
    """Bring the learner's ``folder`` up to date with the course's practice release, losing nothing.

    ``language`` chooses the edition: English, or ``zh-CN`` (``release/zh-CN/practice/``).

    The record keeps two digests a chapter: ``release``, of the released notebook (has the course
    changed?), and ``written``, of the file as written here (has the learner changed it?).
    """
    source = _SOURCE if language == "en" else f"{language}/{_SOURCE}"
    released = {
        name.removeprefix(source): data
        for name, data in release_tree(course).items()
        if name.startswith(source) and name.endswith(".ipynb")
    }
    folder.mkdir(parents=True, exist_ok=True)
    record = _read_record(folder)
    copied: dict[str, Any] = record.get("chapters", {})
    report = WorkspaceReport(folder)
    for name, release in sorted(released.items()):
        digest = _sha256(release)
        target = folder / name
        entry = copied.get(name, {})
        if target.exists() and entry.get("release") == digest:
            report.kept.append(name)
            continue
        data = for_this_python(release)
        if not target.exists():
            (report.restored if entry else report.created).append(name)
        elif _sha256(target.read_bytes()) == entry.get("written"):
            report.refreshed.append(name)  # the learner's file is exactly what was written: nothing to lose
        elif not entry and target.read_bytes() == data:
            report.kept.append(name)  # no record (lost, or a copy made by hand), but this very version
        elif entry.get("offered") == digest:
            report.kept.append(name)  # this version was offered before; the learner's copy stays theirs
            continue
        else:
            beside = folder / f"{name.removesuffix('.ipynb')}{UPDATED_SUFFIX}"
            if beside.exists() and _sha256(beside.read_bytes()) != entry.get("offered_written"):
                report.blocked.append(beside.name)  # the learner edited the offered copy too: keep it
                continue
            write_atomic(beside, data)
            report.offered.append(name)
            copied[name] = {**entry, "offered": digest, "offered_written": _sha256(data)}
            continue
        write_atomic(target, data)
        copied[name] = {"release": digest, "written": _sha256(data)}
    in_language = {} if language == "en" else {"language": language}
    write_atomic(folder / COPY_MARKER, copy_marker("practice", chapters=copied, **in_language))
    return report


def for_this_python(notebook: bytes) -> bytes:
    """The notebook with the ``language_info`` that this Python's kernel reports.

    JupyterLab fills in a notebook's ``language_info`` as soon as it opens it, and again when the
    kernel says which Python it is; a notebook without the kernel's exact values (the Python
    version among them) is therefore marked modified the moment it is opened, before the learner
    has done anything.
    """
    from ipykernel.ipkernel import IPythonKernel

    document = json.loads(notebook)
    document.setdefault("metadata", {})["language_info"] = dict(IPythonKernel.language_info)
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _read_record(folder: Path) -> dict[str, Any]:
    path = folder / COPY_MARKER
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        # A damaged record: treat every existing notebook as the learner's own (offer, never replace).
        return {}
    return record if isinstance(record, dict) else {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _names(names: list[str]) -> str:
    return ", ".join(names)
