"""Exercise 2.2's reference solution passes its check; tasks that block, never stop or never time out are caught."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from bgcourse.checks import ch02_registration as checks
from bgcourse.helpers._observation import Observation
from solutions.ch02_registration import ex02

logger = logging.getLogger("mail")


@dataclass
class Settings:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25


def welcome(address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "welcome@example.com"
    message["To"] = address
    message["Subject"] = "Welcome!"
    message.set_content("Your account is ready.")
    return message


def test_solution_passes() -> None:
    assert "solved" in checks.ex02(ex02.send_welcome_email, ex02.settings)


def test_an_async_def_task_with_smtplib_is_caught() -> None:
    settings = Settings()

    async def send_welcome_email(address: str) -> None:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
            smtp.send_message(welcome(address))

    with pytest.raises(AssertionError, match="is an async def function"):
        checks.ex02(send_welcome_email, settings)


def test_a_task_without_retries_is_caught() -> None:
    settings = Settings()

    def send_welcome_email(address: str) -> None:
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
                smtp.send_message(welcome(address))
        except Exception:
            logger.exception("welcome e-mail to %s not sent", address)

    with pytest.raises(AssertionError, match=r"your task connected 1 time\(s\) and delivered 0 message"):
        checks.ex02(send_welcome_email, settings)


def test_retrying_only_on_timeout_error_is_caught() -> None:
    settings = Settings()
    transient = (smtplib.SMTPConnectError, ConnectionError, TimeoutError)  # misses SMTPServerDisconnected

    @retry(stop=stop_after_attempt(3), wait=wait_fixed(0.05), retry=retry_if_exception_type(transient), reraise=True)
    def deliver(message: EmailMessage) -> None:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
            smtp.send_message(message)

    def send_welcome_email(address: str) -> None:
        try:
            deliver(welcome(address))
        except Exception:
            logger.exception("welcome e-mail to %s not sent", address)

    with pytest.raises(AssertionError, match="reports a timeout while it waits for the greeting"):
        checks.ex02(send_welcome_email, settings)


def test_a_task_that_raises_after_its_retries_is_caught() -> None:
    settings = Settings()

    @retry(stop=stop_after_attempt(3), wait=wait_fixed(0.05), reraise=True)
    def send_welcome_email(address: str) -> None:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=0.5) as smtp:
            smtp.send_message(welcome(address))

    with pytest.raises(AssertionError, match="it must catch and log its last failure"):
        checks.ex02(send_welcome_email, settings)


@pytest.mark.usefixtures("no_leftover_threads")
def test_a_task_without_a_timeout_is_caught() -> None:
    settings = Settings()

    @retry(stop=stop_after_attempt(3), wait=wait_fixed(0.05), reraise=True)
    def deliver(message: EmailMessage) -> None:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port) as smtp:  # waits for ever
            smtp.send_message(message)

    def send_welcome_email(address: str) -> None:
        try:
            deliver(welcome(address))
        except Exception:
            logger.exception("welcome e-mail to %s not sent", address)

    with pytest.raises(AssertionError, match="was still waiting after 10 s"):
        checks.ex02(send_welcome_email, settings)


@pytest.mark.parametrize(
    "seen",
    [{}, {"is_async": False, "refused_twice": None}, {"is_async": False, "refused_twice": {"status": 201}}],
    ids=["empty", "a step not made", "a step without its figures"],
)
def test_a_record_of_the_wrong_shape_is_not_solved(seen: Observation) -> None:
    assert not checks.ex02.decide(seen).solved
