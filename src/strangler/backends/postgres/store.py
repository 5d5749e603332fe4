"""``PostgresStore``: the ``ChatStore`` contract on Postgres (Supabase's database), via asyncpg.

* One asyncpg pool, opened lazily (``min_size=0``) so the app starts even while the
  database is down; every call is bounded by the store's timeout.
* ``statement_cache_size`` is configurable: set 0 behind Supavisor's transaction pooler,
  which cannot keep prepared statements.
* Bulk upserts stream rows with binary ``COPY`` into a temporary table and merge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import asyncpg
import orjson

from strangler.backends.postgres.errors import UNREACHABLE, translate_errors
from strangler.backends.validation import (
    check_limit,
    check_message,
    check_session,
    check_title,
)
from strangler.core import budget, ids, origin
from strangler.core.errors import (
    Conflict,
    CorruptRecord,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message, trusted
from strangler.core.normalize import dump_json, utc_ms
from strangler.core.pgcopy import CopyRows
from strangler.core.records import Keyset, Page, StoreLimits, Table

SESSION_COLS = "id, title, created_at, user_id"
MESSAGE_COLS = "id, session_id, sender, content, timestamp, audio, image, pdf"


def _jsonb_encode(value: Any) -> bytes:
    # bytes: JSON text a backfill worker encoded. A JSON value itself is never bytes
    # (normalisation turns bytes into base64 text).
    return b"\x01" + (value if type(value) is bytes else dump_json(value))


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        format="binary",
    )


async def _mark(conn: asyncpg.Connection) -> None:
    """Within a transaction: record its changes as made by the task's marked writer (a
    follower), not by the connection's session default (the facade)."""
    writer = origin.current()
    if writer is not None:
        await conn.execute("SELECT set_config('strangler.origin', $1, true)", writer)


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """What a released connection needs before the next acquirer: strangler sets no session
    state (the realtime listener unlistens itself, schema changes use their own
    connection), so only an unfinished transaction is rolled back. asyncpg's default reset
    costs a round trip on every release, a tenth of a request's time."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _ms(value: dt.datetime) -> dt.datetime:
    # asyncpg gives timestamptz in UTC; rows strangler wrote are already whole milliseconds.
    return value if value.microsecond % 1000 == 0 else utc_ms(value)


def _session(r: Any) -> ChatSession:
    return trusted(
        ChatSession, {"id": r[0], "title": r[1], "created_at": _ms(r[2]), "user_id": r[3]}
    )


def _message(r: Any) -> Message:
    return trusted(
        Message,
        {
            "id": r[0],
            "session_id": r[1],
            "sender": r[2],
            "content": r[3],
            "timestamp": _ms(r[4]),
            "audio": r[5],
            "image": r[6],
            "pdf": r[7],
        },
    )


def _session_row(s: ChatSession) -> tuple[Any, ...]:
    return (s.id, s.title, s.created_at, s.user_id)


def _message_row(m: Message) -> tuple[Any, ...]:
    return (m.id, m.session_id, m.sender, m.content, m.timestamp, m.audio, m.image, m.pdf)


async def _copy(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]] | CopyRows
) -> None:
    """``COPY`` rows into ``table``: tuples (encoded here) or ``CopyRows`` (encoded already)."""
    if isinstance(rows, CopyRows):
        await conn.copy_to_table(
            table, source=memoryview(rows.payload()), columns=columns, format="binary"
        )
    else:
        await conn.copy_records_to_table(table, records=rows, columns=columns)


class PostgresStore:
    """The chat store on Postgres. Owns its asyncpg pool; use it as ``async with``."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        timeout: float = 5.0,
        min_size: int = 0,
        max_size: int = 10,
        statement_cache_size: int = 100,
        limits: StoreLimits | None = None,
        session: dict[str, str] | None = None,
    ) -> None:
        """``session``: settings for every connection's session, such as
        ``strangler.capture = off`` (a bulk load the change log must not record) or
        ``strangler.origin = facade`` (recorded with each change, so a follower knows the
        facade's writes). Only on a direct or session-pooled connection
        (``statement_cache_size`` > 0): through a transaction pooler a session setting
        would leak to other clients, so there it is not set."""
        self._dsn = dsn
        self._session = dict(session or {}) if statement_cache_size > 0 else {}
        self._timeout = timeout
        self._min_size = min_size
        self._max_size = max_size
        self._statement_cache_size = statement_cache_size
        self.limits = limits or StoreLimits()
        self._pool: asyncpg.Pool | None = None
        self._direct_copy: dict[str, bool] = {}

    # --- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        with translate_errors("open pool"):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                statement_cache_size=self._statement_cache_size,
                init=self._init,
                reset=_reset_connection,
            )
        return self

    async def _init(self, conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        for name, value in self._session.items():
            await conn.execute("SELECT set_config($1, $2, false)", name, value)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except (TimeoutError, *UNREACHABLE, asyncpg.PostgresError):
                pool.terminate()

    @asynccontextmanager
    async def connection(
        self, op: str, *, bounded: bool = True
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for strangler's own tables; errors come out translated.
        ``bounded=False`` only for a connection held on purpose (the realtime LISTEN)."""
        async with self._conn(op, bounded=bounded) as conn:
            yield conn

    @asynccontextmanager
    async def _conn(self, op: str, *, bounded: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, its use bounded as a whole by the store's timeout: the wait
        for a connection, every statement and the release together. A server that hangs
        mid-connection (not only one that refuses) fails the call in time: asyncpg's
        command timeout alone bounds one statement, and the release after it would wait
        again for a reset the hung server never answers. A connection whose use ended in
        anything but the server's own error answer is terminated, not reset, so giving it
        back waits for nothing. Within a request, the use gets at most what is left of the
        request's budget (``core.budget``)."""
        if self._pool is None:
            raise StoreUnavailable(
                "postgres: store is not open; use `async with PostgresStore(...)`", store="postgres"
            )
        pool = self._pool
        with translate_errors(op):
            async with contextlib.AsyncExitStack() as deadline:
                timeout = self._timeout
                if bounded:
                    timeout = budget.left(self._timeout, "postgres")
                    await deadline.enter_async_context(asyncio.timeout(timeout))
                conn = await pool.acquire(timeout=timeout)
                try:
                    yield conn
                except BaseException as exc:
                    if not isinstance(exc, asyncpg.PostgresError):
                        conn.terminate()  # mid-statement, or the server went quiet
                    raise
                finally:
                    await pool.release(conn, timeout=self._timeout)

    @asynccontextmanager
    async def _write(self, op: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a write of one statement. Inside a follower's block
        (``core.origin.writing_as``) it runs in a transaction that tells the change log
        whose write it is; elsewhere it runs on its own, as before."""
        async with self._conn(op) as conn:
            if origin.current() is None:
                yield conn
                return
            async with conn.transaction():
                await _mark(conn)
                yield conn

    @property
    def timeout(self) -> float:
        """Seconds one use of a connection may take (``STRANGLER_STORE_TIMEOUT``)."""
        return self._timeout

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self._conn("ping") as conn:
            await conn.fetchval("SELECT 1")
        return time.perf_counter() - start

    # --- sessions ----------------------------------------------------------------------
    async def create_session(self, session: ChatSession) -> ChatSession:
        check_session(session, self.limits)
        async with self._write("create session") as conn:
            await conn.execute(
                f"INSERT INTO chat_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4)",
                *_session_row(session),
            )
        return session

    async def get_session(self, session_id: IdLike) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        async with self._conn("get session") as conn:
            row = await conn.fetchrow(
                f"SELECT {SESSION_COLS} FROM chat_sessions WHERE id = $1", sid
            )
        if row is None:
            raise NotFound(f"session {sid} not found", store="postgres")
        return _session(row)

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        check_title(title, self.limits)
        async with self._write("rename session") as conn:
            row = await conn.fetchrow(
                f"UPDATE chat_sessions SET title = $2 WHERE id = $1 RETURNING {SESSION_COLS}",
                sid,
                title,
            )
        if row is None:
            raise NotFound(f"session {sid} not found", store="postgres")
        return _session(row)

    async def delete_session(self, session_id: IdLike) -> None:
        sid = ids.parse_id(session_id, field="session_id")
        async with self._write("delete session") as conn:
            status = await conn.execute("DELETE FROM chat_sessions WHERE id = $1", sid)
        if status == "DELETE 0":
            raise NotFound(f"session {sid} not found", store="postgres")

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
        where = ["user_id = $1"]
        args: list[Any] = [user_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(f"title ILIKE {arg('%' + escaped + '%')}")
        if created_from is not None:
            where.append(f"created_at >= {arg(created_from)}")
        if created_to is not None:
            where.append(f"created_at < {arg(created_to)}")
        if after is not None:
            where.append(f"(created_at, id) < ({arg(after.at)}, {arg(after.id)})")
        sql = (
            f"SELECT {SESSION_COLS} FROM chat_sessions WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}"
        )
        async with self._conn("list sessions") as conn:
            rows = await conn.fetch(sql, *args)
        return Page(items=[_session(r) for r in rows[:limit]], has_more=len(rows) > limit)

    # --- messages ----------------------------------------------------------------------
    async def add_message(self, message: Message) -> Message:
        async with self._write("add message") as conn:
            await conn.execute(
                f"INSERT INTO messages ({MESSAGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *self.message_row(message),
            )
        return message

    def message_row(self, message: Message) -> tuple[Any, ...]:
        """The message checked against this store's limits, as ``MESSAGE_COLS`` values (for
        statements that insert a message along with something else)."""
        check_message(message, self.limits)
        return _message_row(message)

    async def read_many(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ChatSession | Message | CorruptRecord]:
        """``BulkReader``: one ``= ANY`` query."""
        cols, decode = (
            (SESSION_COLS, _session) if table == "chat_sessions" else (MESSAGE_COLS, _message)
        )
        async with self._conn(f"read {table}") as conn:
            rows = await conn.fetch(
                f"SELECT {cols} FROM {table} WHERE id = ANY($1::uuid[])", list(record_ids)
            )
        return {r[0]: decode(r) for r in rows}

    async def get_message(self, message_id: IdLike) -> Message:
        mid = ids.parse_id(message_id, field="message_id")
        async with self._conn("get message") as conn:
            row = await conn.fetchrow(f"SELECT {MESSAGE_COLS} FROM messages WHERE id = $1", mid)
        if row is None:
            raise NotFound(f"message {mid} not found", store="postgres")
        return _message(row)

    async def delete_many(self, table: Table, record_ids: Sequence[uuid.UUID]) -> None:
        """``BulkDeleter``: delete what this store holds among ``record_ids`` in one
        statement (a session's messages go with it, by the foreign key's cascade)."""
        if not record_ids:
            return
        statement = (
            "DELETE FROM chat_sessions WHERE id = ANY($1::uuid[])"
            if table == "chat_sessions"
            else "DELETE FROM messages WHERE id = ANY($1::uuid[])"
        )
        async with self._write(f"delete {table}") as conn:
            await conn.execute(statement, list(record_ids))

    async def delete_message(self, message_id: IdLike) -> None:
        mid = ids.parse_id(message_id, field="message_id")
        async with self._write("delete message") as conn:
            status = await conn.execute("DELETE FROM messages WHERE id = $1", mid)
        if status == "DELETE 0":
            raise NotFound(f"message {mid} not found", store="postgres")

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        sid = ids.parse_id(session_id, field="session_id")
        limit = check_limit(limit)
        base = f"SELECT {MESSAGE_COLS} FROM messages WHERE session_id = $1"
        async with self._conn("history") as conn:
            if after is not None and before is not None:
                raise InvalidInput("give either after or before, not both")
            if after is not None:
                rows = await conn.fetch(
                    f"{base} AND (timestamp, id) > ($2, $3) ORDER BY timestamp, id LIMIT $4",
                    sid,
                    after.at,
                    after.id,
                    limit + 1,
                )
            elif before is not None:
                rows = await conn.fetch(
                    f"{base} AND (timestamp, id) < ($2, $3) "
                    "ORDER BY timestamp DESC, id DESC LIMIT $4",
                    sid,
                    before.at,
                    before.id,
                    limit + 1,
                )
            else:
                rows = await conn.fetch(f"{base} ORDER BY timestamp, id LIMIT $2", sid, limit + 1)
        items = [_message(r) for r in rows[:limit]]
        if before is not None:
            items.reverse()
        return Page(items=items, has_more=len(rows) > limit)

    # --- bulk and scans ----------------------------------------------------------------
    async def _copy_merge(
        self,
        table: str,
        cols: str,
        updates: str,
        records: list[tuple[Any, ...]] | CopyRows,
        op: str,
        overwrite: bool,
    ) -> int:
        columns = [c.strip() for c in cols.split(",")]
        stage = f"_strangler_stage_{table}"
        async with self._conn(op) as conn, conn.transaction():
            await _mark(conn)
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await _copy(conn, stage, columns, records)
            action = f"DO UPDATE SET {updates}" if overwrite else "DO NOTHING"
            status = await conn.execute(
                f"INSERT INTO {table} ({cols}) SELECT DISTINCT ON (id) {cols} FROM {stage} "
                f"ORDER BY id ON CONFLICT (id) {action}"
            )
        return int(status.rsplit(" ", 1)[-1])

    async def insert_rows(self, table: Table, rows: CopyRows) -> int:
        """Insert rows encoded by the backfill's workers (``backends.pgcopy``), never
        overwriting: the backfill's load. Returns how many were inserted.

        ``COPY`` goes straight into the table while no row exists yet, the common case in
        a backfill, at the speed of a raw ``COPY``. A batch that meets an existing id (or a
        deleted session) is rolled back and merged instead, and so are the following
        batches until one merges without meeting any.
        """
        if not rows:
            return 0
        cols = SESSION_COLS if table == "chat_sessions" else MESSAGE_COLS
        if self._direct_copy.get(table, True):
            try:
                async with self._conn(f"load {table}") as conn, conn.transaction():
                    await _copy(conn, table, [c.strip() for c in cols.split(",")], rows)
                return len(rows)
            except (Conflict, NotFound):
                self._direct_copy[table] = False
        inserted = await self._copy_merge(table, cols, "", rows, f"load {table}", False)
        self._direct_copy[table] = inserted == len(rows)
        return inserted

    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        if not sessions:
            return 0
        for s in sessions:
            check_session(s, None)
        return await self._copy_merge(
            "chat_sessions",
            SESSION_COLS,
            "title = EXCLUDED.title, created_at = EXCLUDED.created_at, user_id = EXCLUDED.user_id",
            [_session_row(s) for s in sessions],
            "upsert sessions",
            overwrite,
        )

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        if not messages:
            return 0
        for m in messages:
            check_message(m, None)
        return await self._copy_merge(
            "messages",
            MESSAGE_COLS,
            "session_id = EXCLUDED.session_id, sender = EXCLUDED.sender, "
            "content = EXCLUDED.content, timestamp = EXCLUDED.timestamp, "
            "audio = EXCLUDED.audio, image = EXCLUDED.image, pdf = EXCLUDED.pdf",
            [_message_row(m) for m in messages],
            "upsert messages",
            overwrite,
        )

    def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        return self._scan(
            "chat_sessions", SESSION_COLS, "created_at", _session, batch_size, after, since
        )

    def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        return self._scan("messages", MESSAGE_COLS, "timestamp", _message, batch_size, after, since)

    async def _scan(
        self,
        table: str,
        cols: str,
        time_col: str,
        build: Callable[[Any], Any],
        batch_size: int,
        after: uuid.UUID | None,
        since: dt.datetime | None,
    ) -> AsyncIterator[list[Any]]:
        last = after or uuid.UUID(int=0)
        first = after is None
        window = f" AND {time_col} >= $3" if since is not None else ""
        while True:
            async with self._conn(f"scan {table}") as conn:
                op = ">=" if first else ">"
                rows = await conn.fetch(
                    f"SELECT {cols} FROM {table} WHERE id {op} $1{window} ORDER BY id LIMIT $2",
                    last,
                    batch_size,
                    *([] if since is None else [since]),
                )
            first = False
            if not rows:
                return
            yield [build(r) for r in rows]
            last = rows[-1][0]
            if len(rows) < batch_size:
                return

    async def count(self, table: Table) -> int:
        if table not in ("chat_sessions", "messages"):
            raise InvalidInput(f"unknown table {table!r}")
        async with self._conn(f"count {table}") as conn:
            n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return n
