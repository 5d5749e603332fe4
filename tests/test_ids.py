"""The legacy-id → UUID mapping: the DESIGN.md contract, with property tests."""

from __future__ import annotations

import uuid

import pytest
from bson import Binary, Int64, ObjectId
from hypothesis import given
from hypothesis import strategies as st

from strangler.core import ids
from strangler.core.errors import InvalidInput

oid_bytes = st.binary(min_size=12, max_size=12)


def test_design_example_maps_both_ways() -> None:
    oid = ObjectId("65e1c3405f1137d8f8f58fea")
    u = ids.uuid_from_objectid(oid)
    assert str(u) == "65e1c340-5f11-8000-8000-37d8f8f58fea"
    assert ids.objectid_from_uuid(u) == oid


def test_namespace_is_the_published_constant() -> None:
    assert str(ids.NS) == "024036de-82d4-56b2-9524-be056db0d8cd"


@given(oid_bytes)
def test_objectid_round_trips_and_is_version_8_rfc_variant(raw: bytes) -> None:
    oid = ObjectId(raw)
    u = ids.uuid_from_objectid(oid)
    assert u.version == 8
    assert u.variant == uuid.RFC_4122
    assert ids.objectid_from_uuid(u) == oid
    assert u.hex[:12] == str(oid)[:12] and u.hex[-12:] == str(oid)[-12:]


@given(oid_bytes)
def test_hex_string_and_objectid_map_the_same_in_any_case(raw: bytes) -> None:
    oid = ObjectId(raw)
    expected = ids.uuid_from_objectid(oid)
    assert ids.legacy_to_uuid(oid) == expected
    assert ids.legacy_to_uuid(str(oid)) == expected
    assert ids.legacy_to_uuid(str(oid).upper()) == expected
    assert ids.parse_id(str(oid)) == expected


@given(oid_bytes, oid_bytes)
def test_uuid_order_follows_objectid_order(a: bytes, b: bytes) -> None:
    ua, ub = ids.uuid_from_objectid(ObjectId(a)), ids.uuid_from_objectid(ObjectId(b))
    assert (a < b) == (ua.bytes < ub.bytes)


@given(st.uuids())
def test_uuids_are_kept_in_every_form(u: uuid.UUID) -> None:
    assert ids.legacy_to_uuid(u) == u
    assert ids.legacy_to_uuid(str(u)) == u
    assert ids.legacy_to_uuid(str(u).upper()) == u
    assert ids.legacy_to_uuid(Binary.from_uuid(u)) == u
    assert ids.parse_id(str(u).upper()) == u


@given(st.text())
def test_any_other_string_maps_deterministically_with_uuid5(s: str) -> None:
    result = ids.legacy_to_uuid(s)
    assert result == ids.legacy_to_uuid(s)
    if not ids.is_objectid_hex(s) and len(s) != 36:
        assert result == uuid.uuid5(ids.NS, s)
        assert result.version == 5


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_integers_map_with_their_int_prefix(n: int) -> None:
    assert ids.legacy_to_uuid(n) == uuid.uuid5(ids.NS, f"int:{n}")
    assert ids.legacy_to_uuid(Int64(n)) == ids.legacy_to_uuid(n)
    assert ids.legacy_to_uuid(n) != ids.legacy_to_uuid(str(n))


def test_a_reference_maps_to_the_same_uuid_as_its_document() -> None:
    oid = ObjectId()
    assert ids.legacy_to_uuid(str(oid)) == ids.legacy_to_uuid(oid)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param(Binary(b"x" * 16, 0), id="binary-generic"),
        pytest.param([1], id="list"),
    ],
)
def test_unmappable_types_are_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput):
        ids.legacy_to_uuid(value)


@pytest.mark.parametrize("value", ["abc", "65e1c340", "{65e1c340-5f11-8000-8000-37d8f8f58fea}", 7])
def test_parse_id_refuses_what_is_not_a_uuid_or_objectid(value: object) -> None:
    with pytest.raises(InvalidInput, match="expected a UUID or a 24-hex"):
        ids.parse_id(value)


def test_new_ids_are_objectid_born() -> None:
    oid, u = ids.new_objectid_uuid()
    assert ids.objectid_from_uuid(u) == oid
    assert ids.objectid_from_uuid(uuid.uuid4()) is None


def test_one_way_ids_are_the_ones_the_uuid_cannot_give_back() -> None:
    from bson import Int64

    for value in ("legacy-7", "x", 42, Int64(7), "ABC"):
        assert ids.one_way(value), value
    oid = ObjectId()
    for value in (oid, str(oid), str(uuid.uuid4()), uuid.uuid4(), True, 1.5):
        assert not ids.one_way(value), value
    assert ids.objectid_from_uuid(ids.legacy_to_uuid(str(oid))) == oid  # hex: reversible
