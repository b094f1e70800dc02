"""The assessed copy of a quiz file: the questions and choices, without the answer key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from bgcourse.instructor._nbgrader import ReleaseError

__all__ = ["assessed_quiz_text"]


def assessed_quiz_text(path: Path) -> str:
    """The quiz file without its answer key (``answer``, ``explanation``, ``check``), marked ``assessed``."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    lines = [
        f"# The assessed copy of quizzes/{path.name}, written by `bgcourse release`: no answers, no checks.",
        f"title = {_toml_string(data['title'])}",
        "assessed = true",
    ]
    for question in data["question"]:
        lines += ["", "[[question]]"]
        for key in ("id", "kind", "points", "name", "prompt"):
            if key in question:
                lines.append(f"{key} = {_toml_value(question[key])}")
        if "choices" in question:
            lines.append("[question.choices]")
            lines += [f"{letter} = {_toml_string(text)}" for letter, text in question["choices"].items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReleaseError(f"unexpected value {value!r} in a quiz file")
    return repr(value)


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, but for DEL, which TOML wants escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
