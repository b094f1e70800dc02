"""`bgcourse grade`: score every learner's notebook of an assignment, in parallel, never giving up on one.

Each submission gets a score for every item and a reason for every point lost, whatever it is:
a wrong answer, a deleted cell, a file that is not a notebook, an endless loop, a crashed kernel.
Each runs in a worker process of its own (spawned, not forked), each worker's kernel in a fresh
sandbox (``_sandbox.py``); a progress bar counts the notebooks done.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints, and no stub is pinned

import bgcourse
from bgcourse.instructor._isolation import Isolation
from bgcourse.instructor._plan import plan_cells
from bgcourse.instructor._sandbox import Limits, Run, run_cells
from bgcourse.instructor._scoring import ItemResult, LearnerResult, score_choice, score_code
from bgcourse.instructor._submissions import Assignment, Submission, load_assignment, read_submission

__all__ = ["ItemResult", "LearnerResult", "grade_assignment", "protected_folders"]


@dataclass(frozen=True)
class _Job:
    course: Path
    slug: str
    learner: str
    folder: Path
    limits: Limits
    protected: tuple[Path, ...]
    isolation: Isolation


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
    """Grade ``submissions/<learner>/`` for the assignment ``slug``; one result a learner, sorted by name."""
    folders = sorted(path for path in submissions.iterdir() if path.is_dir() and not path.name.startswith("."))
    jobs = [_Job(course.resolve(), slug, folder.name, folder, limits, protected, isolation) for folder in folders]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc=f"grading {slug}", unit="notebook", disable=not progress, file=sys.stderr)
    results: dict[str, LearnerResult] = {}
    with bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                results[job.learner] = grade_one(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process that may have threads
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                futures: dict[Future[LearnerResult], _Job] = {pool.submit(grade_one, job): job for job in jobs}
                for future in as_completed(futures):
                    with contextlib.suppress(BrokenProcessPool):  # a worker died: graded again below
                        results[futures[future].learner] = future.result()
                        bar.update()
            for job in jobs:  # what a dead worker took with it, once more, in this process
                if job.learner not in results:
                    results[job.learner] = grade_one(job)
                    bar.update()
    return [results[job.learner] for job in jobs]


def grade_one(job: _Job) -> LearnerResult:
    """Grade one learner's submission; never raises (a grader bug becomes that learner's reason)."""
    try:
        assignment = load_assignment(job.course, job.slug)
        submission = read_submission(job.learner, job.folder, assignment)
        return _grade_submission(assignment, submission, job)
    except Exception as error:  # noqa: BLE001  # the batch must complete; say what went wrong
        return _failed(job, f"the grader failed on this submission ({type(error).__name__}: {error})")


def _failed(job: _Job, reason: str) -> LearnerResult:
    assignment = load_assignment(job.course, job.slug)
    items = tuple(ItemResult(item.grade_id, item.points, 0.0, f"Not graded: {reason}.") for item in assignment.items)
    return LearnerResult(job.learner, items, problem=reason)


def _grade_submission(assignment: Assignment, submission: Submission, job: _Job) -> LearnerResult:
    if submission.problem:
        items = tuple(ItemResult(item.grade_id, item.points, 0.0, submission.problem) for item in assignment.items)
        return LearnerResult(submission.learner, items, tuple(submission.notes), submission.problem)
    cells = plan_cells(assignment, submission)
    needs_kernel = any(cell.role in ("answer", "check") for cell in cells)
    run = Run()
    if needs_kernel:
        sources = [cell.source for cell in cells]
        warm = ("bgcourse", f"bgcourse.checks.{assignment.slug}")
        run = run_cells(
            sources, job.limits, protected=list(job.protected), quizzes=assignment.quiz_files, warm=warm,
            isolation=job.isolation,
        )  # fmt: skip
    results = []
    for item in assignment.items:
        if item.kind == "choice":
            results.append(score_choice(assignment, submission, item))
        else:
            results.append(score_code(submission, item, cells, run, job.limits))
    return LearnerResult(submission.learner, tuple(results), tuple(submission.notes))
