"""The backfill's transform: one legacy document → a record to store, or quarantine.

Built on the lenient reader in ``backends.mongo.codec`` (the id mapping, timestamps from
BSON dates, ISO strings or epoch milliseconds, nested BSON types to JSON, sender case),
plus what only the backfill does: U+0000 becomes U+FFFD, because Postgres cannot store it,
and so does a lone UTF-16 surrogate (a ``\\uD800`` escape in an export file), which UTF-8
cannot encode.
Every coercion is a reason code; the caller reports the document with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from strangler.backends.mongo.codec import decode_message, decode_session
from strangler.core.errors import CorruptRecord
from strangler.core.models import ChatSession, Message
from strangler.core.normalize import (
    dump_json,
    has_nul,
    has_surrogate,
    replace_nul,
    replace_surrogates,
)

Collection = Literal["chat_sessions", "messages"]


@dataclass
class Outcome:
    """What became of one source document."""

    collection: Collection
    original: Any
    record: ChatSession | Message | None = None
    reasons: list[str] = field(default_factory=list)
    #: Deleted from the source (or through the facade) while the backfill ran.
    vanished: bool = False
    #: A message's ``content`` as JSON text (encoded once, here).
    content_json: bytes | None = None

    @property
    def action(self) -> Literal["ok", "repaired", "quarantined", "vanished"]:
        if self.vanished:
            return "vanished"
        if self.record is None:
            return "quarantined"
        return "repaired" if self.reasons else "ok"

    def quarantine(self, reason: str) -> Outcome:
        self.record = None
        self.reasons.append(reason)
        return self


def _transform(
    collection: Collection,
    doc: dict[str, Any],
    decode: Callable[[dict[str, Any], list[str]], ChatSession | Message],
    text_fields: tuple[str, ...],
) -> Outcome:
    out = Outcome(collection, doc)
    try:
        record = decode(doc, out.reasons)
    except CorruptRecord as exc:
        out.reasons = list(exc.reasons)
        return out
    surrogates = [f for f in (*text_fields, "content") if has_surrogate(getattr(record, f, None))]
    if surrogates:
        out.reasons.append("surrogate_replaced")
        record = record.model_copy(
            update={f: replace_surrogates(getattr(record, f)) for f in surrogates}
        )
    nul = [f for f in text_fields if _has_nul(getattr(record, f))]
    if isinstance(record, Message):
        out.content_json = dump_json(record.content)
        # The JSON text escapes U+0000 as \u0000: no match means no NUL (a match may be
        # a literal backslash, so confirm).
        if b"\\u0000" in out.content_json and has_nul(record.content):
            nul.append("content")
    if nul:
        out.reasons.append("nul_replaced")
        record = record.model_copy(update={f: replace_nul(getattr(record, f)) for f in nul})
        if isinstance(record, Message):
            out.content_json = dump_json(record.content)
    out.record = record
    return out


def _has_nul(value: str | None) -> bool:
    return value is not None and "\x00" in value


def transform_session(doc: dict[str, Any]) -> Outcome:
    return _transform("chat_sessions", doc, decode_session, ("title", "user_id"))


def transform_message(doc: dict[str, Any]) -> Outcome:
    return _transform("messages", doc, decode_message, ("audio", "image", "pdf"))
