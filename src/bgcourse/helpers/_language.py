"""Which language the learner reads: English, or an edition's (``zh-CN``), for quizzes and feedback.

A notebook of an edition says so in its folder's ``.course-copy.json`` (``"language": "zh-CN"``:
``notebooks/zh-CN/`` in the course, and every released copy of that edition); ``BGCOURSE_LANGUAGE``
overrides it. Everything else is English.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["COPY_MARKER", "ENGLISH", "LANGUAGES", "current_language"]

# The file that marks a folder as a learner's copy; written by `bgcourse lab` and `bgcourse release`.
COPY_MARKER = ".course-copy.json"

ENGLISH = "en"
LANGUAGES = (ENGLISH, "zh-CN")


def current_language(folder: Path | None = None) -> str:
    """The language of the notebooks in ``folder`` (default: the cwd, the notebook's folder)."""
    chosen = os.environ.get("BGCOURSE_LANGUAGE", "")
    if chosen in LANGUAGES:
        return chosen
    try:
        language = json.loads(((folder or Path.cwd()) / COPY_MARKER).read_text(encoding="utf-8")).get("language")
    except (OSError, ValueError, AttributeError):
        return ENGLISH
    return language if language in LANGUAGES else ENGLISH
