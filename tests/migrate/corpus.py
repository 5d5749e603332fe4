"""A hostile legacy corpus: every kind of document the backfill issue lists, each tagged
with the outcome (and one reason code) the backfill must give it."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

NAIVE = dt.datetime(2023, 5, 1, 12, 0, 0, 250000)
EPOCH_MS = 1_700_000_000_123


@dataclass
class Case:
    name: str
    doc: dict[str, Any]
    action: str  # ok | repaired | quarantined
    reason: str | None = None


def build() -> tuple[list[Case], list[Case]]:
    s_oid = ObjectId()
    s_uuid = uuid.uuid4()
    s_bin = uuid.uuid4()
    sessions = [
        Case(
            "objectid", {"_id": s_oid, "title": "Trip", "created_at": NAIVE, "user_id": "u1"}, "ok"
        ),
        Case(
            "uuid-string-id",
            {"_id": str(s_uuid), "title": "u", "created_at": NAIVE, "user_id": "u1"},
            "ok",
        ),
        Case(
            "bson-uuid-id",
            {"_id": Binary.from_uuid(s_bin), "title": "b", "created_at": NAIVE, "user_id": "u1"},
            "ok",
        ),
        Case(
            "string-id",
            {"_id": "legacy-session-7", "title": "s", "created_at": NAIVE, "user_id": "u1"},
            "repaired",
            "id_one_way",  # stored under uuid5 of the string, which cannot give it back
        ),
        Case(
            "int64-id",
            {"_id": Int64(42), "title": "i", "created_at": NAIVE, "user_id": "u1"},
            "repaired",
            "id_one_way",
        ),
        Case(
            "missing-title",
            {"_id": ObjectId(), "created_at": NAIVE, "user_id": "u1"},
            "repaired",
            "title_missing",
        ),
        Case(
            "missing-created-at",
            {"_id": ObjectId(), "title": "t", "user_id": "u1"},
            "repaired",
            "created_at_from_objectid",
        ),
        Case(
            "iso-created-at",
            {
                "_id": ObjectId(),
                "title": "t",
                "user_id": "u1",
                "created_at": "2023-05-01T14:00:00.5+02:00",
            },
            "repaired",
            "created_at_from_string",
        ),
        Case(
            "epoch-created-at",
            {"_id": ObjectId(), "title": "t", "user_id": "u1", "created_at": Int64(EPOCH_MS)},
            "repaired",
            "created_at_from_epoch_ms",
        ),
        Case(
            "year-9999",
            {
                "_id": ObjectId(),
                "title": "t",
                "user_id": "u1",
                "created_at": dt.datetime(9999, 12, 31, 23, 59, 59),
            },
            "ok",
        ),
        Case(
            "numeric-user-id",
            {"_id": ObjectId(), "title": "t", "created_at": NAIVE, "user_id": 12345},
            "repaired",
            "user_id_not_string",
        ),
        Case(
            "missing-user-id",
            {"_id": ObjectId(), "title": "t", "created_at": NAIVE},
            "repaired",
            "user_id_missing",
        ),
        Case(
            "200k-title",
            {"_id": ObjectId(), "title": "長" * 200_000, "created_at": NAIVE, "user_id": "u1"},
            "ok",
        ),
        Case(
            "non-latin",
            {
                "_id": ObjectId(),
                "title": "Привет, 東京 🌸 مرحبا",
                "created_at": NAIVE,
                "user_id": "ユーザー",
            },
            "ok",
        ),
        Case(
            "nul-title",
            {"_id": ObjectId(), "title": "bad\x00title", "created_at": NAIVE, "user_id": "u1"},
            "repaired",
            "nul_replaced",
        ),
        Case(
            "extra-fields",
            {
                "_id": ObjectId(),
                "title": "t",
                "created_at": NAIVE,
                "user_id": "u1",
                "archived": True,
                "tags": ["a"],
            },
            "repaired",
            "extra_fields",
        ),
        Case(
            "float-id",
            {"_id": 1.5, "title": "t", "created_at": NAIVE, "user_id": "u1"},
            "quarantined",
            "id_unmappable",
        ),
        Case(
            "no-time-at-all",
            {"_id": "no-objectid", "title": "t", "user_id": "u1"},
            "quarantined",
            "created_at_missing",
        ),
        Case(
            "duplicate-of-objectid",
            {"_id": str(s_oid), "title": "dup", "created_at": NAIVE, "user_id": "u1"},
            "quarantined",
            "duplicate_id",
        ),
    ]

    def msg(name: str, action: str, reason: str | None = None, **fields: Any) -> Case:
        doc = {
            "_id": ObjectId(),
            "session_id": str(s_oid),
            "sender": "user",
            "content": {"type": "conversation", "text": name},
            "timestamp": NAIVE,
            "audio": None,
            "image": None,
            "pdf": None,
        }
        doc.update(fields)
        return Case(name, {k: v for k, v in doc.items() if v is not ...}, action, reason)

    messages = [
        msg("plain", "ok"),
        msg("ref-as-objectid", "repaired", "session_id_objectid", session_id=s_oid),
        msg("ref-uuid-session", "ok", session_id=str(s_uuid)),
        msg("ref-string-session", "ok", session_id="legacy-session-7"),
        msg("missing-timestamp", "repaired", "timestamp_from_objectid", timestamp=...),
        msg("iso-timestamp", "repaired", "timestamp_from_string", timestamp="2023-05-01T12:00:01Z"),
        msg("epoch-timestamp", "repaired", "timestamp_from_epoch_ms", timestamp=EPOCH_MS),
        msg("year-9999-timestamp", "ok", timestamp=dt.datetime(9999, 1, 1)),
        msg("missing-sender", "quarantined", "sender_missing", sender=...),
        msg("sender-User", "repaired", "sender_case_folded", sender="User"),
        msg("sender-system", "quarantined", "sender_invalid", sender="system"),
        msg("plain-string-content", "ok", content="just a legacy string"),
        msg(
            "binary-content",
            "ok",
            content={
                "type": "audio",
                "audioFile": Binary(b"\x00RIFF"),
                "imageFile": Binary(b"\x89PNG"),
            },
        ),
        msg(
            "binary-attachment-columns",
            "repaired",
            "audio_not_string",
            audio=Binary(b"raw-audio-bytes"),
        ),
        msg(
            "nested-bson",
            "repaired",
            "content_lossy_objectid",  # and _date, _decimal128: each one reported
            content={
                "type": "conversation",
                "text": "n",
                "meta": {
                    "ref": ObjectId(),
                    "at": NAIVE,
                    "price": Decimal128("9.99"),
                    "n": Int64(2**40),
                },
            },
        ),
        msg(
            "nul-in-text",
            "repaired",
            "nul_replaced",
            content={"type": "conversation", "text": "a\x00b"},
        ),
        msg(
            "int-beyond-2-53",
            "repaired",
            "content_lossy_int_beyond_2_53",
            content={"type": "conversation", "text": "big", "n": Int64(2**60)},
        ),
        msg(
            "regex-content",
            "repaired",
            "content_lossy_regex",
            content={"type": "conversation", "text": "r", "match": Regex("^a.*", "i")},
        ),
        msg(
            "timestamp-content",
            "repaired",
            "content_lossy_timestamp",
            content={"type": "conversation", "text": "t", "ts": Timestamp(1700000000, 3)},
        ),
        msg(
            "minkey-content",
            "repaired",
            "content_lossy_minmaxkey",
            content={"type": "conversation", "text": "k", "lo": MinKey(), "hi": MaxKey()},
        ),
        msg(
            "binary-subtype-5",
            "repaired",
            "content_lossy_binary_subtype",
            content={"type": "conversation", "text": "md5", "sum": Binary(b"0123456789abcdef", 5)},
        ),
        msg(
            "uuid-in-content",
            "repaired",
            "content_lossy_uuid",
            content={"type": "conversation", "text": "u", "ref": Binary.from_uuid(uuid.uuid4())},
        ),
        msg("200k-text", "ok", content={"type": "conversation", "text": "ж" * 200_000}),
        msg("orphan", "quarantined", "orphan_session", session_id=str(ObjectId())),
        msg("null-ref", "quarantined", "session_id_missing", session_id=None),
        msg("equal-timestamp-a", "ok", timestamp=NAIVE + dt.timedelta(seconds=5)),
        msg("equal-timestamp-b", "ok", timestamp=NAIVE + dt.timedelta(seconds=5)),
        msg("extra-fields", "repaired", "extra_fields", edited=True),
        msg(
            "pdf", "ok", content={"type": "pdf", "pdfUrl": "https://x/y.pdf"}, pdf="https://x/y.pdf"
        ),
    ]
    return sessions, messages
