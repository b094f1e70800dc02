"""smtp_server(): a real SMTP server that receives, slows down or refuses, and leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import smtplib
import socket
import time
from email.message import EmailMessage

import aiosmtplib
import pytest

from bgcourse import MailServer, smtp_server
from bgcourse.helpers._smtp import _Controller

pytestmark = pytest.mark.usefixtures("no_leftover_threads")


def message(to: str = "ada@example.com", subject: str = "Welcome") -> EmailMessage:
    built = EmailMessage()
    built["From"] = "welcome@example.com"
    built["To"] = to
    built["Subject"] = subject
    built.set_content("Hello Ada,\n\nyour account is ready.\n")
    return built


def send(mail: MailServer, to: str = "ada@example.com", timeout: float = 5) -> None:
    with smtplib.SMTP(mail.host, mail.port, timeout=timeout) as smtp:
        smtp.send_message(message(to))


def test_receives_and_parses_messages_from_smtplib_and_aiosmtplib() -> None:
    with smtp_server() as mail:
        assert mail.host == "127.0.0.1"
        assert mail.port > 0
        send(mail)
        asyncio.run(aiosmtplib.send(message("grace@example.com"), hostname=mail.host, port=mail.port, timeout=5))
        received = mail.wait_for(2)
    assert [item["To"] for item in received] == ["ada@example.com", "grace@example.com"]
    assert all(isinstance(item, EmailMessage) for item in received)
    assert received[0]["Subject"] == "Welcome"
    assert received[0].get_content() == "Hello Ada,\n\nyour account is ready.\n"
    assert mail.connections == 2


def test_messages_is_a_copy() -> None:
    with smtp_server() as mail:
        send(mail)
        mail.messages.clear()
        assert len(mail.messages) == 1


def test_port_is_released_and_the_thread_ends() -> None:
    with smtp_server() as mail:
        port = mail.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as again:  # nothing holds the port
        again.bind(("127.0.0.1", port))


def test_two_servers_run_at_once() -> None:
    with smtp_server() as first, smtp_server() as second:
        assert first.port != second.port
        send(first, "a@example.com")
        send(second, "b@example.com")
        assert [item["To"] for item in first.messages] == ["a@example.com"]
        assert [item["To"] for item in second.messages] == ["b@example.com"]


def test_refuse_turns_the_next_clients_away_with_421() -> None:
    with smtp_server(refuse=2) as mail:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                send(mail)
            assert refused.value.smtp_code == 421
        send(mail)
        assert mail.refuse == 0
        assert mail.connections == 3
        assert len(mail.messages) == 1


def test_behaviour_can_change_while_the_server_runs() -> None:
    with smtp_server() as mail:
        send(mail)
        mail.refuse = 1
        with pytest.raises(aiosmtplib.SMTPConnectResponseError):
            asyncio.run(aiosmtplib.send(message(), hostname=mail.host, port=mail.port, timeout=5))
        send(mail)
        assert len(mail.messages) == 2


def test_delay_makes_the_greeting_late() -> None:
    with smtp_server(delay=0.5) as mail:
        started = time.perf_counter()
        send(mail)
        assert time.perf_counter() - started >= 0.45
        with pytest.raises(aiosmtplib.SMTPConnectTimeoutError):
            asyncio.run(aiosmtplib.send(message(), hostname=mail.host, port=mail.port, timeout=0.1))
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            send(mail, timeout=0.1)
        assert len(mail.messages) == 1


def test_clients_that_give_up_or_stay_connected_leave_no_socket_behind() -> None:
    with smtp_server(delay=10) as mail:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(mail, timeout=0.1)  # gives up while the server waits to greet
        lingering = socket.create_connection((mail.host, mail.port), timeout=2)
        time.sleep(0.05)  # the server has accepted it and is waiting to greet
        started = time.perf_counter()
    # Waiting for the greeting would take most of the 10 s delay; half of it leaves room for a busy machine.
    assert time.perf_counter() - started < 5, "stopping does not wait for the greeting delay"
    assert lingering.recv(1) == b"", "the server hung up on the client that was still connected"
    lingering.close()
    gc.collect()  # an unclosed transport would raise ResourceWarning here, an error in this suite


def test_wait_for_says_what_arrived_when_it_times_out() -> None:
    with smtp_server() as mail:
        send(mail)
        with pytest.raises(TimeoutError, match=r"expected 2 message\(s\) within 0.1 s; .* received 1 in 1 connection"):
            mail.wait_for(2, timeout=0.1)
        assert repr(mail) == f"<MailServer smtp://127.0.0.1:{mail.port} messages=1>"


def test_a_server_that_fails_to_start_raises_the_cause_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def cannot_listen(self: object) -> None:
        raise OSError("no listening today")

    monkeypatch.setattr(_Controller, "_create_server", cannot_listen)
    with pytest.raises(OSError, match="no listening today"), smtp_server(start_timeout=0.2) as mail:
        pytest.fail(f"the block must not run ({mail})")  # pragma: no cover
    gc.collect()  # an event loop left open would raise ResourceWarning here


def test_a_permanent_refusal_and_a_busy_mailbox_give_their_codes() -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content("hello")
    with smtp_server(refuse=1, refusal="554 5.3.2 No mail accepted here", busy_recipients=1) as mail:
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
            asyncio.run(aiosmtplib.send(message, hostname=mail.host, port=mail.port, timeout=5))
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as busy:
            asyncio.run(aiosmtplib.send(message, hostname=mail.host, port=mail.port, timeout=5))
        asyncio.run(aiosmtplib.send(message, hostname=mail.host, port=mail.port, timeout=5))
        assert len(mail.wait_for(1)) == 1
    assert refused.value.code == 554
    assert [recipient.code for recipient in busy.value.recipients] == [450]
