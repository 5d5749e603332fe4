"""Binary COPY rows (``backends.pgcopy``): what the backfill's workers encode loads into
Postgres exactly like asyncpg's own encoding of the same tuples, and reads back."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from strangler.backends.postgres.store import MESSAGE_COLS, SESSION_COLS, PostgresStore
from strangler.core.pgcopy import CopyRows, RowWriter

UTC = dt.UTC


def _sessions() -> list[tuple[Any, ...]]:
    return [
        (str(uuid.uuid4()), "Trip", dt.datetime(2024, 3, 1, 12, 0, 0, 123000, UTC), "u1"),
        (str(uuid.uuid4()), "Ωμέγα 東京 🚀", dt.datetime(1970, 1, 1, tzinfo=UTC), "42"),
        (str(uuid.uuid4()), "", dt.datetime(9999, 12, 31, 23, 59, 59, 999000, UTC), ""),
    ]


def _messages(sessions: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    big = "x" * 200_000
    return [
        (str(uuid.uuid4()), sessions[0][0], "user", b'{"text": "hi"}', sessions[0][2],
         None, None, None),
        (str(uuid.uuid4()), sessions[1][0], "assistant", b'{"a": [1, 2.5, null, true]}',
         dt.datetime(1999, 12, 31, 23, 59, 59, 1000, UTC), "QUJD", "aW1n",
         "data:application/pdf;base64,JVBER"),
        (str(uuid.uuid4()), sessions[2][0], "user", f'{{"text": "{big}"}}'.encode(),
         sessions[2][2], None, "\ufffd", None),
    ]  # fmt: skip


def _encode(table: str, rows: list[tuple[Any, ...]]) -> CopyRows:
    writer = RowWriter(table)  # type: ignore[arg-type]
    for row in rows:
        writer.row(row)
    return writer.done()


async def _dump(store: PostgresStore, table: str, cols: str) -> list[tuple[Any, ...]]:
    async with store.connection("dump") as conn:
        return [tuple(r) for r in await conn.fetch(f"SELECT {cols} FROM {table} ORDER BY id")]


async def test_encoded_rows_load_like_asyncpgs_own_copy(clean_pg: str) -> None:
    sessions = _sessions()
    messages = _messages(sessions)
    async with PostgresStore(clean_pg) as store:
        assert await store.insert_rows("chat_sessions", _encode("chat_sessions", sessions)) == 3
        assert await store.insert_rows("messages", _encode("messages", messages)) == 3
        ours = (
            await _dump(store, "chat_sessions", SESSION_COLS),
            await _dump(store, "messages", MESSAGE_COLS),
        )
        async with store.connection("reset") as conn:
            await conn.execute("TRUNCATE chat_sessions CASCADE")
            for table, cols, rows in (
                ("chat_sessions", SESSION_COLS, sessions),
                ("messages", MESSAGE_COLS, messages),
            ):
                await conn.copy_records_to_table(
                    table, records=rows, columns=[c.strip() for c in cols.split(",")]
                )
        theirs = (
            await _dump(store, "chat_sessions", SESSION_COLS),
            await _dump(store, "messages", MESSAGE_COLS),
        )
    assert ours == theirs
    assert len(ours[1]) == 3 and ours[1][0][3] is not None


def test_rows_read_back_as_the_tuples_they_were_made_from() -> None:
    sessions = _sessions()
    messages = _messages(sessions)
    for table, rows in (("chat_sessions", sessions), ("messages", messages)):
        encoded = _encode(table, rows)
        assert encoded.tuples() == rows
        assert [encoded.id_text(i) for i in range(len(rows))] == [r[0] for r in rows]
        assert encoded.timestamp(1) == rows[1][4 if table == "messages" else 2]
    assert _encode("messages", messages).refs == [uuid.UUID(s[0]).bytes for s in sessions]


def test_a_subset_keeps_the_chosen_rows_in_order() -> None:
    messages = _messages(_sessions())
    encoded = _encode("messages", messages)
    part = encoded.subset([2, 0])
    assert part.tuples() == [messages[2], messages[0]]
    assert part.ids == [encoded.ids[2], encoded.ids[0]]
    assert part.refs == [encoded.refs[2], encoded.refs[0]]  # type: ignore[index]
    assert len(encoded.subset([])) == 0 and encoded.subset([]).payload().endswith(b"\xff\xff")


def test_text_utf8_cannot_hold_is_refused_and_nothing_is_added() -> None:
    writer = RowWriter("chat_sessions")
    with pytest.raises(UnicodeEncodeError):
        writer.session(str(uuid.uuid4()), "lone \ud800", dt.datetime(2024, 1, 1, tzinfo=UTC), "u")
    assert len(writer) == 0 and writer.done().data == b""
