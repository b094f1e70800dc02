"""How one item scores: from the learner's choice, or from the cells that ran; and the reason, in words.

A code item scores from its probe (see ``_plan.py``): the record that the probe sent out of the
learner's kernel is judged here, in the grader, by the check's own judgement; the learner's code
ran in the kernel only. No record, or more than one, scores 0: something in the learner's code
changed how cells run or what they send. An error in the probe cell scores 0 too (as in nbgrader's
``utils.determine_grade``); output on stderr alone does not fail it, as it does in nbgrader: a
warning that the garbage collector prints late (such as "coroutine ... was never awaited" from an
earlier cell) would otherwise fail a right answer.
Reasons never quote a traceback, so hidden tests stay hidden, and never contain what changes
from run to run (addresses, ports, random ids), so grading again gives the same text.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass

from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._language import ENGLISH
from bgcourse.helpers._quiz import WrongAnswer
from bgcourse.instructor._kernel_client import CellRun
from bgcourse.instructor._plan import PlannedCell, read_choice
from bgcourse.instructor._sandbox import Limits, Run
from bgcourse.instructor._submissions import Assignment, Item, Submission
from bgcourse.instructor._text import MAX_REASON_CHARS, capped

__all__ = ["ItemResult", "LearnerResult", "judge", "score_choice", "score_code"]

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_LOOPBACK_PORT = re.compile(r"(127\.0\.0\.1|localhost|\[::1\]):\d+")
# Random identifiers (uuid4().hex and the like) that checks quote from a learner's response.
_RANDOM_ID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")


@dataclass(frozen=True)
class ItemResult:
    grade_id: str
    points: float
    score: float
    feedback: str  # why points were lost, or the explanation of a right answer

    @property
    def passed(self) -> bool:
        return self.score >= self.points


@dataclass(frozen=True)
class LearnerResult:
    learner: str
    items: tuple[ItemResult, ...]
    notes: tuple[str, ...] = ()
    problem: str = ""
    language: str = ENGLISH  # the feedback's: that of the learner's edition

    @property
    def score(self) -> float:
        return sum(item.score for item in self.items)

    @property
    def points(self) -> float:
        return sum(item.points for item in self.items)


def score_choice(assignment: Assignment, submission: Submission, item: Item) -> ItemResult:
    if item.answer_id in submission.unreadable:
        return ItemResult(item.grade_id, item.points, 0.0, submission.unreadable[item.answer_id])
    source = submission.answers.get(item.answer_id)
    value, problem = read_choice(source, item)
    if problem:
        hint = submission.missing_answer_hint() if source is None else ""
        return ItemResult(item.grade_id, item.points, 0.0, capped(problem + hint))
    quiz = assignment.quiz_in(submission.language)
    assert quiz is not None  # a choice item comes from the quiz
    question = quiz[item.grade_id]
    try:
        explanation = question.grade(value)
    except WrongAnswer as wrong:  # after grading, the explanation may be told: the answer is in
        # The message quotes what the learner wrote: cut it, not the explanation after it.
        text = _("{reason} Explanation: {explanation}")
        reason = text.format(reason=capped(str(wrong), MAX_REASON_CHARS // 2), explanation=question.explanation.strip())
        return ItemResult(item.grade_id, item.points, 0.0, reason)
    return ItemResult(
        item.grade_id, item.points, item.points, _("Right. {explanation}").format(explanation=explanation)
    )


def score_code(
    assignment: Assignment, submission: Submission, item: Item, cells: list[PlannedCell], run: Run, limits: Limits
) -> ItemResult:
    def zero(reason: str) -> ItemResult:
        return ItemResult(item.grade_id, item.points, 0.0, _clean(reason))

    positions = {(cell.role, cell.item): index for index, cell in enumerate(cells)}
    answer_at, check_at = positions.get(("answer", item.grade_id)), positions[("check", item.grade_id)]
    if check_at >= len(run.cells):  # the run stopped before the check finished
        stopped_at = len(run.cells)
        where = cells[stopped_at].describe() if stopped_at < len(cells) else "the last cell"
        return zero(_("Not graded: {why}, while running {where}.").format(why=run.stopped, where=where))
    answer = run.cells[answer_at] if answer_at is not None else None
    check = run.cells[check_at]
    notes = _notes(item, answer, check)
    if any(line.startswith("read\t") for line in [*(answer.refused if answer else ()), *check.refused]):
        return zero(notes)
    if item.answer_id in submission.unreadable:
        return zero(submission.unreadable[item.answer_id] + notes)
    if item.answer_id and item.answer_id not in submission.answers:
        hint = submission.missing_answer_hint()
        text = _("Your notebook has no answer cell {cell} (deleted?).{hint} ")
        return zero(text.format(cell=item.answer_id, hint=hint) + notes)
    reason = _answer_problem(answer, limits) + _check_problem(check, limits)
    if reason:
        return zero(reason + notes)
    solved, message = judge(assignment, cells[check_at], check, submission.language)
    if not solved:
        return zero(f"{message}{notes}")
    return ItemResult(item.grade_id, item.points, item.points, _clean((_("Passed.") + " " + notes).strip()))


def judge(assignment: Assignment, probe: PlannedCell, check: CellRun, language: str = ENGLISH) -> tuple[bool, str]:
    """Whether the probe's record shows a right answer, and the reason if not: decided here, not in the kernel."""
    if not check.observations:
        return False, _(
            "The check's record of your code never reached the grader: something in your code changed how "
            "cells run or what they send (IPython's hooks, display, the kernel), so this item scores 0."
        )
    if len(check.observations) > 1:
        return False, _(
            "The check's cell sent more than one record of your code (your code sent one of its own?), "
            "so this item scores 0."
        )
    try:  # written by json.dumps in the grader: only its content is the learner's
        seen = json.loads(check.observations[0])
    except RecursionError:
        seen = None
    if not isinstance(seen, dict):
        return False, _("The check's record of your code was not a record (your code sent one of its own?).")
    kind, name = probe.judge
    if kind == "question":
        quiz = assignment.quiz_in(language)
        assert quiz is not None  # a code question comes from the quiz
        try:
            quiz[name].judged(seen)
        except WrongAnswer as wrong:
            return False, _("The check failed: {reason}").format(reason=wrong)
        return True, ""
    module, _separator, attribute = name.partition(":")
    verdict = getattr(importlib.import_module(module), attribute).decide(seen)
    return bool(verdict.solved), "" if verdict.solved else _("The check failed: {reason}").format(reason=verdict)


