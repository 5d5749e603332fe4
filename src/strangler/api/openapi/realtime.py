"""The OpenAPI paths of the realtime streams (``api.realtime``): per-session SSE and the
per-user WebSocket."""

from __future__ import annotations

from strangler.api.openapi.fragments import Json, as_stream, op, query, record_id

TAG = "chat"


def paths() -> Json:
    """The path items of ``api.realtime``'s routes."""
    return {
        "/sessions/{session_id}/events": {
            "parameters": [record_id("session_id")],
            "get": op(
                "Server-sent events of one session (message.created, session.renamed, "
                "...); reconnect with Last-Event-ID to get what was missed. 501 "
                "realtime_unavailable over Supabase's REST API alone (no SUPABASE_DB_URL)",
                {"200": as_stream("An event stream")},
                params=[{"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}],
                tag=TAG,
            ),
        },
        "/ws": {
            "get": op(
                "WebSocket of all the caller's sessions; the token may be passed as "
                "access_token, and last_event_id replays what was missed. 501 "
                "realtime_unavailable over Supabase's REST API alone (no SUPABASE_DB_URL)",
                {"101": {"description": "Switching to the WebSocket protocol"}},
                params=[query("access_token"), query("last_event_id")],
                tag=TAG,
            ),
        },
    }
