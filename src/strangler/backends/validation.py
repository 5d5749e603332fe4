"""Checks every store runs before a write reaches its server.

Running the same checks in every store (and once in the facade, before either write)
means both stores refuse exactly the same inputs, so a write can never succeed on one
store and fail validation on the other.
"""

from __future__ import annotations

import orjson

from strangler.core.errors import InvalidInput, PayloadTooLarge
from strangler.core.models import SENDERS, ChatSession, Message
from strangler.core.normalize import has_nul
from strangler.core.records import StoreLimits


def _nul(field: str) -> InvalidInput:
    return InvalidInput(
        f"{field} contains U+0000 (NUL), which Postgres cannot store; remove it",
        errors=[{"loc": [field], "msg": "U+0000 is not allowed", "type": "nul_character"}],
    )


def _check_title(title: str, limits: StoreLimits) -> None:
    if has_nul(title):
        raise _nul("title")
    if len(title) > limits.max_title_chars:
        raise PayloadTooLarge(
            f"title is {len(title)} characters; the limit is {limits.max_title_chars}",
            errors=[{"loc": ["title"], "msg": "too long", "type": "too_long"}],
        )


def check_session(session: ChatSession, limits: StoreLimits | None) -> None:
    """Raise ``InvalidInput`` if the session cannot be stored as it is.

    ``limits`` apply to new input; bulk writes of existing data (backfill, repair, replay)
    pass None and are checked only for what the stores cannot hold.
    """
    if limits is not None:
        _check_title(session.title, limits)
    elif has_nul(session.title):
        raise _nul("title")
    if has_nul(session.user_id):
        raise _nul("user_id")


def check_title(title: str, limits: StoreLimits) -> None:
    """Raise ``InvalidInput`` if ``title`` cannot be stored as a session title."""
    _check_title(title, limits)


def check_message(message: Message, limits: StoreLimits | None) -> None:
    """Raise ``InvalidInput`` / ``PayloadTooLarge`` if the message cannot be stored as it is
    (``limits``: as for :func:`check_session`)."""
    if message.sender not in SENDERS:
        raise InvalidInput(
            f"sender must be one of {', '.join(SENDERS)}, got {message.sender!r}",
            errors=[{"loc": ["sender"], "msg": "not user or assistant", "type": "literal_error"}],
        )
    for name in ("audio", "image", "pdf"):
        if has_nul(getattr(message, name)):
            raise _nul(name)
    if has_nul(message.content):
        raise _nul("content")
    if limits is None:
        return
    size = len(orjson.dumps(message.content))
    if size > limits.max_content_bytes:
        raise PayloadTooLarge(
            f"content is {size} bytes as JSON; the limit is {limits.max_content_bytes}",
            errors=[{"loc": ["content"], "msg": "too large", "type": "too_large"}],
        )


def check_limit(limit: int) -> int:
    """A page size must lie in 1..1000; returns it or raises ``InvalidInput``."""
    if not 1 <= limit <= 1000:
        raise InvalidInput(
            f"limit must be between 1 and 1000, got {limit}",
            errors=[{"loc": ["limit"], "msg": "out of range", "type": "range"}],
        )
    return limit
