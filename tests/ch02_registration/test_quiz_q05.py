"""Question q05's check in two halves: wrong models are caught, and only its judgement decides."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bgcourse import WrongAnswer, load_quiz


class Leaky(BaseModel):
    username: str
    email: str
    password: str


class NotAModel:
    username: str
    email: str


@pytest.mark.parametrize(
    ("answer", "message"),
    [(NotAModel, "must be a Pydantic model"), (Leaky, "it should be exactly the username and the e-mail")],
    ids=["not a model", "with the password"],
)
def test_a_wrong_model_is_caught(answer: object, message: str) -> None:
    with pytest.raises(WrongAnswer, match=message):
        load_quiz("ch02_registration").check("q05", answer)


def test_a_record_of_the_wrong_shape_is_not_a_right_answer() -> None:
    question = load_quiz("ch02_registration")["q05"]
    seen = question.observation(Leaky)
    with pytest.raises(WrongAnswer, match="not right yet"):
        question.judged(seen | {"solved": True})
    with pytest.raises(WrongAnswer, match="could not make sense"):
        question.judged({"is_model": True, "status": 201})
