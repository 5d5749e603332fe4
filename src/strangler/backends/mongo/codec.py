"""Legacy MongoDB documents ↔ domain records.

Reading is lenient, because the legacy collections hold whatever the old app and its users
wrote over the years: every coercion is appended to ``repairs`` as a reason code, so the
backfill can report it, and anything that cannot be presented raises ``CorruptRecord``
with the reason codes, so it can be quarantined.

Writing keeps the legacy shape (DESIGN.md), so the old backend can still read every
document written during the migration: an ObjectId ``_id``, ``session_id`` as the hex
string, naive UTC datetimes (BSON dates) and attachment bytes as BSON Binary.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any, cast

from bson import Binary, ObjectId
from bson.datetime_ms import DatetimeMS

from strangler.core import ids
from strangler.core.errors import CorruptRecord, InvalidInput
from strangler.core.models import SENDERS, ChatSession, Message, Sender, trusted
from strangler.core.normalize import b64, lossy_types, to_json_value, utc_ms

SESSION_FIELDS = frozenset({"_id", "title", "created_at", "user_id"})
MESSAGE_FIELDS = frozenset(
    {"_id", "session_id", "sender", "content", "timestamp", "audio", "image", "pdf"}
)
_BINARY_CONTENT_KEYS = ("audioFile", "imageFile")
_MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


class _Corrupt(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- ids --------------------------------------------------------------------------


def legacy_id(value: uuid.UUID) -> ObjectId | uuid.UUID:
    """The ``_id`` a record gets when strangler writes it to MongoDB."""
    return ids.objectid_from_uuid(value) or value


def session_ref(value: uuid.UUID) -> str:
    """The ``session_id`` string a message gets in MongoDB (hex for ObjectId-born sessions)."""
    oid = ids.objectid_from_uuid(value)
    return str(oid) if oid is not None else str(value)


def session_ref_candidates(value: uuid.UUID) -> list[Any]:
    """Every form a legacy ``session_id`` reference to this session may take."""
    oid = ids.objectid_from_uuid(value)
    if oid is not None:
        return [str(oid), oid]
    return [str(value), value, str(value).upper()]


# --- reading ------------------------------------------------------------------------


def read_datetime(value: Any, field: str, repairs: list[str]) -> dt.datetime:
    """A BSON date, an ISO-8601 string with an offset, or epoch milliseconds → aware UTC ms."""
    if isinstance(value, dt.datetime):
        return utc_ms(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Corrupt(f"{field}_unparseable") from None
        repairs.append(f"{field}_from_string")
        return utc_ms(parsed)
    if isinstance(value, DatetimeMS):  # a BSON date outside Python's datetime range
        raise _Corrupt(f"{field}_out_of_range")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not -62135596800000 <= value <= _MAX_EPOCH_MS:
            raise _Corrupt(f"{field}_out_of_range")
        repairs.append(f"{field}_from_epoch_ms")
        return utc_ms(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=value))
    raise _Corrupt(f"{field}_unparseable")


def _time_or_objectid(doc: dict[str, Any], field: str, repairs: list[str]) -> dt.datetime:
    value = doc.get(field)
    if value is not None:
        return read_datetime(value, field, repairs)
    if isinstance(doc.get("_id"), ObjectId):
        repairs.append(f"{field}_from_objectid")
        return utc_ms(doc["_id"].generation_time)
    raise _Corrupt(f"{field}_missing")


def _record_id(doc: dict[str, Any], repairs: list[str] | None) -> uuid.UUID:
    value = doc.get("_id")
    try:
        mapped = ids.legacy_to_uuid(value)
    except InvalidInput:
        raise _Corrupt("id_unmappable") from None
    if repairs is not None and ids.one_way(value):
        repairs.append("id_one_way")  # the UUID cannot give the original back
    return mapped


def _opt_text(doc: dict[str, Any], field: str, repairs: list[str]) -> str | None:
    value = doc.get(field)
    if value is None or isinstance(value, str):
        return value
    repairs.append(f"{field}_not_string")
    if isinstance(value, Binary | bytes):
        return b64(bytes(value))
    converted = to_json_value(value)
    return converted if isinstance(converted, str) else str(converted)


def _required_text(doc: dict[str, Any], field: str, repairs: list[str]) -> str:
    """A NOT NULL text column: a missing value becomes "", a number its string form."""
    value = doc.get(field)
    if value is None:
        repairs.append(f"{field}_missing")
        return ""
    if isinstance(value, str):
        return value
    repairs.append(f"{field}_not_string")
    return str(to_json_value(value))


def decode_session(doc: dict[str, Any], repairs: list[str] | None = None) -> ChatSession:
    """Present a legacy ``chat_sessions`` document as a ``ChatSession``.

    Coercions go to ``repairs``; ``CorruptRecord`` (with ``.reasons``) when it cannot be done.
    """
    tracked = repairs
    repairs = [] if repairs is None else repairs
    try:
        sid = _record_id(doc, tracked)
        title = _required_text(doc, "title", repairs)
        user_id = _required_text(doc, "user_id", repairs)
        created_at = _time_or_objectid(doc, "created_at", repairs)
    except _Corrupt as exc:
        raise _corrupt("chat_sessions", doc, [*repairs, exc.reason]) from None
    extra = sorted(set(doc) - SESSION_FIELDS)
    if extra:
        repairs.append("extra_fields")
    return trusted(
        ChatSession, {"id": sid, "title": title, "created_at": created_at, "user_id": user_id}
    )


def read_sender(value: Any, repairs: list[str]) -> Sender:
    if isinstance(value, str):
        if value in SENDERS:
            return cast(Sender, value)
        folded = value.strip().lower()
        if folded in SENDERS:
            repairs.append("sender_case_folded")
            return cast(Sender, folded)
        raise _Corrupt("sender_invalid")
    raise _Corrupt("sender_missing" if value is None else "sender_invalid")


def decode_message(doc: dict[str, Any], repairs: list[str] | None = None) -> Message:
    """Present a legacy ``messages`` document as a ``Message`` (see :func:`decode_session`)."""
    tracked = repairs
    repairs = [] if repairs is None else repairs
    try:
        mid = _record_id(doc, tracked)
        ref = doc.get("session_id")
        if ref is None:
            raise _Corrupt("session_id_missing")
        try:
            session_id = ids.legacy_to_uuid(ref)
        except InvalidInput:
            raise _Corrupt("session_id_unmappable") from None
        if isinstance(ref, ObjectId):
            repairs.append("session_id_objectid")
        sender = read_sender(doc.get("sender"), repairs)
        if "content" not in doc:
            repairs.append("content_missing")
        raw_content = doc.get("content")
        content = to_json_value(raw_content)
        if tracked is not None:  # a backfill's reading: every lossy conversion is reported
            repairs.extend(sorted(lossy_types(raw_content)))
        timestamp = _time_or_objectid(doc, "timestamp", repairs)
        audio = _opt_text(doc, "audio", repairs)
        image = _opt_text(doc, "image", repairs)
        pdf = _opt_text(doc, "pdf", repairs)
    except _Corrupt as exc:
        raise _corrupt("messages", doc, [*repairs, exc.reason]) from None
    extra = sorted(set(doc) - MESSAGE_FIELDS)
    if extra:
        repairs.append("extra_fields")
    return trusted(
        Message,
        {
            "id": mid,
            "session_id": session_id,
            "sender": sender,
            "content": content,
            "timestamp": timestamp,
            "audio": audio,
            "image": image,
            "pdf": pdf,
        },
    )


def _corrupt(collection: str, doc: dict[str, Any], reasons: list[str]) -> CorruptRecord:
    return CorruptRecord(
        f"{collection} document {doc.get('_id')!r} cannot be read: {', '.join(reasons)}",
        store="mongo",
        reasons=reasons,
    )


# --- writing ------------------------------------------------------------------------


def _naive(value: dt.datetime) -> dt.datetime:
    return utc_ms(value).replace(tzinfo=None)


def content_to_bson(content: Any) -> Any:
    """Turn base64 attachment fields back into BSON Binary, as the legacy app stored them.

    Only canonical base64 is converted, so reading the document back gives the same text.
    """
    if not isinstance(content, dict):
        return content
    out = dict(content)
    for key in _BINARY_CONTENT_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if b64(raw) == value:
                out[key] = Binary(raw)
    return out


def encode_session(session: ChatSession, _id: Any = None) -> dict[str, Any]:
    """The legacy-shaped document for a session. ``_id`` overrides the derived id."""
    return {
        "_id": legacy_id(session.id) if _id is None else _id,
        "title": session.title,
        "created_at": _naive(session.created_at),
        "user_id": session.user_id,
    }


def encode_message(message: Message, _id: Any = None, *, ref: Any = None) -> dict[str, Any]:
    """The legacy-shaped document for a message. ``_id`` overrides the derived id, ``ref``
    the derived ``session_id`` (a session whose ``_id`` was a one-way legacy id)."""
    return {
        "_id": legacy_id(message.id) if _id is None else _id,
        "session_id": session_ref(message.session_id) if ref is None else ref,
        "sender": message.sender,
        "content": content_to_bson(message.content),
        "timestamp": _naive(message.timestamp),
        "audio": message.audio,
        "image": message.image,
        "pdf": message.pdf,
    }
