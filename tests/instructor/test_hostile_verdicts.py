"""A learner's code that tampers with the verdict, instead of answering: every item it touches scores 0.

Each submission leaves its exercises unsolved (or wrong) and adds one line of tampering to its
first answer cell: one that used to turn every failure into "Passed." while the checks ran in the
learner's kernel. The judgement now runs in the grader, on the record that the probe sends out;
tampering can stop the record from arriving (0, and a note saying so) or leave it honest (0, and
the check's own reason), but not turn it into a pass.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bgcourse.instructor._isolation import Isolation
from tests.instructor.test_grade import CHAPTER, cell, grade, save

Notebook = Any
CODE_ITEMS = ("ex01", "ex02", "ex03", "q06")
NEVER_REACHED = "The check's record of your code never reached the grader"
# A wrong but running answer for each code item: the probes run, and their records are honest.
WRONG = {
    "ex01_answer": "from fastapi import FastAPI\napp = FastAPI()\nreceipts = []",
    "ex02_answer": "from fastapi import FastAPI\napp = FastAPI()\naudit_log = []",
    "ex03_answer": "def keep_going(func):\n    return func",
    "q06_answer": "def schedule(background_tasks, log):\n    log.append('first')",
}
TAMPERING = {
    # Lines of IPython's machinery, each turning a failing cell into one that reports nothing.
    "empties_later_cells": "get_ipython().input_transformers_cleanup.append(lambda lines: [])",
    "swallows_errors": "get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)",
    "hides_tracebacks": "get_ipython().showtraceback = lambda *args, **kwargs: None",
    "strips_asserts": (
        "import ast\nclass _Strip(ast.NodeTransformer):\n    def visit_Assert(self, node):\n        return ast.Pass()\n"
        "get_ipython().ast_transformers.append(_Strip())"
    ),
    # The checks and the quiz, patched where they are imported in the kernel.
    "patches_the_checks": (
        "import bgcourse.checks.ch01_core_mechanics as _c\nfrom bgcourse.helpers._feedback import Verdict\n"
        "for _name in ('ex01', 'ex02', 'ex03'):\n"
        "    getattr(_c, _name).judge = lambda seen: 'solved'\n"
        "    getattr(_c, _name).decide = lambda seen: Verdict('solved', solved=True)"
    ),
    "patches_the_quiz": (
        "import bgcourse.helpers._quiz as _q\n_q.Question.judged = lambda self, seen: 'right'\n"
        "_q.Question.grade = lambda self, answer: 'right'"
    ),
    "patches_builtins": (
        "import builtins\nbuiltins.AssertionError = type('AssertionError', (Exception,), {})\n"
        "builtins.all = lambda *args: True\nbuiltins.any = lambda *args: False"
    ),
    # The record itself: dropped, replaced by something that is not one, or doubled.
    "drops_the_record": "import bgcourse.helpers._observation as _o\n_o.show = lambda seen: None",
    "sends_a_list": (
        "import bgcourse.helpers._observation as _o\nfrom IPython.display import display as _d\n"
        "_o.show = lambda seen: _d({_o.MIME: ['solved']}, raw=True)"
    ),
    "sends_a_second_record": (
        "import bgcourse.helpers._observation as _o\nfrom IPython.display import display as _d\n_real = _o.show\n"
        "def _twice(seen):\n    _real(seen)\n    _d({_o.MIME: {'status': 202}}, raw=True)\n_o.show = _twice"
    ),
    "silences_the_kernel": (
        "_session = get_ipython().kernel.session\n_send = _session.send\n"
        "def _quiet(stream, msg_or_type, *args, **kwargs):\n"
        "    kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type.get('msg_type')\n"
        "    return None if kind in ('error', 'display_data') else _send(stream, msg_or_type, *args, **kwargs)\n"
        "_session.send = _quiet"
    ),
}
# What the learner is told: the record never came (the tampering hid it) or the check's own reason.
EXPECTED = {
    "empties_later_cells": {item: NEVER_REACHED for item in CODE_ITEMS},
    "drops_the_record": {item: NEVER_REACHED for item in CODE_ITEMS},
    "sends_a_list": {item: "was not a record" for item in CODE_ITEMS},
    "sends_a_second_record": {item: "more than one record" for item in CODE_ITEMS},
    "silences_the_kernel": {item: NEVER_REACHED for item in CODE_ITEMS},
}
HONEST = {
    "ex01": "The check failed: Exercise 1.1: expected 202 Accepted, got 404",
    "ex02": "The check failed: Exercise 1.2: expected 200, got 404",
    "ex03": "The check failed: Exercise 1.3:",
    "q06": "The check failed: Question q06: not right yet.",
}


@pytest.fixture(scope="module")
def tampered(
    tmp_path_factory: pytest.TempPathFactory, learners_copy: Callable[..., Notebook], grading_isolation: Isolation
) -> Path:
    folder = tmp_path_factory.mktemp("tampered")
    for learner, tampering in TAMPERING.items():
        notebook = learners_copy()
        for answer_id, source in WRONG.items():
            cell(notebook, answer_id).source = source
        cell(notebook, "ex01_answer").source = tampering + "\n" + WRONG["ex01_answer"]
        save(folder / "submissions", learner, notebook)
    grade(folder / "submissions", folder / "gradebook", grading_isolation)
    return folder / "gradebook" / CHAPTER


@pytest.mark.parametrize("learner", sorted(TAMPERING))
def test_tampering_with_the_verdict_scores_zero_and_says_why(tampered: Path, learner: str) -> None:
    results = json.loads((tampered / "learners" / learner / "results.json").read_text(encoding="utf-8"))
    scores = {test["name"]: (test["score"], test["output"]) for test in results["tests"]}
    for item in CODE_ITEMS:
        score, reason = scores[item]
        assert score == 0, f"{learner}: {item} scored {score} ({reason})"
        expected = EXPECTED.get(learner, HONEST)[item]
        assert expected in reason, f"{learner}: {item}: {reason}"


def test_no_tampering_learner_gets_a_point_for_code(tampered: Path) -> None:
    with (tampered / "gradebook.csv").open(encoding="utf-8", newline="") as stream:
        rows = {row["learner"]: row for row in csv.DictReader(stream)}
    assert set(rows) == set(TAMPERING)
    # The choice answers are stubs too: nothing at all is earned.
    assert {learner: row["total"] for learner, row in rows.items()} == dict.fromkeys(TAMPERING, "0")
