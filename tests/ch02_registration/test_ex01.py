"""Exercise 2.1's reference solution passes its check; an audit entry lost to a mail outage is caught."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import pytest
from fastapi import BackgroundTasks, FastAPI, status
from pydantic import BaseModel, EmailStr

from bgcourse.checks import ch02_registration as checks
from bgcourse.helpers._i18n import in_language
from bgcourse.helpers._observation import Observation
from solutions.ch02_registration import ex01


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


class NewUser(BaseModel):
    username: str
    email: EmailStr


def registration_app(settings: Settings, audit_log: list[str], *, audit_first: bool, in_endpoint: bool) -> FastAPI:
    """Plausible wrong answers: the audit task after the e-mail task, or the audit written by the endpoint."""
    app = FastAPI()

    async def send_welcome_email(address: str) -> None:
        message = EmailMessage()
        message["From"] = "welcome@example.com"
        message["To"] = address
        message["Subject"] = "Welcome!"
        message.set_content("Your account is ready.")
        await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port, timeout=5)

    @app.post("/register", status_code=status.HTTP_201_CREATED)
    async def register(new_user: NewUser, background_tasks: BackgroundTasks) -> dict[str, str]:
        entry = f"registered {new_user.username}"
        if in_endpoint:
            audit_log.append(entry)
        elif audit_first:
            background_tasks.add_task(audit_log.append, entry)
        background_tasks.add_task(send_welcome_email, new_user.email)
        if not audit_first and not in_endpoint:
            background_tasks.add_task(audit_log.append, entry)
        return {"username": new_user.username}

    return app


def test_solution_passes() -> None:
    assert "solved" in checks.ex01(ex01.app, ex01.settings, ex01.audit_log)


def test_an_audit_task_after_the_e_mail_task_is_caught() -> None:
    settings, audit_log = Settings(), list[str]()
    app = registration_app(settings, audit_log, audit_first=False, in_endpoint=False)
    with pytest.raises(AssertionError, match="tasks after a failing one are skipped"):
        checks.ex01(app, settings, audit_log)


def test_an_audit_entry_written_by_the_endpoint_is_caught() -> None:
    settings, audit_log = Settings(), list[str]()
    app = registration_app(settings, audit_log, audit_first=True, in_endpoint=True)
    with pytest.raises(AssertionError, match="append it from a background task"):
        checks.ex01(app, settings, audit_log)


def test_the_working_variant_of_the_test_app_passes() -> None:
    settings, audit_log = Settings(), list[str]()
    app = registration_app(settings, audit_log, audit_first=True, in_endpoint=False)
    assert "solved" in checks.ex01(app, settings, audit_log)


@pytest.mark.parametrize(
    "seen",
    [{}, {"mail_up": [], "mail_down": {}}, {"mail_up": {"status": "201"}}],
    ids=["empty", "a list for a dict", "a string for a status"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex01.decide(seen).solved


def test_a_tampered_record_of_a_wrong_answer_does_not_pass() -> None:
    settings, audit_log = Settings(), list[str]()
    app = registration_app(settings, audit_log, audit_first=False, in_endpoint=False)
    seen = checks.ex01.observation(app, settings, audit_log)
    assert not checks.ex01.decide(seen).solved
    # A verdict slipped into the record, or the right entries as text rather than a list, change nothing.
    wanted = "['registered ada', 'registered bob']"
    tampered = seen | {"solved": True, "mail_down": seen["mail_down"] | {"audit_log": wanted}}
    decided = checks.ex01.decide(tampered)
    assert not decided.solved
    assert "tasks after a failing one are skipped" in decided


def test_no_task_error_is_said_in_the_learners_language() -> None:
    # No e-mail arrived and no task raised: "nothing" is worded when judged, not recorded in English.
    no_mail = {"status": 201, "text": "", "body": {"username": "ada"}, "lengths_at_response": [0]}
    seen = {"mail_up": no_mail | {"recipients": [], "task_errors": "", "audit_log": []}, "mail_down": {}}
    assert "your tasks raised nothing." in checks.ex01.decide(seen)
    with in_language("zh-CN"):
        assert "你的任务抛出的异常：无。" in checks.ex01.decide(seen)
