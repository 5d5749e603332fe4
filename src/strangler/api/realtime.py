"""Realtime: new messages and session changes, over SSE (one session) or a WebSocket (all
of a user's sessions), across every API instance.

Every change the API makes is appended to ``strangler.events`` in Postgres, and a
``NOTIFY strangler_events`` wakes each instance's ``Hub``, which reads the new events and
hands them to its local subscribers. Postgres is present in every stage (it holds the
stage control), so delivery works in every stage. If the listening connection drops, a
poll every ``poll_seconds`` keeps events flowing while it reconnects. Event ids are the
log's ids, so a client that reconnects with ``Last-Event-ID`` gets what it missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import WSMsgType, web

from strangler.api.events import Event, Subscription
from strangler.api.keys import AUTH, HUB, REALTIME_OFF
from strangler.api.ownership import owned_session_id
from strangler.api.problems import Problem, client_gone

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

HEARTBEAT_SECONDS = 15.0


async def sse_response(request: web.Request, *, retry_ms: int) -> web.StreamResponse:
    """A prepared Server-Sent Events response (unbuffered by proxies), with the client's
    reconnect delay already sent."""
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass events through at once
        }
    )
    await resp.prepare(request)
    await resp.write(b"retry: %d\n\n" % retry_ms)
    return resp


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None:
        return None
    if not raw.isdigit():
        raise Problem(400, "invalid_parameter", f"Last-Event-ID must be an event id, got {raw!r}")
    return int(raw)


async def _stream(
    sub: Subscription, backlog: list[Event], seen: int
) -> AsyncIterator[Event | None]:
    """The backlog, then live events (skipping any the backlog already gave); None is a
    heartbeat."""
    for event in backlog:
        seen = max(seen, event.id)
        yield event
    while True:
        try:
            # asyncio.timeout, not wait_for: wait_for wraps each get in a task of its own,
            # which is a thousand extra tasks per event with a thousand subscribers.
            async with asyncio.timeout(HEARTBEAT_SECONDS):
                item = await sub.queue.get()
        except TimeoutError:
            yield None
            continue
        if item is None:
            return
        if item.id > seen:
            seen = item.id
            yield item


# --- SSE: one session ---------------------------------------------------------------------


def _available(request: web.Request) -> None:
    if REALTIME_OFF in request.app:
        raise Problem(501, "realtime_unavailable", request.app[REALTIME_OFF])


@routes.get("/sessions/{session_id}/events")
async def session_events(request: web.Request) -> web.StreamResponse:
    _available(request)
    sid, _ = await owned_session_id(request)
    hub = request.app[HUB]
    last = _last_event_id(request)
    sub = hub.subscribe(("session", str(sid)), lambda: not client_gone(request))
    try:
        backlog = [] if last is None else await hub.backlog(last, session_id=sid)
        last = last if last is not None else await hub.event_log.last_event_id()
        resp = await sse_response(request, retry_ms=1000)
        async for event in _stream(sub, backlog, last):
            await resp.write(b": heartbeat\n\n" if event is None else event.sse)
        return resp
    finally:
        hub.unsubscribe(sub)


# --- WebSocket: all of a user's sessions ------------------------------------------------------


@routes.get("/ws")
async def user_events(request: web.Request) -> web.StreamResponse:
    """Browsers cannot set headers on a WebSocket: the token may come as ``access_token``."""
    _available(request)
    token = request.query.get("access_token")
    if token and "Authorization" not in request.headers:
        request = request.clone(headers={**request.headers, "Authorization": f"Bearer {token}"})
    user = await request.app[AUTH].user(request)
    hub = request.app[HUB]
    last = _last_event_id(request)
    sub = hub.subscribe(("user", user), lambda: not client_gone(request))
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
    try:
        backlog = [] if last is None else await hub.backlog(last, user_id=user)
        last = last if last is not None else await hub.event_log.last_event_id()
        await ws.prepare(request)
        reader = asyncio.create_task(_drain_client(ws))
        try:
            async for event in _stream(sub, backlog, last):
                if event is not None:
                    await ws.send_str(event.ws_text)
                if reader.done():
                    break
        finally:
            reader.cancel()
            await ws.close()
        return ws
    finally:
        hub.unsubscribe(sub)


async def _drain_client(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return