def _answer_problem(answer: CellRun | None, limits: Limits) -> str:
    if answer is None or answer.status == "ok":
        return ""
    if answer.status == "timeout":
        text = _("Your answer cell was still running after {seconds} s and was stopped (endless loop?). ")
        return text.format(seconds=f"{limits.cell_timeout:g}")
    if answer.error.startswith("NotImplementedError"):
        return _("Your answer cell still raises NotImplementedError: replace the stub with your answer. ")
    return _("Your answer cell raised {error}. ").format(error=answer.error)


def _check_problem(check: CellRun, limits: Limits) -> str:
    if check.status == "timeout":
        return _("The check was still running after {seconds} s and was stopped.").format(
            seconds=f"{limits.cell_timeout:g}"
        )
    if check.status == "error":
        name, _separator, message = check.error.partition(": ")
        if name == "NotSolved":  # the check's own verdict ("Exercise 1.1: expected 202 ..."): no class name
            return _("The check failed: {reason}").format(reason=message)
        if message.strip():
            return _("The check failed: {reason}").format(reason=f"{name}: {message}")
        return _("The check failed: {reason}").format(reason=f"{name}.")
    return ""


def _notes(item: Item, answer: CellRun | None, check: CellRun) -> str:
    notes: list[str] = []
    said = {
        "read": _("{whose} tried to read {what}, which is not allowed while grading: 0 points."),
        "network": _("{whose} tried to reach {what}; while grading, only 127.0.0.1 can be reached."),
        "program": _("{whose} tried to start the program {what}, which is not allowed while grading."),
    }
    for run, whose, who in (
        (answer, _("Your code"), _("Your code")),
        (check, _("The check, running your code,"), _("The check")),
    ):
        if run is None:
            continue
        for line in run.refused:
            kind, _separator, what = line.partition("\t")
            notes.append(said.get(kind, said["program"]).format(whose=whose, what=what))
        if run.truncated:
            notes.append(_("{whose} printed so much that the output was cut.").format(whose=who))
    return " " + " ".join(dict.fromkeys(notes)) if notes else ""


def _clean(text: str) -> str:
    """Feedback text the same on every run: no memory addresses or port numbers; bounded length."""
    text = _LOOPBACK_PORT.sub(r"\1:<port>", _ADDRESS.sub("0x…", " ".join(text.split())))
    text = _RANDOM_ID.sub("<id>", text)
    return text if len(text) <= 800 else text[:797] + "..."
