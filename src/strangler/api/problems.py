"""Errors as RFC 9457 problem details, each with a stable ``code``.

Handlers raise the errors tree (``strangler.core.errors``) or ``problem(...)``; the middleware
turns them into ``application/problem+json``. Anything unexpected is logged with its
traceback and answered 500 with code ``internal``: a 500 is a bug.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from aiohttp import web

from strangler.core.errors import (
    ConfigError,
    Conflict,
    CorruptRecord,
    DivergenceError,
    EvidenceMissing,
    Forbidden,
    InvalidInput,
    NotConfigured,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    StranglerError,
    Unauthorized,
)

log = structlog.get_logger(__name__)

PROBLEM_TYPE = "https://github.com/strangler/strangler/blob/main/docs/problems.md#"
_STATUS: list[tuple[type[StranglerError], int]] = [
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (StoreUnavailable, 503),
    (CorruptRecord, 500),
    (DivergenceError, 503),
    (NotConfigured, 501),
    (ConfigError, 500),
]
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    500: "Internal server error",
    501: "Not implemented",
    503: "Service unavailable",
}


class Problem(Exception):
    """An HTTP error to answer as problem details."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors = errors or []
        self.headers = headers or {}
        #: More members of the problem object (e.g. ``evidence`` for a refused move).
        self.extra = extra or {}


def response(problem: Problem, instance: str) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + problem.code,
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
        "instance": instance,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return web.Response(
        status=problem.status,
        body=orjson.dumps(body),
        content_type="application/problem+json",
        headers=problem.headers,
    )


def from_error(exc: StranglerError) -> Problem:
    status = next((s for t, s in _STATUS if isinstance(exc, t)), 500)
    errors = exc.errors if isinstance(exc, InvalidInput) else None
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "1"}
    extra = {"evidence": exc.checks} if isinstance(exc, EvidenceMissing) else None
    return Problem(status, exc.code, str(exc), errors=errors, headers=headers, extra=extra)


@web.middleware
async def problems(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        result: web.StreamResponse = await handler(request)
        return result
    except Problem as exc:
        return response(exc, request.path)
    except StranglerError as exc:
        problem = from_error(exc)
        if problem.status >= 500:
            log.error("request_failed", path=request.path, error=str(exc), code=exc.code)
        return response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "no_such_route",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, f"http_{exc.status}")
        detail = exc.text or exc.reason
        if exc.status == 404:
            detail = f"no route {request.method} {request.path}; see /openapi.json"
        return response(Problem(exc.status, code, detail), request.path)
    except ConnectionResetError:
        if not client_gone(request):
            return _crashed(request)  # not this client's connection: a bug to look at
        # The client went away (``ClientConnectionResetError`` from a write to its closed
        # connection, e.g. an event for an SSE stream whose client left): no answer can
        # reach it, and it is no server error. aiohttp drops this answer quietly when it
        # finds the connection closed; the access log shows nginx's 499.
        log.debug("client_disconnected", path=request.path, method=request.method)
        return web.Response(status=499, reason="Client Closed Request")
    except Exception:
        return _crashed(request)


def client_gone(request: web.Request) -> bool:
    """Whether the client of ``request`` has disconnected (its connection is closed or
    closing)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _crashed(request: web.Request) -> web.Response:
    """A 500 for an error no handler expected, logged with its traceback (a bug)."""
    log.exception("request_crashed", path=request.path, method=request.method)
    return response(
        Problem(500, "internal", "an internal error occurred; it has been logged"),
        request.path,
    )
