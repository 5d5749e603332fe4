"""The chat store over Supabase's REST API (PostgREST), with supabase-py's async client.

For users who have ``SUPABASE_URL`` and the service-role ``SUPABASE_KEY`` but no database
password. Every ``ChatStore`` operation maps onto PostgREST's documented API:

* **One tuned HTTP client.** The store builds one ``httpx.AsyncClient`` (keep-alive limits,
  timeouts, HTTP/1.1: HTTP/2 is an explicit choice, ``http2=True``) and hands it to
  supabase-py, which does not close a client it was given, so the store closes it.
* **No silent truncation.** PostgREST caps a response at ``max-rows`` (1,000 on Supabase).
  Reads that may want more page with ``Range`` over a stable order (or a key), and stop
  only at a short page.
* **Bulk upserts** are chunked by rows and by bytes, with ``default_to_null=True`` chosen
  explicitly: every row carries every column, so a missing key can never mean "keep".
* **Errors** map onto the errors tree: ``23505`` → ``Conflict``; ``23503`` → ``NotFound``
  (the referenced session is missing); ``22P02``/``22007``/``23502``/``23514`` →
  ``InvalidInput``; ``PGRST*`` codes, HTTP 5xx, non-JSON bodies, timeouts and transport
  failures → ``StoreUnavailable``. Only GET/HEAD requests are retried (by postgrest-py,
  on 503/520 and network failures); writes never are.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from strangler.backends.supabase_rest.errors import translate_errors
from strangler.backends.validation import check_limit, check_message, check_session
from strangler.core import ids
from strangler.core.errors import InvalidInput, NotFound, StoreUnavailable
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message, trusted
from strangler.core.normalize import iso_z, utc_ms
from strangler.core.pgcopy import CopyRows
from strangler.core.records import Keyset, Page, StoreLimits, Table

#: PostgREST's row cap on Supabase (``max-rows``); reads never ask for more per request.
PAGE = 1000
#: Bulk upserts: at most this many rows, and about this many bytes, per request.
CHUNK_ROWS = 500
CHUNK_BYTES = 4 * 1024 * 1024

_SESSION_COLS = "id,title,created_at,user_id"
_MESSAGE_COLS = "id,session_id,sender,content,timestamp,audio,image,pdf"


def _ts(value: Any) -> dt.datetime:
    return utc_ms(dt.datetime.fromisoformat(value))


def _session(row: dict[str, Any]) -> ChatSession:
    return trusted(
        ChatSession,
        {
            "id": uuid.UUID(row["id"]),
            "title": row["title"],
            "created_at": _ts(row["created_at"]),
            "user_id": row["user_id"],
        },
    )


def _message(row: dict[str, Any]) -> Message:
    return trusted(
        Message,
        {
            "id": uuid.UUID(row["id"]),
            "session_id": uuid.UUID(row["session_id"]),
            "sender": row["sender"],
            "content": row["content"],
            "timestamp": _ts(row["timestamp"]),
            "audio": row.get("audio"),
            "image": row.get("image"),
            "pdf": row.get("pdf"),
        },
    )


def session_body(s: ChatSession) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "title": s.title,
        "created_at": iso_z(s.created_at),
        "user_id": s.user_id,
    }


def message_body(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.id),
        "session_id": str(m.session_id),
        "sender": m.sender,
        "content": m.content,
        "timestamp": iso_z(m.timestamp),
        "audio": m.audio,
        "image": m.image,
        "pdf": m.pdf,
    }


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Runs of at most ``CHUNK_ROWS`` rows and about ``CHUNK_BYTES`` bytes of JSON."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        n = len(orjson.dumps(row))
        if chunk and (len(chunk) >= CHUNK_ROWS or size + n > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += n
    if chunk:
        yield chunk


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` literally, as a substring."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _pg(value: dt.datetime) -> str:
    """A timestamp as PostgREST filter text (quoted, since it holds ``:`` and ``.``)."""
    return f'"{iso_z(value)}"'


class SupabaseRestStore:
    """The chat store over PostgREST. Use it as ``async with``."""

    name = "supabase_rest"

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 20,
        http2: bool = False,
        limits: StoreLimits | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = key
        self._timeout = timeout
        self._max_connections = max_connections
        self._http2 = http2
        self._transport = transport  # tests pass httpx.MockTransport
        self.limits = limits or StoreLimits()
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
                keepalive_expiry=30.0,
            ),
            http2=self._http2,
            transport=self._transport,
        )
        self._client = await acreate_client(
            self.url,
            self._key,
            options=AsyncClientOptions(
                httpx_client=self._http,
                postgrest_client_timeout=self._timeout,
                postgrest_client_retry=True,  # GET/HEAD only: reads are idempotent
                auto_refresh_token=False,
                persist_session=False,
            ),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()  # supabase-py leaves a client it was given open
        self._http = self._client = None

    def _table(self, name: str) -> Any:
        if self._client is None:
            raise StoreUnavailable(
                "supabase: store is not open; use `async with SupabaseRestStore(...)`",
                store="supabase_rest",
            )
        return self._client.table(name)

    async def ping(self) -> float:
        start = time.perf_counter()
        with translate_errors("ping"):
            await self._table("chat_sessions").select("id").limit(1).execute()
        return time.perf_counter() - start

    async def _all(self, query: Callable[[], Any], want: int, op: str) -> list[dict[str, Any]]:
        """Up to ``want`` rows of an ordered query, paging past PostgREST's row cap."""
        rows: list[dict[str, Any]] = []
        while len(rows) < want:
            size = min(PAGE, want - len(rows))
            with translate_errors(op):
                page = await query().range(len(rows), len(rows) + size - 1).execute()
            rows.extend(page.data)
            if len(page.data) < size:
                break
        return rows

    # --- sessions ----------------------------------------------------------------------
    async def create_session(self, session: ChatSession) -> ChatSession:
        check_session(session, self.limits)
        with translate_errors("create session"):
            await (
                self._table("chat_sessions")
                .insert(session_body(session), returning="minimal", default_to_null=True)
                .execute()
            )
        return session

    async def get_session(self, session_id: IdLike) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        with translate_errors("get session"):
            res = await (
                self._table("chat_sessions").select(_SESSION_COLS).eq("id", str(sid)).execute()
            )
        if not res.data:
            raise NotFound(f"session {sid} not found")
        return _session(res.data[0])

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        current = await self.get_session(sid)
        check_session(current.model_copy(update={"title": title}), self.limits)
        with translate_errors("rename session"):
            res = await (
                self._table("chat_sessions").update({"title": title}).eq("id", str(sid)).execute()
            )
        if not res.data:
            raise NotFound(f"session {sid} not found")
        return _session(res.data[0])

    async def delete_session(self, session_id: IdLike) -> None:
        sid = ids.parse_id(session_id, field="session_id")
        with translate_errors("delete session"):
            res = await self._table("chat_sessions").delete().eq("id", str(sid)).execute()
        if not res.data:
            raise NotFound(f"session {sid} not found")

    async def list_sessions(
        self,
        user_id: str,
        *,
        search: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        limit: int = 50,
        after: Keyset | None = None,
    ) -> Page[ChatSession]:
        limit = check_limit(limit)

        def query() -> Any:
            q = self._table("chat_sessions").select(_SESSION_COLS).eq("user_id", user_id)
            if search:
                q = q.ilike("title", _like(search))
            if created_from is not None:
                q = q.gte("created_at", iso_z(created_from))
            if created_to is not None:
                q = q.lt("created_at", iso_z(created_to))
            if after is not None:
                q = q.or_(
                    f"created_at.lt.{_pg(after.at)},"
                    f"and(created_at.eq.{_pg(after.at)},id.lt.{after.id})"
                )
            return q.order("created_at", desc=True).order("id", desc=True)

        rows = await self._all(query, limit + 1, "list sessions")
        return Page(items=[_session(r) for r in rows[:limit]], has_more=len(rows) > limit)

    # --- messages ----------------------------------------------------------------------
    async def add_message(self, message: Message) -> Message:
        check_message(message, self.limits)
        with translate_errors("add message"):
            await (
                self._table("messages")
                .insert(message_body(message), returning="minimal", default_to_null=True)
                .execute()
            )
        return message

    async def get_message(self, message_id: IdLike) -> Message:
        mid = ids.parse_id(message_id, field="message_id")
        with translate_errors("get message"):
            res = await self._table("messages").select(_MESSAGE_COLS).eq("id", str(mid)).execute()
        if not res.data:
            raise NotFound(f"message {mid} not found")
        return _message(res.data[0])

    async def delete_message(self, message_id: IdLike) -> None:
        mid = ids.parse_id(message_id, field="message_id")
        with translate_errors("delete message"):
            res = await self._table("messages").delete().eq("id", str(mid)).execute()
        if not res.data:
            raise NotFound(f"message {mid} not found")

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        limit = check_limit(limit)
        if after is not None and before is not None:
            raise InvalidInput("give after or before, not both")
        sid = ids.parse_id(session_id, field="session_id")
        backwards = before is not None

        def query() -> Any:
            q = self._table("messages").select(_MESSAGE_COLS).eq("session_id", str(sid))
            if after is not None:
                q = q.or_(
                    f"timestamp.gt.{_pg(after.at)},"
                    f"and(timestamp.eq.{_pg(after.at)},id.gt.{after.id})"
                )
            if before is not None:
                q = q.or_(
                    f"timestamp.lt.{_pg(before.at)},"
                    f"and(timestamp.eq.{_pg(before.at)},id.lt.{before.id})"
                )
            return q.order("timestamp", desc=backwards).order("id", desc=backwards)

        rows = await self._all(query, limit + 1, "history")
        items = [_message(r) for r in rows[:limit]]
        if backwards:
            items.reverse()
        return Page(items=items, has_more=len(rows) > limit)

    # --- bulk and scans ----------------------------------------------------------------
    async def _upsert(
        self, table: str, bodies: list[dict[str, Any]], overwrite: bool, op: str
    ) -> int:
        written = 0
        for chunk in _chunks(bodies):
            with translate_errors(op):
                res = await (
                    self._table(table)
                    .upsert(
                        chunk,
                        on_conflict="id",
                        ignore_duplicates=not overwrite,
                        default_to_null=True,  # every row names every column
                        returning="minimal",
                        count="exact",
                    )
                    .execute()
                )
            written += res.count if res.count is not None else len(chunk)
        return written

    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        for s in sessions:
            check_session(s, None)
        return await self._upsert(
            "chat_sessions", [session_body(s) for s in sessions], overwrite, "upsert sessions"
        )

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        for m in messages:
            check_message(m, None)
        return await self._upsert(
            "messages", [message_body(m) for m in messages], overwrite, "upsert messages"
        )

    async def insert_rows(self, table: Table, encoded: CopyRows) -> int:
        """The backfill's load (rows encoded for ``COPY`` by ``migrate.prepare``, read back
        here), never overwriting. Slower than ``PostgresStore``'s COPY: JSON over HTTPS in
        chunks."""
        rows = encoded.tuples()
        if table == "chat_sessions":
            bodies = [
                {"id": str(r[0]), "title": r[1], "created_at": iso_z(r[2]), "user_id": r[3]}
                for r in rows
            ]
        else:
            bodies = [
                {
                    "id": str(r[0]),
                    "session_id": str(r[1]),
                    "sender": r[2],
                    "content": orjson.loads(r[3]) if isinstance(r[3], bytes) else r[3],
                    "timestamp": iso_z(r[4]),
                    "audio": r[5],
                    "image": r[6],
                    "pdf": r[7],
                }
                for r in rows
            ]
        return await self._upsert(table, bodies, False, f"load {table}")

    def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        return self._scan(
            "chat_sessions", _SESSION_COLS, "created_at", _session, batch_size, after, since
        )

    def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        return self._scan(
            "messages", _MESSAGE_COLS, "timestamp", _message, batch_size, after, since
        )

    async def _scan(
        self,
        table: str,
        cols: str,
        time_col: str,
        build: Callable[[dict[str, Any]], Any],
        batch_size: int,
        after: uuid.UUID | None,
        since: dt.datetime | None,
    ) -> AsyncIterator[list[Any]]:
        """Keyset pages by id: each request asks for ids above the last one seen."""
        size = min(batch_size, PAGE)
        last = after
        while True:
            q = self._table(table).select(cols)
            if last is not None:
                q = q.gt("id", str(last))
            if since is not None:
                q = q.gte(time_col, iso_z(since))
            with translate_errors(f"scan {table}"):
                res = await q.order("id").limit(size).execute()
            if not res.data:
                return
            yield [build(r) for r in res.data]
            last = uuid.UUID(res.data[-1]["id"])
            if len(res.data) < size:
                return

    async def count(self, table: Table) -> int:
        if table not in ("chat_sessions", "messages"):
            raise InvalidInput(f"unknown table {table!r}")
        with translate_errors(f"count {table}"):
            res = await self._table(table).select("id", count="exact", head=True).execute()
        return int(res.count or 0)
