"""Text taken from a submission, made safe to keep, quote and write: valid, bounded, unambiguous.

A submission may hold anything: lone surrogates (JSON allows ``"\\ud800"``, UTF-8 does not), file
names that are not UTF-8, megabytes of text in one answer. Whatever of it reaches a reason, a
note or the gradebook passes through here first, so that writing the gradebook never fails and
no feedback file grows with what a learner typed.
"""

from __future__ import annotations

import re

__all__ = ["CUT", "MAX_REASON_CHARS", "capped", "shown_name", "valid_text"]

MAX_REASON_CHARS = 2_000
CUT = "…(cut)"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def capped(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text``, or its first characters and ``CUT`` if it is longer than ``limit``."""
    return text if len(text) <= limit else text[: max(0, limit - len(CUT))] + CUT


def valid_text(text: str) -> str:
    """``text`` with each lone surrogate (which no UTF-8 file can hold) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def shown_name(name: str) -> str:
    """A file or folder name as the gradebook shows it: readable, and one name for one folder.

    ``os.fsdecode`` turns a byte that is not UTF-8 into a surrogate (U+DC80..U+DCFF); it is shown
    as ``\\xNN``. So that this stays unambiguous, a backslash is shown as ``\\\\`` and any other
    character that cannot be printed (a newline, say) as ``\\uNNNN``, never as ``\\xNN``.
    """
    parts: list[str] = []
    for character in name:
        code = ord(character)
        if character == "\\":
            parts.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif character.isprintable() and not 0xD800 <= code <= 0xDFFF:
            parts.append(character)
        else:
            parts.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(parts)
