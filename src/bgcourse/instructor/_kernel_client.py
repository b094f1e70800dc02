"""What the grader needs from nbclient: which cell timed out, output capped, each cell's outcome."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from nbclient import NotebookClient

from bgcourse.helpers._observation import MIME

__all__ = ["CellRun", "GradingClient", "new_refusals", "outcome"]

_DISPLAYED = ("display_data", "execute_result")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_ERROR = 2_000  # characters kept of an error's name, message and each traceback line


@dataclass(frozen=True)
class CellRun:
    """One cell's outcome: ``status`` is "ok", "error" or "timeout"."""

    status: str
    error: str = ""
    stderr: str = ""
    result: str = ""
    truncated: bool = False
    refused: tuple[str, ...] = ()
    observations: tuple[str, ...] = ()  # each observation the cell sent (``MIME``), as JSON text


class GradingClient(NotebookClient):
    """nbclient, noting which cell timed out and dropping output past a limit."""

    def __init__(self, notebook: Any, *, output_chars: int, **options: Any) -> None:
        super().__init__(notebook, **options)
        self.output_chars = output_chars
        self.timed_out = False
        self.truncated = False
        self.printed = 0

    def start_cell(self) -> None:
        self.timed_out = self.truncated = False
        self.printed = 0

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        self.timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        content = msg.get("content", {})
        if msg.get("msg_type") == "error":
            # Only the first error of a cell counts, and only its first characters: a cell that sends
            # errors of many megabytes, many times, must not fill the grader's memory.
            if any(out.get("output_type") == "error" for out in outs):
                return None
            content["ename"] = str(content.get("ename", ""))[:_MAX_ERROR]
            content["evalue"] = str(content.get("evalue", ""))[:_MAX_ERROR]
            content["traceback"] = [str(line)[:_MAX_ERROR] for line in content.get("traceback", [])[:50]]
        else:
            self.printed += len(content.get("text", "")) + sum(
                len(str(value)) for value in content.get("data", {}).values()
            )
            if self.printed > self.output_chars:
                self.truncated = True
                return None
        return super().output(outs, msg, display_id, cell_index)


# What is read of the refusal log after a cell, and kept of a line: the learner can write into it too.
_MAX_LOG_BYTES = 64 * 2**10
_MAX_LINE = 300


def new_refusals(log: int, offset: int) -> tuple[tuple[str, ...], int]:
    """The lines appended to the open refusal log ``log`` since ``offset``, and the new offset."""
    data = os.pread(log, _MAX_LOG_BYTES, offset)
    lines = [line[:_MAX_LINE] for line in data.decode("utf-8", "replace").splitlines()]
    return tuple(dict.fromkeys(lines)), offset + len(data)


def outcome(cell: Any, timed_out: bool, truncated: bool, refused: tuple[str, ...], root: str) -> CellRun:
    errors = [output for output in cell.outputs if output.output_type == "error"]
    stderr = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
    results = [o.data.get("text/plain", "") for o in cell.outputs if o.output_type == "execute_result"]
    observations = tuple(
        _as_text(o.data[MIME]) for o in cell.outputs if o.output_type in _DISPLAYED and MIME in o.get("data", {})
    )
    error = f"{errors[0].ename}: {errors[0].evalue}" if errors else ""
    status = "timeout" if timed_out else "error" if errors else "ok"
    truncated = truncated or any("[bgcourse: output cut after" in o.get("text", "") for o in cell.outputs)

    def clean(text: str) -> str:  # the same text on every run: no colours, no temporary folder names
        return _ANSI.sub("", text).replace(root + "/work", "<working folder>").replace(root, "<grading folder>")

    result = results[0] if results else ""
    return CellRun(status, clean(error), clean(stderr), result, truncated, refused, observations)


def _as_text(data: object) -> str:
    """An observation as JSON text; ``null`` (no record) if it cannot be written, nested thousands deep, say."""
    try:
        return json.dumps(data)
    except (RecursionError, TypeError, ValueError):
        return "null"
