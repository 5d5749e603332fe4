"""The OpenAPI paths of the chat API (``api.chat``): sessions, messages and history."""

from __future__ import annotations

from strangler.api.openapi.fragments import (
    LIMIT,
    NULLABLE_TEXT,
    TEXT,
    TIME,
    Json,
    as_json,
    body,
    op,
    query,
    record_id,
    ref,
)

TAG = "chat"
DELETED: Json = {"204": {"description": "Deleted"}}


def paths() -> Json:
    """The path items of ``api.chat``'s routes."""
    return {
        "/sessions": _sessions(),
        "/sessions/{session_id}": _session(),
        "/sessions/{session_id}/messages": _messages(),
        "/messages/{message_id}": _message(),
    }


def page(item: str) -> Json:
    """A page of ``item`` records with its cursors.

    Hand-written: ``serialize.page_json`` builds this shape from a ``core.records.Page``, which is
    not a pydantic model."""
    return {
        "type": "object",
        "required": ["items", "has_more", "next_cursor", "prev_cursor"],
        "properties": {
            "items": {"type": "array", "items": ref(item)},
            "has_more": {"type": "boolean"},
            "next_cursor": NULLABLE_TEXT,
            "prev_cursor": NULLABLE_TEXT,
        },
    }


def _title(*, required: bool) -> Json:
    """A body with a ``title`` (``chat.text_field`` reads it; there is no model)."""
    schema: Json = {"type": "object", "properties": {"title": TEXT}}
    if required:
        schema["required"] = ["title"]
    return body(schema)


def _sessions() -> Json:
    return {
        "post": op(
            "Create a session",
            {"201": as_json(ref("Session"), "The new session")},
            request=_title(required=False),
            tag=TAG,
        ),
        "get": op(
            "List the caller's sessions, newest first",
            {"200": as_json(page("Session"), "A page of sessions")},
            params=[
                query("search"),
                query("created_from", TIME),
                query("created_to", TIME),
                LIMIT,
                query("cursor"),
            ],
            tag=TAG,
        ),
    }


def _session() -> Json:
    return {
        "parameters": [record_id("session_id")],
        "get": op("A session", {"200": as_json(ref("Session"), "The session")}, tag=TAG),
        "patch": op(
            "Rename a session",
            {"200": as_json(ref("Session"), "The renamed session")},
            request=_title(required=True),
            tag=TAG,
        ),
        "delete": op("Delete a session and its messages", DELETED, tag=TAG),
    }


def _messages() -> Json:
    request = {
        "required": True,
        "content": {
            "application/json": {"schema": ref("NewMessage")},
            "multipart/form-data": {"schema": ref("NewMessageForm")},
        },
    }
    return {
        "parameters": [record_id("session_id")],
        "post": op(
            "Send a message (attachments as base64 JSON or multipart files)",
            {"201": as_json(ref("Message"), "The stored message")},
            request=request,
            tag=TAG,
        ),
        "get": op(
            "History, oldest first; page forwards with after, backwards with before",
            {"200": as_json(page("Message"), "A page of messages")},
            params=[LIMIT, query("after"), query("before")],
            tag=TAG,
        ),
    }


def _message() -> Json:
    return {
        "parameters": [record_id("message_id")],
        "get": op("A message", {"200": as_json(ref("Message"), "The message")}, tag=TAG),
        "delete": op("Delete a message", DELETED, tag=TAG),
    }
