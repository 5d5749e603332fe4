"""The OpenAPI 3.1 document of the HTTP API, built once and served at ``/openapi.json``.

Each module here documents the routes of its namesake in ``api`` (``chat``, ``realtime``,
``ops``, ``dashboard``); ``schemas`` holds the components, generated from the pydantic models
where one describes the JSON. The tests fuzz the running API against the document with
schemathesis (no 5xx, every response as documented) and check that every route the app
serves is in it.
"""

from __future__ import annotations

from functools import cache

from aiohttp import web

from strangler import __version__
from strangler.api.http import json_response
from strangler.api.openapi import chat, dashboard, ops, realtime, schemas
from strangler.api.openapi.fragments import Json

__all__ = ["build", "routes"]

routes = web.RouteTableDef()


@cache
def build() -> Json:
    """The document. Built at the first call; every later call returns the same dict, which
    is shared, so callers must not change it (deep-copy it first)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "strangler chat API",
            "version": __version__,
            "description": "The chat backend's API on the MongoDB → Supabase dual-write "
            "facade. Ids are UUIDs; every path also accepts the legacy 24-hex ObjectId.",
        },
        "paths": {
            **chat.paths(),
            **realtime.paths(),
            **ops.paths(),
            **dashboard.paths(),
        },
        "components": schemas.components(),
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build())
