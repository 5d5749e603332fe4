"""The chat API at the finish line with the seed's own backend ``.env``: ``SUPABASE_URL``
and ``SUPABASE_KEY``, no ``MONGO_URI``, no ``SUPABASE_DB_URL``. No PostgREST runs here, so
this is a contract test, as the REST store's are: the API runs unchanged over the REST
store against a PostgREST stand-in on a real socket (``fake_postgrest``), every request
it sends carries the service-role key, and realtime answers 501 saying how to enable it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from strangler.api import create_app
from strangler.config import Settings
from tests.api.checklist import PNG
from tests.api.conftest import ADMIN, SECRET, token
from tests.api.fake_postgrest import FakePostgREST

KEY = "service-role-key"


@pytest.fixture
async def rest_api() -> AsyncIterator[tuple[TestClient[Any, Any], FakePostgREST, str]]:
    fake = FakePostgREST()
    postgrest = TestServer(fake.app)
    await postgrest.start_server()
    url = str(postgrest.make_url("")).rstrip("/")
    settings = Settings(
        mongo_uri=None,
        supabase_db_url=None,
        supabase_url=url,
        supabase_key=KEY,
        supabase_jwt_secret=SECRET,
        admin_token=ADMIN,
        stage=None,
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client, fake, url
    finally:
        await client.close()
        await postgrest.close()


async def _json(resp: Any, status: int) -> Any:
    body = await resp.json(content_type=None)
    assert resp.status == status, body
    return body


async def test_the_chat_api_over_supabases_rest_api_alone(rest_api: Any) -> None:
    client, fake, url = rest_api
    # Supabase Auth's issuer is checked once SUPABASE_URL is set.
    alice = {"Authorization": f"Bearer {token('alice', iss=f'{url}/auth/v1')}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}

    assert (await _json(await client.get("/readyz"), 200))["stage"] == "decommissioned"
    stage = await _json(await client.get("/admin/stage", headers=admin), 200)
    assert stage["stage"] == "decommissioned" and stage["changed_by"] == "assumed"

    # The seed's checklist, first pages only (the stand-in does not do cursors).
    s = await _json(await client.post("/sessions", json={"title": "Trip"}, headers=alice), 201)
    assert s["id"] in fake.rows["chat_sessions"]
    sent = []
    for body in (
        {"content": {"type": "conversation", "text": "hello"}},
        {"content": {"type": "image", "text": "look", "imageFile": PNG}},
        {"content": {"type": "conversation", "text": "doc"}, "pdf": "https://example.com/d.pdf"},
    ):
        sent.append(
            await _json(
                await client.post(f"/sessions/{s['id']}/messages", json=body, headers=alice), 201
            )
        )
    got = await _json(await client.get(f"/messages/{sent[1]['id']}", headers=alice), 200)
    assert got["content"]["imageFile"] == PNG
    page = await _json(await client.get(f"/sessions/{s['id']}/messages", headers=alice), 200)
    assert [m["id"] for m in page["items"]] == [m["id"] for m in sent]
    listed = await _json(await client.get("/sessions?search=tri", headers=alice), 200)
    assert [x["id"] for x in listed["items"]] == [s["id"]]
    renamed = await _json(
        await client.patch(f"/sessions/{s['id']}", json={"title": "Trip 2"}, headers=alice), 200
    )
    assert renamed["title"] == "Trip 2"
    bob = {"Authorization": f"Bearer {token('bob', iss=f'{url}/auth/v1')}"}
    await _json(await client.get(f"/sessions/{s['id']}", headers=bob), 404)  # not bob's

    # Realtime: a clear 501 that says how to enable it, on both routes.
    for path in (f"/sessions/{s['id']}/events", "/ws"):
        problem = await _json(await client.get(path, headers=alice), 501)
        assert problem["code"] == "realtime_unavailable"
        assert "SUPABASE_DB_URL" in problem["detail"] and "Supabase Realtime" in problem["detail"]

    # strangler's own tables are out of reach over REST: a 501 naming the setting, never a 500.
    moved = await client.put(
        "/admin/stage", json={"stage": "complete", "force": True, "reason": "x"}, headers=admin
    )
    problem = await _json(moved, 501)
    assert problem["code"] == "not_configured" and "SUPABASE_DB_URL" in problem["detail"]
    problem = await _json(await client.post("/admin/verify", headers=admin), 409)
    assert "decommissioned" in problem["detail"]
    await _json(await client.get("/admin/overview", headers=admin), 200)
    status = await _json(await client.get("/admin/status", headers=admin), 200)
    assert status["backends"]["old"]["decommissioned"] is True

    assert (await client.delete(f"/sessions/{s['id']}", headers=alice)).status == 204
    await _json(await client.get(f"/sessions/{s['id']}", headers=alice), 404)
    assert not fake.rows["messages"]  # the cascade

    # Every request went to PostgREST with the service-role key; nothing else was asked.
    assert fake.requests and all(apikey == KEY for _, _, apikey in fake.requests)
    assert {path.split("?")[0] for _, path, _ in fake.requests} == {
        "/rest/v1/chat_sessions",
        "/rest/v1/messages",
    }
