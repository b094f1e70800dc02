"""Quizzes: questions kept in ``quizzes/<slug>.toml``, asked and checked from notebook cells."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bgcourse.helpers._feedback import copy_mode
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._language import ENGLISH, current_language
from bgcourse.helpers._observation import RAISED, UNATTEMPTED, Observation, observed

__all__ = ["Question", "Quiz", "QuizFormatError", "WrongAnswer", "find_quiz_file", "load_quiz"]

Kind = Literal["choice", "code"]
_KEYS: dict[str, set[str]] = {
    "choice": {"id", "kind", "points", "prompt", "choices", "answer", "hint", "explanation"},
    "code": {"id", "kind", "points", "prompt", "name", "answer", "check", "hint", "explanation"},
}
# An assessed quiz file (`assessed = true`, written by `bgcourse release --mode assessed`) has no
# answer key, and no feedback: the hint and the explanation come with the grade.
_KEY_ONLY = {"answer", "check", "hint", "explanation"}


class QuizFormatError(ValueError):
    """A quiz file is malformed; the message names the file, the question and the problem."""


class WrongAnswer(AssertionError):
    """The learner's answer is not right yet; the message says so, with a hint, in one line.

    It is an ``AssertionError`` so that nbgrader-style graders count the cell as failed. In a
    learner's practice copy, :meth:`Quiz.check` shows the same message instead of raising it.
    """

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback through the course's code.
        return ["\x1b[31m" + _("Not yet.") + f"\x1b[0m {self}"]


@dataclass(frozen=True)
class Question:
    """One question: multiple choice (``answer`` is a letter) or code (``answer`` is source code)."""

    id: str
    kind: Kind
    points: float
    prompt: str
    explanation: str
    answer: str
    choices: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    check_source: str = ""
    assessed: bool = False
    hint: str = ""  # shown after a wrong answer: where to look, without giving the answer away

    def markdown(self) -> str:
        """The question as Markdown, as the learner sees it."""
        points = (_("{points} point") if self.points == 1 else _("{points} points")).format(points=f"{self.points:g}")
        lines = [_("**Question {id}** ({points})").format(id=self.id, points=points), "", self.prompt.strip(), ""]
        if self.kind == "choice":
            lines += [f"- **{letter}**: {text}" for letter, text in self.choices.items()]
            how = _('Answer in the next cell: `answer_{id} = "A"` (one of {letters}).')
            lines += ["", how.format(id=self.id, letters=", ".join(self.choices))]
        else:
            lines += [_("Answer in the next cell: define `{name}`.").format(name=self.name)]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def grade(self, answer: object) -> str:
        """Return the explanation if ``answer`` is right; raise :class:`WrongAnswer` otherwise."""
        if answer is Ellipsis or answer is None:
            raise WrongAnswer(
                _("Question {id} has no answer yet: replace the ... in the answer cell.").format(id=self.id)
            )
        if self.kind == "choice":
            given = str(answer).strip().upper()
            if given not in self.choices:
                text = _("Question {id}: {answer} is not one of the choices {letters}.")
                raise WrongAnswer(text.format(id=self.id, answer=repr(answer), letters=", ".join(self.choices)))
            if self.assessed:
                return _("{answer} recorded; feedback after grading.").format(answer=given)
            if given != self.answer:
                text = _("Question {id}: {answer} is not right. Hint: {hint}")
                raise WrongAnswer(text.format(id=self.id, answer=given, hint=self.hint.strip()))
            return self.explanation.strip()
        if self.assessed:
            if not callable(answer):
                text = _("Question {id}: define `{name}` as a function in the answer cell.")
                raise WrongAnswer(text.format(id=self.id, name=self.name))
            return _("`{name}` recorded; feedback after grading.").format(name=self.name)
        return self.judged(self.observation(answer))

    def observation(self, answer: object) -> Observation:
        """What the code question's ``observe`` saw of ``answer`` (run where the answer lives)."""
        return observed(self._compiled()["observe"], answer)

    def judged(self, seen: Observation) -> str:
        """The explanation if ``seen`` shows a right answer; raise :class:`WrongAnswer` otherwise.

        Only reads ``seen``: the grader calls it in its own process, on what the learner's kernel sent.
        """
        if seen.get(UNATTEMPTED):
            raise WrongAnswer(
                _("Question {id} has no answer yet: replace the ... in the answer cell.").format(id=self.id)
            )
        if RAISED in seen:  # the learner's code raised: say so, with its own message
            raise WrongAnswer(
                _("Question {id}: your `{name}` raised {error}").format(id=self.id, name=self.name, error=seen[RAISED])
            )
        try:
            self._compiled()["judge"](seen)
        except AssertionError as failure:
            text = _("Question {id}: not right yet. {failure} Hint: {hint}")
            raise WrongAnswer(text.format(id=self.id, failure=failure, hint=self.hint.strip())) from None
        except Exception as error:  # a record of the wrong shape: it came from the learner's kernel  # noqa: BLE001
            text = _("Question {id}: the check could not make sense of what it saw ({error}).")
            raise WrongAnswer(text.format(id=self.id, error=f"{type(error).__name__}: {error}")) from None
        return self.explanation.strip()

    def _compiled(self) -> dict[str, Any]:
        """The ``observe`` and ``judge`` functions of a code question, compiled from the quiz file."""
        namespace: dict[str, Any] = {}
        exec(compile(self.check_source, f"<check of {self.id}>", "exec", dont_inherit=True), namespace)
        return namespace

    def reference_answer(self) -> object:
        """The answer key as a value: the letter, or the object that the reference code defines."""
        if self.assessed:
            raise ValueError(f"question {self.id} comes from an assessed quiz file, which has no answer key")
        if self.kind == "choice":
            return self.answer
        namespace: dict[str, Any] = {}
        exec(compile(self.answer, f"<answer of {self.id}>", "exec", dont_inherit=True), namespace)
        return namespace[self.name]


