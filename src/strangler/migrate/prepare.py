"""The backfill's workers: a raw chunk → rows ready to load, and notes for the report.

Stateless and pure, so it runs in worker processes (``strangler backfill --workers N``):
while the main process loads one chunk into Postgres, the workers decode, transform and
encode the next ones. Only bytes and plain tuples cross the process boundary.

Decoding is fast for ordinary documents (``ejson.fast_loads``; ``bson.decode_all`` for
live batches) and exact for everything else; the transform is the one in
``migrate.transform`` either way.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import Int64, ObjectId
from bson.errors import BSONError

from strangler.backends.mongo_codec import MESSAGE_FIELDS
from strangler.migrate.ejson import fast_loads
from strangler.migrate.report import describe
from strangler.migrate.sources import (
    BSON_OPTIONS,
    BadInput,
    BsonChunk,
    Chunk,
    Item,
    parse_text,
)
from strangler.migrate.transform import (
    Collection,
    Outcome,
    transform_message,
    transform_session,
)
from strangler.models import ChatSession, Message
from strangler.normalize import b64, dump_json, utc_ms

_HEX24 = re.compile(r"[0-9a-f]{24}")
_REPLACING = BSON_OPTIONS.with_options(unicode_decode_error_handler="replace")


@dataclass(slots=True)
class Note:
    """Why a document is in the report: its reasons and itself, ready to write."""

    position: int
    reasons: list[str]
    source_id: Any
    original: Any


@dataclass(slots=True)
class Prepared:
    """One chunk, transformed. ``rows[i]`` came from document ``positions[i]`` of the chunk;
    ``notes`` (by position) hold the repaired documents (which also have a row) and the
    quarantined ones (which do not)."""

    collection: Collection
    read: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    notes: dict[int, Note] = field(default_factory=dict)


def session_row(out: Outcome) -> tuple[Any, ...]:
    """``id, title, created_at, user_id``: the columns of ``chat_sessions``. Ids travel as
    text: it crosses the process boundary far faster than ``uuid.UUID``."""
    s = out.record
    assert isinstance(s, ChatSession)
    return (str(s.id), s.title, s.created_at, s.user_id)


def message_row(out: Outcome) -> tuple[Any, ...]:
    """``id, session_id, sender, content, timestamp, audio, image, pdf``, with ``content``
    as the JSON text the transform encoded."""
    m = out.record
    assert isinstance(m, Message)
    return (
        str(m.id),
        str(m.session_id),
        m.sender,
        out.content_json,
        m.timestamp,
        m.audio,
        m.image,
        m.pdf,
    )


# --- the fast path ---------------------------------------------------------------------
# Almost every legacy document is ordinary: an ObjectId ``_id``, a hex ``session_id``, a
# lower-case sender, a BSON date, plain content with maybe a subtype-0 attachment, no
# U+0000, no extra field. Those become rows here directly, several times faster than the
# general transform; anything else returns None and takes the general transform, which
# also reports it. A test checks that both give the same row for every ordinary document.

_MESSAGE_KEYS = frozenset({"_id", "session_id", "sender", "content", "timestamp"})
_SESSION_KEYS = frozenset({"_id", "title", "created_at", "user_id"})
_SENDERS = frozenset({"user", "assistant"})


class _Unusual(Exception):
    pass


def _uuid_text(oid_hex: str) -> str:
    """The DESIGN.md mapping of an ObjectId, from its lower-case hex: o[0:6] 8000 8000 o[6:12]."""
    return f"{oid_hex[:8]}-{oid_hex[8:12]}-8000-8000-{oid_hex[12:]}"


def _plain(value: Any) -> Any:
    """``to_json_value`` for the ordinary cases; ``_Unusual`` for the rest."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise _Unusual
    if t is dict:
        return {k: _plain(v) for k, v in value.items()}
    if t is list:
        return [_plain(v) for v in value]
    if t is bytes:
        return b64(value)
    if t is Int64:
        return int(value)
    raise _Unusual


