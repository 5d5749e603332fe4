"""Domain models: legacy-compatible JSON in, one documented form out, strict new content."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.core import ids
from strangler.core.errors import InvalidInput
from strangler.core.models import ChatSession, Message, MessageContent, parse


def test_session_accepts_legacy_keys_and_emits_the_documented_form() -> None:
    oid = ObjectId("65e1c3405f1137d8f8f58fea")
    legacy = {
        "_id": str(oid),
        "title": "t",
        "createdAt": "2024-03-01T12:00:00.123456+02:00",
        "userId": "u1",
    }
    s = parse(ChatSession, legacy)
    assert orjson.loads(s.model_dump_json()) == {
        "id": "65e1c340-5f11-8000-8000-37d8f8f58fea",
        "title": "t",
        "created_at": "2024-03-01T10:00:00.123Z",
        "user_id": "u1",
    }
    assert parse(ChatSession, orjson.loads(s.model_dump_json())) == s


def test_message_accepts_camel_case_and_round_trips_through_json() -> None:
    m = parse(
        Message,
        {
            "id": str(ids.new_id()),
            "sessionId": str(ObjectId()),
            "sender": "user",
            "content": {"type": "conversation", "text": "hi"},
            "timestamp": "2024-03-01T12:00:00Z",
        },
    )
    again = Message.model_validate_json(m.model_dump_json())
    assert again == m
    assert orjson.loads(m.model_dump_json())["timestamp"] == "2024-03-01T12:00:00.000Z"


def test_naive_timestamps_are_utc_and_truncated_to_milliseconds() -> None:
    s = ChatSession.new(title="t", user_id="u", created_at=dt.datetime(2024, 1, 1, 0, 0, 0, 999999))
    assert s.created_at == dt.datetime(2024, 1, 1, 0, 0, 0, 999000, tzinfo=dt.UTC)


def test_new_content_bytes_travel_as_base64_in_either_key_style() -> None:
    raw = b"\x00\x01binary\xff"
    c = parse(MessageContent, {"type": "audio", "audio_file": base64.b64encode(raw).decode()})
    assert c.audioFile == raw
    assert c.to_json() == {"type": "audio", "audioFile": base64.b64encode(raw).decode()}


@pytest.mark.parametrize(
    ("content", "where"),
    [
        pytest.param({"type": "video"}, "content.type", id="unknown-type"),
        pytest.param(
            {"type": "audio", "audioFile": "not base64!"}, "content.audioFile", id="bad-base64"
        ),
        pytest.param(
            {"type": "conversation", "text": "x", "extra": 1}, "content.extra", id="extra-key"
        ),
        pytest.param("plain string", "content", id="not-an-object"),
    ],
)
def test_new_content_is_validated_strictly(content: object, where: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Message.new(session_id=ids.new_id(), sender="user", content=content)  # type: ignore[arg-type]
    assert info.value.errors[0]["loc"][: len(where.split("."))] == where.split(".")


def test_stored_content_may_be_any_json_value() -> None:
    for content in ["plain", 42, None, [1, {"a": "b"}], {"type": "whatever", "extra": True}]:
        m = Message(
            id=ids.new_id(),
            session_id=ids.new_id(),
            sender="assistant",
            content=content,
            timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        )
        assert Message.model_validate_json(m.model_dump_json()).content == content


def test_invalid_sender_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="sender"):
        Message.new(
            session_id=ids.new_id(), sender="system", content={"type": "conversation", "text": "x"}
        )


@settings(max_examples=500)
@given(st.datetimes(timezones=st.one_of(st.none(), st.just(dt.UTC), st.timezones())))
def test_iso_z_formats_like_isoformat_truncated_to_milliseconds(value: dt.datetime) -> None:
    """``iso_z`` uses orjson's formatter for speed; it must equal the plain definition."""
    from strangler.core.normalize import iso_z, utc_ms

    try:
        expected = utc_ms(value).isoformat(timespec="milliseconds")[:-6] + "Z"
    except OverflowError:  # near datetime.min/max, the UTC shift leaves the range
        return
    assert iso_z(value) == expected


def test_lossy_types_name_each_bson_type_json_cannot_carry() -> None:
    import datetime as dt
    import uuid

    from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

    from strangler.core.normalize import lossy_types

    plain = {"type": "conversation", "text": "hi", "n": 2**53, "f": 1.5, "l": [1, None, True]}
    assert lossy_types(plain) == set()
    assert lossy_types({"audioFile": Binary(b"RIFF")}) == set()  # generic binary: base64
    content = {
        "a": [ObjectId(), dt.datetime(2024, 1, 1)],
        "b": {"c": Decimal128("1.10"), "d": Int64(2**53 + 1), "e": -(2**60)},
        "f": Regex("x", "i"),
        "g": Timestamp(1, 2),
        "h": [MinKey(), MaxKey()],
        "i": Binary(b"x" * 16, 5),
        "j": uuid.uuid4(),
        "k": float("nan"),
    }
    assert lossy_types(content) == {
        "content_lossy_objectid",
        "content_lossy_date",
        "content_lossy_decimal128",
        "content_lossy_int_beyond_2_53",
        "content_lossy_regex",
        "content_lossy_timestamp",
        "content_lossy_minmaxkey",
        "content_lossy_binary_subtype",
        "content_lossy_uuid",
        "content_lossy_nonfinite_float",
    }
