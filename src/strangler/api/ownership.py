"""Who may see what: a user sees and changes only their own sessions and messages; anyone
else's are answered 404, exactly like ids that do not exist. The session's owner may come
from ``api.owners`` without a store read."""

from __future__ import annotations

import uuid

from aiohttp import web

from strangler.api.http import path_id
from strangler.api.keys import AUTH, FACADE, OWNERS
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.proxy.facade import DualWriteStore


async def own_session(request: web.Request, facade: DualWriteStore) -> ChatSession:
    """The session in the path, read from the store, if the caller owns it; 404 otherwise."""
    user = await request.app[AUTH].user(request)
    sid = path_id(request, "session_id")
    session = await facade.get_session(sid)
    if session.user_id != user:
        raise NotFound(f"session {sid} not found")
    request.app[OWNERS].put(session.id, session.user_id)
    return session


async def owned_session_id(request: web.Request) -> tuple[uuid.UUID, str]:
    """``(session id, user)`` if the caller owns the session in the path (the owner may come
    from ``api.owners`` without a store read); 404 otherwise."""
    user = await request.app[AUTH].user(request)
    sid = path_id(request, "session_id")
    owners = request.app[OWNERS]
    owner = owners.get(sid)
    if owner is None:
        owner = (await request.app[FACADE].get_session(sid)).user_id
        owners.put(sid, owner)
    if owner != user:
        raise NotFound(f"session {sid} not found")
    return sid, user


async def own_message(request: web.Request) -> tuple[Message, str]:
    """``(message, user)`` for the message in the path if the caller owns its session; 404
    otherwise."""
    user = await request.app[AUTH].user(request)
    facade = request.app[FACADE]
    mid = path_id(request, "message_id")
    message = await facade.get_message(mid)
    if (await facade.get_session(message.session_id)).user_id != user:
        raise NotFound(f"message {mid} not found")
    return message, user
