"""Checks for chapter 2's exercises, run against a real server and a real SMTP server."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
import httpx
from fastapi import BackgroundTasks, FastAPI, HTTPException, status
from pydantic import BaseModel, EmailStr, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bgcourse.helpers._check import exercise_check
from bgcourse.helpers._i18n import N_, gettext
from bgcourse.helpers._i18n import gettext as _
from bgcourse.helpers._logs import capture_logs
from bgcourse.helpers._observation import Observation, json_or_none
from bgcourse.helpers._server import serve
from bgcourse.helpers._smtp import MailServer, smtp_server

__all__ = ["ex01", "ex02", "ex03"]

# More refusals than any sensible number of retries: the mail server is down for the whole check.
_ALWAYS = 1000
# Exercise 2.2's mail server that never answers waits this long before it greets: a task without a
# timeout would wait all of it.  Three attempts with timeout=0.5 take under 2 s; the check gives a
# task five times that, so that only a missing timeout, never a busy machine, makes it too late.
_NEVER_ANSWERS_SECONDS = 30.0
_GIVE_UP_SECONDS = 10.0


class MailSettings(Protocol):
    """What the exercises' ``settings`` object must have: where the mail server is."""

    smtp_host: str
    smtp_port: int


def _task_errors(records: list[logging.LogRecord]) -> str:
    """The exceptions uvicorn logged for failed tasks, for a message that says what went wrong ("" for none)."""
    errors = [record.exc_info[1] for record in records if record.exc_info and record.exc_info[1] is not None]
    return "; ".join(f"{type(error).__name__}: {error}" for error in errors)


def _said_errors(errors: object) -> str:
    """An observation's ``task_errors`` for a message: "nothing", in the learner's language, for none."""
    # Worded here, in the judgement, not in the observation: the grader may judge in another language.
    return str(errors) if errors else _("nothing")


def _recipients(mail: MailServer) -> list[str | None]:
    """The ``To`` of each message the mail server received, as plain strings (``None`` for a message without)."""
    return [None if message["To"] is None else str(message["To"]) for message in mail.messages]


def _errors_logged(records: list[logging.LogRecord]) -> list[dict[str, object]]:
    """The records at ERROR or above: their messages, and whether each has a traceback.

    Only those: formatting a record runs the learner's logging arguments, so only the ones judged are formatted.
    """
    return [
        {"message": record.getMessage(), "has_traceback": record.exc_info is not None}
        for record in records
        if record.levelno >= logging.ERROR
    ]


