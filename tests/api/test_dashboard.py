"""The dashboard's server side: sign-in, the session cookie and CSRF header, the previewed
stage change, the overview (quotas, runs, divergences) and the live stream."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import asyncpg
import orjson

from strangler.backends.postgres import PostgresStore
from strangler.backends.postgres.runs import PostgresJobRuns as JobRuns
from tests.api.conftest import ADMIN, ApiFactory, as_user

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
COOKIE = hmac.new(ADMIN.encode(), b"strangler-dashboard", "sha256").hexdigest()


async def _signed_in(client: Any) -> None:
    resp = await client.post("/admin/login", data={"token": ADMIN}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert ADMIN not in cookie  # the token itself never reaches the browser


async def test_sign_in_sets_a_session_cookie_and_the_page_is_locked_down(
    make_api: ApiFactory,
) -> None:
    client = await make_api(None)
    page = await client.get("/admin")
    assert page.status == 200 and 'action="/admin/login"' in await page.text()
    wrong = await client.post("/admin/login", data={"token": "nope"}, allow_redirects=False)
    assert wrong.status == 403 and "Wrong admin token" in await wrong.text()
    assert "Set-Cookie" not in wrong.headers
    await _signed_in(client)
    page = await client.get("/admin")
    text = await page.text()
    assert 'data-testid="ladder"' in text and "<script src=" in text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    js = await client.get("/admin/static/dashboard.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    for bad in ("/admin/static/login.html", "/admin/static/..%2fdashboard.py", "/admin/static/x"):
        assert (await client.get(bad)).status == 404, bad
    out = await client.post("/admin/logout", allow_redirects=False)
    assert out.status == 303
    assert 'action="/admin/login"' in await (await client.get("/admin")).text()


async def test_the_cookie_alone_cannot_change_anything(make_api: ApiFactory) -> None:
    """CSRF: a cookie-authenticated change needs the dashboard's header as well."""
    client = await make_api(None)
    jar = {"Cookie": f"strangler_admin={COOKIE}"}
    body = {"stage": "dualwrite"}
    resp = await client.put("/admin/stage", json=body, headers=jar)
    assert resp.status == 403 and "header" in (await resp.json())["detail"]
    resp = await client.put(
        "/admin/stage", json=body, headers={**jar, "X-Strangler-Dashboard": "1"}
    )
    assert resp.status == 200 and (await resp.json())["stage"] == "dualwrite"
    forged = {"Cookie": "strangler_admin=" + "0" * 64, "X-Strangler-Dashboard": "1"}
    assert (await client.get("/admin/overview", headers=forged)).status == 403
    assert (await client.get("/admin/overview")).status == 401


async def test_the_dashboard_is_closed_without_an_admin_token(make_api: ApiFactory) -> None:
    client = await make_api(None, admin_token=None)
    page = await client.get("/admin")
    assert page.status == 403 and "STRANGLER_ADMIN_TOKEN" in await page.text()
    resp = await client.post("/admin/login", data={"token": ""}, allow_redirects=False)
    assert resp.status == 403


async def test_the_preview_says_what_changes_and_warns(make_api: ApiFactory, clean_pg: str) -> None:
    client = await make_api(None)
    p = await (await client.get("/admin/stage/preview?to=dualwrite", headers=ADMIN_H)).json()
    assert p["direction"] == "advance" and p["blocked"] is None
    assert p["changes"] == ["Writes go to MongoDB then Supabase (now: MongoDB)."]
    assert any("No verify has run" in w for w in p["warnings"])
    skip = await (await client.get("/admin/stage/preview?to=live", headers=ADMIN_H)).json()
    assert "skips 2 stage(s)" in skip["blocked"]
    bad = await client.get("/admin/stage/preview?to=sideways", headers=ADMIN_H)
    assert bad.status == 422 and "expected one of" in (await bad.json())["detail"]

    # A pending repair and a recent divergence show up as warnings.
    conn = await asyncpg.connect(clean_pg)
    try:
        await conn.execute(
            "INSERT INTO strangler.pending_writes (target, table_name, record_id, created_at)"
            " VALUES ('old', 'chat_sessions', gen_random_uuid(), now())"
        )
        await conn.execute(
            "INSERT INTO strangler.divergences (stage, table_name, record_id, kind, diff)"
            " VALUES ('shadow', 'chat_sessions', gen_random_uuid(), 'shadow_read', '{}')"
        )
    finally:
        await conn.close()
    p = await (await client.get("/admin/stage/preview?to=dualwrite", headers=ADMIN_H)).json()
    warnings = " ".join(p["warnings"])
    assert "1 write(s) have not reached MongoDB" in warnings
    assert "1 divergence(s) recorded in the last hour" in warnings


