"""The backfill's fast paths: ordinary legacy documents straight to rows.

Almost every legacy document is ordinary: an ObjectId ``_id``, a hex ``session_id``, a
lower-case sender, a date, plain content with maybe a subtype-0 attachment, no U+0000 and
no extra field. Those become rows here, several times faster than the general transform
(``migrate.transform``); anything else returns None and takes the general transform,
which also reports it. Tests check that both give the same row for every document the
fast paths accept.

* ``fast_text_message_fields`` / ``fast_text_message_row``: a mongoexport line, read with
  orjson, Extended JSON wrappers handled in place (the common case of a file backfill).
* ``fast_message_row`` / ``fast_session_row``: a document already decoded to BSON values
  (a live source, or a line ``ejson.fast_loads`` read).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from typing import Any

import orjson
from bson import Int64, ObjectId

from strangler.backends.mongo.codec import MESSAGE_FIELDS
from strangler.core.normalize import MAX_SAFE_INT, b64, dump_json, utc_ms
from strangler.migrate.ejson import BIG_FLOAT, HEX24, ISO_Z

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
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise _Unusual  # the general transform reports it
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
    if t is Int64 and -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
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
        if not HEX24.fullmatch(ref):
            return None
        content = dump_json(_plain(doc["content"]))
        attachments = [doc.get(f) for f in ("audio", "image", "pdf")]
        if b"\\u0000" in content or any(
            a is not None and (type(a) is not str or "\x00" in a) for a in attachments
        ):
            return None
        timestamp = _ordinary_time(doc["timestamp"])
    except (_Unusual, UnicodeEncodeError):  # UnicodeEncodeError: a lone surrogate
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


# --- straight from a mongoexport line -----------------------------------------------------


def _ejson_plain(value: Any) -> Any:
    """Content as it will be stored, from orjson's reading of Extended JSON: plain values
    as they are, a subtype-0 ``$binary`` as canonical base64; ``_Unusual`` otherwise."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        raise _Unusual  # the general transform reports it
    if t is float:
        if -BIG_FLOAT < value < BIG_FLOAT:
            return value
        raise _Unusual  # an integer past 64 bits that orjson read as a float
    if t is list:
        return [_ejson_plain(v) for v in value]
    if t is dict:
        if value and next(iter(value))[:1] == "$":
            return _binary_text(value)
        out = {}
        for k, v in value.items():
            if k[:1] == "$":
                raise _Unusual
            out[k] = _ejson_plain(v)
        return out
    raise _Unusual


def _binary_text(wrapper: dict[str, Any]) -> str:
    inner = wrapper.get("$binary")
    if len(wrapper) != 1 or type(inner) is not dict or len(inner) != 2:
        raise _Unusual
    data = inner.get("base64")
    if type(data) is not str or inner.get("subType") not in ("00", "0"):
        raise _Unusual
    try:
        return b64(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise _Unusual from None


def _oid_text(value: Any) -> str:
    if type(value) is dict and len(value) == 1:
        hex24 = value.get("$oid")
        if type(hex24) is str and HEX24.fullmatch(hex24):
            return hex24
    raise _Unusual


def _date_text(value: Any) -> dt.datetime:
    if type(value) is dict and len(value) == 1:
        text = value.get("$date")
        if type(text) is str and ISO_Z.fullmatch(text):
            return utc_ms(dt.datetime.fromisoformat(text))
    raise _Unusual


def fast_text_message_fields(text: bytes) -> tuple[Any, ...] | None:
    """An ordinary ``messages`` line of a mongoexport file as ``(oid hex, session oid hex,
    sender, content JSON, timestamp, audio, image, pdf)``, or None.

    ``backends.pgcopy.RowWriter.message_oids`` encodes these without building UUID text."""
    if b"\\u0000" in text:
        return None  # U+0000 somewhere: the general transform replaces and reports it
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or not _MESSAGE_KEYS <= doc.keys() <= MESSAGE_FIELDS:
        return None
    ref, sender = doc["session_id"], doc["sender"]
    if type(ref) is not str or sender not in _SENDERS:
        return None
    ref = ref.lower()
    if not HEX24.fullmatch(ref):
        return None
    get = doc.get
    audio, image, pdf = get("audio"), get("image"), get("pdf")
    if not (
        (audio is None or type(audio) is str)
        and (image is None or type(image) is str)
        and (pdf is None or type(pdf) is str)
    ):
        return None
    content = doc["content"]
    try:
        oid = _oid_text(doc["_id"])
        timestamp = _date_text(doc["timestamp"])
        if type(content) is dict and _plain_strings(content):
            data = orjson.dumps(content)  # the common case: nothing to convert
        else:
            data = dump_json(_ejson_plain(content))
    except _Unusual:
        return None
    return (oid, ref, sender, data, timestamp, audio, image, pdf)


def _plain_strings(content: dict[str, Any]) -> bool:
    """Every value a string and no key an Extended JSON ``$`` wrapper: stored as it is."""
    for k, v in content.items():  # noqa: SIM110 (a loop: all() over a generator is slower)
        if type(v) is not str or k[:1] == "$":
            return False
    return True


def fast_text_message_row(text: bytes) -> tuple[Any, ...] | None:
    """The row of an ordinary ``messages`` line of a mongoexport file, or None."""
    fields = fast_text_message_fields(text)
    if fields is None:
        return None
    return (_uuid_text(fields[0]), _uuid_text(fields[1]), *fields[2:])
