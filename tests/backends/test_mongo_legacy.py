"""MongoStore on legacy document shapes: what the old app wrote, and what it must still read."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.core import ids
from strangler.core.errors import CorruptRecord
from strangler.core.models import ChatSession, Message

NAIVE = dt.datetime(2024, 3, 1, 12, 0, 0, 123000)  # what the legacy app stored: naive UTC


@pytest.fixture
async def raw(mongo_server: Any, mongo_db: str) -> Any:
    """A plain, non-tz-aware client, the way the legacy backend read and wrote."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongo_server.uri, uuidRepresentation="standard"
    )
    yield client[mongo_db]
    await client.close()


async def test_legacy_documents_are_presented_through_the_id_mapping(
    mongo_store: MongoStore, raw: Any
) -> None:
    sid = ObjectId()
    await raw.chat_sessions.insert_one(
        {"_id": sid, "title": "old", "created_at": NAIVE, "user_id": "u1"}
    )
    mids = [ObjectId() for _ in range(3)]
    await raw.messages.insert_many(
        [
            {
                "_id": mids[0],
                "session_id": str(sid),
                "sender": "user",
                "content": {"type": "audio", "audioFile": Binary(b"\x00wav")},
                "timestamp": NAIVE,
                "audio": "a.wav",
                "image": None,
                "pdf": None,
            },
            # A reference stored as an ObjectId instead of the hex string.
            {
                "_id": mids[1],
                "session_id": sid,
                "sender": "assistant",
                "content": {
                    "type": "conversation",
                    "text": "hi",
                    "meta": {
                        "ref": ObjectId(sid),
                        "at": NAIVE,
                        "price": Decimal128("1.10"),
                        "n": Int64(7),
                    },
                },
                "timestamp": NAIVE + dt.timedelta(seconds=1),
            },
            {
                "_id": mids[2],
                "session_id": str(sid),
                "sender": "User",
                "content": "plain text",
                "timestamp": NAIVE + dt.timedelta(seconds=2),
            },
        ]
    )
    s = await mongo_store.get_session(ids.uuid_from_objectid(sid))
    assert s.id == ids.uuid_from_objectid(sid)
    assert s.created_at == NAIVE.replace(tzinfo=dt.UTC)
    page = await mongo_store.history(s.id)
    assert [m.id for m in page.items] == [ids.uuid_from_objectid(m) for m in mids]
    first, second, third = page.items
    assert first.content == {"type": "audio", "audioFile": base64.b64encode(b"\x00wav").decode()}
    assert second.content["meta"] == {  # type: ignore[index,call-overload]
        "ref": str(sid),
        "at": "2024-03-01T12:00:00.123Z",
        "price": "1.10",
        "n": 7,
    }
    assert third.sender == "user" and third.content == "plain text"


async def test_new_records_are_written_in_the_legacy_shape(
    mongo_store: MongoStore, raw: Any
) -> None:
    s = await mongo_store.create_session(ChatSession.new(title="new", user_id="u1"))
    audio = base64.b64encode(b"RIFF....WAVE").decode()
    m = await mongo_store.add_message(
        Message.new(
            session_id=s.id,
            sender="user",
            content={"type": "audio", "audioFile": audio},
            audio="https://cdn/a.wav",
        )
    )
    sdoc = await raw.chat_sessions.find_one()
    mdoc = await raw.messages.find_one()
    oid = ids.objectid_from_uuid(s.id)
    assert sdoc["_id"] == oid and isinstance(sdoc["_id"], ObjectId)
    assert sdoc["created_at"].tzinfo is None
    assert mdoc["_id"] == ids.objectid_from_uuid(m.id)
    assert mdoc["session_id"] == str(oid)  # the hex string, as the legacy app stored it
    assert mdoc["content"]["audioFile"] == b"RIFF....WAVE"  # BSON Binary, read back as bytes
    assert mdoc["audio"] == "https://cdn/a.wav"
    assert await mongo_store.get_message(m.id) == m


