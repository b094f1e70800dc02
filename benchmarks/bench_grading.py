"""Grade the same generated submissions with `bgcourse grade` and with nbgrader's autograde; compare.

Run with `make bench` (it builds .venv-nbgrader first) or `.venv/bin/python benchmarks/bench_grading.py`.
It writes N learners' notebooks (default 50) for a chapter, each a random but reproducible mix of
right, wrong and missing answers, made from the learners' copy in the release; grades them with
this course's grader (once in parallel, once with one worker), and with `nbgrader autograde` in a
separate environment after `nbgrader generate_assignment` of the master notebook, as an
instructor who uses nbgrader would; then prints the times, the ratio, and whether every learner
got the same score for every question from both.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from bgcourse.instructor._grade import LearnerResult, grade_assignment, protected_folders
from bgcourse.instructor._isolation import choose_isolation
from bgcourse.instructor._nbgrader import grade_id, is_solution
from bgcourse.instructor._release import chapters, read_master, student_notebook
from bgcourse.instructor._sandbox import Limits

ROOT = Path(__file__).resolve().parents[1]
# The sandbox where this machine can make one (as an instructor grades); else the trusted mode, said below.
ISOLATION = choose_isolation(trusted=True)
NBGRADER_BIN = ROOT / ".venv-nbgrader" / "bin"
DUMP_SCORES = """
import json, sys
from nbgrader.api import Gradebook
root, assignment = sys.argv[1], sys.argv[2]
with Gradebook("sqlite:///" + root + "/gradebook.db") as gradebook:
    scores = {
        submission.student.id: {grade.name: grade.score for grade in submission.grades}
        for submission in gradebook.notebook_submissions(assignment, assignment)
    }
print(json.dumps(scores))
"""


def broken(source: str) -> str:
    """A wrong answer: the reference solution without its last statement."""
    tree = ast.parse(source)
    tree.body = tree.body[:-1] or [ast.Pass()]
    return ast.unparse(tree)


def make_submissions(slug: str, count: int, folder: Path, seed: int = 2026) -> None:
    """``folder/learnerNN/<slug>.ipynb``: the released copy, answered by a reproducible mix of learners."""
    (chapter,) = chapters(ROOT, [slug])
    master, quiz = read_master(chapter)
    solutions = {grade_id(cell): cell.source for cell in master.cells if is_solution(cell)}
    choices = {question.id: question for question in quiz.questions} if quiz else {}
    rng = random.Random(seed)
    for number in range(1, count + 1):
        notebook = student_notebook(chapter, master, quiz, "assessed")
        for cell in notebook.cells:
            cell_id = grade_id(cell) or ""
            if not is_solution(cell):
                continue
            question = choices.get(cell_id.removesuffix("_answer"))
            roll = rng.random()
            if question is not None and question.kind == "choice":
                wrong = sorted(set(question.choices) - {question.answer})
                letter = question.answer if roll < 0.75 else rng.choice(wrong)
                cell.source = cell.source if roll > 0.95 else f'answer_{question.id} = "{letter}"'
            elif roll < 0.7:
                cell.source = solutions[cell_id]
            elif roll < 0.85:
                cell.source = broken(solutions[cell_id])
            # else: the stub is left in place, as handed out
        (folder / f"learner{number:02d}").mkdir(parents=True)
        nbformat.write(notebook, folder / f"learner{number:02d}" / f"{slug}.ipynb")


def grade_with_bgcourse(slug: str, submissions: Path, workers: int) -> tuple[float, list[LearnerResult]]:
    started = time.perf_counter()
    results = grade_assignment(
        ROOT, submissions, slug, limits=Limits(), protected=protected_folders(ROOT, submissions), workers=workers,
        isolation=ISOLATION, progress=False,
    )  # fmt: skip
    return time.perf_counter() - started, results


def grade_with_nbgrader(slug: str, submissions: Path, course: Path) -> tuple[float, dict[str, dict[str, float]]]:
    env = {
        **os.environ,
        "PATH": f"{NBGRADER_BIN}{os.pathsep}{os.environ['PATH']}",
        "BGCOURSE_QUIZZES": str(ROOT / "quizzes"),
    }
    (course / "source" / slug).mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / f"{slug}.ipynb", course / "source" / slug)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\nc.CourseDirectory.course_id = 'bgcourse'\n"
    )

    def nbgrader(*arguments: str) -> None:
        subprocess.run(
            [str(NBGRADER_BIN / "nbgrader"), *arguments], cwd=course, env=env, check=True, capture_output=True
        )

    nbgrader("generate_assignment", slug, "--force")
    for learner in sorted(submissions.iterdir()):
        (course / "submitted" / learner.name / slug).mkdir(parents=True)
        shutil.copy(learner / f"{slug}.ipynb", course / "submitted" / learner.name / slug)
    started = time.perf_counter()
    nbgrader("autograde", slug, "--force")
    elapsed = time.perf_counter() - started
    dump = [str(NBGRADER_BIN / "python"), "-c", DUMP_SCORES, str(course), slug]
    scores: dict[str, dict[str, float]] = json.loads(
        subprocess.run(dump, env=env, check=True, capture_output=True, text=True).stdout
    )
    return elapsed, scores


def differences(ours: list[LearnerResult], theirs: dict[str, dict[str, Any]], course: Path, slug: str) -> list[str]:
    """Every (learner, question) scored differently, with what nbgrader's cell printed when it explains it."""
    found = []
    for result in ours:
        for item in result.items:
            other = theirs.get(result.learner, {}).get(item.grade_id)
            if other is None or float(other) != item.score:
                why = _stderr_only(course / "autograded" / result.learner / slug / f"{slug}.ipynb", item.grade_id)
                found.append(f"{result.learner} {item.grade_id}: bgcourse {item.score:g}, nbgrader {other}{why}")
    return found


