"""Quiz question q06 of chapter 6: the outermost frame is caught, with the returned value in the message."""

from __future__ import annotations

import traceback

import pytest

from bgcourse import WrongAnswer, load_quiz


def outermost(exc: BaseException) -> str:
    return traceback.extract_tb(exc.__traceback__)[0].name


def test_the_outermost_frame_is_caught() -> None:
    with pytest.raises(WrongAnswer, match="raised_in returned 'observe'; the exception was raised in 'innermost'"):
        load_quiz("ch06_troubleshooting").check("q06", outermost)


def test_a_frame_instead_of_its_name_is_shown_as_it_was_returned() -> None:
    def the_frame(exc: BaseException) -> object:
        return traceback.extract_tb(exc.__traceback__)[-1]

    with pytest.raises(WrongAnswer, match="raised_in returned <FrameSummary file"):
        load_quiz("ch06_troubleshooting").check("q06", the_frame)


def test_a_record_of_the_wrong_shape_is_a_wrong_answer() -> None:
    with pytest.raises(WrongAnswer, match="could not make sense"):
        load_quiz("ch06_troubleshooting")["q06"].judged({"nested": "innermost"})