class _Verdict:
    """What a check cell shows: right (with the explanation), recorded, or not yet (with the hint)."""

    def __init__(self, question: Question, message: str, *, right: bool = True) -> None:
        self.question = question
        self.message = message
        self.right = right

    @property
    def _label(self) -> str:
        return _("Recorded.") if self.question.assessed else _("Right!") if self.right else _("Not yet.")

    def __repr__(self) -> str:
        return f"{self._label} {self.message}"

    def _repr_markdown_(self) -> str:
        # Words, not emoji: a learner without an emoji font would see an empty box.
        return f"**{self._label}** {self.message}"


@dataclass(frozen=True)
class Quiz:
    """The questions of one chapter, in file order."""

    slug: str
    title: str
    path: Path
    questions: tuple[Question, ...]

    def __getitem__(self, question_id: str) -> Question:
        for question in self.questions:
            if question.id == question_id:
                return question
        known = ", ".join(question.id for question in self.questions)
        raise KeyError(f"{self.path.name} has no question {question_id!r}; it has {known}")

    def ask(self, question_id: str) -> Question:
        """Show a question (a Question displays itself as Markdown in a notebook)."""
        return self[question_id]

    def check(self, question_id: str, answer: object) -> _Verdict:
        """Say whether ``answer`` is right, with the explanation; if not, say so with a hint.

        A wrong answer raises :class:`WrongAnswer`, except in a learner's practice copy, where the
        verdict is shown and nothing raises (so that Run All goes on).
        """
        question = self[question_id]
        try:
            explanation = question.grade(answer)
        except WrongAnswer as wrong:
            if copy_mode() != "practice":
                raise
            later = _(' (Stuck? `quiz.explain("{id}")` explains the answer, and so gives it away.)').format(
                id=question.id
            )
            return _Verdict(question, str(wrong) + ("" if answer is Ellipsis or answer is None else later), right=False)
        return _Verdict(question, _("Question {id}: {explanation}").format(id=question.id, explanation=explanation))

    def explain(self, question_id: str) -> _Verdict:
        """Show the explanation of a question's answer (it gives the answer away: try first)."""
        question = self[question_id]
        if question.assessed:
            raise ValueError(
                f"question {question.id} comes from an assessed quiz file: explanations come with the grade"
            )
        text = _("Question {id}, explained: {explanation}")
        return _Verdict(question, text.format(id=question.id, explanation=question.explanation.strip()), right=True)

    @property
    def total_points(self) -> float:
        return sum(question.points for question in self.questions)


def find_quiz_file(slug: str, language: str | None = None) -> Path:
    """Where ``quizzes/<slug>.toml`` is: ``$BGCOURSE_QUIZZES``, the cwd or above it, or the course checkout.

    The cwd comes before the checkout so that a released copy (``release/assessed/notebooks/``)
    finds its own quiz files, without an answer key, even where the course package is installed.
    In an edition's language (default: the notebook's, see ``_language.py``), each folder's
    ``<language>/<slug>.toml`` comes first: ``quizzes/zh-CN/`` in the course; a released copy
    of the edition has its quiz files directly in ``quizzes/``.
    """
    language = language or current_language()
    candidates: list[Path] = []
    if os.environ.get("BGCOURSE_QUIZZES"):
        candidates.append(Path(os.environ["BGCOURSE_QUIZZES"]))
    candidates += [folder / "quizzes" for folder in (Path.cwd(), *Path.cwd().parents)]
    candidates.append(Path(__file__).resolve().parents[3] / "quizzes")  # an editable install
    for folder in candidates:
        for path in ([folder / language / f"{slug}.toml"] if language != ENGLISH else []) + [folder / f"{slug}.toml"]:
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"No quiz file {slug}.toml in {', '.join(str(c) for c in dict.fromkeys(candidates))}; "
        "run the notebook from the course folder or set BGCOURSE_QUIZZES to the quizzes folder."
    )


