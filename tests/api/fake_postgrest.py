"""A small PostgREST stand-in on a real socket, for the API over Supabase's REST API alone.

No PostgREST can run here, so this answers the requests the REST store sends (checked
request by request in ``tests/backends/test_supabase_rest.py``) from two in-memory tables:
``eq`` and ``ilike`` filters, ``order``, ``offset`` and ``limit``, inserts, updates and
deletes with ``Prefer: return=...``, the messages' foreign key (23503) with its cascade,
and the primary key (23505). Cursor filters (``or=``) are not understood and answered 501,
so a test that pages past the first page fails loudly instead of passing by accident.
Every request is recorded, with its ``apikey`` header."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from aiohttp import web

TABLES = ("chat_sessions", "messages")


class FakePostgREST:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TABLES}
        self.requests: list[tuple[str, str, str]] = []  # method, path with query, apikey
        self.app = web.Application()
        self.app.router.add_route("*", "/rest/v1/{table}", self.handle)

    def _error(self, status: int, code: str, message: str) -> web.Response:
        body = {"code": code, "message": message, "details": None, "hint": None}
        return web.json_response(body, status=status)

    def _match(self, request: web.Request, table: str) -> list[dict[str, Any]] | web.Response:
        rows = list(self.rows[table].values())
        for key, value in request.query.items():
            if key in ("select", "order", "offset", "limit", "on_conflict", "columns"):
                continue
            op, _, operand = value.partition(".")
            if op == "eq":
                rows = [r for r in rows if str(r.get(key)) == operand]
            elif op == "ilike":
                pattern = operand.replace("%", "*").lower()
                rows = [r for r in rows if fnmatch.fnmatch(str(r.get(key, "")).lower(), pattern)]
            else:
                return self._error(501, "PGRST000", f"the fake does not understand {key}={value}")
        for part in reversed(request.query.get("order", "").split(",")):
            if part:
                column, _, direction = part.partition(".")
                rows.sort(key=lambda r: str(r.get(column)), reverse=direction.startswith("desc"))
        start = int(request.query.get("offset", 0))
        limit = request.query.get("limit")
        return rows[start : start + int(limit)] if limit else rows[start:]

    async def handle(self, request: web.Request) -> web.Response:
        table = request.match_info["table"]
        self.requests.append((request.method, request.path_qs, request.headers.get("apikey", "")))
        if table not in self.rows:
            return self._error(404, "42P01", f'relation "public.{table}" does not exist')
        representation = "return=representation" in request.headers.get("Prefer", "")
        if request.method == "POST":
            body = await request.json()
            for row in body if isinstance(body, list) else [body]:
                if row["id"] in self.rows[table]:
                    return self._error(409, "23505", "duplicate key value")
                if table == "messages" and row["session_id"] not in self.rows["chat_sessions"]:
                    return self._error(409, "23503", "violates foreign key constraint")
                self.rows[table][row["id"]] = row
            return web.Response(status=201)
        found = self._match(request, table)
        if isinstance(found, web.Response):
            return found
        if request.method == "GET":
            return web.json_response(found)
        if request.method == "PATCH":
            changes = await request.json()
            for row in found:
                row.update(changes)
        elif request.method == "DELETE":
            for row in found:
                del self.rows[table][row["id"]]
                if table == "chat_sessions":
                    for m in [
                        m for m in self.rows["messages"].values() if m["session_id"] == row["id"]
                    ]:
                        del self.rows["messages"][m["id"]]
        else:
            return self._error(405, "PGRST000", request.method)
        if representation:
            return web.Response(text=json.dumps(found), content_type="application/json")
        return web.Response(status=204)