async def test_the_overview_shows_quotas_runs_and_a_started_verify(
    make_api: ApiFactory, clean_pg: str
) -> None:
    client = await make_api("dualwrite", plan_db_bytes=1024, quota_warn_ratio=0.5)
    await client.post("/sessions", json={"title": "t"}, headers=as_user("alice"))
    o = await (await client.get("/admin/overview", headers=ADMIN_H)).json()
    assert o["stage"] == "dualwrite" and o["ladder"][0]["stage"] == "off"
    assert o["guard"] == {"watching": False, "breach": {}, "acted": None}  # pinned: idle
    items = {i["name"]: i for i in o["quotas"]["items"]}
    conn = await asyncpg.connect(clean_pg)
    try:
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
    finally:
        await conn.close()
    assert items["connections"]["limit"] == max_conn - reserved
    assert 0 < items["connections"]["used"] < items["connections"]["limit"]
    # A database is far larger than the 1 kB plan limit set here: flagged.
    assert items["database size"]["warn"] is True and items["database size"]["ratio"] > 1
    assert items["messages rows"]["limit"] is None and items["messages rows"]["warn"] is False
    assert o["runs"]["verify"] is None

    job = await (await client.post("/admin/verify", headers=ADMIN_H)).json()
    for _ in range(100):
        state = await (await client.get(f"/admin/verify/{job['id']}", headers=ADMIN_H)).json()
        if state["status"] != "running":
            break
        await asyncio.sleep(0.1)
    o = await (await client.get("/admin/overview", headers=ADMIN_H)).json()
    run = o["runs"]["verify"]
    assert run["status"] == "done" and run["params"]["origin"] == "api"
    assert run["result"]["equal"] is True
    assert o["verify_job"]["id"] == job["id"]


async def test_the_stream_ticks_with_windowed_figures(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    for i in range(5):
        await client.post("/sessions", json={"title": f"t{i}"}, headers=as_user("alice"))
    resp = await client.get("/admin/stream", headers=ADMIN_H)
    assert resp.headers["Content-Type"] == "text/event-stream"
    ticks = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            ticks.append(orjson.loads(line[6:]))
            if len(ticks) == 2:
                break
    resp.close()
    t = ticks[0]
    assert t["stage"] == "dualwrite"
    # Both stores were written (MongoDB first, then Supabase as the secondary).
    assert t["stores"]["MongoDB"]["p99_ms"] > 0 and t["stores"]["Supabase"]["p50_ms"] > 0
    assert t["stores"]["MongoDB"]["error_rate"] == 0
    assert t["repair_queue"] == {"MongoDB": 0, "Supabase": 0}
    assert ticks[1]["t"] - t["t"] >= 0.9


async def test_open_streams_share_one_tick(make_api: ApiFactory) -> None:
    """Two operators watching: one tick computed a second (the repair queues counted
    once), not one per open stream."""
    client = await make_api("dualwrite")

    async def first_tick() -> dict[str, Any]:
        resp = await client.get("/admin/stream", headers=ADMIN_H)
        try:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    tick: dict[str, Any] = orjson.loads(line[6:])
                    return tick
        finally:
            resp.close()
        raise AssertionError("the stream ended without a tick")

    a, b = await asyncio.gather(first_tick(), first_tick())
    assert a["t"] == b["t"]


async def test_a_backfill_run_is_recorded_with_progress_and_result(pg_store: PostgresStore) -> None:
    from strangler.migrate.runs import recorded

    runs = JobRuns(pg_store)
    async with recorded(runs, "backfill", {"source": "x"}, every=0.05) as run:
        run.progress["collections"] = {"messages": {"read": 5}}
        await asyncio.sleep(0.2)
        mid = await runs.latest("backfill")
        assert mid is not None and mid["status"] == "running"
        assert mid["progress"]["collections"]["messages"]["read"] == 5
        run.result = {"counts": {"messages": {"read": 5}}}
    done = await runs.latest("backfill")
    assert done is not None and done["status"] == "done" and done["result"]["counts"]
    try:
        async with recorded(runs, "verify", {}):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    stopped = await runs.latest("verify")
    assert stopped is not None and stopped["status"] == "interrupted"
