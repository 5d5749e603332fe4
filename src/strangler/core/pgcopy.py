"""Rows in PostgreSQL's binary ``COPY`` format, built where the documents are transformed.

The backfill's workers encode each chunk's rows here, so the loading process sends one
ready buffer per chunk (``COPY ... FROM STDIN (FORMAT binary)``) instead of unpickling and
encoding thousands of tuples itself. Alongside the buffer travel what the loader needs
row by row without decoding it: each row's id (16 bytes), a message's session id, and
where each row ends, so rows can be dropped (a duplicate, an orphan) by slicing.

Stores that cannot take ``COPY`` (the REST store) read the rows back as tuples with
:meth:`CopyRows.tuples`.

Column order is ``backends.postgres.SESSION_COLS`` / ``MESSAGE_COLS``:

* ``chat_sessions``: id uuid, title text, created_at timestamptz, user_id text
* ``messages``: id uuid, session_id uuid, sender text, content jsonb, timestamp
  timestamptz, audio text, image text, pdf text
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from array import array
from typing import Any

from strangler.core.ids import uuid_bytes_from_objectid
from strangler.core.records import Table

#: ``PGCOPY\n\377\r\n\0``, no flags, no header extension.
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_NULL = b"\xff\xff\xff\xff"
_MESSAGE_IDS = struct.Struct("!hi16si16si")  # 8 fields; id; session_id; sender's length
_SESSION_ID = struct.Struct("!hi16si")  # 4 fields; id; title's length
_JSONB = struct.Struct("!ib")  # length; jsonb version 1
_TIME = struct.Struct("!iq")  # 8; microseconds since 2000-01-01 UTC
_LEN = struct.Struct("!i")
_INT64 = struct.Struct("!q")


def uuid_bytes(text: str) -> bytes:
    """The 16 bytes of a UUID given as canonical text (what the transform's rows hold)."""
    return bytes.fromhex(text.replace("-", ""))


def _micros(value: dt.datetime) -> int:
    return (value - _EPOCH) // _US


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return _LEN.pack(len(data)) + data


class RowWriter:
    """Encodes rows of one table; :meth:`done` returns them as ``CopyRows``.

    Text must be valid UTF-8 (``UnicodeEncodeError`` otherwise, and nothing is added), and
    datetimes timezone-aware."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._parts: list[bytes] = []
        self._ends = array("q")
        self._size = 0
        self._ids: list[bytes] = []
        self._refs: list[bytes] = []

    def __len__(self) -> int:
        return len(self._ids)

    def _add(self, row: bytes, id16: bytes) -> None:
        self._parts.append(row)
        self._size += len(row)
        self._ends.append(self._size)
        self._ids.append(id16)

    def message(
        self,
        id_text: str,
        session_text: str,
        sender: str,
        content: bytes,
        timestamp: dt.datetime,
        audio: str | None,
        image: str | None,
        pdf: str | None,
    ) -> None:
        """One ``messages`` row; ``content`` is its JSON text."""
        self._message(
            uuid_bytes(id_text), uuid_bytes(session_text), sender, content, timestamp,
            audio, image, pdf,
        )  # fmt: skip

    def message_oids(
        self,
        oid_hex: str,
        session_oid_hex: str,
        sender: str,
        content: bytes,
        timestamp: dt.datetime,
        audio: str | None,
        image: str | None,
        pdf: str | None,
    ) -> None:
        """Like :meth:`message`, with both ids given as legacy ObjectIds (24 lower-case hex
        digits), mapped as DESIGN.md says: ``o[0:6] 8000 8000 o[6:12]``."""
        self._message(
            uuid_bytes_from_objectid(bytes.fromhex(oid_hex)),
            uuid_bytes_from_objectid(bytes.fromhex(session_oid_hex)),
            sender, content, timestamp, audio, image, pdf,
        )  # fmt: skip

    def _message(
        self,
        id16: bytes,
        sid16: bytes,
        sender: str,
        content: bytes,
        timestamp: dt.datetime,
        audio: str | None,
        image: str | None,
        pdf: str | None,
    ) -> None:
        s = sender.encode()
        row = b"".join(
            (
                _MESSAGE_IDS.pack(8, 16, id16, 16, sid16, len(s)),
                s,
                _JSONB.pack(len(content) + 1, 1),
                content,
                _TIME.pack(8, _micros(timestamp)),
                _text(audio),
                _text(image),
                _text(pdf),
            )
        )
        self._add(row, id16)
        self._refs.append(sid16)

    def session(self, id_text: str, title: str, created_at: dt.datetime, user_id: str) -> None:
        """One ``chat_sessions`` row."""
        id16, t = uuid_bytes(id_text), title.encode()
        row = b"".join(
            (
                _SESSION_ID.pack(4, 16, id16, len(t)),
                t,
                _TIME.pack(8, _micros(created_at)),
                _text(user_id),
            )
        )
        self._add(row, id16)

    def row(self, values: tuple[Any, ...]) -> None:
        """A row in column order (``migrate.prepare``'s tuples: ids as text)."""
        if self.table == "messages":
            self.message(*values)
        else:
            self.session(*values)

    def done(self) -> CopyRows:
        return CopyRows(
            self.table, b"".join(self._parts), self._ends, self._ids, self._refs or None
        )


class CopyRows:
    """Encoded rows of one table: ``data`` (rows back to back, no header), ``ends[i]`` the
    offset where row ``i`` ends, ``ids[i]`` its id and, for messages, ``refs[i]`` its
    session id (16 bytes each). Cheap to pickle: a few flat objects per chunk."""

    __slots__ = ("data", "ends", "ids", "refs", "table")

    def __init__(
        self,
        table: Table,
        data: bytes,
        ends: array[int],
        ids: list[bytes],
        refs: list[bytes] | None,
    ) -> None:
        self.table, self.data, self.ends, self.ids, self.refs = table, data, ends, ids, refs

    @classmethod
    def empty(cls, table: Table) -> CopyRows:
        return RowWriter(table).done()

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.table, self.data, self.ends, self.ids, self.refs)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.table, self.data, self.ends, self.ids, self.refs = state

    def _span(self, i: int) -> tuple[int, int]:
        return (self.ends[i - 1] if i else 0), self.ends[i]

    def subset(self, keep: list[int]) -> CopyRows:
        """Rows ``keep`` (indexes, in order) as a new ``CopyRows``."""
        parts, ends, size = [], array("q"), 0
        for i in keep:
            start, end = self._span(i)
            parts.append(self.data[start:end])
            size += end - start
            ends.append(size)
        refs = None if self.refs is None else [self.refs[i] for i in keep]
        return CopyRows(self.table, b"".join(parts), ends, [self.ids[i] for i in keep], refs)

    def payload(self) -> bytes:
        """The whole ``COPY ... (FORMAT binary)`` input."""
        return HEADER + self.data + TRAILER

    def id_text(self, i: int) -> str:
        return str(uuid.UUID(bytes=self.ids[i]))

    def tuples(self) -> list[tuple[Any, ...]]:
        """Every row decoded to column order, ids as text and ``content`` as JSON text: the
        rows ``migrate.prepare`` made before encoding."""
        return [self._decode(i) for i in range(len(self))]

    def _decode(self, i: int) -> tuple[Any, ...]:
        start, end = self._span(i)
        row = memoryview(self.data)[start:end]
        pos, fields = 2, []
        for _ in range(int.from_bytes(row[:2], "big")):
            size = _LEN.unpack_from(row, pos)[0]
            pos += 4
            fields.append(None if size < 0 else bytes(row[pos : pos + size]))
            pos += max(size, 0)
        if self.table == "messages":
            mid, sid, sender, content, ts, audio, image, pdf = fields
            return (
                str(uuid.UUID(bytes=mid)),
                str(uuid.UUID(bytes=sid)),
                _str(sender),
                None if content is None else content[1:],
                _time(ts),
                _str(audio),
                _str(image),
                _str(pdf),
            )
        sid, title, created_at, user_id = fields
        return (str(uuid.UUID(bytes=sid)), _str(title), _time(created_at), _str(user_id))

    def timestamp(self, i: int) -> dt.datetime:
        """Row ``i``'s ``timestamp`` (messages) or ``created_at`` (sessions)."""
        value = self._decode(i)[4 if self.table == "messages" else 2]
        assert isinstance(value, dt.datetime)
        return value


def _str(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


def _time(data: bytes | None) -> dt.datetime | None:
    return None if data is None else _EPOCH + _US * _INT64.unpack(data)[0]
