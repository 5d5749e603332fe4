"""The HTTP toolkit every handler uses: JSON responses, path and query parameters, and
request bodies read within their deadline, each failure a specific 4xx problem."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import orjson
from aiohttp import web

from strangler.api.keys import SETTINGS
from strangler.api.problems import Problem
from strangler.core import ids
from strangler.core.errors import InvalidInput
from strangler.core.records import Keyset


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def path_ids(request: web.Request, name: str) -> list[uuid.UUID]:
    """The ids the path parameter ``name`` may stand for (``ids.path_candidates``): one for
    a UUID or a 24-hex ObjectId; for a legacy string or integer ``_id`` (stored under a
    UUID that cannot give it back), the UUIDs it maps to, so such a record is still
    reachable by its old id. 400 for what cannot be an id at all."""
    raw = request.match_info[name]
    try:
        return ids.path_candidates(raw, field=name)
    except InvalidInput:
        raise Problem(
            400,
            "invalid_id",
            f"{name} {raw[:60]!r} is neither a UUID, a 24-hex ObjectId nor a legacy id "
            f"(1 to {ids.MAX_LEGACY_ID} characters, no control characters)",
            errors=[{"loc": ["path", name], "msg": "not an id", "type": "id"}],
        ) from None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise Problem(
            400,
            "invalid_parameter",
            f"{name} must be a whole number from {lo} to {hi}, got {raw[:40]!r}",
            errors=[{"loc": ["query", name], "msg": "out of range", "type": "range"}],
        )
    return value


def query_cursor(request: web.Request, name: str) -> Keyset | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return Keyset.decode(raw)
    except InvalidInput as exc:
        raise Problem(400, "invalid_cursor", str(exc), errors=exc.errors) from None


def query_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise Problem(
            400,
            "invalid_parameter",
            f"{name} must be an ISO 8601 date-time with a zone (e.g. 2026-11-25T09:00:00Z), "
            f"got {raw[:40]!r}",
            errors=[{"loc": ["query", name], "msg": "not an ISO 8601 date-time", "type": "time"}],
        )
    return value


#: Seconds a client has to send a request body (``STRANGLER_BODY_TIMEOUT``): a slow upload is
#: cut off with 408.
BODY_TIMEOUT = 30.0


def body_timeout(request: web.Request) -> float:
    return request.app[SETTINGS].body_timeout if SETTINGS in request.app else BODY_TIMEOUT


async def read_body(request: web.Request) -> bytes:
    """The whole body, within ``body_timeout`` (a slow client gets 408, not a held slot)."""
    if request.content.is_eof():  # all of it has arrived (a small body usually has)
        return await request.read()
    limit = body_timeout(request)
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise Problem(
            408, "request_timeout", f"the request body did not arrive within {limit:g} s"
        ) from None


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported_media_type",
            f"send application/json, not {request.content_type or 'no content type'}",
        )
    raw = await read_body(request)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Problem(422, "invalid_input", "the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"{name} must be a string",
            errors=[{"loc": ["body", name], "msg": "must be a string", "type": "string_type"}],
        )
    return value
