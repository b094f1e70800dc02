"""Catch log records in a list, to show and assert what a server logged."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["capture_logs"]


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_logs(name: str = "uvicorn.error") -> Iterator[list[logging.LogRecord]]:
    """Collect the records logged to ``name`` (and its children) inside the block.

    Enter it *before* :func:`serve` (``with capture_logs() as records, serve(app) as url:``) so
    that it is still listening while the server finishes its background tasks on the way out.
    """
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
