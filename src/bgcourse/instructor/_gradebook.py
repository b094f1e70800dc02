"""The gradebook of one assignment: a CSV, Gradescope-style results and feedback per learner, a summary.

Everything is written into a staging folder that replaces the old gradebook in one rename, so a
reader sees the previous gradebook or the new one, never half of one. Nothing in it depends on
when or where it was made (no dates, no temporary paths), so grading again gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from matplotlib.figure import Figure

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._i18n import in_language
from bgcourse.instructor._files import replaced_directory, write_atomic
from bgcourse.instructor._isolation import BUBBLEWRAP, TRUSTED
from bgcourse.instructor._scoring import LearnerResult
from bgcourse.instructor._submissions import Assignment

__all__ = ["write_gradebook"]


def _number(value: float) -> str:
    return f"{value:g}"


def write_gradebook(folder: Path, assignment: Assignment, results: list[LearnerResult], *, isolation: str) -> None:
    """Replace ``folder`` with the gradebook of ``results``; ``isolation`` says how the learners' code ran."""
    with replaced_directory(folder) as staging:
        write_atomic(staging / "gradebook.csv", _csv(assignment, results))
        for result in results:
            write_atomic(staging / "learners" / result.learner / "results.json", _gradescope(result, isolation))
            write_atomic(staging / "learners" / result.learner / "feedback.md", _feedback(assignment, result))
        write_atomic(staging / "summary.md", _summary(assignment, results, isolation))
        write_atomic(staging / "summary.png", _plot(assignment, results))


# How the summary names each isolation mode of `_isolation.py`.
_ISOLATION_WORDS = {
    BUBBLEWRAP: "a sandbox of its own for each learner (bubblewrap: no network, no other files, no process left)",
    TRUSTED: "no sandbox (--trusted-cohort: every learner was trusted)",
}


def _csv(assignment: Assignment, results: list[LearnerResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learner", *(item.grade_id for item in assignment.items), "total", "max", "problem"])
    for result in results:
        scores = [_number(item.score) for item in result.items]
        row = [_inert(result.learner), *scores, _number(result.score), _number(result.points), _inert(result.problem)]
        writer.writerow(row)
    return buffer.getvalue()


def _inert(text: str) -> str:
    """Text a spreadsheet shows as text: a learner's folder named ``=HYPERLINK(...)`` is not a formula."""
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def _gradescope(result: LearnerResult, isolation: str) -> str:
    """Gradescope's autograder ``results.json``: a score, an overall message, one entry a question."""
    message = "\n".join([result.problem, *(f"- {note}" for note in result.notes)]).strip()
    document = {
        "score": result.score,
        "output": message,
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"isolation": isolation},
        "tests": [
            {
                "number": str(position),
                "name": item.grade_id,
                "score": item.score,
                "max_score": item.points,
                "status": "passed" if item.passed else "failed",
                "output": item.feedback,
                "output_format": "md",
                "visibility": "visible",
            }
            for position, item in enumerate(result.items, start=1)
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _feedback(assignment: Assignment, result: LearnerResult) -> str:
    with in_language(result.language):  # the learner's feedback, in the language of their edition
        return _feedback_text(assignment, result)


def _feedback_text(assignment: Assignment, result: LearnerResult) -> str:
    lines = [_("# {chapter}: feedback for {learner}").format(chapter=assignment.slug, learner=result.learner), ""]
    score = f"{_number(result.score)} / {_number(result.points)}"
    lines += [_("**Score: {score}**").format(score=score), ""]
    if result.problem:
        lines += [_("**Your notebook could not be graded:** {problem}").format(problem=result.problem), ""]
    if result.notes:
        lines += [_("Notes on your notebook:"), "", *(f"- {note}" for note in result.notes), ""]
    lines += [_("| Question | Score | |"), "|---|---|---|"]
    for item in result.items:
        # Words, not emoji: a reader without an emoji font would see empty boxes.
        mark = _("passed") if item.passed else _("failed") if item.score == 0 else _("partial")
        lines.append(f"| {item.grade_id} | {_number(item.score)} / {_number(item.points)} | {mark} |")
    lines.append("")
    for item in result.items:
        lines += [f"## {item.grade_id} ({_number(item.score)} / {_number(item.points)})", "", item.feedback, ""]
    return "\n".join(lines)


def _summary(assignment: Assignment, results: list[LearnerResult], isolation: str) -> str:
    count = len(results)
    lines = [f"# {assignment.slug}: summary", "", f"{count} learners; {_number(assignment.total)} points in all.", ""]
    lines += [f"Learners' code ran in: {_ISOLATION_WORDS.get(isolation, isolation)}.", ""]
    if not results:
        return "\n".join(lines)
    totals = sorted(result.score for result in results)
    mean = sum(totals) / count
    lines += [
        f"Totals: mean {mean:.1f}, median {_number(totals[count // 2])}, "
        f"lowest {_number(totals[0])}, highest {_number(totals[-1])}.",
        "",
    ]
    lines += ["| Question | Points | Mean | Full marks | Missed |", "|---|---|---|---|---|"]
    missed: list[tuple[int, str]] = []
    for position, item in enumerate(assignment.items):
        scores = [result.items[position].score for result in results]
        full = sum(score >= item.points for score in scores)
        missed.append((count - full, item.grade_id))
        lines.append(
            f"| {item.grade_id} | {_number(item.points)} | {sum(scores) / count:.2f} | {full} | {count - full} |"
        )
    lines += ["", "Most missed (learners without full marks):", ""]
    ranked = sorted(missed, key=lambda pair: (-pair[0], pair[1]))
    lines += [f"1. {grade_id}: {number} of {count}" for number, grade_id in ranked if number]
    problems = [result for result in results if result.problem]
    if problems:
        lines += ["", "Not graded:", "", *(f"- {result.learner}: {result.problem}" for result in problems)]
    lines += ["", "![Score distribution per question](summary.png)", ""]
    return "\n".join(lines)


def _band(score: float, points: float) -> int:
    return 2 if score >= points else 1 if score > 0 else 0


def _plot(assignment: Assignment, results: list[LearnerResult]) -> bytes:
    """Per question, the share of learners with full, partial and no marks; and the totals' histogram."""
    figure = Figure(figsize=(10, 0.4 * len(assignment.items) + 1.8), dpi=100)
    shares, totals = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    names = [item.grade_id for item in assignment.items][::-1]
    count = max(len(results), 1)
    left = [0.0] * len(names)
    for label, colour, band in (("full marks", "#4c9a2a", 2), ("partial", "#e0a526", 1), ("0 points", "#c0392b", 0)):
        widths = []
        for position in reversed(range(len(assignment.items))):
            points = assignment.items[position].points
            bands = [_band(result.items[position].score, points) for result in results]
            widths.append(100 * bands.count(band) / count)
        shares.barh(names, widths, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    shares.set_xlim(0, 100)
    shares.set_xlabel("% of learners")
    shares.set_title("Score per question")
    shares.legend(loc="lower right", fontsize="small")
    totals.hist([result.score for result in results], bins=max(1, min(20, int(assignment.total) + 1)),
                range=(0, max(assignment.total, 1)), color="#34699a")  # fmt: skip
    totals.set_xlabel(f"total score (of {_number(assignment.total)})")
    totals.set_ylabel("learners")
    totals.set_title("Totals")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
