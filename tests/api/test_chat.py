"""The seed ticket's testing checklist over HTTP, against real servers, in five stages
(the last without MongoDB configured at all):
session creation, sending and receiving messages, attachments, listing and filtering,
history, error handling and data consistency."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from tests.api.checklist import new_session as _session
from tests.api.checklist import seed_checklist
from tests.api.conftest import ApiFactory, as_user

STAGES = ["off", "dualwrite", "live", "complete", "decommissioned"]
ALICE, BOB = as_user("alice"), as_user("bob")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()


async def _json(resp: Any, status: int) -> Any:
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


@pytest.mark.parametrize("stage", STAGES)
async def test_the_seed_checklist_over_http(make_api: ApiFactory, stage: str) -> None:
    # At decommissioned MongoDB is not configured at all (the runbook's last step).
    client = await make_api(stage, **({"mongo_uri": None} if stage == "decommissioned" else {}))
    await seed_checklist(client)


async def test_history_rendered_by_postgres_equals_the_record_path_over_http(
    make_api: ApiFactory,
) -> None:
    """At ``complete`` Postgres renders history pages itself; ``live`` reads the same store
    through records. Walking a history both ways, every page is the same JSON value."""
    writer = await make_api("dualwrite")
    s = await _session(writer)
    for i in range(7):
        content: dict[str, Any] = {"type": "conversation", "text": f'm{i} ü 🎉 "q"'}
        if i == 3:
            content = {"type": "image", "text": "look", "imageFile": PNG}
        body = {"sender": "assistant" if i % 2 else "user", "content": content}
        if i == 4:
            body["pdf"] = "https://example.com/doc.pdf"
        await _json(
            await writer.post(f"/sessions/{s['id']}/messages", json=body, headers=ALICE), 201
        )
    rendered = await make_api("complete", page_cache_seconds=0)
    records = await make_api("live", shadow_sample_rate=0.0)

    async def both(query: str) -> Any:
        url = f"/sessions/{s['id']}/messages?{query}"
        a = await _json(await rendered.get(url, headers=ALICE), 200)
        b = await _json(await records.get(url, headers=ALICE), 200)
        assert a == b, query
        return a

    page = await both("limit=3")
    seen = [m["id"] for m in page["items"]]
    while page["has_more"]:
        page = await both(f"limit=3&after={page['next_cursor']}")
        seen += [m["id"] for m in page["items"]]
    assert len(seen) == 7
    back = await both(f"limit=2&before={page['prev_cursor']}")
    assert [m["id"] for m in back["items"]] == seen[-3:-1]
    assert (await both("limit=1000"))["items"][3]["content"]["imageFile"] == PNG


async def test_dualwrite_keeps_both_stores_consistent(
    make_api: ApiFactory, mongo_store: MongoStore, pg_store: PostgresStore
) -> None:
    client = await make_api("dualwrite")
    s = await _session(client)
    m = await _json(
        await client.post(
            f"/sessions/{s['id']}/messages",
            json={"content": {"type": "conversation", "text": "hello"}},
            headers=ALICE,
        ),
        201,
    )
    for store in (mongo_store, pg_store):
        async with asyncio.timeout(5):
            while True:
                try:
                    stored = await store.get_message(m["id"])
                    break
                except Exception:
                    await asyncio.sleep(0.05)
        assert stored.content == {"type": "conversation", "text": "hello"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/sessions", {"title": "bad\u0000title"}, 422, "invalid_input"),
        ("post", "/sessions", {"title": 5}, 422, "invalid_input"),
        ("get", "/sessions/not-an-id", None, 404, "not_found"),  # could be a legacy id
        ("get", "/sessions/" + "x" * 513, None, 400, "invalid_id"),
        ("get", "/sessions/a%01b", None, 400, "invalid_id"),
        ("get", "/sessions?limit=0", None, 400, "invalid_parameter"),
        ("get", "/sessions?cursor=%%%", None, 400, "invalid_cursor"),
        ("get", "/sessions?created_from=yesterday", None, 400, "invalid_parameter"),
        ("get", "/sessions/65e1c3405f1137d8f8f58fea", None, 404, "not_found"),
        ("get", "/nope", None, 404, "no_such_route"),
        ("put", "/sessions", None, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_gets_a_problem_document(
    make_api: ApiFactory, method: str, path: str, body: Any, status: int, code: str
) -> None:
    client = await make_api("dualwrite")
    resp = await getattr(client, method)(path, json=body, headers=ALICE)
    problem = await _json(resp, status)
    assert resp.content_type == "application/problem+json"
    assert problem["code"] == code and problem["status"] == status
    assert problem["detail"] and problem["instance"]


async def test_bodies_that_are_not_json_or_too_large(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", max_body_bytes=1024)
    s = await _session(client)
    resp = await client.post(
        f"/sessions/{s['id']}/messages",
        data=b"{oops",
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert (await _json(resp, 400))["code"] == "invalid_json"
    resp = await client.post(
        f"/sessions/{s['id']}/messages",
        json={"content": {"type": "conversation", "text": "x" * 5000}},
        headers=ALICE,
    )
    assert (await _json(resp, 413))["code"] == "payload_too_large"
    resp = await client.post("/sessions", data="title=x", headers=ALICE)
    assert (await _json(resp, 415))["code"] == "unsupported_media_type"


async def test_messages_with_bad_content_are_refused(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    s = await _session(client)
    for body in (
        {"content": {"type": "conversation", "text": "a\u0000b"}},
        {"content": {"type": "nonsense"}},
        {"content": {"type": "conversation", "unknown": 1}},
        {"sender": "system", "content": {"type": "conversation", "text": "x"}},
        {"content": {"type": "image", "imageFile": "not base64!"}},
    ):
        resp = await client.post(f"/sessions/{s['id']}/messages", json=body, headers=ALICE)
        assert (await _json(resp, 422))["code"] == "invalid_input", body


async def test_sql_injection_strings_are_stored_literally(make_api: ApiFactory) -> None:
    client = await make_api("complete")
    evil = "'; DROP TABLE messages; --"
    s = await _session(client, evil)
    found = await _json(await client.get(f"/sessions?search={evil}", headers=ALICE), 200)
    assert [x["title"] for x in found["items"]] == [evil]
    pct = await _json(await client.get("/sessions?search=%25", headers=ALICE), 200)
    assert pct["items"] == []  # % is a literal, not a wildcard
    assert (await client.get(f"/sessions/{s['id']}", headers=ALICE)).status == 200


WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32)
PDF = b"%PDF-1.7\n" + bytes(100)
PNG_BYTES = base64.b64decode(PNG)


async def test_attachments_as_files_in_multipart_form_data(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    s = await _session(client)
    form = aiohttp.FormData()
    form.add_field("text", "three files")
    form.add_field("audio", WAV, filename="a.wav", content_type="audio/wav")
    form.add_field("image", PNG_BYTES, filename="i.png", content_type="image/png")
    form.add_field("pdf", PDF, filename="d.pdf", content_type="application/pdf")
    m = await _json(
        await client.post(f"/sessions/{s['id']}/messages", data=form, headers=ALICE), 201
    )
    assert base64.b64decode(m["content"]["audioFile"]) == WAV
    assert base64.b64decode(m["content"]["imageFile"]) == PNG_BYTES
    assert m["content"]["text"] == "three files"
    assert m["pdf"] == "data:application/pdf;base64," + base64.b64encode(PDF).decode()


@pytest.mark.parametrize(
    ("field", "data", "media_type", "status"),
    [
        ("image", WAV, "image/png", 422),  # the bytes are not an image
        ("image", PNG_BYTES, "image/svg+xml", 422),  # not an accepted type
        ("audio", WAV + bytes(2048), "audio/wav", 413),  # over the audio limit
        ("pdf", b"<html>", "application/pdf", 422),
    ],
)
async def test_bad_attachment_files_are_refused(
    make_api: ApiFactory, field: str, data: bytes, media_type: str, status: int
) -> None:
    client = await make_api("dualwrite", max_audio_bytes=1024)
    s = await _session(client)
    form = aiohttp.FormData()
    form.add_field(field, data, filename="f", content_type=media_type)
    resp = await client.post(f"/sessions/{s['id']}/messages", data=form, headers=ALICE)
    problem = await _json(resp, status)
    assert field in problem["detail"]


async def test_base64_attachments_in_json_are_checked_too(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", max_image_bytes=200)
    s = await _session(client)
    url = f"/sessions/{s['id']}/messages"
    not_png = base64.b64encode(WAV).decode()
    big = base64.b64encode(PNG_BYTES + bytes(300)).decode()
    for content, status in (
        ({"type": "image", "imageFile": not_png}, 422),
        ({"type": "image", "imageFile": big}, 413),
        ({"type": "audio", "audioFile": base64.b64encode(WAV).decode()}, 201),
    ):
        await _json(await client.post(url, json={"content": content}, headers=ALICE), status)
    pdf = {"content": {"type": "pdf"}, "pdf": "data:text/html;base64,PGh0bWw+"}
    await _json(await client.post(url, json=pdf, headers=ALICE), 422)


def test_record_json_is_exactly_pydantics_json_form() -> None:
    import datetime as dt

    from strangler.api.serialize import record_json
    from strangler.core.models import ChatSession, Message

    s = ChatSession.new(title="t", user_id="u", created_at=dt.datetime(999, 1, 2, 3, 4, 5, 6789))
    m = Message.new(
        session_id=s.id,
        sender="assistant",
        content={"type": "image", "text": "x", "imageFile": PNG},
        pdf="https://example.com/a.pdf",
        timestamp=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    )
    for record in (s, m):
        assert record_json(record) == record.model_dump(mode="json")
        assert list(record_json(record)) == list(record.model_dump(mode="json"))
