"""`bgcourse grade`: score every learner's notebook of an assignment, in parallel, never giving up on one.

Each submission gets a score for every item and a reason for every point lost, whatever it is:
a wrong answer, a deleted cell, a file that is not a notebook, an endless loop, a crashed kernel.
Each runs in a worker process of its own (``_workers.py``: spawned, one a notebook), each
worker's kernel in a fresh sandbox (``_sandbox.py``); a progress bar counts the notebooks done.
A worker that dies (the learner's code can kill its kernel's parent) is replaced by one that
grades what needs no kernel; a grader error costs the item it happened in, not the notebook.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints, and no stub is pinned

import bgcourse
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language
from bgcourse.instructor._isolation import Isolation
from bgcourse.instructor._plan import PlannedCell, plan_cells, refuse_unjudgeable
from bgcourse.instructor._sandbox import CellRun, Limits, Run, run_cells
from bgcourse.instructor._scoring import ItemResult, LearnerResult, score_choice, score_code
from bgcourse.instructor._submissions import Assignment, Submission, load_assignment, read_submission
from bgcourse.instructor._text import MAX_REASON_CHARS, capped, shown_name, valid_text
from bgcourse.instructor._workers import Ended, run_jobs

__all__ = ["ItemResult", "LearnerResult", "grade_assignment", "protected_folders"]

# Beyond its deadline, the time a notebook's worker may take to start, to start its kernel
# (nbclient waits up to 60 s) and to stop it, before it is stopped from outside.
START_AND_STOP_SECONDS = 120
_NOT_LEARNERS = frozenset({".git", ".ipynb_checkpoints"})


@dataclass(frozen=True)
class _Job:
    course: Path
    slug: str
    learner: str  # the folder's name as the gradebook shows it (see shown_name)
    folder: Path
    limits: Limits
    protected: tuple[Path, ...]
    isolation: Isolation
    no_kernel: str = ""  # if set, why the code is not run: only what needs no kernel is graded


def protected_folders(course: Path, *also: Path) -> tuple[Path, ...]:
    """Everything in the course folder that a grading kernel must not read, and ``also``.

    That is every top-level entry but the ones holding the Python environment or this package.
    """
    needed = [Path(sys.prefix).resolve(), Path(bgcourse.__file__).resolve().parent, Path(tempfile.gettempdir())]
    folders = [
        entry.resolve()
        for entry in sorted(course.iterdir())
        if not any(path == entry.resolve() or entry.resolve() in path.parents for path in needed)
    ]
    return tuple(dict.fromkeys([*folders, *(path.resolve() for path in also)]))


def grade_assignment(
    course: Path,
    submissions: Path,
    slug: str,
    *,
    limits: Limits,
    protected: tuple[Path, ...],
    isolation: Isolation,
    workers: int = 0,
    progress: bool = True,
) -> list[LearnerResult]:
    """Grade ``submissions/<learner>/`` for the assignment ``slug``; one result a learner, sorted by name.

    Raises :class:`ReleaseError` before grading anyone if a check of the assignment cannot be
    judged outside the learner's kernel (see :func:`refuse_unjudgeable`).
    """
    refuse_unjudgeable(load_assignment(course.resolve(), slug))
    # Every folder is a learner, a dot-folder too (but a repository's .git, and Jupyter's checkpoints,
    # which GitHub Classroom and JupyterLab leave there); a link to a folder gets a row saying it is not graded.
    folders = sorted(path for path in submissions.iterdir() if path.is_dir() and path.name not in _NOT_LEARNERS)
    jobs = [
        _Job(course.resolve(), slug, shown_name(folder.name), folder, limits, protected, isolation)
        for folder in folders
    ]
    bar = tqdm(total=len(jobs), desc=f"grading {slug}", unit="notebook", disable=not progress, file=sys.stderr)
    with bar:
        return run_jobs(
            jobs, grade_one, workers=workers or os.cpu_count() or 1,
            seconds=lambda job: job.limits.deadline + START_AND_STOP_SECONDS,
            again=_without_kernel, ended=_ended, done=bar.update,
        )  # fmt: skip


def _without_kernel(job: _Job, ended: Ended) -> _Job | None:
    """After a worker died: once more, grading only what needs no kernel (the learner's code may have killed it)."""
    if ended.how != "died" or job.no_kernel:
        return None
    why = (
        f"the grading process stopped ({ended.detail}) while running the code of this notebook: "
        "does your code end its parent process (os.kill, os.getppid)?"
    )
    return dataclasses.replace(job, no_kernel=why)


def _ended(job: _Job, ended: Ended) -> LearnerResult:
    if ended.how == "overran":
        return _failed(job, f"grading stopped at this notebook's deadline of {job.limits.deadline:g} s")
    return _failed(job, f"the grading process stopped ({ended.detail}) while reading this notebook")


def grade_one(job: _Job) -> LearnerResult:
    """Grade one learner's submission; never raises (a grader bug becomes that learner's reason)."""
    started = time.monotonic()
    try:
        assignment = load_assignment(job.course, job.slug)
        submission = read_submission(job.learner, job.folder, assignment, until=started + job.limits.deadline)
        with in_language(submission.language):
            result = _grade_submission(assignment, submission, job, started)
    except Exception as error:  # noqa: BLE001  # the batch must complete; say what went wrong
        result = _failed(job, f"the grader failed on this submission ({type(error).__name__}: {error})")
    return _bounded(result)


def _failed(job: _Job, reason: str) -> LearnerResult:
    assignment = load_assignment(job.course, job.slug)
    items = tuple(ItemResult(item.grade_id, item.points, 0.0, f"Not graded: {reason}.") for item in assignment.items)
    return LearnerResult(job.learner, items, problem=reason)


def _bounded(result: LearnerResult) -> LearnerResult:
    """Every text valid (writable as UTF-8) and at most MAX_REASON_CHARS long, whatever produced it."""

    def safe(text: str) -> str:
        return capped(valid_text(text))

    items = tuple(dataclasses.replace(item, feedback=safe(item.feedback)) for item in result.items)
    notes = tuple(safe(note) for note in result.notes)
    return dataclasses.replace(result, items=items, notes=notes, problem=safe(result.problem))


def _grade_submission(assignment: Assignment, submission: Submission, job: _Job, started: float) -> LearnerResult:
    if submission.problem:
        items = tuple(ItemResult(item.grade_id, item.points, 0.0, submission.problem) for item in assignment.items)
        return LearnerResult(
            submission.learner, items, tuple(submission.notes), submission.problem, submission.language
        )
    cells: list[PlannedCell] = []
    run, why_not_run = Run(), job.no_kernel
    try:
        cells = plan_cells(assignment, submission)
    except Exception as error:  # noqa: BLE001  # the choice items can still be graded
        why_not_run = f"the grader failed on this notebook's code ({type(error).__name__}: {error})"
    if not why_not_run and any(cell.role in ("answer", "check") for cell in cells):
        run = _run(assignment, cells, job, started)
    results = []
    for item in assignment.items:
        try:
            if item.kind == "choice":
                results.append(score_choice(assignment, submission, item))
            elif why_not_run:
                results.append(
                    ItemResult(item.grade_id, item.points, 0.0, _("Not graded: {why}").format(why=why_not_run))
                )
            else:
                results.append(score_code(assignment, submission, item, cells, run, job.limits))
        except Exception as error:  # noqa: BLE001  # one item's bug costs that item only
            text = _("Not graded: the grader failed on this item ({error}).")
            reason = text.format(error=f"{type(error).__name__}: {error}")
            results.append(ItemResult(item.grade_id, item.points, 0.0, reason))
    return LearnerResult(submission.learner, tuple(results), tuple(submission.notes), language=submission.language)


def _run(assignment: Assignment, cells: list[PlannedCell], job: _Job, started: float) -> Run:
    """Run the planned cells in what is left of the deadline (reading the notebook counted too)."""
    left = job.limits.deadline - (time.monotonic() - started)
    if left < 1:
        return Run(stopped=f"grading stopped at this notebook's deadline of {job.limits.deadline:g} s")
    sources = [cell.source for cell in cells]
    warm = ("bgcourse", f"bgcourse.checks.{assignment.slug}")
    limits = dataclasses.replace(job.limits, deadline=left)
    try:
        run = run_cells(
            sources, limits, protected=list(job.protected), quizzes=assignment.quiz_files, warm=warm,
            isolation=job.isolation,
        )  # fmt: skip
    except Exception as error:  # noqa: BLE001  # the choice items can still be graded
        return Run(stopped=f"the grader failed to run the cells ({type(error).__name__}: {error})")
    if run.stopped.startswith("grading stopped at this notebook's deadline"):  # the deadline given, not what was left
        run.stopped = f"grading stopped at this notebook's deadline of {job.limits.deadline:g} s"
    run.cells = [_kept(cell) for cell in run.cells]
    return run


def _kept(cell: CellRun) -> CellRun:
    """What the grader keeps of a cell's outcome: bounded (each of the batch's results is kept to the end)."""
    return dataclasses.replace(
        cell, error=capped(cell.error), stderr=capped(cell.stderr), result=capped(cell.result, MAX_REASON_CHARS)
    )
