"""Which cells a submission's grading runs, in which order, with whose source.

Only what scores is run: the learner's answer cells of code items, a *probe* in place of each
check cell, the locked cells, and, from the chapter's body, just the cells that define a name
those need (found by reading the code, not by running it). Multiple-choice answers are never run:
:func:`read_choice` reads the literal from the cell.

A probe runs only the observing half of its check (``checks.ex01.observation(app, receipts)``
for the master's ``checks.ex01(app, receipts)``) and sends the record out of the kernel; the
judging half runs in the grader (``_scoring.py``), where the learner's code cannot reach it. A
code question's probe is not in the notebook at all: it is made here, from the quiz file, so the
learner's cells, which run before it, cannot see it.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
from dataclasses import dataclass

from IPython.core.inputtransformer2 import TransformerManager

from bgcourse.helpers._quiz import Question
from bgcourse.instructor._nbgrader import ReleaseError, grade_id, is_grade, is_locked, is_solution
from bgcourse.instructor._submissions import Assignment, Item, Submission
from bgcourse.instructor._text import capped

__all__ = ["PlannedCell", "plan_cells", "read_choice", "refuse_unjudgeable"]

_BUILTINS = frozenset(dir(builtins)) | {"get_ipython", "display", "__file__", "__name__"}


@dataclass(frozen=True)
class PlannedCell:
    source: str
    role: str  # "answer", "check", "locked" or "context"
    item: str  # the grade_id it belongs to ("" for context cells)
    # Names the cell is meant to define: an answer cell counts as defining what the reference
    # solution defines, so a missing answer fails its check rather than pulling in the chapter's
    # own definitions of the same names.
    provides: frozenset[str] = frozenset()
    # For a probe: what judges its record in the grader, "exercise" and "module:name", or "question" and its id.
    judge: tuple[str, str] = ("", "")

    def describe(self) -> str:
        return {
            "answer": f"your answer cell for {self.item}",
            "check": f"the check of {self.item}",
            "locked": f"the locked cell {self.item}",
        }.get(self.role, "a cell of the chapter that your answers need")


def plan_cells(assignment: Assignment, submission: Submission) -> list[PlannedCell]:
    by_answer = {item.answer_id: item for item in assignment.items}
    by_check = {item.grade_id: item for item in assignment.items}
    planned: dict[int, PlannedCell] = {}
    context: dict[int, str] = {}
    modules = checks_modules(assignment)
    for index, cell in enumerate(assignment.master.cells):
        if cell.cell_type != "code":
            continue
        cell_id = grade_id(cell) or ""
        if is_solution(cell):
            owner = by_answer.get(cell_id)
            if owner is None or owner.kind != "choice":
                answer = submission.answers.get(cell_id, "")
                meant = _names(cell.source)[0]
                planned[index] = PlannedCell(answer, "answer", owner.grade_id if owner else cell_id, meant)
        elif is_grade(cell):
            item = by_check[cell_id]
            if item.kind == "exercise":
                source, check = exercise_probe(cell.source, modules)
                planned[index] = PlannedCell(source, "check", cell_id, judge=("exercise", check))
            elif item.kind == "code" and assignment.quiz is not None:
                question = assignment.quiz[cell_id]
                planned[index] = PlannedCell(code_probe(question), "check", cell_id, judge=("question", question.id))
        elif is_locked(cell):
            planned[index] = PlannedCell(cell.source, "locked", cell_id)
        else:
            context[index] = cell.source
    _add_what_is_needed(planned, context)
    return [planned[index] for index in sorted(planned)]


def _add_what_is_needed(planned: dict[int, PlannedCell], context: dict[int, str]) -> None:
    """Add the latest earlier context cell defining each name a planned cell uses but nothing before defines."""
    changed = True
    while changed:
        changed = False
        defined: set[str] = set()
        for index in sorted(planned):
            made, used = _names(planned[index].source)
            made |= planned[index].provides
            for name in sorted(used - made - defined):
                providers = [i for i in context if i < index and i not in planned and name in _names(context[i])[0]]
                if providers:
                    planned[max(providers)] = PlannedCell(context[max(providers)], "context", "")
                    changed = True
            defined |= made
            if changed:
                break


@functools.lru_cache(maxsize=4096)
def _names(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """The names a cell defines and the names it uses (builtins left out); none if it does not parse."""
    try:
        tree = ast.parse(_python(source))
    except Exception:  # noqa: BLE001  # SyntaxError, and what code nested thousands deep makes the parser raise
        return frozenset(), frozenset()
    made: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else made).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            made.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            made |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.arg):
            made.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            made.add(node.name)
    return frozenset(made), frozenset(used - _BUILTINS)


def _python(source: str) -> str:
    """A cell's source as plain Python: IPython's magics and shell escapes rewritten as calls."""
    python: str = TransformerManager().transform_cell(source)  # type: ignore[no-untyped-call]
    return python


def _is_name(target: ast.expr, name: str) -> bool:
    return isinstance(target, ast.Name) and target.id == name


_SHOW = '__import__("bgcourse.helpers._observation", fromlist=["show"]).show'


def refuse_unjudgeable(assignment: Assignment) -> None:
    """Raise :class:`ReleaseError` if a check cell of ``assignment`` cannot be judged outside the learner's kernel.

    A check cell of asserts (nbgrader's kind) decides where the learner's code runs, which can make
    any assert pass or hide any error; so the batch is refused before anyone is graded.
    """
    modules = checks_modules(assignment)
    exercises = {item.grade_id for item in assignment.items if item.kind == "exercise"}
    for cell in assignment.master.cells:
        if cell.cell_type == "code" and is_grade(cell) and (grade_id(cell) or "") in exercises:
            try:
                exercise_probe(cell.source, modules)
            except (SyntaxError, ValueError):
                raise ReleaseError(
                    f"{assignment.slug}: the check cell {grade_id(cell)} is not a call to one of the course's checks "
                    "(checks.ex01(...), an observation and a judgement in bgcourse.checks). bgcourse grade judges "
                    "a check's record outside the learner's kernel, and asserts in a cell cannot be judged there: "
                    "write the check in bgcourse.checks, or grade this notebook with nbgrader."
                ) from None


def checks_modules(assignment: Assignment) -> dict[str, str]:
    """The names under which the master's cells import a chapter's checks: ``{"checks": "bgcourse.checks.ch01_…"}``."""
    modules: dict[str, str] = {}
    for cell in assignment.master.cells:
        if cell.cell_type != "code":
            continue
        with contextlib.suppress(SyntaxError):
            for node in ast.walk(ast.parse(_python(cell.source))):
                if isinstance(node, ast.ImportFrom) and node.module == "bgcourse.checks":
                    modules |= {alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def exercise_probe(source: str, modules: dict[str, str]) -> tuple[str, str]:
    """The probe for a master's check cell, and the check it calls (``"bgcourse.checks.ch01_core_mechanics:ex01"``).

    A check cell ends with one call, ``checks.ex01(app, receipts)`` (awaited for an async check),
    after, perhaps, the import of the chapter's checks (``modules`` names them); the probe keeps the
    import and sends that check's observation.
    """
    tree = ast.parse(source)
    *imports, last = tree.body
    call = last.value if isinstance(last, ast.Expr) else None
    awaited = isinstance(call, ast.Await)
    if isinstance(call, ast.Await):
        call = call.value
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in modules
        and all(isinstance(node, ast.ImportFrom) for node in imports)
    ):
        raise ValueError("a check cell must end with one call to a check, such as checks.ex01(app)")
    observation = ast.unparse(ast.Call(ast.Attribute(call.func, "observation"), call.args, call.keywords))
    probe = [ast.unparse(node) for node in imports]
    probe.append(f"{_SHOW}({'await ' if awaited else ''}{observation})")
    return "\n".join(probe) + "\n", f"{modules[call.func.value.id]}:{call.func.attr}"


def code_probe(question: Question) -> str:
    fields = {
        "id": question.id,
        "kind": "code",
        "points": question.points,
        "prompt": "",
        "explanation": "",
        "answer": "",
        "name": question.name,
        "check_source": question.check_source,
    }
    return (
        f"# The probe of {question.id}, from the quiz file: added at grading time, after your cells ran.\n"
        "from bgcourse.helpers._quiz import Question as _BgcourseQuestion\n\n"
        f"{_SHOW}(_BgcourseQuestion(**{fields!r}).observation(globals().get({question.name!r}, ...)))\n"
    )


def read_choice(source: str | None, item: Item) -> tuple[object, str]:
    """The value the answer cell gives ``answer_<id>``, read without running it; or why there is none."""
    variable = f"answer_{item.grade_id}"
    if source is None:
        return None, f"Your notebook has no answer cell for {item.grade_id} (cell {item.answer_id} was deleted?)."
    try:
        python = _python(source)
        tree = ast.parse(python)
    except SyntaxError as error:
        return None, f"Your answer cell for {item.grade_id} is not valid Python ({error.msg}, line {error.lineno})."
    except Exception as error:  # noqa: BLE001  # nested thousands deep, and the like: the parser's own errors
        return None, f"Your answer cell for {item.grade_id} is not valid Python ({type(error).__name__})."
    value: ast.expr | None = None
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_is_name(target, variable) for target in targets):
                value = node.value
    if value is None:
        return None, f'Your answer cell does not set {variable} (write, for example, {variable} = "B").'
    not_a_letter = f'{variable} must be a letter in quotes, such as "B", not {_written(python, value)}.'
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):  # not a literal, or {[1]: 2}
        return None, not_a_letter
    # Only text is an answer (and ... or None, "not answered yet"): b"B", ("B",) or 1e999 are not.
    if not (isinstance(literal, str) or literal is ... or literal is None):
        return None, not_a_letter
    return literal, ""


def _written(python: str, value: ast.expr) -> str:
    """How the learner wrote ``value``, shortened: quoting it must not make the feedback huge."""
    written = ast.get_source_segment(python, value) or type(value).__name__
    return capped(" ".join(written.split()), 200)
