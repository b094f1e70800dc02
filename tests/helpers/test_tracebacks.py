"""logged_errors: each logged exception with its innermost frame; the frames are released afterwards."""

from __future__ import annotations

import gc
import json
import logging
import weakref

from bgcourse import LoggedError, logged_errors


class Held:
    """Something a frame keeps alive while its traceback exists."""


def record_of(exception: BaseException) -> logging.LogRecord:
    return logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, (type(exception), exception, None))


def raise_deep(held: list[weakref.ref[Held]]) -> None:
    def inner() -> None:
        thing = Held()
        held.append(weakref.ref(thing))
        raise RuntimeError("deep down")

    inner()


def test_type_message_and_innermost_frame() -> None:
    held: list[weakref.ref[Held]] = []
    try:
        raise_deep(held)
    except RuntimeError as exc:
        error = exc
    plain = logging.LogRecord("t", logging.INFO, __file__, 1, "no exception here", None, None)
    [described] = logged_errors([plain, record_of(error)])
    assert isinstance(described, LoggedError)
    assert (described.type, described.message, described.function) == ("RuntimeError", "deep down", "inner")
    assert described.file.endswith("test_tracebacks.py")
    assert str(described) == f"RuntimeError: deep down\n    raised in {described.file}:{described.line}, in inner"


def test_only_the_first_line_of_a_long_message_is_shown() -> None:
    try:
        raise ValueError("the gist\n[SQL: SELECT ...]\n(Background on this error at: ...)")
    except ValueError as exc:
        error = exc
    [described] = logged_errors([record_of(error)])
    assert described.message.count("\n") == 2
    assert str(described).splitlines()[0] == "ValueError: the gist"


def test_a_library_frame_is_shown_from_its_package_folder_on() -> None:
    try:
        json.loads("{")
    except ValueError as exc:
        error = exc
    [described] = logged_errors([record_of(error)])
    assert described.type == "JSONDecodeError"
    assert described.file == "json/decoder.py"


def test_the_frames_and_the_causes_frames_are_released() -> None:
    held: list[weakref.ref[Held]] = []
    try:
        try:
            raise_deep(held)
        except RuntimeError as cause:
            raise ValueError("wrapped") from cause
    except ValueError as exc:
        error = exc
    gc.collect()
    assert held[0]() is not None, "the traceback keeps the frame's locals alive"
    [described] = logged_errors([record_of(error)])
    assert described.type == "ValueError"
    assert held[0]() is None, "after logged_errors, nothing keeps them alive"
