"""Partitions: ``--partition K/N`` splits a backfill, verify or repair into N slices that
N processes (on N hosts) run side by side, each slice a range of ids.

Two id spaces, each with its own total order:

* **Legacy ``_id``s** (the backfill reads the source): MongoDB orders values of different
  BSON types by type bracket first (MinKey, null, numbers, strings, objects, arrays,
  binary, ObjectId, booleans, dates, timestamps, regexes, …, MaxKey), then by value inside
  the bracket. :func:`bson_key` is that order in Python, and :func:`mongo_range` is the
  query that selects ``[lo, hi)`` of it on the server: comparison operators (``$gte``,
  ``$lt``) only match values of their operand's bracket, so the brackets strictly between
  the bounds are selected by ``$type``.
* **UUIDs** (verify and repair compare the stores in UUID order): plain byte order.

A plan is N - 1 split points, sorted; slice K (1-based) is ``[point K-1, point K)``, the
first unbounded below and the last above. So the slices cover every id and never overlap,
whatever the points are; the points (quantiles of a sample of the data) only decide how
even the slices are. Every process of a partitioned run must use the same points, so a plan
is made once and stored (``strangler.partition_plans``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from strangler.core import ids
from strangler.core.errors import InvalidInput

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
#: At most this many partitions: a plan is a few rows, and each partition is a process.
MAX_PARTITIONS = 1024


@dataclass(frozen=True)
class Part:
    """Partition ``k`` of ``n`` (1 ≤ k ≤ n)."""

    k: int
    n: int

    @classmethod
    def parse(cls, text: str) -> Part:
        """``"K/N"`` → ``Part``; ``InvalidInput`` that says what is wrong otherwise."""
        m = _SPEC.fullmatch(text)
        if m is None:
            raise InvalidInput(f"{text!r}: expected K/N, e.g. 3/8 for the third of eight slices")
        k, n = int(m[1]), int(m[2])
        if not 1 <= n <= MAX_PARTITIONS:
            raise InvalidInput(f"{text!r}: N must be 1 to {MAX_PARTITIONS}")
        if not 1 <= k <= n:
            hint = (
                " (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX starts at 0: pass "
                "$((JOB_COMPLETION_INDEX + 1))/N)"
                if k == 0
                else ""
            )
            raise InvalidInput(f"{text!r}: K must be 1 to {n}{hint}")
        return cls(k, n)

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def bounds(self, points: Sequence[Any]) -> tuple[Any | None, Any | None]:
        """``(lo, hi)`` of this slice under ``points`` (None: unbounded)."""
        if len(points) != self.n - 1:
            raise ValueError(f"a plan for {self.n} partitions has {self.n - 1} split points")
        lo = None if self.k == 1 else points[self.k - 2]
        hi = None if self.k == self.n else points[self.k - 1]
        return lo, hi


# --- MongoDB's order of BSON values --------------------------------------------------------
#: ``(bracket, the $type codes of the bracket)``, in MongoDB's sort order (the server's
#: canonical type order: codes 12, 13 and 15 sort after regexes).
BRACKETS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0, (-1,)),  # MinKey
    (1, (6, 10)),  # undefined, null
    (2, (1, 16, 18, 19)),  # double, int, long, decimal
    (3, (2, 14)),  # string, symbol
    (4, (3,)),  # object
    (5, (4,)),  # array
    (6, (5,)),  # binary
    (7, (7,)),  # ObjectId
    (8, (8,)),  # bool
    (9, (9,)),  # date
    (10, (17,)),  # timestamp
    (11, (11,)),  # regex
    (12, (12,)),  # DBPointer
    (13, (13, 15)),  # JavaScript, JavaScript with scope
    (14, (127,)),  # MaxKey
)


def bracket(value: Any) -> int:
    """The type bracket of a decoded BSON value."""
    if isinstance(value, MinKey):
        return 0
    if value is None:
        return 1
    if isinstance(value, bool):
        return 8
    if isinstance(value, (int, float, Decimal128)):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, DBRef):
        return 4  # a DBRef is an embedded document
    if isinstance(value, dict):
        return 4
    if isinstance(value, (list, tuple)):
        return 5
    if isinstance(value, (Binary, bytes, uuid.UUID)):
        return 6
    if isinstance(value, ObjectId):
        return 7
    if isinstance(value, (dt.datetime, DatetimeMS)):
        return 9
    if isinstance(value, Timestamp):
        return 10
    if isinstance(value, (Regex, re.Pattern)):
        return 11
    if isinstance(value, Code):
        return 13
    if isinstance(value, MaxKey):
        return 14
    raise InvalidInput(f"no BSON order for a value of type {type(value).__name__}")


def orderable(value: Any) -> bool:
    """Whether ``value`` can be a split point: numbers but NaN, strings, ObjectIds,
    booleans, dates, timestamps, and UUIDs (binary subtype 4). Other binary values are
    ordered (by length, subtype, then bytes) but never split points: servers that follow
    MongoDB's wire protocol disagree on how they compare (SecantusDB compares the bytes
    alone), and they agree on UUIDs."""
    try:
        b = bracket(value)
    except InvalidInput:
        return False
    if b == 2:
        return not _is_nan(value)
    if b == 6:
        return _binary(value)[:2] == (16, 4)
    return b in (3, 7, 8, 9, 10)


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, Decimal128):
        return value.to_decimal().is_nan()
    return False


def _number(value: Any) -> Any:
    if isinstance(value, Decimal128):
        d = value.to_decimal()
        return d if d.is_finite() else float(d)  # ±inf compare with every number
    return int(value) if isinstance(value, Int64) else value


def _binary(value: Any) -> tuple[int, int, bytes]:
    # MongoDB orders binary by length, then subtype, then bytes.
    if isinstance(value, uuid.UUID):
        return (16, 4, value.bytes)
    subtype = value.subtype if isinstance(value, Binary) else 0
    return (len(value), subtype, bytes(value))


def bson_key(value: Any) -> tuple[Any, ...]:
    """A sort key that orders ids the way MongoDB sorts ``_id``: by bracket, then by value
    for numbers, strings, binary, ObjectIds, booleans, dates and timestamps. NaN sorts
    below every number. Values of other types (objects, regexes, code, …) get their bracket
    only: no split point is ever of those types, so the bracket alone places them."""
    b = bracket(value)
    if b == 2:
        return (b,) if _is_nan(value) else (b, _number(value))
    if b == 3:
        return (b, value)  # code point order is UTF-8 byte order
    if b == 6:
        return (b, _binary(value))
    if b == 7:
        return (b, value.binary)
    if b == 8:
        return (b, value)
    if b == 9:
        return (b, _millis(value))
    if b == 10:
        return (b, (value.time, value.inc))
    return (b,)


def _millis(value: dt.datetime | DatetimeMS) -> int:
    if isinstance(value, DatetimeMS):
        return int(value)
    aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    delta = aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


#: Strings that map to the same UUID as a value of another type (``core.ids``): a 24-hex
#: string and its ObjectId, a canonical UUID string and its BSON UUID.
ALIASING = rf"^({ids.HEX24}|{ids.CANONICAL_UUID})$"
_ALIASING = re.compile(ALIASING)


def alias(value: Any) -> Any:
    """The value whose place decides the partition of ``value``: the ObjectId of a 24-hex
    string, the BSON UUID of a UUID string, else the value itself. Two documents whose ids
    map to one UUID then fall in one partition, which reports the second as a duplicate,
    as a single run does."""
    if isinstance(value, str) and _ALIASING.fullmatch(value):
        if len(value) == 24:
            return ObjectId(value.lower())
        return Binary(uuid.UUID(value).bytes, 4)
    if isinstance(value, uuid.UUID):
        return Binary(value.bytes, 4)
    return value


def holds(value: Any, lo: Any | None, hi: Any | None) -> bool:
    """Whether a legacy ``_id`` falls in ``[lo, hi)`` of MongoDB's order, placed by its
    :func:`alias`."""
    # Tuples compare by bracket first; within a bracket a key is a full key, or NaN's
    # ``(2,)``, which sorts below every number as MongoDB sorts it.
    key = bson_key(alias(value))
    if lo is not None and key < bson_key(lo):
        return False
    return hi is None or key < bson_key(hi)


def _types(brackets: range) -> list[int]:
    return [code for b, codes in BRACKETS if b in brackets for code in codes]


def mongo_range(lo: Any | None, hi: Any | None, field: str = "_id") -> dict[str, Any]:
    """The query that selects ``lo <= field < hi`` in MongoDB's order of all BSON values
    (an empty query for an unbounded range).

    ``$gte``/``$lt`` compare within the operand's bracket only, so each bound is the
    comparison in its own bracket or a ``$type`` test for the brackets beyond it. Bounds
    in one bracket (the usual case: two ObjectIds) are one interval."""
    if lo is not None and hi is not None and bracket(lo) == bracket(hi):
        return {field: {"$gte": lo, "$lt": hi}}  # (NaN, below every number, is below lo)
    conds: list[dict[str, Any]] = []
    if lo is not None:
        b = bracket(lo)
        above = _types(range(b + 1, len(BRACKETS)))
        conds.append({"$or": [{field: {"$gte": lo}}, {field: {"$type": above}}]})
    if hi is not None:
        b = bracket(hi)
        below = _types(range(b))
        same: dict[str, Any] = {field: {"$lt": hi}}
        if b == 2:
            # NaN sorts below every number, but no `$lt` matches it; equality does.
            same = {"$or": [same, {field: float("nan")}]}
        conds.append({"$or": [same, {field: {"$type": below}}]} if below else same)
    if not conds:
        return {}
    return conds[0] if len(conds) == 1 else {"$and": conds}


def mongo_slice(lo: Any | None, hi: Any | None, field: str = "_id") -> dict[str, Any]:
    """A query for at least the documents whose ``field`` :func:`holds` in ``[lo, hi)``:
    the range, less the aliasing strings, plus every aliasing string (rare; the reader
    keeps those whose alias is in the range)."""
    base = mongo_range(lo, hi, field)
    if not base:
        return {}
    aliasing = Regex(ALIASING)
    return {"$or": [{"$and": [base, {field: {"$not": aliasing}}]}, {field: aliasing}]}


# --- split points --------------------------------------------------------------------------
def split_points(sample: Sequence[Any], n: int, key: Any = None) -> list[Any]:
    """N - 1 split points: the quantiles of ``sample`` (ids of the data) under ``key``
    (default :func:`bson_key`, for legacy ids). Values that cannot be split points are
    dropped; with too few distinct values some slices are empty, never overlapping: the
    points are kept sorted, and a repeated point gives an empty slice."""
    if n <= 1:
        return []
    order = key or bson_key
    usable = sorted(
        {order(v): v for v in sample if key is not None or orderable(v)}.items(),
        key=lambda kv: kv[0],
    )
    values = [v for _, v in usable]
    if not values:
        # No data to split: every point at one value gives N - 1 empty slices.
        values = [uuid.UUID(int=0)] if key is not None else [ObjectId(bytes(12))]
    return [values[min(len(values) - 1, (i * len(values)) // n)] for i in range(1, n)]


def uuid_points(sample: Sequence[uuid.UUID], n: int) -> list[uuid.UUID]:
    """N - 1 UUID split points from a sample of UUIDs (byte order)."""
    return split_points(sample, n, key=lambda u: u.bytes)
