"""Exercise 2.3's reference test passes the check; tests too weak to catch a broken app are caught."""

from __future__ import annotations

import httpx
import pytest

from bgcourse import MailServer
from bgcourse.checks import ch02_registration as checks
from bgcourse.helpers._i18n import in_language
from bgcourse.helpers._observation import Observation
from solutions.ch02_registration import ex03

GRACE = {"username": "grace", "email": "grace@example.com", "password": "correct horse battery staple"}


def test_solution_passes() -> None:
    assert "catches all 4" in checks.ex03(ex03.test_registration)


def test_a_test_that_only_looks_at_the_status_is_caught() -> None:
    def status_only(client: httpx.Client, mail: MailServer) -> None:
        assert client.post("/register", json=GRACE).status_code == 201

    with pytest.raises(AssertionError, match=r"returns the password.*accepts the same username twice.*never sends"):
        checks.ex03(status_only)


def test_a_test_that_fails_against_a_correct_app_is_caught() -> None:
    def wrong_expectation(client: httpx.Client, mail: MailServer) -> None:
        assert client.post("/register", json=GRACE).status_code == 200

    with pytest.raises(AssertionError, match="your test failed against a correct app"):
        checks.ex03(wrong_expectation)


def test_a_test_without_the_e_mail_is_caught() -> None:
    def no_mail(client: httpx.Client, mail: MailServer) -> None:
        first = client.post("/register", json=GRACE)
        assert first.status_code == 201
        assert first.json() == {"username": "grace", "email": "grace@example.com"}
        assert client.post("/register", json=GRACE).status_code == 409

    with pytest.raises(AssertionError, match=r"passed against an app that never sends the welcome e-mail"):
        checks.ex03(no_mail)


@pytest.mark.parametrize(
    "seen",
    [
        {},
        {"against_correct_app": None, "passed_against": list(checks.FLAWS)},
        {"against_correct_app": None, "passed_against": dict.fromkeys(checks.FLAWS, "no")},
    ],
    ids=["empty", "a list for a dict", "strings for booleans"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex03.decide(seen).solved


def test_the_broken_apps_are_described_in_the_learners_language() -> None:
    # The descriptions are the check's own constants, worded when judged: a Chinese learner reads them in Chinese.
    missed_all = {"against_correct_app": None, "passed_against": dict.fromkeys(checks.FLAWS, True)}
    with in_language("zh-CN"):
        decided = checks.ex03.decide(missed_all)
    assert not decided.solved
    assert "一个从不发送欢迎邮件的应用" in decided
    assert not [description for description in checks.FLAWS.values() if description in decided]
    assert "never sends the welcome e-mail" in checks.ex03.decide(missed_all)
