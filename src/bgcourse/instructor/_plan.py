"""Which cells a submission's grading runs, in which order, with whose source.

Only what scores is run: the learner's answer cells of code items, the master's check cells
(hidden tests included), the locked cells, and, from the chapter's body, just the cells that
define a name those need (found by reading the code, not by running it). Multiple-choice answers
are never run: :func:`read_choice` reads the literal from the cell. A code question's check is
not in the notebook at all: it is added to its check cell here, from the quiz file, so the
learner's cells, which run before it, cannot see it.
"""

from __future__ import annotations

import ast
import builtins
import functools
from dataclasses import dataclass

from IPython.core.inputtransformer2 import TransformerManager

from bgcourse.helpers._quiz import Question
from bgcourse.instructor._nbgrader import grade_id, is_grade, is_locked, is_solution
from bgcourse.instructor._submissions import Assignment, Item, Submission
from bgcourse.instructor._text import capped

__all__ = ["PlannedCell", "plan_cells", "read_choice"]

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
                planned[index] = PlannedCell(cell.source, "check", cell_id)
            elif item.kind == "code" and assignment.quiz is not None:
                planned[index] = PlannedCell(code_check_source(assignment.quiz[cell_id]), "check", cell_id)
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


def code_check_source(question: Question) -> str:
    fields = {
        "id": question.id,
        "kind": "code",
        "points": question.points,
        "prompt": "",
        "explanation": question.explanation,
        "answer": "",
        "name": question.name,
        "check_source": question.check_source,
    }
    return (
        f"# The check of {question.id}, from the quiz file: added at grading time, after your cells ran.\n"
        "from bgcourse.helpers._quiz import Question as _BgcourseQuestion\n\n"
        f"_ = _BgcourseQuestion(**{fields!r}).grade(globals().get({question.name!r}, ...))\n"
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
