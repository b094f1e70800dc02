"""An exercise's check: an observation of the learner's code, and a judgement of what it saw.

::

    @exercise_check("1.2")
    def ex02(app: ASGIApp, audit_log: list[str]) -> Observation:
        ...  # drive the learner's code, record what happened; no assertions here
        return {"status": response.status_code, "audit_log": audit_log}

    @ex02.judgement
    def _(seen: Observation) -> str:
        assert seen["status"] == 200, ...
        return "Exercise 1.2 solved: ..."

Called in a notebook, ``ex02(app, audit_log)`` observes, then judges, and gives a
:class:`Verdict`. The grader calls the halves apart: :meth:`Check.observation` in the learner's
sandboxed kernel, :meth:`Check.decide` in its own process (see ``_observation.py`` for why).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from bgcourse.helpers._feedback import Verdict, not_yet
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._observation import RAISED, UNATTEMPTED, Observation, observed, observed_async

__all__ = ["Check", "exercise_check"]

Judgement = Callable[[Observation], str]


class Check:
    """One exercise's check; calling it in a notebook gives the verdict (awaitable if it observes asynchronously)."""

    def __init__(self, number: str, observe: Callable[..., Any]) -> None:
        self.number = number
        self.observe = observe
        self.judge: Judgement | None = None
        self.is_async = inspect.iscoroutinefunction(observe)
        self.__doc__ = observe.__doc__
        self.__name__ = observe.__name__

    def judgement(self, judge: Judgement) -> Judgement:
        """Decorator: ``judge`` decides from an observation; it asserts, and returns the confirmation."""
        self.judge = judge
        return judge

    def observation(self, *args: Any, **kwargs: Any) -> Any:
        """What the learner's code did (an :data:`Observation`; a coroutine giving one for an async check)."""
        if self.is_async:
            return observed_async(self.observe, *args, **kwargs)
        return observed(self.observe, *args, **kwargs)

    def decide(self, seen: Observation) -> Verdict:
        """The verdict on ``seen``, never raising: whatever ``seen`` holds, it is only read."""
        number = self.number
        if self.judge is None:  # a course bug, caught by the tests; never a pass
            return Verdict(_("Exercise {number}: this check has no judgement.").format(number=number), solved=False)
        if seen.get(UNATTEMPTED):
            text = _(
                "Exercise {number}: not attempted yet. Write your answer in the cell above (replace each `...`), "
                "run it, then run this cell again."
            )
            return Verdict(text.format(number=number), solved=False)
        if RAISED in seen:
            # The learner's code raised while it was observed: say what and where, not the check's frames.
            where = seen.get("_where")
            if isinstance(where, str) and where:
                text = _("Exercise {number}: your code raised {error} ({where})")
            else:
                text = _("Exercise {number}: your code raised {error}")
            return Verdict(text.format(number=number, error=seen[RAISED], where=where), solved=False)
        try:
            message = self.judge(seen)
        except AssertionError as failure:
            return Verdict(_("Exercise {number}: {failure}").format(number=number, failure=failure), solved=False)
        except Exception as error:  # noqa: BLE001  # a record of the wrong shape: it came from the learner's kernel
            text = _("Exercise {number}: the check could not make sense of what it saw ({error}).")
            return Verdict(text.format(number=number, error=f"{type(error).__name__}: {error}"), solved=False)
        if not isinstance(message, str):
            return Verdict(
                _("Exercise {number}: this check's judgement gave no verdict.").format(number=number), solved=False
            )
        return Verdict(message, solved=True)

    def verdict(self, seen: Observation) -> Verdict:
        """As :meth:`decide`, but "not yet" raises :class:`NotSolved` outside a practice copy."""
        decided = self.decide(seen)
        return decided if decided.solved else not_yet(str(decided))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._call_async(*args, **kwargs)
        return self.verdict(observed(self.observe, *args, **kwargs))

    async def _call_async(self, *args: Any, **kwargs: Any) -> Verdict:
        return self.verdict(await observed_async(self.observe, *args, **kwargs))

    def __repr__(self) -> str:
        return f"<check of exercise {self.number}>"


def exercise_check(number: str) -> Callable[[Callable[..., Any]], Check]:
    """Make an observation function the check of exercise ``number``; add its judge with ``@check.judgement``."""

    def decorate(observe: Callable[..., Any]) -> Check:
        return Check(number, observe)

    return decorate