def _watch_audit_log(app: ASGIApp, audit_log: list[str]) -> tuple[ASGIApp, list[int]]:
    """Wrap ``app``: note how long ``audit_log`` was when each response had been sent (before its tasks)."""
    lengths: list[int] = []

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_look(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                lengths.append(len(audit_log))

        await app(scope, receive, send_and_look if scope["type"] == "http" else send)

    return watched, lengths


@exercise_check("2.1")
def ex01(app: ASGIApp, settings: MailSettings, audit_log: list[str]) -> Observation:
    """Exercise 2.1: the audit entry is written after the response, even when the e-mail fails."""
    audit_log.clear()
    watched, lengths_at_response = _watch_audit_log(app, audit_log)
    settings.smtp_host = "127.0.0.1"
    with capture_logs("uvicorn.error") as server_log, smtp_server() as mail:
        settings.smtp_port = mail.port
        with serve(watched) as url, httpx.Client(base_url=url) as client:
            response = client.post("/register", json={"username": "ada", "email": "ada@example.com"})
        recipients = _recipients(mail)
    mail_up: Observation = {
        "status": response.status_code,
        "text": response.text,
        "body": json_or_none(response),
        "lengths_at_response": list(lengths_at_response),
        "recipients": recipients,
        "task_errors": _task_errors(server_log),
        "audit_log": list(audit_log),
    }

    # Driven whatever the first request showed: it does not depend on it, and the judgement reads that one first.
    with capture_logs("uvicorn.error"), smtp_server(refuse=_ALWAYS) as mail:
        settings.smtp_port = mail.port
        with serve(watched) as url, httpx.Client(base_url=url) as client:
            response = client.post("/register", json={"username": "bob", "email": "bob@example.com"})
    mail_down: Observation = {"status": response.status_code, "text": response.text, "audit_log": list(audit_log)}
    return {"mail_up": mail_up, "mail_down": mail_down}


@ex01.judgement
def _ex01(seen: Observation) -> str:
    up = seen["mail_up"]
    assert up["status"] == 201, _("expected 201 Created, got {status}: {text}").format(
        status=up["status"], text=up["text"]
    )
    assert up["body"] == {"username": "ada"}, _("expected the body {{'username': 'ada'}}, got {body}").format(
        body=up["body"]
    )
    assert up["lengths_at_response"] == [0], _(
        "the audit entry was already in audit_log when the response was sent: append it from a background task"
    )
    recipients = up["recipients"]
    assert recipients == ["ada@example.com"], _(
        "the mail server received messages for {recipients}, expected one for ada@example.com; "
        "your tasks raised {errors}. Send to settings.smtp_host and settings.smtp_port."
    ).format(recipients=recipients, errors=_said_errors(up["task_errors"]))
    assert up["audit_log"] == ["registered ada"], _(
        "after the tasks ran, audit_log was {audit_log}; expected ['registered ada']"
    ).format(audit_log=up["audit_log"])

    down = seen["mail_down"]
    assert down["status"] == 201, _("expected 201 Created, got {status}: {text}").format(
        status=down["status"], text=down["text"]
    )
    assert down["audit_log"] == ["registered ada", "registered bob"], _(
        "with the mail server down, audit_log was {audit_log}, without 'registered bob': the e-mail task "
        "raised, and a request's tasks after a failing one are skipped (chapter 1, section 7). Add the audit "
        "task before the e-mail task, or make the e-mail task catch and log its failure."
    ).format(audit_log=down["audit_log"])
    return _("Exercise 2.1 solved: the audit entry is written after the response, mail server up or down.")


def _task_app(send_welcome_email: Callable[[str], Any]) -> FastAPI:
    app = FastAPI()

    @app.post("/register", status_code=status.HTTP_201_CREATED)
    def register(address: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(send_welcome_email, address)
        return {"address": address}

    return app


@exercise_check("2.2")
def ex02(send_welcome_email: Callable[[str], Any], settings: MailSettings) -> Observation:
    """Exercise 2.2: a def task with smtplib that times out, retries 3 times in all, and logs its failure."""
    if inspect.iscoroutinefunction(send_welcome_email):
        # Nothing more to see: as a task it would block the server's loop, and on a thread it only
        # makes a coroutine that nobody awaits.
        return {"is_async": True, "refused_twice": None, "always_refused": None, "never_answers": None}
    app = _task_app(send_welcome_email)
    settings.smtp_host = "127.0.0.1"

    with capture_logs("uvicorn.error") as server_log, smtp_server(refuse=2) as mail:
        settings.smtp_port = mail.port
        with serve(app) as url:
            response = httpx.post(f"{url}/register", params={"address": "ada@example.com"})
        recipients, connections = _recipients(mail), mail.connections
    refused_twice: Observation = {
        "status": response.status_code,
        "text": response.text,
        "server_records": len(server_log),
        "task_errors": _task_errors(server_log),
        "recipients": recipients,
        "connections": connections,
    }

    with (
        capture_logs("uvicorn.error") as server_log,
        capture_logs("mail") as mail_log,
        smtp_server(refuse=_ALWAYS) as mail,
    ):
        settings.smtp_port = mail.port
        with serve(app) as url:
            httpx.post(f"{url}/register", params={"address": "bob@example.com"})
        connections = mail.connections
    always_refused: Observation = {
        "server_records": len(server_log),
        "task_errors": _task_errors(server_log),
        "connections": connections,
        "errors_logged": _errors_logged(mail_log),
    }

    failures: list[BaseException] = []
    worker = threading.Thread(
        target=_call, args=(send_welcome_email, "cy@example.com", failures), name="ex02-task", daemon=True
    )
    with capture_logs("mail") as mail_log:
        with smtp_server(delay=_NEVER_ANSWERS_SECONDS) as mail:  # a mail server that never answers
            settings.smtp_port = mail.port
            started = time.monotonic()
            worker.start()
            worker.join(_GIVE_UP_SECONDS)
            elapsed, connections = time.monotonic() - started, mail.connections
            in_time = not worker.is_alive()
        worker.join(10)  # the mail server has stopped and hung up, so even a task without a timeout ends now
    never_answers: Observation = {
        "in_time": in_time,
        "failures": [repr(failure) for failure in failures],
        "connections": connections,
        "elapsed": elapsed,
        "errors_logged": _errors_logged(mail_log),
    }
    return {
        "is_async": False,
        "refused_twice": refused_twice,
        "always_refused": always_refused,
        "never_answers": never_answers,
    }


def _naming(errors: list[dict[str, Any]], address: str) -> list[dict[str, Any]]:
    """The recorded errors whose message names ``address``."""
    return [error for error in errors if address in error["message"]]


@ex02.judgement
def _ex02(seen: Observation) -> str:
    assert not seen["is_async"], _(
        "send_welcome_email is an async def function: smtplib would block the event loop in it. Make it a plain "
        "def; Starlette runs a def task on a worker thread."
    )
    first = seen["refused_twice"]
    assert first["status"] == 201, _("expected 201 Created, got {status}: {text}").format(
        status=first["status"], text=first["text"]
    )
    assert first["server_records"] == 0, _("the task raised {errors}; it must catch and log its last failure").format(
        errors=_said_errors(first["task_errors"])
    )
    recipients, connections = first["recipients"], first["connections"]
    delivered_on_the_third_attempt = recipients == ["ada@example.com"] and connections == 3
    assert delivered_on_the_third_attempt, _(
        "the mail server refused the first 2 connections (smtplib raises SMTPConnectError); your task connected "
        "{connections} time(s) and delivered {messages} message(s). Expected 3 connections and 1 message: "
        "retry on SMTPConnectError, 3 attempts in all (stop_after_attempt(3))."
    ).format(connections=connections, messages=len(recipients))

    second = seen["always_refused"]
    assert second["server_records"] == 0, _("the task raised {errors}; it must catch and log its last failure").format(
        errors=_said_errors(second["task_errors"])
    )
    assert second["connections"] == 3, _(
        "against a mail server that always refuses, your task connected {connections} time(s); "
        "expected 3 attempts in all, then give up"
    ).format(connections=second["connections"])
    errors = _naming(second["errors_logged"], "bob@example.com")
    assert errors, _("nothing was logged at ERROR on the 'mail' logger naming bob@example.com; use logger.exception")
    assert errors[0]["has_traceback"] is True, _("log the traceback too: logger.exception(...) does that")

    third = seen["never_answers"]
    assert third["in_time"] is True, _(
        "against a mail server that never answers, your task was still waiting after {seconds:.0f} s "
        "(three attempts with a 0.5 s timeout take under 2 s): give smtplib.SMTP a timeout (timeout=0.5)"
    ).format(seconds=_GIVE_UP_SECONDS)
    failures = third["failures"]
    assert failures == [], _("the task raised {error}; it must catch and log its last failure").format(
        error=failures[0]
    )
    assert third["connections"] == 3, _(
        "against a mail server that never answers, your task connected {connections} time(s) in "
        "{seconds:.1f} s; expected 3. smtplib reports a timeout while it waits for the greeting "
        "as SMTPServerDisconnected: retry on that too."
    ).format(connections=third["connections"], seconds=float(third["elapsed"]))
    assert _naming(third["errors_logged"], "cy@example.com"), _(
        "the timed-out e-mail to cy@example.com was not logged at ERROR"
    )
    return _(
        "Exercise 2.2 solved: a def task that times out, makes 3 attempts, and logs the failure with its traceback."
    )


def _call(func: Callable[[str], Any], address: str, failures: list[BaseException]) -> None:
    try:
        func(address)
    except BaseException as error:  # noqa: BLE001 - reported by the check, not by the thread's excepthook
        failures.append(error)


class _Registration(BaseModel):
    username: str
    email: EmailStr
    password: SecretStr


#: The broken apps that a good test must fail against, and what its author should check.
FLAWS = {
    "status 200": N_("an app that answers 200 OK instead of 201 Created (check the status code)"),
    "password returned": N_("an app that returns the password in its answer (compare the whole body)"),
    "duplicates accepted": N_("an app that accepts the same username twice (register again, expect 409)"),
    "no e-mail": N_("an app that never sends the welcome e-mail (wait for it with mail.wait_for, check its To)"),
}


def _registration_app(mail: MailServer, flaw: str | None) -> FastAPI:
    """A small registration app like the chapter's, correct or with one of the FLAWS."""
    app = FastAPI()
    usernames: set[str] = set()

    async def send_welcome_email(address: str, username: str) -> None:
        message = EmailMessage()
        message["From"] = "welcome@example.com"
        message["To"] = address
        message["Subject"] = f"Welcome, {username}!"
        message.set_content(f"Hello {username}, your account is ready.")
        await aiosmtplib.send(message, hostname=mail.host, port=mail.port, timeout=5)

    @app.post("/register", status_code=200 if flaw == "status 200" else 201)
    def register(registration: _Registration, background_tasks: BackgroundTasks) -> dict[str, str]:
        if registration.username in usernames and flaw != "duplicates accepted":
            raise HTTPException(status.HTTP_409_CONFLICT, f"the username {registration.username!r} is taken")
        usernames.add(registration.username)
        if flaw != "no e-mail":
            background_tasks.add_task(send_welcome_email, registration.email, registration.username)
        body = {"username": registration.username, "email": registration.email}
        if flaw == "password returned":
            body["password"] = registration.password.get_secret_value()
        return body

    return app


def _outcome(test: Callable[[httpx.Client, MailServer], object], flaw: str | None) -> str | None:
    """Run the learner's test against a fresh app (with ``flaw``); return what it raised, if anything."""
    with (
        capture_logs("uvicorn.error"),
        smtp_server() as mail,
        serve(_registration_app(mail, flaw)) as url,
        httpx.Client(base_url=url) as client,
    ):
        try:
            test(client, mail)
        except Exception as error:  # noqa: BLE001 - any failure of the test counts as "it caught the flaw"
            return f"{type(error).__name__}: {error}"
    return None


@exercise_check("2.3")
def ex03(test_registration: Callable[[httpx.Client, MailServer], object]) -> Observation:
    """Exercise 2.3: the learner's test passes against a correct app and fails against each broken one."""
    return {
        "against_correct_app": _outcome(test_registration, None),
        # Run against every broken app even if it failed against the correct one: each run is independent.
        "passed_against": {flaw: _outcome(test_registration, flaw) is None for flaw in FLAWS},
    }


@ex03.judgement
def _ex03(seen: Observation) -> str:
    failure = seen["against_correct_app"]
    assert failure is None, _(
        "your test failed against a correct app: {failure}. (The welcome e-mail "
        "arrives after the response: wait for it with mail.wait_for.)"
    ).format(failure=failure)
    passed = seen["passed_against"]
    # Only an explicit False (the test failed) counts as caught: any other value is a miss, never a catch.
    missed = [gettext(description) for flaw, description in FLAWS.items() if passed[flaw] is not False]
    assert not missed, _("your test passed against {apps}").format(apps=_("; and against ").join(missed))
    return _("Exercise 2.3 solved: your test passes against a correct app and catches all {count} broken ones.").format(
        count=len(FLAWS)
    )
