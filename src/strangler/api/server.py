"""Serving the app: aiohttp's runner with the two protections it lacks, and a graceful stop.

* **Slow clients.** aiohttp waits forever for the first request's headers on a new
  connection (slowloris). Here a connection that has not sent a complete request head
  within ``HEADER_TIMEOUT`` seconds gets ``408`` and is closed. On a kept-alive connection
  the next request's head falls under ``KEEPALIVE_TIMEOUT``; slow bodies under
  ``api.chat.BODY_TIMEOUT``.
* **Oversized headers** answer ``431 Request Header Fields Too Large`` as problem details,
  logged as one warning line, instead of aiohttp's ``400`` with a traceback in the log.

``serve`` runs until SIGINT or SIGTERM, then stops like ``web.run_app``: realtime streams
end, requests drain for ``SHUTDOWN_TIMEOUT`` seconds, and the app's cleanup runs.

aiohttp has no public hook for either protection, so this module leans on four of its
internals, which ``pyproject.toml`` bounds to ``AIOHTTP_KNOWN_GOOD``: the
``AppRunner._make_server`` hook (whose ``web.Server`` gets its ``__class__`` swapped),
``web.Server._kwargs`` fed to ``RequestHandler(manager, *, loop, **kwargs)``,
``RequestHandler._request_count`` (parsed request heads) and the
``RequestHandler.handle_error(request, status, exc, message)`` hook with the parser's
``LineTooLong`` / ``BadHttpMessage("Too many headers ...")``. Import checks what it can
(``ImportError``), ``GuardedRunner.setup`` the rest (``RuntimeError``), so an incompatible
release fails before the first connection; ``tests/test_dependencies.py`` has one canary
per internal.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web import BaseRequest, RequestHandler

log = structlog.get_logger(__name__)

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
#: aiohttp's limits on one header line and on the number of headers.
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64
#: The aiohttp releases whose internals this module is known to work with; pyproject.toml
#: pins the same range, and tests/test_dependencies.py checks that the two agree.
AIOHTTP_KNOWN_GOOD = ">=3.13.4,<3.15"


def _incompatible(what: str) -> str:
    """The message for an aiohttp release that changed ``what``, an internal used here."""
    return (
        f"aiohttp {aiohttp.__version__} is incompatible: {what}. strangler's guarded server "
        f"(strangler/api/server.py) needs updating; known to work: aiohttp{AIOHTTP_KNOWN_GOOD}. "
        "Install a release in that range, or see 'Dependencies' in the README to lift the bound."
    )


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, plus the first-request deadline and the 431."""

    _first_request_timer: asyncio.TimerHandle | None = None
    #: Set by ``GuardedServer`` for each connection.
    header_timeout: float = HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._first_request_timer = loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._first_request_timer is not None and self._request_count:
            self._first_request_timer.cancel()
            self._first_request_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._first_request_timer is not None:
            self._first_request_timer.cancel()
            self._first_request_timer = None
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._first_request_timer = None
        if self._request_count or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        log.warning("slow_client_cut", peer=str(peer), after_s=self.header_timeout)
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.force_close()
        self.transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)
        ):
            log.warning("request_headers_too_large", remote=request.remote)
            body = {
                "type": "about:blank",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": f"a header line is over {MAX_FIELD_SIZE} bytes, or there are more "
                f"than {MAX_HEADERS} headers",
                "code": "headers_too_large",
            }
            resp = web.Response(
                status=431, body=orjson.dumps(body), content_type="application/problem+json"
            )
            resp.force_close()
            return resp
        return super().handle_error(request, status, exc, message)


class GuardedServer(web.Server):
    header_timeout: float = HEADER_TIMEOUT

    def __call__(self) -> RequestHandler:
        # web.Server.__call__ with our handler class: aiohttp offers no public way to name it.
        # The loop is the running one: sites call this factory from inside it.
        handler = GuardedHandler(self, loop=asyncio.get_running_loop(), **self._kwargs)
        handler.header_timeout = self.header_timeout
        return handler


class GuardedRunner(web.AppRunner):
    header_timeout: float = HEADER_TIMEOUT

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object, same state: only __call__ differs
        server.header_timeout = self.header_timeout  # type: ignore[attr-defined]
        return server

    async def setup(self) -> None:
        """``AppRunner.setup``, then a check that the guards are in place. Raises
        ``RuntimeError`` (after a cleanup) when the aiohttp release changed an internal they
        need: without the check, every connection would fail inside asyncio's accept loop."""
        await super().setup()
        try:
            _check_guarded(self.server)
        except RuntimeError:
            await self.cleanup()  # the app has started: close its pools before failing
            raise


def _check_guarded(server: web.Server | None) -> None:
    """Raise ``RuntimeError`` unless ``server`` builds handlers the guards can rely on."""
    if not isinstance(server, GuardedServer):
        raise RuntimeError(_incompatible("AppRunner.setup no longer calls _make_server"))
    try:
        probe = server()  # never connected, so it starts nothing
    except (TypeError, AttributeError) as exc:
        raise RuntimeError(
            _incompatible(f"web.Server._kwargs or RequestHandler.__init__ changed ({exc})")
        ) from exc
    if not isinstance(getattr(probe, "_request_count", None), int):
        raise RuntimeError(_incompatible("RequestHandler._request_count is gone"))


def _check_aiohttp() -> None:
    """Raise ``ImportError`` if an internal this module needs is visibly gone."""
    if not inspect.iscoroutinefunction(getattr(web.AppRunner, "_make_server", None)):
        raise ImportError(_incompatible("AppRunner._make_server is gone"))
    try:
        object.__new__(web.Server).__class__ = GuardedServer
    except TypeError as exc:
        raise ImportError(_incompatible(f"web.Server's layout changed ({exc})")) from exc
    params = list(inspect.signature(RequestHandler.handle_error).parameters)
    if params != ["self", "request", "status", "exc", "message"]:
        raise ImportError(_incompatible(f"RequestHandler.handle_error now takes {params[1:]}"))


_check_aiohttp()


def runner(
    app: web.Application, *, header_timeout: float = HEADER_TIMEOUT, **kwargs: Any
) -> web.AppRunner:
    run = GuardedRunner(
        app,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        max_field_size=MAX_FIELD_SIZE,
        max_headers=MAX_HEADERS,
        **kwargs,
    )
    run.header_timeout = header_timeout
    return run


async def serve(
    app: web.Application, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then stop gracefully."""
    run = runner(app, header_timeout=header_timeout)
    await run.setup()
    try:
        await web.TCPSite(run, host, port, reuse_address=True).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await run.cleanup()
