"""A first cell for every grading kernel: cap what each message it sends may hold, before it is sent.

The guard's output cap counts what a cell prints, but an error message (``raise
ValueError("x" * 10**8)``), its traceback and a cell's result are sent whole; the grader then
holds each several times over while it decodes the message (830 MB of grader for a 100 MB
error message). Capping in the kernel, in jupyter_client's ``Session.send`` (the one way out of
the kernel for every message), keeps them from ever reaching the grader. Like the guard, this
is a guard against accidents, not a security boundary: code in the kernel could undo it.
"""

from __future__ import annotations

__all__ = ["message_caps_source"]

_SOURCE = """\
def _bgcourse_cap_messages(text_limit, data_limit, traceback_lines):
    from jupyter_client.session import Session

    send = Session.send

    def cut(value, limit):
        return value if len(value) <= limit else value[:limit] + "…(cut)"

    def capped(content):
        if not isinstance(content, dict):
            return content
        content = dict(content)
        for key, value in content.items():
            if isinstance(value, str):
                content[key] = cut(value, data_limit if key == "text" else text_limit)
            elif key == "traceback" and isinstance(value, list):
                content[key] = [cut(str(line), text_limit) for line in value[-traceback_lines:]]
            elif key == "data" and isinstance(value, dict):
                content[key] = {k: cut(v, data_limit) if isinstance(v, str) else v for k, v in value.items()}
        return content

    def send_capped(self, stream, msg_or_type, content=None, *args, **kwargs):
        if isinstance(msg_or_type, dict):
            msg_or_type = dict(msg_or_type, content=capped(msg_or_type.get("content")))
        return send(self, stream, msg_or_type, capped(content), *args, **kwargs)

    Session.send = send_capped


_bgcourse_cap_messages(TEXT_LIMIT, DATA_LIMIT, TRACEBACK_LINES)
del _bgcourse_cap_messages
"""


def message_caps_source(output_chars: int, text_chars: int = 2_000, traceback_lines: int = 50) -> str:
    """The cell's source: error texts cut at ``text_chars``, printed text and results just past ``output_chars``.

    Just past, so that the grader still sees that a cell printed more than it may.
    """
    return (
        _SOURCE.replace("TEXT_LIMIT", str(int(text_chars)))
        .replace("DATA_LIMIT", str(int(output_chars) + 1))
        .replace("TRACEBACK_LINES", str(int(traceback_lines)))
    )
