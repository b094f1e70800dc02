"""A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port, for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["MailServer", "smtp_server"]

# RFC 5321, 4.2.3: 421 is how a server says "not now" and closes the connection.
_REFUSAL = "421 4.3.2 Service not available, try again later"
# RFC 5321, 4.2.1: a 4yz reply is a transient failure ("try again later"), a 5yz a permanent one.
_BUSY_RECIPIENT = "450 4.2.1 Mailbox busy, try again later"
# Closing the sessions takes milliseconds; this only bounds a server whose loop has stopped answering.
_STOP_SECONDS = 5.0


class MailServer:
    """A running :func:`smtp_server`: where it listens, what it received, and how it behaves.

    ``delay`` (seconds the server waits before it greets a new client), ``refuse`` (how many of
    the next clients are turned away, with the reply ``refusal``, ``421`` by default) and
    ``busy_recipients`` (how many of the next ``RCPT TO`` commands get ``450``, "mailbox busy")
    can be changed while the server runs.
    """

    def __init__(
        self, host: str, port: int, *, delay: float, refuse: int, refusal: str = _REFUSAL, busy_recipients: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self.delay = delay
        self.refuse = refuse
        self.refusal = refusal
        self.busy_recipients = busy_recipients
        self._changed = threading.Condition()
        self._messages: list[EmailMessage] = []
        self._connections = 0
        self._live = False  # False while aiosmtpd's start-up probe connects: it is not a client

    @property
    def messages(self) -> list[EmailMessage]:
        """The messages received so far, oldest first, parsed with the ``email`` package."""
        with self._changed:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many clients have connected so far, refused ones included."""
        with self._changed:
            return self._connections

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """Wait until ``count`` messages have arrived and return them; ``TimeoutError`` if they do not."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout} s; the mail server received "
                    f"{len(self._messages)} in {self._connections} connection(s)"
                )
            return list(self._messages)

    def __repr__(self) -> str:
        return f"<MailServer smtp://{self.host}:{self.port} messages={len(self.messages)}>"

    def _connected(self) -> tuple[float, bool]:
        """Count a client and decide how to treat it: (seconds to wait, refuse it?)."""
        with self._changed:
            if not self._live:
                return 0.0, False
            self._connections += 1
            refuse = self.refuse > 0
            if refuse:
                self.refuse -= 1
            return self.delay, refuse

    def _recipient_busy(self) -> bool:
        with self._changed:
            busy = self.busy_recipients > 0
            if busy:
                self.busy_recipients -= 1
            return busy

    def _received(self, message: EmailMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()


class _Handler:
    """aiosmtpd calls ``handle_RCPT`` once per recipient, ``handle_DATA`` once per message sent whole."""

    def __init__(self, mail: MailServer) -> None:
        self.mail = mail

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.mail._recipient_busy():
            return _BUSY_RECIPIENT
        envelope.rcpt_tos.append(address)  # what aiosmtpd does when a handler has no handle_RCPT
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # SMTP sends lines ending in CRLF; a mailbox keeps them as plain newlines, and so do we.
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = BytesParser(policy=default_policy).parsebytes(content)
        assert isinstance(message, EmailMessage)  # the default policy makes EmailMessage objects
        self.mail._received(message)
        return "250 2.0.0 Message accepted for delivery"


class _SMTP(SMTP):
    """aiosmtpd's SMTP session, slowed down or refused at the greeting when the MailServer says so."""

    def __init__(self, handler: _Handler, controller: _Controller, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._controller = controller

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        task = self._handler_coroutine
        if task is not None and not task.done():
            self._controller.sessions.add(self)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._controller.sessions.discard(self)
        # aiosmtpd closes the connection when its own session loop ends; a session that ended in
        # our greeting delay (the client gave up) must be closed here, or its socket would leak.
        if self.transport is not None:
            self.transport.close()
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"

    async def _handle_client(self) -> None:
        delay, refuse = self._controller.mail._connected()
        if delay:
            await asyncio.sleep(delay)
        if refuse:
            with contextlib.suppress(ConnectionError):  # the client may already have given up
                await self.push(self._controller.mail.refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    """aiosmtpd's threaded Controller, on a socket bound before start (so the port is known and free)."""

    def __init__(self, mail: MailServer, listener: socket.socket, **kwargs: Any) -> None:
        super().__init__(_Handler(mail), hostname=mail.host, port=mail.port, **kwargs)
        self.mail = mail
        self.listener = listener
        self.sessions: set[_SMTP] = set()

    def factory(self) -> _SMTP:
        return _SMTP(self.handler, self, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self.listener, ssl=self.ssl_context)

    async def close_sessions(self) -> None:
        """Stop listening, hang up on every open session and wait until each has ended."""
        if self.server is not None:
            self.server.close()
        tasks = [session._handler_coroutine for session in self.sessions]
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await asyncio.gather(*(task for task in tasks if task is not None), return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


@contextlib.contextmanager
def smtp_server(
    *,
    delay: float = 0.0,
    refuse: int = 0,
    refusal: str = _REFUSAL,
    busy_recipients: int = 0,
    start_timeout: float = 5.0,
) -> Iterator[MailServer]:
    """Run a real SMTP server on ``127.0.0.1`` and a free port inside the block; yield a :class:`MailServer`.

    The server is aiosmtpd's, on a thread and event loop of its own, so blocking clients
    (``smtplib``) and async ones (``aiosmtplib``) both work.  ``delay`` makes it wait that many
    seconds before greeting each client (a slow server); ``refuse`` turns the next that many
    clients away with ``refusal`` (by default ``421``, "try again later"; ``554`` is "never here")
    and closes their connection; ``busy_recipients`` answers the next that many ``RCPT TO`` with
    ``450`` ("mailbox busy, try again later").
    On exit every session is closed, the thread has ended and the port is free.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    mail = MailServer(
        "127.0.0.1",
        listener.getsockname()[1],
        delay=delay,
        refuse=refuse,
        refusal=refusal,
        busy_recipients=busy_recipients,
    )
    # server_hostname: without it aiosmtpd asks the resolver for this machine's name on every connection.
    controller = _Controller(mail, listener, ready_timeout=start_timeout, server_hostname="localhost")
    started = False
    try:
        controller.start()
        started = True
        if controller._thread is not None:
            controller._thread.name = f"smtp-{mail.port}"
        with mail._changed:
            mail._live = True
        yield mail
    finally:
        if started:
            stop = asyncio.run_coroutine_threadsafe(controller.close_sessions(), controller.loop)
            stop.result(timeout=_STOP_SECONDS)
            controller.stop()
        else:
            _stop_after_failed_start(controller, start_timeout)
        listener.close()


def _stop_after_failed_start(controller: _Controller, timeout: float) -> None:
    """Stop a server whose ``start()`` raised (it gave up waiting; its thread may still be starting)."""
    thread = controller._thread
    if thread is not None:
        # Stopping while the thread is still creating its server would cancel that creation and
        # kill the thread with CancelledError; let it get as far as serving (or failing) first.
        deadline = time.monotonic() + max(timeout, 1.0)
        while thread.is_alive() and controller.server is None and time.monotonic() < deadline:
            thread.join(0.01)
        controller.stop(no_assert=True)
    if not controller.loop.is_closed():  # a thread that failed to create its server leaves its loop open
        controller.loop.close()
