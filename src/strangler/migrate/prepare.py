"""The backfill's workers: a raw chunk → rows ready to load, and notes for the report.

Stateless and pure, so it runs in worker processes (``strangler backfill --workers N``):
while the main process loads one chunk into Postgres, the workers decode, transform and
encode the next ones. Only bytes and plain values cross the process boundary.

Rows leave a worker encoded for ``COPY`` (``backends.pgcopy``): one buffer per chunk
crosses the process boundary, not thousands of tuples.

Ordinary documents take the fast paths (``migrate.fastpath``); everything else is
decoded exactly and goes through the general transform (``migrate.transform``), which
also gives the reasons for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bson
from bson import ObjectId
from bson.errors import BSONError

from strangler.core.models import ChatSession, Message
from strangler.core.pgcopy import CopyRows, RowWriter
from strangler.migrate.ejson import fast_loads
from strangler.migrate.fastpath import (
    fast_message_row,
    fast_session_row,
    fast_text_message_fields,
)
from strangler.migrate.partitions import InSlice
from strangler.migrate.report import describe
from strangler.migrate.sources import (
    BSON_OPTIONS,
    BadInput,
    BsonChunk,
    Chunk,
    Item,
    LinesChunk,
    TextChunk,
    parse_text,
)
from strangler.migrate.transform import (
    Collection,
    Outcome,
    transform_message,
    transform_session,
)

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
    """One chunk, transformed. ``rows`` are encoded for ``COPY`` (``backends.pgcopy``);
    row ``i`` came from document ``positions[i]`` of the chunk. ``notes`` (by position) hold
    the repaired documents (which also have a row) and the quarantined ones (which do
    not)."""

    collection: Collection
    read: int
    rows: CopyRows
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
    chunk: TextChunk | BsonChunk,
    text_fast: Callable[[bytes], tuple[Any, ...] | None] | None,
    fast_row: Callable[[int, tuple[Any, ...]], bool],
    keep: InSlice | None = None,
) -> Iterator[tuple[int, tuple[Item, list[str]] | None]]:
    """Each document of the chunk, by position, with the repairs decoding it needed; lines
    that ``text_fast`` reads and ``fast_row`` takes are not yielded, nor documents that
    ``keep`` (a partition's slice) leaves to another partition. Yields ``(position, None)``
    for those, so they can be counted."""
    if isinstance(chunk, BsonChunk):
        try:
            docs = bson.decode_all(chunk.data, BSON_OPTIONS)
        except BSONError:
            for position, decoded in enumerate(_bson_one_by_one(chunk)):
                yield position, (decoded if keep is None or keep(decoded[0]) else None)
            return
        for position, doc in enumerate(docs):
            yield position, ((doc, []) if keep is None or keep(doc) else None)
        return
    for i, text in enumerate(chunk.texts):
        if isinstance(text, BadInput):
            yield i, ((text, []) if keep is None or keep.first else None)
            continue
        row = None if text_fast is None else text_fast(text)
        if row is not None and keep is not None and not keep.has_id(ObjectId(row[0])):
            yield i, None
            continue
        if row is None or not fast_row(i, row):
            fast = fast_loads(text)
            parsed = fast if fast is not None else parse_text(text, chunk.where(i))
            yield i, ((parsed, []) if keep is None or keep(parsed) else None)


def _bson_one_by_one(chunk: BsonChunk) -> Iterator[tuple[Item, list[str]]]:
    """A batch that does not decode as a whole: legacy drivers wrote invalid UTF-8, which
    is replaced by U+FFFD and reported; anything worse is reported as unreadable."""
    data = chunk.data
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
                yield BadInput(chunk.where(pos - size), raw.hex(), str(exc)), []


def prepare(collection: Collection, chunk: Chunk, keep: InSlice | None = None) -> Prepared:
    """Transform every document of ``chunk`` and encode the rows (the worker's whole job).
    With ``keep``, only the documents of a partition's slice: the others are not read."""
    docs: TextChunk | BsonChunk = chunk.texts() if isinstance(chunk, LinesChunk) else chunk
    sessions = collection == "chat_sessions"
    transform = transform_session if sessions else transform_message
    to_row = session_row if sessions else message_row
    fast = fast_session_row if sessions else fast_message_row
    text_fast = None if sessions or not isinstance(docs, TextChunk) else fast_text_message_fields
    writer = RowWriter(collection)
    positions: list[int] = []
    notes: dict[int, Note] = {}

    def adder(encode: Callable[..., None]) -> Callable[[int, tuple[Any, ...]], bool]:
        def add(position: int, values: tuple[Any, ...]) -> bool:
            """Encode a row; False if its text cannot be UTF-8 (a lone surrogate): the
            general transform then repairs the document and reports it."""
            try:
                encode(*values)
            except UnicodeEncodeError:
                return False
            positions.append(position)
            return True

        return add

    add = adder(writer.session if sessions else writer.message)
    elsewhere = 0
    for position, document in _documents(docs, text_fast, adder(writer.message_oids), keep):
        if document is None:
            elsewhere += 1
            continue
        item, decoded_with = document
        if isinstance(item, BadInput):
            source_id, original = describe(item)
            notes[position] = Note(position, ["unparseable"], source_id, original)
            continue
        row = None if decoded_with else fast(item)
        if row is not None and add(position, row):
            continue
        outcome = transform(item)
        reasons = decoded_with + outcome.reasons
        if outcome.record is not None and not add(position, to_row(outcome)):
            reasons.append("unencodable_text")  # no row: the loader quarantines it
        if reasons:
            source_id, original = describe(item)
            notes[position] = Note(position, reasons, source_id, original)
    return Prepared(collection, len(docs) - elsewhere, writer.done(), positions, notes)