async def test_numeric_legacy_user_ids_are_listed_for_their_string_form(
    mongo_store: MongoStore, raw: Any
) -> None:
    await raw.chat_sessions.insert_one(
        {"_id": ObjectId(), "title": "n", "created_at": NAIVE, "user_id": 42}
    )
    page = await mongo_store.list_sessions("42")
    assert [s.user_id for s in page.items] == ["42"]


async def test_uuid_keyed_legacy_documents_are_found_and_updated(
    mongo_store: MongoStore, raw: Any
) -> None:
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    await raw.chat_sessions.insert_many(
        [
            {"_id": str(u1), "title": "string uuid", "created_at": NAIVE, "user_id": "u"},
            {
                "_id": Binary.from_uuid(u2),
                "title": "binary uuid",
                "created_at": NAIVE,
                "user_id": "u",
            },
        ]
    )
    assert (await mongo_store.get_session(u1)).title == "string uuid"
    assert (await mongo_store.get_session(u2)).title == "binary uuid"
    await mongo_store.upsert_sessions(
        [ChatSession(id=u1, title="changed", created_at=NAIVE, user_id="u")]
    )
    assert await raw.chat_sessions.count_documents({}) == 2
    assert (await raw.chat_sessions.find_one({"_id": str(u1)}))["title"] == "changed"


async def test_unreadable_documents_raise_corrupt_record_with_reasons(
    mongo_store: MongoStore, raw: Any
) -> None:
    sid = ObjectId()
    await raw.chat_sessions.insert_one(
        {"_id": sid, "title": "t", "created_at": NAIVE, "user_id": "u"}
    )
    bad = ObjectId()
    await raw.messages.insert_one(
        {"_id": bad, "session_id": str(sid), "sender": "system", "content": "x", "timestamp": NAIVE}
    )
    with pytest.raises(CorruptRecord, match="sender_invalid") as info:
        await mongo_store.get_message(bad)
    assert "sender_invalid" in info.value.reasons


async def test_missing_times_are_derived_from_the_objectid(
    mongo_store: MongoStore, raw: Any
) -> None:
    sid = ObjectId()
    await raw.chat_sessions.insert_one({"_id": sid, "user_id": "u"})
    s = await mongo_store.get_session(sid)
    assert s.created_at == sid.generation_time
    assert s.title == ""


@pytest.mark.parametrize("chunk", [100, 2])
async def test_bulk_reads_find_every_legacy_id_form(
    mongo_store: MongoStore, raw: Any, chunk: int
) -> None:
    """``read_many`` asks for each id's likely form first, then the other forms of the ids
    not found: a string ObjectId, string and binary UUIDs, and ordinary ids all come back,
    and an absent id is left out; the same when its ``$in`` queries go two ids at a time
    (``STRANGLER_MONGO_IN_CHUNK``)."""
    mongo_store.in_chunk = chunk
    oid, str_oid, u1, u2 = ObjectId(), ObjectId(), uuid.uuid4(), uuid.uuid4()
    doc = {"created_at": NAIVE, "user_id": "u"}
    await raw.chat_sessions.insert_many(
        [
            {"_id": oid, "title": "objectid", **doc},
            {"_id": str(str_oid), "title": "string objectid", **doc},
            {"_id": str(u1), "title": "string uuid", **doc},
            {"_id": Binary.from_uuid(u2), "title": "binary uuid", **doc},
        ]
    )
    wanted = [ids.legacy_to_uuid(oid), ids.legacy_to_uuid(str_oid), u1, u2, uuid.uuid4()]
    got = await mongo_store.read_many("chat_sessions", wanted)
    titles = {i: s.title for i, s in got.items() if isinstance(s, ChatSession)}
    assert titles == {
        wanted[0]: "objectid",
        wanted[1]: "string objectid",
        u1: "string uuid",
        u2: "binary uuid",
    }
