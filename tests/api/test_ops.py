"""Health, readiness, metrics and the admin API."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from strangler.api.problems import problems
from tests.api.conftest import ADMIN, ApiFactory, as_user

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


async def test_health_readiness_and_metrics(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["stage"] == "dualwrite"
    await client.post("/sessions", json={"title": "t"}, headers=as_user("alice"))
    metrics = await (await client.get("/metrics")).text()
    assert 'strangler_store_op_seconds_count{op="create_session",store="mongo"}' in metrics
    assert 'strangler_stage{stage="dualwrite"} 1.0' in metrics


async def test_an_unreachable_authoritative_store_answers_503_not_500(
    make_api: ApiFactory,
) -> None:
    client = await make_api(
        "off", mongo_uri="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", store_timeout=0.5
    )
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and body["code"] == "store_unavailable"
    resp = await client.post("/sessions", json={"title": "t"}, headers=as_user("alice"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), (as_user("alice"), 403)],
)
async def test_the_admin_api_needs_the_admin_token(
    make_api: ApiFactory, headers: dict[str, str], status: int
) -> None:
    client = await make_api("dualwrite")
    for path in ("/admin/stage", "/admin/status", "/admin/divergences"):
        resp = await client.get(path, headers=headers)
        assert resp.status == status, path


async def test_the_admin_api_is_closed_without_a_token_configured(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", admin_token=None)
    resp = await client.get("/admin/stage", headers=ADMIN_H)
    assert resp.status == 403 and "STRANGLER_ADMIN_TOKEN" in (await resp.json())["detail"]


async def test_admin_moves_the_shared_stage(make_api: ApiFactory) -> None:
    client = await make_api(None)  # no STRANGLER_STAGE: the control table decides
    stage = await (await client.get("/admin/stage", headers=ADMIN_H)).json()
    assert stage["stage"] == "off" and stage["source"] == "control table"
    resp = await client.put(
        "/admin/stage", json={"stage": "dualwrite", "reason": "go"}, headers=ADMIN_H
    )
    assert resp.status == 200, await resp.text()
    after = await (await client.get("/admin/stage", headers=ADMIN_H)).json()
    assert after["stage"] == "dualwrite" and after["reason"] == "go"
    assert after["changed_by"].startswith("admin-api:")
    skip = await client.put("/admin/stage", json={"stage": "complete"}, headers=ADMIN_H)
    assert skip.status in (409, 422) and "force" in (await skip.json())["detail"]
    bad = await client.put("/admin/stage", json={"stage": "sideways"}, headers=ADMIN_H)
    assert bad.status == 422 and "one of" in (await bad.json())["detail"]


async def test_an_env_pinned_stage_cannot_be_moved_by_the_admin_api(
    make_api: ApiFactory,
) -> None:
    client = await make_api("dualwrite")
    resp = await client.put("/admin/stage", json={"stage": "shadow"}, headers=ADMIN_H)
    assert resp.status == 409 and "STRANGLER_STAGE" in (await resp.json())["detail"]


async def test_admin_status_and_divergences(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    await client.post("/sessions", json={"title": "t"}, headers=as_user("alice"))
    status: dict[str, Any] = await (await client.get("/admin/status", headers=ADMIN_H)).json()
    assert status["stage"] == "dualwrite"
    old, new = status["backends"]["old"], status["backends"]["new"]
    assert old["healthy"] and new["healthy"]
    assert old["operations"] >= 1 and old["error_rate"] == 0.0
    assert new["repair_queue_depth"] == 0
    div = await (await client.get("/admin/divergences?limit=5", headers=ADMIN_H)).json()
    assert div["items"] == []


async def test_admin_verify_runs_in_the_background_and_reports(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    await client.post("/sessions", json={"title": "t"}, headers=as_user("alice"))
    started = await client.post("/admin/verify", headers=ADMIN_H)
    job = await started.json()
    assert started.status == 202 and job["status"] == "running"
    async with asyncio.timeout(20):
        while job["status"] == "running":
            await asyncio.sleep(0.1)
            job = await (await client.get(f"/admin/verify/{job['id']}", headers=ADMIN_H)).json()
    assert job["status"] == "done", job
    assert job["result"]["equal"] is True
    assert [t["compared"] for t in job["result"]["tables"]] == [1, 0]
    missing = await client.get("/admin/verify/nope", headers=ADMIN_H)
    assert missing.status == 404


async def test_a_connection_reset_while_the_client_is_connected_is_still_a_500() -> None:
    """The middleware takes a ConnectionResetError for a client that left only when the
    client's connection is in fact closed; anything else is a bug, answered 500 and logged."""

    async def handler(request: web.Request) -> web.Response:
        raise ConnectionResetError("from somewhere else")

    app = web.Application(middlewares=[problems])
    app.router.add_get("/boom", handler)
    async with TestClient(TestServer(app)) as client:
        with structlog.testing.capture_logs() as logs:
            resp = await client.get("/boom")
            body = await resp.json(content_type=None)
    assert resp.status == 500 and body["code"] == "internal"
    assert [e["event"] for e in logs] == ["request_crashed"]


async def test_every_metric_the_alerts_and_the_dashboard_name_is_on_metrics(
    make_api: ApiFactory,
) -> None:
    """deploy/prometheus/alerts.yml and deploy/grafana/strangler.json name only metrics an
    instance exposes (a renamed metric would leave an alert that never fires)."""
    import re

    from tests.test_deploy import metric_names_used

    client = await make_api("dualwrite")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    exposed = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    names = set()
    for name, kind in exposed:
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter":
            names |= {f"{name}_total", f"{name}_created"}
    for source, used in metric_names_used().items():
        assert used, source
        missing = used - names
        assert not missing, f"{source} names metrics /metrics does not have: {missing}"
