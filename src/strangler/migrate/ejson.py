"""Reading mongoexport Extended JSON, fast for ordinary documents and exact for all.

``bson.json_util`` is exact but slow (its object hook runs in Python for every object and
it parses dates with ``strptime``). Almost every line of a real export holds only plain
JSON plus ``$oid``, ``$date`` (an ISO string), ``$binary`` (subtype 0 or 4),
``$numberInt`` and ``$numberLong``; :func:`fast_loads` reads those with orjson and turns
the wrappers into the values ``json_util`` gives (bytes for subtype 0, a UUID for 4).
Anything else (another wrapper, a ``$`` key it does not know, an integer past 64 bits
that orjson would round, text orjson refuses) returns None, and the caller falls back to
:func:`exact_loads`. A test checks that both agree on every document they both read.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from typing import Any

import orjson
from bson import ObjectId, json_util
from bson.codec_options import DatetimeConversion
from bson.int64 import Int64

EJSON_OPTIONS = json_util.JSONOptions(
    tz_aware=True,
    uuid_representation=4,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
#: orjson reads an integer past 64 bits as a float; json_util keeps it exact.
BIG_FLOAT = 2.0**63
#: An ObjectId as mongoexport writes it, and a ``$date`` in its ordinary (UTC) form.
HEX24 = re.compile(r"[0-9a-f]{24}")
ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


class _Slow(Exception):
    """This document needs the exact reader."""


def exact_loads(text: str | bytes) -> Any:
    """``bson.json_util.loads`` with the options the backfill uses everywhere."""
    return json_util.loads(text, json_options=EJSON_OPTIONS)


def fast_loads(text: bytes) -> dict[str, Any] | None:
    """The document in ``text`` as BSON values, or None when only the exact reader can tell."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    try:
        return _dict(value)
    except _Slow:
        return None


def _dict(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if key[:1] == "$":
            raise _Slow
        value[key] = _value(item)
    return value


def _list(items: list[Any]) -> list[Any]:
    for i, item in enumerate(items):
        items[i] = _value(item)
    return items


def _value(item: Any) -> Any:
    t = type(item)
    if t is dict:
        return _wrapper(item) if item and next(iter(item))[:1] == "$" else _dict(item)
    if t is list:
        return _list(item)
    if t is float and not -BIG_FLOAT < item < BIG_FLOAT:
        raise _Slow
    return item


def _oid(inner: Any) -> Any:
    if type(inner) is str and HEX24.fullmatch(inner):
        return ObjectId(inner)
    raise _Slow


def _date(inner: Any) -> Any:
    if type(inner) is str and ISO_Z.fullmatch(inner):
        return dt.datetime.fromisoformat(inner)
    raise _Slow


def _binary(inner: Any) -> Any:
    if type(inner) is not dict or len(inner) != 2:
        raise _Slow
    data, subtype = inner.get("base64"), inner.get("subType")
    if type(data) is not str or subtype not in ("00", "0", "04", "4"):
        raise _Slow
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Slow from None
    if subtype in ("00", "0"):
        return raw  # json_util gives subtype 0 as bytes
    if len(raw) != 16:
        raise _Slow
    return uuid.UUID(bytes=raw)


def _int(inner: Any, digits: int) -> int:
    if type(inner) is str and inner.lstrip("-").isdigit() and len(inner) <= digits:
        return int(inner)
    raise _Slow


def _int64(inner: Any) -> Any:
    number = _int(inner, 20)
    if -(2**63) <= number < 2**63:
        return Int64(number)
    raise _Slow


_WRAPPERS = {
    "$oid": _oid,
    "$date": _date,
    "$binary": _binary,
    "$numberInt": lambda inner: _int(inner, 10),
    "$numberLong": _int64,
}


def _wrapper(item: dict[str, Any]) -> Any:
    if len(item) != 1:
        raise _Slow
    key, inner = next(iter(item.items()))
    read = _WRAPPERS.get(key)
    if read is None:
        raise _Slow
    return read(inner)
