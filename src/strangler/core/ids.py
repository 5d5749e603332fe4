"""The legacy-id → UUID mapping (a public contract, see DESIGN.md).

* ObjectId, or a 24-hex string: ``o[0:6] + 80 00 80 00 + o[6:12]``, a version-8,
  RFC-variant UUID that shows the ObjectId in its first and last 12 hex digits.
  Reversible with :func:`objectid_from_uuid`.
* UUID (a canonical string in any case, ``uuid.UUID``, or BSON Binary subtype 4): kept.
* Any other string ``s``: ``uuid5(NS, s)``; an integer ``n``: ``uuid5(NS, "int:" + str(n))``.

The mapping needs no lookup table: the same legacy value always maps to the same UUID, so
a reference maps to the same UUID as the document it points at. Going back from a uuid5
needs the original, which ``strangler.legacy_ids`` keeps (``core.ports.LegacyIds``).
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any

from bson import Binary, ObjectId
from bson.binary import UUID_SUBTYPE

from strangler.core.errors import InvalidInput

NS = uuid.uuid5(uuid.NAMESPACE_OID, "strangler.legacy-id")
_MARKER = b"\x80\x00\x80\x00"
#: The strings that map reversibly (to an ObjectId's or a UUID's own UUID), as patterns.
HEX24 = r"[0-9a-fA-F]{24}"
CANONICAL_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_HEX24 = re.compile(HEX24)
_CANONICAL_UUID = re.compile(CANONICAL_UUID)

#: What a caller may pass wherever an id is expected.
IdLike = uuid.UUID | ObjectId | str


def uuid_bytes_from_objectid(raw: bytes) -> bytes:
    """The 16 bytes of the UUID of an ObjectId given as its 12 bytes: they sit around the
    constant ``80 00 80 00``."""
    return raw[:6] + _MARKER + raw[6:]


def uuid_from_objectid(oid: ObjectId) -> uuid.UUID:
    """The UUID of an ObjectId: its 12 bytes around the constant ``80 00 80 00``."""
    return uuid.UUID(bytes=uuid_bytes_from_objectid(oid.binary))


def objectid_from_uuid(value: uuid.UUID) -> ObjectId | None:
    """The ObjectId a UUID was made from, or None when it was not made from one."""
    raw = value.bytes
    if raw[6:10] != _MARKER:
        return None
    return ObjectId(raw[:6] + raw[10:])


def is_objectid_hex(value: str) -> bool:
    """True for a 24-hex-digit string, the way the legacy app stored ``session_id``."""
    return _HEX24.fullmatch(value) is not None


def legacy_to_uuid(value: Any) -> uuid.UUID:
    """Map any legacy ``_id`` or reference to its UUID.

    Total over ObjectId, UUID, Binary subtype 4, str and int. Raises ``InvalidInput``
    for any other type (for example a float, a bool, None or another Binary subtype),
    which the backfill quarantines.
    """
    if isinstance(value, ObjectId):
        return uuid_from_objectid(value)
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        return _uuid_from_str(value)
    if isinstance(value, Binary) and value.subtype == UUID_SUBTYPE and len(value) == 16:
        return uuid.UUID(bytes=bytes(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return uuid.uuid5(NS, "int:" + str(value))
    raise InvalidInput(f"cannot map a legacy id of type {type(value).__name__} to a UUID")


def one_way(value: Any) -> bool:
    """True for a legacy id whose UUID cannot give it back (an arbitrary string or an
    integer, mapped with uuid5): the record is stored, but under a new identity."""
    if isinstance(value, str):
        return not (_HEX24.fullmatch(value) or _CANONICAL_UUID.fullmatch(value))
    return isinstance(value, int) and not isinstance(value, bool)


@functools.lru_cache(maxsize=1 << 12)
def _uuid_from_str(value: str) -> uuid.UUID:
    """Cached: a backfill maps each session reference once per message, and a session's
    messages come together. 4,096 entries: a soak's tracemalloc snapshots showed 65,536
    filling up for the whole run (some 300 bytes each, 19 MB when full)."""
    if _HEX24.fullmatch(value):
        return uuid_from_objectid(ObjectId(value.lower()))
    if _CANONICAL_UUID.fullmatch(value):
        return uuid.UUID(value)
    return uuid.uuid5(NS, value)


def parse_id(value: Any, *, field: str = "id") -> uuid.UUID:
    """Parse an id given by a caller: a UUID (any case) or the legacy 24-hex ObjectId form.

    Stricter than :func:`legacy_to_uuid`: an arbitrary string is a typo, not an id, so it
    raises ``InvalidInput`` naming ``field``.
    """
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, ObjectId):
        return uuid_from_objectid(value)
    if isinstance(value, str) and (_HEX24.fullmatch(value) or _CANONICAL_UUID.fullmatch(value)):
        return legacy_to_uuid(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise InvalidInput(
        f"invalid {field} {shown}: expected a UUID or a 24-hex-digit ObjectId",
        errors=[{"loc": [field], "msg": "expected a UUID or a 24-hex ObjectId", "type": "id"}],
    )


_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")
#: The longest legacy string id a path may carry.
MAX_LEGACY_ID = 512


def path_candidates(value: str, *, field: str = "id") -> list[uuid.UUID]:
    """The UUIDs an id given in a URL path may stand for, most likely first: a UUID or a
    24-hex ObjectId (one), or a legacy id that maps one way, an arbitrary string (its
    uuid5) and, when it reads as an integer, that integer's too: ``/sessions/42`` may be
    the string ``"42"`` or the integer 42. ``InvalidInput`` for what no legacy id can be
    (empty, control characters, longer than ``MAX_LEGACY_ID``)."""
    if _HEX24.fullmatch(value) or _CANONICAL_UUID.fullmatch(value):
        return [legacy_to_uuid(value)]
    if not value or len(value) > MAX_LEGACY_ID or any(ord(c) < 32 for c in value):
        parse_id(value, field=field)  # raises, saying what an id looks like
    out = [_uuid_from_str(value)]
    if _INT.fullmatch(value) and -(2**63) <= int(value) < 2**63:
        out.append(uuid.uuid5(NS, "int:" + str(int(value))))
    return out


def new_objectid_uuid() -> tuple[ObjectId, uuid.UUID]:
    """A fresh identity for a new record: an ObjectId (for MongoDB) and its UUID."""
    oid = ObjectId()
    return oid, uuid_from_objectid(oid)


def new_id() -> uuid.UUID:
    """The UUID of a fresh ObjectId; new records use it in both stores."""
    return new_objectid_uuid()[1]


def legacy_candidates(value: uuid.UUID) -> list[Any]:
    """The ``_id`` values a record with this UUID may have in MongoDB, most likely first.

    Ids that were arbitrary legacy strings (uuid5) cannot be reversed; such records are
    reached by scans only.
    """
    oid = objectid_from_uuid(value)
    if oid is not None:
        return [oid, str(oid)]
    return [Binary.from_uuid(value), str(value)]