def _stderr_only(path: Path, cell_id: str) -> str:
    """If nbgrader's cell raised nothing and failed only for output on stderr, say so and quote it."""
    notebook = nbformat.read(path, as_version=4)
    (cell,) = [cell for cell in notebook.cells if grade_id(cell) == cell_id]
    if any(output.output_type == "error" for output in cell.outputs):
        return ""
    stderr = "".join(output.text for output in cell.outputs if output.get("name") == "stderr")
    return f" (nbgrader's cell raised nothing; it failed for output on stderr: {stderr.strip().splitlines()[0]!r})"


def report(label: str, seconds: float, notebooks: int) -> None:
    # With the load average: other work on the machine slows either grader.
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    print(f"{label:28} {seconds:7.1f} s  ({seconds / notebooks:.2f} s a notebook; {load})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chapter", default="ch01_core_mechanics")
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--skip-serial", action="store_true", help="do not also grade with one worker")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        submissions = Path(folder) / "submissions"
        make_submissions(options.chapter, options.submissions, submissions)
        print(f"{options.submissions} generated submissions of {options.chapter}")
        print(f"learners' code runs in: {ISOLATION.mode}")
        workers = os.cpu_count() or 1
        ours, results = grade_with_bgcourse(options.chapter, submissions, workers)
        report(f"bgcourse grade, {workers} workers:", ours, options.submissions)
        if not options.skip_serial:
            serial, _ = grade_with_bgcourse(options.chapter, submissions, 1)
            report("bgcourse grade, 1 worker:", serial, options.submissions)
        if not (NBGRADER_BIN / "nbgrader").exists():
            print("nbgrader: not installed; run `make nbgrader-env` to compare with nbgrader autograde")
            return 1
        theirs, scores = grade_with_nbgrader(options.chapter, submissions, Path(folder) / "nbgrader-course")
        report("nbgrader autograde:", theirs, options.submissions)
        print(f"ratio nbgrader / bgcourse:   {theirs / ours:7.1f}x  (target: at least 5x)")
        if not options.skip_serial:
            print(f"ratio with one worker:       {theirs / serial:7.1f}x")
        mismatches = differences(results, scores, Path(folder) / "nbgrader-course", options.chapter)
        noise = [line for line in mismatches if "failed for output on stderr" in line]
        pairs = sum(len(result.items) for result in results)
        verdict = "yes" if not mismatches else "yes, but for stderr noise" if len(noise) == len(mismatches) else "NO"
        print(f"scores identical: {verdict} ({pairs - len(mismatches)} of {pairs} learner-question pairs agree)")
        if noise:
            print(f"  {len(noise)} differ only because nbgrader fails a cell that raised nothing but wrote to stderr:")
        for line in mismatches:
            print(f"  {line}")
        return 1 if len(mismatches) > len(noise) else 0


if __name__ == "__main__":
    sys.exit(main())
