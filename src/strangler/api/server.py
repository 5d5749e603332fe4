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
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger(__name__)

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
#: aiohttp's limits on one header line and on the number of headers.
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 64


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, plus the first-request deadline and the 431."""

    _first_request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._header_timeout = getattr(self._manager, "header_timeout", HEADER_TIMEOUT)
        self._first_request_timer = loop.call_later(self._header_timeout, self._too_slow)

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
        log.warning("slow_client_cut", peer=str(peer), after_s=self._header_timeout)
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
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    header_timeout: float = HEADER_TIMEOUT

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object, same state: only __call__ differs
        server.header_timeout = self.header_timeout  # type: ignore[attr-defined]
        return server


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