def load_quiz(slug_or_path: str | Path) -> Quiz:
    """Read and check a quiz file; raise :class:`QuizFormatError` naming what is wrong and where."""
    path = Path(slug_or_path)
    if path.suffix != ".toml":
        path = find_quiz_file(str(slug_or_path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise QuizFormatError(f"{path}: not valid TOML: {error}") from None
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise QuizFormatError(f"{path}: needs a top-level 'title' string")
    unknown = set(data) - {"title", "question", "assessed"}
    if unknown:
        raise QuizFormatError(f"{path}: unknown top-level keys {sorted(unknown)}; expected 'title' and [[question]]")
    assessed = data.get("assessed", False)
    if not isinstance(assessed, bool):
        raise QuizFormatError(f"{path}: 'assessed' must be true or false, not {assessed!r}")
    raw_questions = data.get("question")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise QuizFormatError(f"{path}: has no [[question]] tables")
    questions: list[Question] = []
    for position, raw in enumerate(raw_questions, start=1):
        question = _parse_question(path, position, raw, assessed=assessed)
        if any(question.id == seen.id for seen in questions):
            raise QuizFormatError(f"{path}: question {question.id!r}: the id is used twice")
        questions.append(question)
    return Quiz(slug=path.stem, title=title, path=path, questions=tuple(questions))


def _parse_question(path: Path, position: int, raw: dict[str, Any], *, assessed: bool = False) -> Question:
    qid = raw.get("id")
    where = f"{path}: question {qid!r}" if isinstance(qid, str) else f"{path}: question #{position}"

    def fail(problem: str) -> QuizFormatError:
        return QuizFormatError(f"{where}: {problem}")

    if not isinstance(qid, str) or not qid.isidentifier():
        raise fail("needs an 'id' that is a Python identifier, such as \"q01\"")
    kind = raw.get("kind")
    if kind not in _KEYS:
        raise fail(f'\'kind\' must be "choice" or "code", not {kind!r}')
    expected = _KEYS[kind] - _KEY_ONLY if assessed else _KEYS[kind]
    missing = expected - set(raw)
    if missing:
        raise fail(f"missing {sorted(missing)}")
    extra = set(raw) - expected
    if extra:
        what = "an assessed quiz file has no answer key" if extra & _KEY_ONLY else f"for a {kind} question"
        raise fail(f"unknown keys {sorted(extra)} ({what})")
    points = raw["points"]
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
        raise fail(f"'points' must be a positive number, not {points!r}")
    for key in ("prompt", "hint", "explanation", "answer"):
        if key in expected and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise fail(f"{key!r} must be a non-empty string")
    if kind == "choice":
        choices = raw["choices"]
        if not isinstance(choices, dict) or len(choices) < 2:
            raise fail("'choices' must be a table of at least two letters, e.g. [question.choices] A = \"...\"")
        for letter, text in choices.items():
            if len(letter) != 1 or not letter.isupper() or not isinstance(text, str):
                raise fail(f"choice {letter!r} must be one capital letter with a string")
        if assessed:
            return Question(qid, kind, float(points), raw["prompt"], "", "", dict(choices), assessed=True)
        answer = raw["answer"].strip().upper()
        if answer not in choices:
            raise fail(f"'answer' {raw['answer']!r} is not one of the choices {', '.join(choices)}")
        return Question(
            qid, kind, float(points), raw["prompt"], raw["explanation"], answer, dict(choices), hint=raw["hint"]
        )
    name = raw["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise fail(f"'name' must be the Python name the answer defines, not {name!r}")
    if assessed:
        return Question(qid, kind, float(points), raw["prompt"], "", "", name=name, assessed=True)
    for key in ("answer", "check"):
        try:
            compile(raw[key], f"<{key} of {qid}>", "exec", dont_inherit=True)
        except SyntaxError as error:
            raise fail(f"{key!r} is not valid Python: {error.msg} (line {error.lineno})") from None
    if "def observe(" not in raw["check"] or "def judge(" not in raw["check"]:
        raise fail(
            "'check' must define `def observe(answer)`, which records what the answer does as a dict, "
            "and `def judge(seen)`, which raises AssertionError when that record shows a wrong answer"
        )
    return Question(
        qid,
        kind,
        float(points),
        raw["prompt"],
        raw["explanation"],
        raw["answer"],
        name=name,
        check_source=raw["check"],
        hint=raw["hint"],
    )
