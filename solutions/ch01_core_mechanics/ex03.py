"""Exercise 1.3: a wrapper that logs a task's failure so that the later tasks still run."""

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("tasks")


def keep_going(func: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception:
                logger.exception("background task %s failed", func.__name__)
                return None

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            logger.exception("background task %s failed", func.__name__)
            return None

    return wrapper
