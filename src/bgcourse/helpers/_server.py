"""A real uvicorn server for one app, in a daemon thread, for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ServerStartError", "serve"]

# How often the server loop re-checks its state while waiting for work to finish;
# short so that stopping takes milliseconds, not uvicorn's default 100 ms ticks.
_POLL_SECONDS = 0.005


class ServerStartError(RuntimeError):
    """The app could not be started (its lifespan startup failed, or the server did not come up)."""


class _ThreadServer(uvicorn.Server):
    """A ``uvicorn.Server`` that can be told to stop from another thread and stops promptly.

    uvicorn's own main loop wakes every 100 ms and its shutdown pauses 100 ms unconditionally;
    a course that starts and stops dozens of servers would spend most of its time there.  The
    order of shutdown is uvicorn's: stop accepting, close idle connections, wait (bounded) for
    open connections and running background tasks, cancel what is left, then lifespan shutdown.
    """

    def __init__(self, config: uvicorn.Config, graceful_seconds: float) -> None:
        super().__init__(config)
        self.graceful_seconds = graceful_seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        while not self.should_exit:
            # on_tick refreshes the Date header and honours should_exit set elsewhere.
            if await self.on_tick(0):
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), timeout=1.0)

    def request_stop(self) -> None:
        """Ask the server to stop; safe to call from any thread, any number of times."""
        self.should_exit = True
        if self.loop is not None and self._stop_requested is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                self.loop.call_soon_threadsafe(self._stop_requested.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + self.graceful_seconds
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:
            if time.monotonic() >= deadline:
                for task in self.server_state.tasks:
                    task.cancel(msg="serve(): graceful shutdown time exceeded")
                break
            await asyncio.sleep(_POLL_SECONDS)
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()


def _remember_startup_error(app: ASGIApp, errors: list[BaseException]) -> ASGIApp:
    """Wrap ``app`` so that an exception raised during lifespan startup is kept, not only logged."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            errors.append(exc)
            raise

    return wrapped


@contextlib.contextmanager
def serve(
    app: ASGIApp,
    *,
    start_timeout: float = 10.0,
    graceful_seconds: float = 5.0,
    log_level: str = "warning",
    **config: Any,
) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server at ``http://127.0.0.1:<free port>`` inside the block.

    Yields the base URL.  The server runs in a daemon thread with its own event loop, so this
    works inside a Jupyter kernel, whose own loop is already running.  On exit the server stops
    accepting requests, waits up to ``graceful_seconds`` for open requests and background tasks
    (then cancels them), and the thread and its socket are gone before the block returns.

    Extra keyword arguments go to :class:`uvicorn.Config` (for example ``lifespan="off"``).
    Raises :class:`ServerStartError` if the app fails to start within ``start_timeout`` seconds.
    """
    # IPPROTO_TCP, not the default 0: asyncio turns on TCP_NODELAY for accepted connections only
    # when the listening socket says it is TCP, and without it Nagle's algorithm and delayed ACKs
    # hold every response back by about 40 ms on loopback.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]

    startup_errors: list[BaseException] = []
    server = _ThreadServer(
        uvicorn.Config(
            _remember_startup_error(app, startup_errors),
            host="127.0.0.1",
            port=port,
            log_level=log_level,
            # Leave logging alone: uvicorn's default dictConfig would replace the handlers on its
            # loggers each time a server starts, detaching whatever a notebook or test attached.
            log_config=None,
            **config,
        ),
        graceful_seconds=graceful_seconds,
    )
    thread_errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[listener])
        except BaseException as exc:  # noqa: BLE001 - SystemExit is how uvicorn reports a failed start
            thread_errors.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive():
                cause = startup_errors[0] if startup_errors else (thread_errors[0] if thread_errors else None)
                raise ServerStartError(
                    f"The app did not start: {cause!r}. Its lifespan startup raised; "
                    "the traceback above this error shows where."
                    if startup_errors
                    else f"The server stopped before it started ({cause!r}); see the uvicorn log above."
                ) from cause
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"The server did not start within {start_timeout} s; "
                    "is the app's lifespan startup waiting on something?"
                )
            thread.join(_POLL_SECONDS)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.request_stop()
        thread.join(graceful_seconds + start_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(start_timeout)
        listener.close()
        if thread.is_alive():  # pragma: no cover - only a task that ignores cancellation gets here
            raise RuntimeError(f"The server thread {thread.name} did not stop; a task ignores cancellation.")
