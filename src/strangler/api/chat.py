"""The chat API's handlers: sessions and messages, JSON in and out.

Every path id accepts a UUID or the legacy 24-hex ObjectId, so old links keep working.
Who may see what is ``api.ownership``'s; the JSON shapes are ``api.serialize``'s; which
cached pages a change drops is ``api.invalidation``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from strangler.api.attachments import PDF_DATA_URL, Kind, Limits, check, from_base64, pdf_field
from strangler.api.http import (
    body_timeout,
    json_body,
    json_response,
    query_cursor,
    query_int,
    query_time,
    text_field,
)
from strangler.api.keys import (
    AUTH,
    FACADE,
    HISTORY_CACHE,
    HUB,
    INVALIDATION,
    OWNERS,
    SESSION_LIST_CACHE,
    SETTINGS,
)
from strangler.api.ownership import own_message, own_session, owned_session_id
from strangler.api.page_cache import Span
from strangler.api.problems import Problem
from strangler.api.serialize import page_json, record_json
from strangler.core.models import ChatSession, Message
from strangler.core.normalize import b64
from strangler.core.records import Keyset, Page, RenderedPage

routes = web.RouteTableDef()


# --- sessions -----------------------------------------------------------------------------


@routes.post("/sessions")
async def create_session(request: web.Request) -> web.Response:
    user = await request.app[AUTH].user(request)
    body = await json_body(request)
    title = text_field(body, "title", required=False) or "New chat"
    session = await request.app[FACADE].create_session(ChatSession.new(title=title, user_id=user))
    request.app[INVALIDATION].session_written(user)  # this instance reads its own writes
    data = record_json(session)
    await request.app[HUB].publish("session.created", user, session.id, data)
    return json_response(data, status=201)


@routes.get("/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    user = await request.app[AUTH].user(request)
    facade = request.app[FACADE]
    search = request.query.get("search") or None
    created_from = query_time(request, "created_from")
    created_to = query_time(request, "created_to")
    limit = query_int(request, "limit", 50, 1, 1000)
    after = query_cursor(request, "cursor")
    cache = request.app[SESSION_LIST_CACHE]
    key = (search, created_from, created_to, limit, request.query.get("cursor"))
    cached = cache.get(facade.stage, user, key)
    if isinstance(cached, bytes):
        return web.Response(body=cached, content_type="application/json")
    page = await facade.list_sessions(
        user,
        search=search,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        after=after,
    )
    body = orjson.dumps(page_json(page, Keyset.of_session))
    if cached is not None:
        cache.put(cached, body)
    return web.Response(body=body, content_type="application/json")


@routes.get("/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    return json_response(record_json(await own_session(request, request.app[FACADE])))


@routes.patch("/sessions/{session_id}")
async def rename_session(request: web.Request) -> web.Response:
    facade = request.app[FACADE]
    session = await own_session(request, facade)
    body = await json_body(request)
    title = text_field(body, "title")
    assert title is not None
    renamed = await facade.rename_session(session.id, title)
    request.app[INVALIDATION].session_written(session.user_id)
    data = record_json(renamed)
    await request.app[HUB].publish("session.renamed", session.user_id, session.id, data)
    return json_response(data)


@routes.delete("/sessions/{session_id}")
async def delete_session(request: web.Request) -> web.Response:
    facade = request.app[FACADE]
    session = await own_session(request, facade)
    await facade.delete_session(session.id)
    request.app[OWNERS].forget(session.id)
    request.app[INVALIDATION].session_deleted(session.id, session.user_id)
    await request.app[HUB].publish(
        "session.deleted", session.user_id, session.id, {"id": str(session.id)}
    )
    return web.Response(status=204)


# --- messages -----------------------------------------------------------------------------


@routes.post("/sessions/{session_id}/messages")
async def send_message(request: web.Request) -> web.Response:
    """JSON (attachments as base64) or ``multipart/form-data`` (attachments as files)."""
    facade = request.app[FACADE]
    sid, user = await owned_session_id(request)
    limits = Limits.from_settings(request.app[SETTINGS])
    if request.content_type == "multipart/form-data":
        try:
            async with asyncio.timeout(body_timeout(request)):
                fields = await _multipart_message(request, limits)
        except TimeoutError:
            raise Problem(408, "request_timeout", "the upload did not arrive in time") from None
    else:
        fields = _json_message(await json_body(request), limits)
    message = Message.new(session_id=sid, **fields)
    hub = request.app[HUB]
    data = record_json(message)
    # Where Postgres is authoritative the event is stored with the message (one statement).
    stored, published = await facade.send_message(
        message, hub.draft("message.created", user, sid, data)
    )
    # This instance reads its own writes at once: the pages the message falls into go now.
    request.app[INVALIDATION].message_added(sid, (stored.timestamp, stored.id))
    if published:
        hub.published()
    else:
        data = record_json(stored)
        await hub.publish("message.created", user, sid, data)
    return json_response(data, status=201)


_CONTENT_FILES: tuple[tuple[str, str, Kind], ...] = (
    ("audioFile", "audio_file", "audio"),
    ("imageFile", "image_file", "image"),
)


def _json_message(body: dict[str, Any], limits: Limits) -> dict[str, Any]:
    content = body.get("content")
    if isinstance(content, dict):
        for key, alias, kind in _CONTENT_FILES:
            value = content.get(key, content.get(alias))
            if isinstance(value, str):
                from_base64(kind, value, limits)
    return {
        "sender": body.get("sender", "user"),
        "content": content,
        "audio": text_field(body, "audio", required=False),
        "image": text_field(body, "image", required=False),
        "pdf": pdf_field(text_field(body, "pdf", required=False), limits),
    }


async def _multipart_message(request: web.Request, limits: Limits) -> dict[str, Any]:
    """Fields ``sender``, ``type``, ``text``; files ``audio``, ``image``, ``pdf``."""
    texts: dict[str, str] = {}
    files: dict[Kind, bytes] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Problem(400, "invalid_multipart", "nested multipart bodies are not accepted")
        name = part.name or ""
        if name in ("audio", "image", "pdf"):
            kind: Kind = name  # type: ignore[assignment]
            data = await _read_capped(part, limits.of(kind) + 1)
            files[kind] = check(kind, data, limits, media_type=part.headers.get("Content-Type", ""))
        elif name in ("sender", "type", "text"):
            texts[name] = (await _read_capped(part, 1 << 20)).decode("utf-8", "replace")
        else:
            raise Problem(
                422,
                "invalid_input",
                f"unknown form field {name!r}; expected sender, type, text, audio, image, pdf",
            )
    content: dict[str, Any] = {
        "type": texts.get("type")
        or next((k for k in ("audio", "image", "pdf") if k in files), "conversation")
    }
    if "text" in texts:
        content["text"] = texts["text"]
    if "audio" in files:
        content["audioFile"] = b64(files["audio"])
    if "image" in files:
        content["imageFile"] = b64(files["image"])
    pdf = PDF_DATA_URL + b64(files["pdf"]) if "pdf" in files else None
    return {"sender": texts.get("sender", "user"), "content": content, "pdf": pdf}


async def _read_capped(part: BodyPartReader, cap: int) -> bytes:
    """The part's bytes, stopping once ``cap`` is passed (the caller reports the size)."""
    out = bytearray()
    while chunk := await part.read_chunk():
        out += chunk
        if len(out) >= cap:
            break
    return bytes(out)