def _ordinary_time(value: Any) -> dt.datetime:
    if type(value) is not dt.datetime or value.tzinfo is None:
        raise _Unusual
    return utc_ms(value)


def fast_message_row(doc: dict[str, Any]) -> tuple[Any, ...] | None:
    """The row of an ordinary ``messages`` document, or None."""
    try:
        if not _MESSAGE_KEYS <= doc.keys() <= MESSAGE_FIELDS:
            return None
        oid, ref, sender = doc["_id"], doc["session_id"], doc["sender"]
        if type(oid) is not ObjectId or type(ref) is not str or sender not in _SENDERS:
            return None
        ref = ref.lower()
        if not _HEX24.fullmatch(ref):
            return None
        content = dump_json(_plain(doc["content"]))
        attachments = [doc.get(f) for f in ("audio", "image", "pdf")]
        if b"\\u0000" in content or any(
            a is not None and (type(a) is not str or "\x00" in a) for a in attachments
        ):
            return None
        timestamp = _ordinary_time(doc["timestamp"])
    except _Unusual:
        return None
    return (_uuid_text(str(oid)), _uuid_text(ref), sender, content, timestamp, *attachments)


def fast_session_row(doc: dict[str, Any]) -> tuple[Any, ...] | None:
    """The row of an ordinary ``chat_sessions`` document, or None."""
    if doc.keys() != _SESSION_KEYS:
        return None
    oid, title, user_id = doc["_id"], doc["title"], doc["user_id"]
    if type(oid) is not ObjectId or type(title) is not str or type(user_id) is not str:
        return None
    if "\x00" in title or "\x00" in user_id:
        return None
    try:
        created_at = _ordinary_time(doc["created_at"])
    except _Unusual:
        return None
    return (_uuid_text(str(oid)), title, created_at, user_id)


def _documents(chunk: Chunk) -> Iterator[tuple[Item, list[str]]]:
    """Each document of the chunk with the repairs decoding it needed."""
    if isinstance(chunk, BsonChunk):
        try:
            docs = bson.decode_all(chunk.data, BSON_OPTIONS)
        except BSONError:
            yield from _bson_one_by_one(chunk.data)
            return
        for doc in docs:
            yield doc, []
        return
    for i, text in enumerate(chunk.texts):
        if isinstance(text, BadInput):
            yield text, []
        else:
            fast = fast_loads(text)
            yield (fast if fast is not None else parse_text(text, chunk.where(i))), []


def _bson_one_by_one(data: bytes) -> Iterator[tuple[Item, list[str]]]:
    """A batch that does not decode as a whole: legacy drivers wrote invalid UTF-8, which
    is replaced by U+FFFD and reported; anything worse is reported as unreadable."""
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        raw = data[pos : pos + size]
        pos += size
        try:
            yield bson.decode(raw, BSON_OPTIONS), []
        except BSONError:
            try:
                yield bson.decode(raw, _REPLACING), ["invalid_utf8_replaced"]
            except BSONError as exc:
                yield BadInput(f"BSON document at byte {pos - size}", raw.hex(), str(exc)), []


def prepare(collection: Collection, chunk: Chunk) -> Prepared:
    """Transform every document of ``chunk`` (the worker's whole job)."""
    out = Prepared(collection, read=len(chunk))
    sessions = collection == "chat_sessions"
    transform = transform_session if sessions else transform_message
    to_row = session_row if sessions else message_row
    fast = fast_session_row if sessions else fast_message_row
    for position, (item, decoded_with) in enumerate(_documents(chunk)):
        if isinstance(item, BadInput):
            source_id, original = describe(item)
            out.notes[position] = Note(position, ["unparseable"], source_id, original)
            continue
        row = None if decoded_with else fast(item)
        if row is not None:
            out.rows.append(row)
            out.positions.append(position)
            continue
        outcome = transform(item)
        reasons = decoded_with + outcome.reasons
        if outcome.record is not None:
            out.rows.append(to_row(outcome))
            out.positions.append(position)
        if reasons:
            source_id, original = describe(item)
            out.notes[position] = Note(position, reasons, source_id, original)
    return out
