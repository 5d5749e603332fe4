"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Written by hand next to the routes it describes; the tests fuzz the running API against
it with schemathesis (no 5xx, every response as documented) and check that every route
the app serves is in it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from strangler import __version__
from strangler.api.chat import json_response

routes = web.RouteTableDef()

_UUID = {"type": "string", "format": "uuid"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "default": {
        "description": "An error, as RFC 9457 problem details with a stable `code`",
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
}
_ID_PARAM = {
    "description": "a UUID, or the legacy 24-hex ObjectId form",
    "schema": {"type": "string"},
    "required": True,
    "in": "path",
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    security: str | None = "user",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_ERRORS}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    op["security"] = [] if security is None else [{security: []}]
    if tags:
        op["tags"] = tags
    return op


def _session_id() -> dict[str, Any]:
    return {"name": "session_id", **_ID_PARAM}


def build() -> dict[str, Any]:
    def page(item: str) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "has_more", "next_cursor", "prev_cursor"],
            "properties": {
                "items": {"type": "array", "items": _ref(item)},
                "has_more": {"type": "boolean"},
                "next_cursor": _NULLABLE_TEXT,
                "prev_cursor": _NULLABLE_TEXT,
            },
        }

    session_page, message_page = page("Session"), page("Message")
    chat = ["chat"]
    ops = ["operations"]
    admin = ["admin"]
    dashboard = ["dashboard"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "strangler chat API",
            "version": __version__,
            "description": "The chat backend's API on the MongoDB → Supabase dual-write "
            "facade. Ids are UUIDs; every path also accepts the legacy 24-hex ObjectId.",
        },
        "paths": {
            "/sessions": {
                "post": _op(
                    "Create a session",
                    {"201": _json(_ref("Session"), "The new session")},
                    body={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"title": {"type": "string"}},
                                }
                            }
                        },
                    },
                    tags=chat,
                ),
                "get": _op(
                    "List the caller's sessions, newest first",
                    {"200": _json(session_page, "A page of sessions")},
                    params=[
                        {"name": "search", "in": "query", "schema": {"type": "string"}},
                        {"name": "created_from", "in": "query", "schema": _TIME},
                        {"name": "created_to", "in": "query", "schema": _TIME},
                        _LIMIT,
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    tags=chat,
                ),
            },
            "/sessions/{session_id}": {
                "parameters": [_session_id()],
                "get": _op("A session", {"200": _json(_ref("Session"), "The session")}, tags=chat),
                "patch": _op(
                    "Rename a session",
                    {"200": _json(_ref("Session"), "The renamed session")},
                    body={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["title"],
                                    "properties": {"title": {"type": "string"}},
                                }
                            }
                        },
                    },
                    tags=chat,
                ),
                "delete": _op(
                    "Delete a session and its messages",
                    {"204": {"description": "Deleted"}},
                    tags=chat,
                ),
            },
            "/sessions/{session_id}/messages": {
                "parameters": [_session_id()],
                "post": _op(
                    "Send a message (attachments as base64 JSON or multipart files)",
                    {"201": _json(_ref("Message"), "The stored message")},
                    body={
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("NewMessage")},
                            "multipart/form-data": {"schema": _ref("NewMessageForm")},
                        },
                    },
                    tags=chat,
                ),
                "get": _op(
                    "History, oldest first; page forwards with after, backwards with before",
                    {"200": _json(message_page, "A page of messages")},
                    params=[
                        _LIMIT,
                        {"name": "after", "in": "query", "schema": {"type": "string"}},
                        {"name": "before", "in": "query", "schema": {"type": "string"}},
                    ],
                    tags=chat,
                ),
            },
            "/sessions/{session_id}/events": {
                "parameters": [_session_id()],
                "get": _op(
                    "Server-sent events of one session (message.created, session.renamed, "
                    "...); reconnect with Last-Event-ID to get what was missed",
                    {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                    params=[
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}
                    ],
                    tags=chat,
                ),
            },
            "/ws": {
                "get": _op(
                    "WebSocket of all the caller's sessions; the token may be passed as "
                    "access_token, and last_event_id replays what was missed",
                    {"101": {"description": "Switching to the WebSocket protocol"}},
                    params=[
                        {"name": "access_token", "in": "query", "schema": {"type": "string"}},
                        {"name": "last_event_id", "in": "query", "schema": {"type": "string"}},
                    ],
                    tags=chat,
                ),
            },
            "/messages/{message_id}": {
                "parameters": [{"name": "message_id", **_ID_PARAM}],
                "get": _op("A message", {"200": _json(_ref("Message"), "The message")}, tags=chat),
                "delete": _op("Delete a message", {"204": {"description": "Deleted"}}, tags=chat),
            },
            "/healthz": {
                "get": _op(
                    "The process is up",
                    {"200": _json({"type": "object"}, "Up")},
                    security=None,
                    tags=ops,
                )
            },
            "/readyz": {
                "get": _op(
                    "The authoritative store answers (else 503)",
                    {"200": _json({"type": "object"}, "Ready")},
                    security=None,
                    tags=ops,
                )
            },
            "/metrics": {
                "get": _op(
                    "Prometheus metrics",
                    {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    security=None,
                    tags=ops,
                )
            },
            "/openapi.json": {
                "get": _op(
                    "This document",
                    {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                    security=None,
                    tags=ops,
                )
            },
            "/admin/stage": {
                "get": _op(
                    "The migration stage",
                    {"200": _json({"type": "object"}, "The stage and who set it")},
                    security="admin",
                    tags=admin,
                ),
                "put": _op(
                    "Move the stage (one step, or any with force)",
                    {"200": _json({"type": "object"}, "The new stage")},
                    body={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["stage"],
                                    "properties": {
                                        "stage": {
                                            "enum": [
                                                "off",
                                                "dualwrite",
                                                "shadow",
                                                "live",
                                                "rampdown",
                                                "complete",
                                            ]
                                        },
                                        "reason": {"type": "string"},
                                        "force": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    security="admin",
                    tags=admin,
                ),
            },
            "/admin/status": {
                "get": _op(
                    "Each backend's health, latency, error rate, repair queue; consistency "
                    "rate and lag",
                    {"200": _json({"type": "object"}, "Status")},
                    security="admin",
                    tags=admin,
                )
            },
            "/admin/divergences": {
                "get": _op(
                    "Recent divergences found by shadow reads",
                    {"200": _json({"type": "object"}, "Divergences")},
                    params=[_LIMIT],
                    security="admin",
                    tags=admin,
                )
            },
            "/admin/verify": {
                "post": _op(
                    "Start a verify of both stores in the background",
                    {"202": _json(_ref("VerifyJob"), "The job, running")},
                    security="admin",
                    tags=admin,
                )
            },
            "/admin": {
                "get": _op(
                    "The operator dashboard (HTML), or its sign-in page without a session",
                    {"200": _html("The dashboard or the sign-in page"), "403": _html("Disabled")},
                    security=None,
                    tags=dashboard,
                )
            },
            "/admin/login": {
                "post": _op(
                    "Sign in with the admin token; sets the HttpOnly session cookie",
                    {
                        "303": {"description": "Signed in: to /admin"},
                        "200": _html("The dashboard, when the redirect is followed"),
                        "403": _html("Wrong token: the sign-in page with the error"),
                    },
                    body={
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"token": {"type": "string"}},
                                }
                            }
                        },
                    },
                    security=None,
                    tags=dashboard,
                )
            },
            "/admin/logout": {
                "post": _op(
                    "Sign out: clears the session cookie",
                    {
                        "303": {"description": "To /admin"},
                        "200": _html("The sign-in page, when the redirect is followed"),
                    },
                    security=None,
                    tags=dashboard,
                )
            },
            "/admin/static/{name}": {
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["dashboard.css", "dashboard.js"]},
                    }
                ],
                "get": _op(
                    "The dashboard's stylesheet and script",
                    {
                        "200": {
                            "description": "The file",
                            "content": {
                                "text/css": {"schema": {"type": "string"}},
                                "text/javascript": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    security=None,
                    tags=dashboard,
                ),
            },
            "/admin/overview": {
                "get": _op(
                    "Everything the dashboard shows: stage and ladder, backends, quotas, "
                    "backfill/verify/repair runs, divergences, stage history",
                    {"200": _json({"type": "object"}, "The overview")},
                    security="admin",
                    tags=dashboard,
                )
            },
            "/admin/stage/preview": {
                "get": _op(
                    "What moving to a stage would change, its warnings, and why it is blocked",
                    {"200": _json({"type": "object"}, "The preview")},
                    params=[
                        {
                            "name": "to",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    security="admin",
                    tags=dashboard,
                )
            },
            "/admin/stream": {
                "get": _op(
                    "Server-Sent Events: a `tick` a second with windowed latency, error rate, "
                    "consistency rate, secondary lag and repair-queue depth",
                    {
                        "200": {
                            "description": "The event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                    security="admin",
                    tags=dashboard,
                )
            },
            "/admin/verify/{job_id}": {
                "parameters": [
                    {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "get": _op(
                    "A verify job's progress and result",
                    {"200": _json(_ref("VerifyJob"), "The job")},
                    security="admin",
                    tags=admin,
                ),
            },
        },
        "components": {
            "securitySchemes": {
                "user": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Supabase Auth access token; the user is its sub",
                },
                "admin": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "STRANGLER_ADMIN_TOKEN",
                },
            },
            "schemas": {
                "Session": {
                    "type": "object",
                    "required": ["id", "title", "created_at", "user_id"],
                    "properties": {
                        "id": _UUID,
                        "title": {"type": "string"},
                        "created_at": _TIME,
                        "user_id": {"type": "string"},
                    },
                },
                "Message": {
                    "type": "object",
                    "required": [
                        "id",
                        "session_id",
                        "sender",
                        "content",
                        "timestamp",
                        "audio",
                        "image",
                        "pdf",
                    ],
                    "properties": {
                        "id": _UUID,
                        "session_id": _UUID,
                        "sender": {"enum": ["user", "assistant"]},
                        "content": {"description": "JSON; legacy messages may hold any value"},
                        "timestamp": _TIME,
                        "audio": _NULLABLE_TEXT,
                        "image": _NULLABLE_TEXT,
                        "pdf": _NULLABLE_TEXT,
                    },
                },
                "MessageContent": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["conversation", "audio", "image", "pdf"]},
                        "text": {"type": "string"},
                        "audioFile": {"type": "string", "contentEncoding": "base64"},
                        "imageFile": {"type": "string", "contentEncoding": "base64"},
                        "pdfUrl": {"type": "string"},
                    },
                },
                "NewMessage": {
                    "type": "object",
                    "required": ["content"],
                    "properties": {
                        "sender": {"enum": ["user", "assistant"]},
                        "content": _ref("MessageContent"),
                        "audio": {"type": "string"},
                        "image": {"type": "string"},
                        "pdf": {
                            "type": "string",
                            "description": "a URL, or data:application/pdf;base64,...",
                        },
                    },
                },
                "NewMessageForm": {
                    "type": "object",
                    "properties": {
                        "sender": {"enum": ["user", "assistant"]},
                        "type": {"enum": ["conversation", "audio", "image", "pdf"]},
                        "text": {"type": "string"},
                        "audio": {"type": "string", "format": "binary"},
                        "image": {"type": "string", "format": "binary"},
                        "pdf": {"type": "string", "format": "binary"},
                    },
                },
                "VerifyJob": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"enum": ["running", "done", "failed"]},
                        "progress": {"type": "object"},
                        "result": {"type": ["object", "null"]},
                        "error": _NULLABLE_TEXT,
                    },
                },
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail", "code"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                        "instance": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build())