@routes.get("/sessions/{session_id}/messages")
async def history(request: web.Request) -> web.Response:
    facade = request.app[FACADE]
    sid, _ = await owned_session_id(request)
    after, before = query_cursor(request, "after"), query_cursor(request, "before")
    if after is not None and before is not None:
        raise Problem(400, "invalid_parameter", "give after or before, not both")
    limit = query_int(request, "limit", 50, 1, 1000)
    cache = request.app[HISTORY_CACHE]
    cached = cache.get(
        facade.stage, sid, (request.query.get("after"), request.query.get("before"), limit)
    )
    if isinstance(cached, bytes):
        return web.Response(body=cached, content_type="application/json")
    # Where Postgres serves the read unshadowed, it renders the page itself.
    page: Page[Message] | RenderedPage | None
    page = await facade.rendered_history(sid, limit=limit, after=after, before=before)
    if page is not None:
        body = page.body()
    else:
        page = await facade.history(sid, limit=limit, after=after, before=before)
        body = orjson.dumps(page_json(page, Keyset.of_message))
    if cached is not None:
        cache.put(cached, body, Span.of_history(after, before, page))
    return web.Response(body=body, content_type="application/json")


@routes.get("/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    message, _ = await own_message(request)
    return json_response(record_json(message))


@routes.delete("/messages/{message_id}")
async def delete_message(request: web.Request) -> web.Response:
    message, user = await own_message(request)
    mid = message.id
    await request.app[FACADE].delete_message(mid)
    request.app[INVALIDATION].message_deleted(message.session_id)
    await request.app[HUB].publish(
        "message.deleted",
        user,
        message.session_id,
        {"id": str(mid), "session_id": str(message.session_id)},
    )
    return web.Response(status=204)
