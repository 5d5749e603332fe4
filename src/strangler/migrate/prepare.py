"""The backfill's workers: a raw chunk → rows ready to load, and notes for the report.

Stateless and pure, so it runs in worker processes (``strangler backfill --workers N``):
while the main process loads one chunk into Postgres, the workers decode, transform and
encode the next ones. Only bytes and plain tuples cross the process boundary.

Ordinary documents take the fast paths (``migrate.fastpath``); everything else is
decoded exactly and goes through the general transform (``migrate.transform``), which
also gives the reasons for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.errors import BSONError

from strangler.migrate.ejson import fast_loads
from strangler.migrate.fastpath import fast_message_row, fast_session_row, fast_text_message_row
from strangler.migrate.report import describe
from strangler.migrate.sources import (
    BSON_OPTIONS,
    BadInput,
    BsonChunk,
    Chunk,
    Item,
    TextChunk,
    parse_text,
)
from strangler.migrate.transform import (
    Collection,
    Outcome,
    transform_message,
    transform_session,
)
from strangler.models import ChatSession, Message

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


def _documents(
    chunk: Chunk, text_fast: Callable[[bytes], tuple[Any, ...] | None] | None, out: Prepared
) -> Iterator[tuple[int, tuple[Item, list[str]]]]:
    """Each document of the chunk, by position, with the repairs decoding it needed; lines that
    ``text_fast`` turns into rows go straight to ``out`` instead."""
    if isinstance(chunk, BsonChunk):
        try:
            docs = bson.decode_all(chunk.data, BSON_OPTIONS)
        except BSONError:
            yield from enumerate(_bson_one_by_one(chunk.data))
            return
        for position, doc in enumerate(docs):
            yield position, (doc, [])
        return
    for i, text in enumerate(chunk.texts):
        if isinstance(text, BadInput):
            yield i, (text, [])
            continue
        row = None if text_fast is None else text_fast(text)
        if row is not None:
            out.rows.append(row)
            out.positions.append(i)
        else:
            fast = fast_loads(text)
            yield i, ((fast if fast is not None else parse_text(text, chunk.where(i))), [])


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
    text_fast = None if sessions or not isinstance(chunk, TextChunk) else fast_text_message_row
    for position, (item, decoded_with) in _documents(chunk, text_fast, out):
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
