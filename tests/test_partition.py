"""Partitions: the slices of a plan cover every id once, in Python and on a real MongoDB
(SecantusDB), for ids of every BSON type an ``_id`` can have."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.errors import BulkWriteError

from strangler.core.errors import InvalidInput
from strangler.core.partition import (
    Part,
    alias,
    bson_key,
    holds,
    mongo_slice,
    orderable,
    split_points,
    uuid_points,
)
from strangler.migrate.verify import start_after

_when = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)

#: Values an ``_id`` can hold (not arrays, regexes or undefined, which MongoDB refuses).
ids = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.floats(allow_nan=False),
    st.decimals(-(10**9), 10**9, places=3).map(lambda d: Decimal128(str(d))),
    st.text(max_size=6),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.uuids().map(lambda u: Binary(u.bytes, 4)),
    st.booleans(),
    _when,
    st.tuples(st.integers(0, 2**31), st.integers(0, 100)).map(lambda t: Timestamp(*t)),
    st.just(None),
    st.just(MinKey()),
    st.just(MaxKey()),
    st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), min_size=1, max_size=2),
)
#: Binary values that are not UUIDs: SecantusDB compares them unlike MongoDB (by bytes
#: alone, ignoring length and subtype), so they are checked in Python only.
binaries = st.one_of(
    st.binary(max_size=20).map(lambda b: Binary(b, 0)),
    st.binary(max_size=20).map(lambda b: Binary(b, 0x80)),
)
points_of = st.lists(ids.filter(orderable), max_size=6)


def _sorted_points(values: list[Any]) -> list[Any]:
    return sorted(values, key=bson_key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("3", "expected K/N", id="no-slash"),
        pytest.param("0/4", "JOB_COMPLETION_INDEX", id="zero-based"),
        pytest.param("5/4", "K must be 1 to 4", id="k-past-n"),
        pytest.param("1/0", "N must be", id="no-partitions"),
        pytest.param("a/b", "expected K/N", id="not-numbers"),
    ],
)
def test_a_bad_partition_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Part.parse(text)


def test_a_partition_names_its_bounds() -> None:
    points = [10, 20, 30]
    assert Part.parse("1/4").bounds(points) == (None, 10)
    assert Part.parse(" 2 / 4 ").bounds(points) == (10, 20)
    assert Part.parse("4/4").bounds(points) == (30, None)
    assert str(Part.parse("2/4")) == "2/4"
    with pytest.raises(ValueError, match="3 split points"):
        Part.parse("1/4").bounds([1])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(ids, binaries), max_size=30), points=points_of)
def test_every_id_falls_in_exactly_one_slice(values: list[Any], points: list[Any]) -> None:
    points = _sorted_points(points)
    n = len(points) + 1
    for value in values:
        homes = [k for k in range(1, n + 1) if holds(value, *Part(k, n).bounds(points))]
        assert len(homes) == 1, (value, points, homes)


@settings(max_examples=200, deadline=None)
@given(sample=st.lists(ids, max_size=200), n=st.integers(1, 9))
def test_split_points_are_sorted_quantiles_of_the_sample(sample: list[Any], n: int) -> None:
    points = split_points(sample, n)
    assert len(points) == n - 1
    keys = [bson_key(p) for p in points]
    assert keys == sorted(keys)
    assert all(orderable(p) for p in points)


def test_split_points_balance_a_uniform_sample() -> None:
    sample = [ObjectId(i.to_bytes(4, "big") + bytes(8)) for i in range(1000)]
    points = split_points(sample, 4)
    sizes = [sum(holds(v, *Part(k, 4).bounds(points)) for v in sample) for k in range(1, 5)]
    assert sizes == [250, 250, 250, 250]


def _within(value: uuid.UUID, lo: uuid.UUID | None, hi: uuid.UUID | None) -> bool:
    """``[lo, hi)`` as verify scans it: from ``lo`` (``start_after``) to before ``hi``."""
    after = start_after(lo, None)
    return (after is None or value > after) and (hi is None or value < hi)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.uuids(), max_size=40),
    sample=st.lists(st.uuids(), max_size=40),
    n=st.integers(1, 8),
)
def test_uuid_slices_cover_every_uuid_once(
    values: list[uuid.UUID], sample: list[uuid.UUID], n: int
) -> None:
    points = uuid_points(sample, n)
    assert points == sorted(points)
    for value in values:
        homes = [k for k in range(1, n + 1) if _within(value, *Part(k, n).bounds(points))]
        assert len(homes) == 1


# --- against the server ----------------------------------------------------------------------
def _corpus() -> list[Any]:
    """Ids of every kind, edge values included (each bracket's bounds, equal numbers of
    different types, NaN and infinities)."""
    oid = ObjectId("6b11aa1b0971a228ca8f1ca9")
    return [
        MinKey(),
        None,
        float("-inf"),
        -(2**62),
        Int64(-5),
        -1.5,
        0,
        Decimal128("0.5"),
        1,
        Int64(2),
        2.5,
        Decimal128("1E+30"),
        float("inf"),
        float("nan"),
        "",
        "A",
        "a",
        "ab",
        "é",
        "z" * 3,
        "6B11AA1B0971A228CA8F1CA9",  # the ObjectId below, as a string (upper case)
        "00000000-0000-0000-0000-000000000002",  # a UUID below, as a string
        {"a": 1},
        {"b": 0},
        Binary(uuid.UUID(int=1).bytes, 4),
        Binary(uuid.UUID(int=2).bytes, 4),
        Binary(uuid.UUID(int=2**127).bytes, 4),
        ObjectId(bytes(12)),
        oid,
        ObjectId(b"\xff" * 12),
        False,
        True,
        dt.datetime(1960, 1, 1),
        dt.datetime(2026, 12, 3, 12, 0, 0, 123000),
        Timestamp(0, 1),
        Timestamp(5, 0),
        MaxKey(),
    ]


@pytest.fixture(scope="module")
def mixed(mongo_server: Any) -> Iterator[tuple[Any, list[Any]]]:
    client: MongoClient[Any] = MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000)
    coll = client[f"partition_{uuid.uuid4().hex[:8]}"]["ids"]
    with contextlib.suppress(BulkWriteError):  # 1 == 1.0 and the like: one is kept
        coll.insert_many([{"_id": v} for v in _corpus()], ordered=False)
    stored = [d["_id"] for d in coll.find().sort("_id", 1)]
    try:
        yield coll, stored
    finally:
        client.drop_database(coll.database.name)
        client.close()


def _key(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr((type(value).__name__, value))


def test_the_servers_order_is_bson_key_order(mixed: tuple[Any, list[Any]]) -> None:
    """SecantusDB sorts ``_id`` the way ``bson_key`` does, across brackets and within
    each orderable one."""
    _, stored = mixed
    keys = [bson_key(v) for v in stored if orderable(v)]
    assert keys == sorted(keys)
    brackets = [bson_key(v)[0] for v in stored]
    assert brackets == sorted(brackets)


def test_an_aliasing_string_goes_where_its_twin_goes() -> None:
    """A 24-hex string and its ObjectId map to one UUID: one partition gets both, and
    reports the second as a duplicate, as a single run does."""
    oid = ObjectId("6b11aa1b0971a228ca8f1ca9")
    u = uuid.UUID(int=7)
    points = ["m", Binary(uuid.UUID(int=5).bytes, 4), ObjectId("6b11aa1b0971a228ca8f1ca0")]
    for twin, value in ((oid, str(oid).upper()), (Binary(u.bytes, 4), str(u))):
        homes = [holds(twin, *Part(k, 4).bounds(points)) for k in range(1, 5)]
        assert homes == [holds(value, *Part(k, 4).bounds(points)) for k in range(1, 5)]
        assert sum(homes) == 1


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(points=points_of)
def test_mongo_ranges_cover_every_stored_id_once(
    mixed: tuple[Any, list[Any]], points: list[Any]
) -> None:
    """Each slice's query selects what ``holds`` says (the aliasing strings sorted out by
    the reader), and the slices together take every document exactly once, whatever the
    split points and the id types."""
    coll, stored = mixed
    points = _sorted_points(points)
    n = len(points) + 1
    seen: list[str] = []
    for k in range(1, n + 1):
        lo, hi = Part(k, n).bounds(points)
        selected = [d["_id"] for d in coll.find(mongo_slice(lo, hi))]
        got = [_key(v) for v in selected if holds(v, lo, hi)]
        want = [_key(v) for v in stored if holds(v, lo, hi)]
        assert sorted(got) == sorted(want), (k, lo, hi)
        # The server selects the range exactly, plus the aliasing strings.
        assert all(holds(v, lo, hi) or alias(v) is not v for v in selected)
        seen.extend(got)
    assert sorted(seen) == sorted(_key(v) for v in stored)
