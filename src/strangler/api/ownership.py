"""Who may see what: a user sees and changes only their own sessions and messages; anyone
else's are answered 404, exactly like ids that do not exist. The session's owner may come
from ``api.owners`` without a store read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from strangler.api.http import path_ids
from strangler.api.keys import AUTH, FACADE, OWNERS
from strangler.core.errors import NotFound
from strangler.core.models import ChatSession, Message
from strangler.proxy.facade import DualWriteStore

T = TypeVar("T")


async def _first(candidates: list[uuid.UUID], read: Callable[[uuid.UUID], Awaitable[T]]) -> T:
    """The record under the first candidate id that has one (a legacy id in a path may
    stand for more than one: ``ids.path_candidates``); the last NotFound otherwise."""
    for candidate in candidates[:-1]:
        try:
            return await read(candidate)
        except NotFound:
            continue
    return await read(candidates[-1])


async def own_session(request: web.Request, facade: DualWriteStore) -> ChatSession:
    """The session in the path, read from the store, if the caller owns it; 404 otherwise."""
    user = await request.app[AUTH].user(request)
    session = await _first(path_ids(request, "session_id"), facade.get_session)
    sid = session.id
    if session.user_id != user:
        raise NotFound(f"session {sid} not found")
    request.app[OWNERS].put(session.id, session.user_id)
    return session


async def owned_session_id(request: web.Request) -> tuple[uuid.UUID, str]:
    """``(session id, user)`` if the caller owns the session in the path (the owner may come
    from ``api.owners`` without a store read); 404 otherwise."""
    user = await request.app[AUTH].user(request)
    candidates = path_ids(request, "session_id")
    owners = request.app[OWNERS]
    known = [(c, owners.get(c)) for c in candidates]
    sid, owner = next(((c, o) for c, o in known if o is not None), (candidates[0], None))
    if owner is None:
        session = await _first(candidates, request.app[FACADE].get_session)
        sid, owner = session.id, session.user_id
        owners.put(sid, owner)
    if owner != user:
        raise NotFound(f"session {sid} not found")
    return sid, user


async def own_message(request: web.Request) -> tuple[Message, str]:
    """``(message, user)`` for the message in the path if the caller owns its session; 404
    otherwise."""
    user = await request.app[AUTH].user(request)
    facade = request.app[FACADE]
    message = await _first(path_ids(request, "message_id"), facade.get_message)
    mid = message.id
    if (await facade.get_session(message.session_id)).user_id != user:
        raise NotFound(f"message {mid} not found")
    return message, user
