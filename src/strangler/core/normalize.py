"""Normalisation: what "equal in both stores" means (DESIGN.md).

* Timestamps are timezone-aware UTC, truncated to milliseconds (BSON keeps ms only).
* ``content`` is JSON: bytes become standard base64 text, ObjectId its hex string, a
  datetime an ISO-8601 UTC string with ``Z``, Decimal128 its string, UUID its string.

The stores, the verifier and the shadow comparator all use these functions, so a value
is normalised one way everywhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson
from bson import Binary, Decimal128, ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

UTC = dt.UTC

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


def utc_ms(value: dt.datetime) -> dt.datetime:
    """A datetime as timezone-aware UTC truncated to milliseconds. Naive means UTC."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # already normalised: what the stores hand out
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def iso_z(value: dt.datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z``: ``2024-03-01T12:00:00.123Z``.

    orjson's C formatter does the work (a third of ``isoformat``'s time: this runs 50 times
    a history page); it writes whole seconds without a fraction, and microseconds as six
    digits, of which ``utc_ms`` leaves the last three zero."""
    value = utc_ms(value)
    text = orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()
    return text[1:24] + "Z" if value.microsecond else text[1:20] + ".000Z"


def b64(data: bytes) -> str:
    """Standard base64 text (with padding, without newlines)."""
    return base64.b64encode(data).decode("ascii")


def to_json_value(value: Any) -> JsonValue:
    """Convert a value read from BSON (or Python) into plain JSON per the normalisation rules.

    Never raises for BSON types: anything without a JSON rule becomes its string form, so a
    legacy document is always representable. Non-finite floats become strings because
    Postgres jsonb cannot hold NaN or infinity.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)  # Int64 is an int subclass
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, Binary):
        if value.subtype == 4 and len(value) == 16:
            return str(uuid.UUID(bytes=bytes(value)))
        return b64(bytes(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return b64(bytes(value))
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dt.datetime):
        return iso_z(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal128 | Decimal):
        return str(value)
    if isinstance(value, Timestamp):
        return {"t": value.time, "i": value.inc}
    if isinstance(value, Regex):
        return {"pattern": value.pattern, "flags": str(int(value.flags))}
    return str(value)


#: Integers past this lose precision in a JSON reader that uses doubles (JavaScript's).
MAX_SAFE_INT = 2**53


def lossy_types(value: Any, found: set[str] | None = None) -> set[str]:
    """What ``to_json_value(value)`` loses: one reason code per BSON type it turns into
    something else (``content_lossy_<type>``), so a backfill reports such a document
    instead of storing the conversion silently. Plain JSON values, and generic (subtype 0)
    binary as base64 (the legacy app's attachments, read back as such), lose nothing."""
    found = set() if found is None else found
    if value is None or isinstance(value, bool | str):
        return found
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            found.add("content_lossy_int_beyond_2_53")
    elif isinstance(value, float):
        if not math.isfinite(value):
            found.add("content_lossy_nonfinite_float")
    elif isinstance(value, Mapping):
        for v in value.values():
            lossy_types(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            lossy_types(v, found)
    elif isinstance(value, Binary):
        if value.subtype == 4:
            found.add("content_lossy_uuid")
        elif value.subtype != 0:
            found.add("content_lossy_binary_subtype")
    elif isinstance(value, bytes | bytearray | memoryview):
        return found
    elif isinstance(value, ObjectId):
        found.add("content_lossy_objectid")
    elif isinstance(value, dt.datetime):
        found.add("content_lossy_date")
    elif isinstance(value, uuid.UUID):
        found.add("content_lossy_uuid")
    elif isinstance(value, Decimal128 | Decimal):
        found.add("content_lossy_decimal128")
    elif isinstance(value, Timestamp):
        found.add("content_lossy_timestamp")
    elif isinstance(value, Regex):
        found.add("content_lossy_regex")
    elif type(value).__name__ in ("MinKey", "MaxKey"):
        found.add("content_lossy_minmaxkey")
    else:
        found.add("content_lossy_bson_type")
    return found


def _any_string(value: Any, test: Callable[[str], bool]) -> bool:
    """True when ``test`` holds for any string (or mapping key) inside ``value``."""
    if isinstance(value, str):
        return test(value)
    if isinstance(value, Mapping):
        return any(_any_string(k, test) or _any_string(v, test) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_any_string(v, test) for v in value)
    return False


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every string and mapping key inside it."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Mapping):
        return {_map_strings(k, fn): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(v, fn) for v in value]
    return value


def has_nul(value: Any) -> bool:
    """True when U+0000 appears in any string (or mapping key) inside ``value``."""
    return _any_string(value, lambda s: "\x00" in s)


def replace_nul(value: Any) -> Any:
    """``value`` with every U+0000 replaced by U+FFFD, in strings and mapping keys: what the
    backfill stores where Postgres cannot hold the original, and so what compares equal."""
    return _map_strings(value, lambda s: s.replace("\x00", "\ufffd"))


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(value: Any) -> bool:
    """True when a lone UTF-16 surrogate (U+D800 to U+DFFF, which only a JSON ``\\uD8xx``
    escape can produce) appears in any string or mapping key inside ``value``. Neither
    UTF-8 nor Postgres can hold one."""
    return _any_string(value, lambda s: _SURROGATE.search(s) is not None)


def replace_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD (like ``replace_nul``)."""
    return _map_strings(value, lambda s: _SURROGATE.sub("\ufffd", s))


def dump_json(value: JsonValue) -> bytes:
    """``value`` as JSON text. orjson, except for integers past 64 bits, which only the
    standard library can write (and which jsonb holds exactly)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
