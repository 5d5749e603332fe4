"""The seed ticket's testing checklist over HTTP, as one routine several tests run: against
the API in each stage (``test_chat``) and against ``strangler serve`` without MongoDB
(``test_finish_line``)."""

from __future__ import annotations

import base64
from typing import Any

from strangler.core import ids
from tests.api.conftest import as_user

ALICE = as_user("alice")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()


async def _json(resp: Any, status: int) -> Any:
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


async def new_session(client: Any, title: str = "Trip") -> dict[str, Any]:
    return await _json(await client.post("/sessions", json={"title": title}, headers=ALICE), 201)


async def seed_checklist(client: Any) -> None:
    """The checklist against ``client`` (a ``TestClient``, or an ``aiohttp.ClientSession``
    with a ``base_url``): creation, messages with attachments, history paged both ways,
    listing and filtering, rename, the legacy id form, delete."""
    # session creation
    s = await new_session(client)
    assert s["title"] == "Trip" and s["user_id"] == "alice"
    assert s["created_at"].endswith("Z")
    # sending and receiving messages, with attachments
    sent = []
    for i in range(5):
        body: dict[str, Any] = {
            "sender": "user",
            "content": {"type": "conversation", "text": f"m{i}"},
        }
        if i == 2:
            body["content"] = {"type": "image", "text": "look", "imageFile": PNG}
        if i == 3:
            body["pdf"] = "https://example.com/doc.pdf"
        sent.append(
            await _json(
                await client.post(f"/sessions/{s['id']}/messages", json=body, headers=ALICE), 201
            )
        )
    got = await _json(await client.get(f"/messages/{sent[2]['id']}", headers=ALICE), 200)
    assert got["content"]["imageFile"] == PNG
    # history: oldest first, paged forwards and backwards with cursors
    page = await _json(
        await client.get(f"/sessions/{s['id']}/messages?limit=2", headers=ALICE), 200
    )
    assert [m["content"]["text"] for m in page["items"]] == ["m0", "m1"] and page["has_more"]
    nxt = await _json(
        await client.get(
            f"/sessions/{s['id']}/messages?limit=10&after={page['next_cursor']}", headers=ALICE
        ),
        200,
    )
    assert [m["id"] for m in nxt["items"]] == [m["id"] for m in sent[2:]]
    back = await _json(
        await client.get(
            f"/sessions/{s['id']}/messages?limit=2&before={nxt['prev_cursor']}", headers=ALICE
        ),
        200,
    )
    assert [m["id"] for m in back["items"]] == [m["id"] for m in sent[:2]]
    # listing and filtering
    await new_session(client, "Budget 2026")
    listed = await _json(await client.get("/sessions?search=budget", headers=ALICE), 200)
    assert [x["title"] for x in listed["items"]] == ["Budget 2026"]
    all_mine = await _json(await client.get("/sessions?limit=1", headers=ALICE), 200)
    assert all_mine["items"][0]["title"] == "Budget 2026" and all_mine["has_more"]
    rest = await _json(
        await client.get(f"/sessions?limit=5&cursor={all_mine['next_cursor']}", headers=ALICE),
        200,
    )
    assert [x["id"] for x in rest["items"]] == [s["id"]]
    # rename, legacy id form, delete
    renamed = await _json(
        await client.patch(f"/sessions/{s['id']}", json={"title": "Trip 2"}, headers=ALICE), 200
    )
    assert renamed["title"] == "Trip 2"
    oid = ids.objectid_from_uuid(ids.parse_id(s["id"]))
    assert oid is not None
    legacy = await _json(await client.get(f"/sessions/{oid}", headers=ALICE), 200)
    assert legacy["id"] == s["id"]
    assert (await client.delete(f"/sessions/{s['id']}", headers=ALICE)).status == 204
    await _json(await client.get(f"/sessions/{s['id']}", headers=ALICE), 404)
