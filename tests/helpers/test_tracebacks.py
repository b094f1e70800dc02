"""logged_errors and shows_error: an error in a few lines, its frames released afterwards."""

from __future__ import annotations

import gc
import json
import logging
import traceback
import weakref

import pytest

from bgcourse import LoggedError, logged_errors, shows_error
from bgcourse.helpers._tracebacks import _Shown


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


def test_shows_error_shows_the_error_briefly_and_lets_the_cell_finish(capsys: pytest.CaptureFixture[str]) -> None:
    def deep(level: int) -> None:
        if level == 0:
            raise ValueError("the mail server is down")
        deep(level - 1)

    with shows_error(ValueError) as raised:
        deep(30)
    shown = capsys.readouterr().out.strip().splitlines()
    assert shown[0] == "ValueError: the mail server is down"
    assert len(shown) <= 3, shown
    assert "in deep: raise ValueError" in shown[1]
    assert str(raised) == "ValueError: the mail server is down"
    assert raised.frames == 33  # this test's frame, 31 of deep(), and the one of shows_error that caught it
    assert raised.error is not None
    assert raised.error.__traceback__ is not None
    finished = [frame for frame, _ in traceback.walk_tb(raised.error.__traceback__) if frame.f_code.co_name == "deep"]
    assert len(finished) == 31
    assert all(frame.f_locals == {} for frame in finished), "the finished frames' locals are released"


def test_shows_error_folds_the_full_traceback_in_html() -> None:
    try:
        raise KeyError("missing")
    except KeyError as error:
        html = _Shown(error)._repr_html_()
    assert html.startswith("<pre>KeyError: &#x27;missing&#x27;")
    assert "<details><summary>The full traceback (1 frames)</summary>" in html


def test_shows_error_lets_other_errors_through_and_fails_when_nothing_is_raised() -> None:
    with pytest.raises(TypeError), shows_error(ValueError):
        raise TypeError("not the one expected")
    with (
        pytest.raises(AssertionError, match="expected the block to raise ValueError or KeyError"),
        shows_error(ValueError, KeyError),
    ):
        pass
