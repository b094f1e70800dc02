"""What a check saw of the learner's code, as plain JSON: made where that code runs, judged elsewhere.

Every check has two halves. Its *observation* runs where the learner's objects live (the
notebook's kernel) and only records what they did: status codes, bodies, lists, which thread,
what raised. Its *judgement* is a pure function of that record. In a notebook both run in the
kernel; when grading, the observation runs in the learner's sandboxed kernel and is sent out as
one display output (``MIME``), and the judgement runs in the grader, which the learner's code
cannot reach: patching IPython, the checks, builtins or ``compile`` can stop the observation from
arriving (that scores 0), but cannot turn a failed judgement into a pass.

The record always makes a round trip through JSON, in the notebook too, so that a judgement sees
the same types (lists, not tuples) wherever it runs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bgcourse.helpers._feedback import learner_frame

__all__ = [
    "MIME",
    "RAISED",
    "UNATTEMPTED",
    "Observation",
    "as_json",
    "json_or_none",
    "observed",
    "observed_async",
    "show",
]

Observation = dict[str, Any]
# The display output that carries an observation out of a grading kernel.
MIME = "application/vnd.bgcourse.observation+json"
# Keys of an observation that the course's own wrappers write (checks never use a leading underscore).
RAISED = "_raised"  # the learner's code raised: "ValueError: message"; "_where" says which line
UNATTEMPTED = "_unattempted"  # an argument was still the stub's `...`
_MAX_TEXT = 2_000  # characters kept of each string: a learner's huge body must not make a huge record


def as_json(observation: object) -> Observation:
    """``observation`` after a round trip through JSON: strings capped, anything else as its ``repr``."""
    text = json.dumps(_capped(observation), default=lambda value: _capped(repr(value)))
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"an observation is a dict, not {type(value).__name__}")
    return value


def json_or_none(response: httpx.Response) -> object:
    """The response's JSON body, or ``None`` if it has none (a check records it either way)."""
    try:
        return response.json()
    except ValueError:  # not JSON (json.JSONDecodeError and UnicodeDecodeError are ValueErrors)
        return None


def _capped(value: object) -> object:
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else value[: _MAX_TEXT - 1] + "…"
    if isinstance(value, dict):
        return {str(key): _capped(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_capped(item) for item in value]
    return value


def _raised(error: BaseException) -> Observation:
    return {RAISED: f"{type(error).__name__}: {error}", "_where": learner_frame(error)}


def _unattempted(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return any(value is Ellipsis for value in (*args, *kwargs.values()))


def observed(observe: Callable[..., object], *args: Any, **kwargs: Any) -> Observation:
    """What ``observe(*args)`` recorded; if the learner's code raised, that, and where."""
    if _unattempted(args, kwargs):
        return {UNATTEMPTED: True}
    try:
        return as_json(observe(*args, **kwargs))
    except Exception as error:  # noqa: BLE001  # the learner's code may raise anything: it is part of the record
        return _raised(error)


async def observed_async(observe: Callable[..., Awaitable[object]], *args: Any, **kwargs: Any) -> Observation:
    """:func:`observed` for an ``async def`` observation."""
    if _unattempted(args, kwargs):
        return {UNATTEMPTED: True}
    try:
        return as_json(await observe(*args, **kwargs))
    except Exception as error:  # noqa: BLE001  # as in observed
        return _raised(error)


def show(observation: Observation) -> None:
    """Send ``observation`` out of the kernel as the cell's display output (for the grader to judge)."""
    from IPython.display import display  # only in a kernel

    display({MIME: observation}, raw=True)  # type: ignore[no-untyped-call]
