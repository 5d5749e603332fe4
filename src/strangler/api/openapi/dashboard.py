"""The OpenAPI paths of the operator dashboard (``api.dashboard``): its pages, sign-in, static
files, and the JSON and event stream it reads."""

from __future__ import annotations

from functools import partial

from strangler.api.openapi.fragments import (
    OBJECT,
    TEXT,
    Json,
    as_html,
    as_json,
    as_stream,
    body,
    content,
    op,
    query,
)

TAG = "dashboard"
#: The files ``dashboard.ASSETS`` serves.
ASSETS = ["dashboard.css", "dashboard.js"]


def paths() -> Json:
    """The path items of ``api.dashboard``'s routes."""
    return {**_pages(), **_data()}


def _pages() -> Json:
    """The HTML side: the page, signing in and out, its stylesheet and script."""
    page = partial(op, security=None, tag=TAG)
    sign_in = body(
        {"type": "object", "properties": {"token": TEXT}}, "application/x-www-form-urlencoded"
    )
    return {
        "/admin": {
            "get": page(
                "The operator dashboard (HTML), or its sign-in page without a session",
                {"200": as_html("The dashboard or the sign-in page"), "403": as_html("Disabled")},
            )
        },
        "/admin/login": {
            "post": page(
                "Sign in with the admin token; sets the HttpOnly session cookie",
                {
                    "303": {"description": "Signed in: to /admin"},
                    "200": as_html("The dashboard, when the redirect is followed"),
                    "403": as_html("Wrong token: the sign-in page with the error"),
                },
                request=sign_in,
            )
        },
        "/admin/logout": {
            "post": page(
                "Sign out: clears the session cookie",
                {
                    "303": {"description": "To /admin"},
                    "200": as_html("The sign-in page, when the redirect is followed"),
                },
            )
        },
        "/admin/static/{name}": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ASSETS},
                }
            ],
            "get": page(
                "The dashboard's stylesheet and script",
                {"200": content("The file", TEXT, "text/css", "text/javascript")},
            ),
        },
    }


def _data() -> Json:
    """What the dashboard's script reads, with the admin token."""
    admin = partial(op, security="admin", tag=TAG)
    return {
        "/admin/overview": {
            "get": admin(
                "Everything the dashboard shows: stage and ladder, backends, quotas, "
                "backfill/verify/repair runs, divergences, stage history",
                {"200": as_json(OBJECT, "The overview")},
            )
        },
        "/admin/stage/preview": {
            "get": admin(
                "What moving to a stage would change, its warnings, why it is blocked, and "
                "the evidence it needs (each piece met or missing)",
                {"200": as_json(OBJECT, "The preview")},
                params=[query("to", required=True)],
            )
        },
        "/admin/stream": {
            "get": admin(
                "Server-Sent Events: a `tick` a second with windowed latency, error rate, "
                "consistency rate, secondary lag and repair-queue depth",
                {"200": as_stream("The event stream")},
            )
        },
    }
