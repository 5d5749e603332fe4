"""Records as the API's JSON: ``record_json`` for one, ``page_json`` for a keyset page with
its cursors (``RenderedPage.body`` is the same shape, rendered by the store)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from strangler.core.models import ChatSession, Message
from strangler.core.normalize import iso_z
from strangler.core.records import Page


def record_json(record: BaseModel) -> dict[str, Any]:
    """The JSON form of a record: ``model_dump(mode="json")``, built directly for the two
    hot record types (pydantic's serialiser was a quarter of a history request)."""
    if type(record) is Message:
        return {
            "id": str(record.id),
            "session_id": str(record.session_id),
            "sender": record.sender,
            "content": record.content,
            "timestamp": iso_z(record.timestamp),
            "audio": record.audio,
            "image": record.image,
            "pdf": record.pdf,
        }
    if type(record) is ChatSession:
        return {
            "id": str(record.id),
            "title": record.title,
            "created_at": iso_z(record.created_at),
            "user_id": record.user_id,
        }
    return record.model_dump(mode="json")


def page_json(page: Page[Any], cursor_of: Any) -> dict[str, Any]:
    items = page.items
    return {
        "items": [record_json(r) for r in items],
        "has_more": page.has_more,
        "next_cursor": cursor_of(items[-1]).encode() if items else None,
        "prev_cursor": cursor_of(items[0]).encode() if items else None,
    }
