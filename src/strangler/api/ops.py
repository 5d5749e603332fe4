"""Health, readiness, metrics, and the admin API (stage, status, divergences).

``/healthz`` says the process runs; ``/readyz`` that the authoritative store answers, so a
load balancer stops sending traffic to an instance that cannot serve it. ``/metrics`` is
Prometheus text: the facade's metrics. ``/admin/*`` needs ``STRANGLER_ADMIN_TOKEN``.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from strangler.api.http import json_body, json_response
from strangler.api.keys import (
    AUTH,
    CONTROLLER,
    DIVERGENCES,
    FACADE,
    FOLLOWING,
    GUARD,
    HUB,
    JOBS,
    METRICS,
    RUNS,
    STAGES,
)
from strangler.api.problems import Problem
from strangler.core.errors import Conflict, StoreUnavailable, StranglerError
from strangler.core.stages import Role, Stage
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.metrics import FacadeMetrics

T = TypeVar("T")

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    facade = request.app[FACADE]
    role = facade.stage.authoritative
    try:
        latency = await facade.store(role).ping()
    except StranglerError as exc:
        facade.metrics.ready.set(0)
        raise StoreUnavailable(f"not ready: the authoritative store is down ({exc})") from None
    facade.metrics.ready.set(1)
    return json_response(
        {"status": "ready", "stage": facade.stage.value, "authoritative_ping_ms": latency * 1000}
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- admin ---------------------------------------------------------------------------------


@routes.get("/admin/stage")
async def get_stage(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    controller = request.app[CONTROLLER]
    stage = await controller.refresh()
    record = await request.app[STAGES].read_stage()
    return json_response(
        {
            "stage": stage.value,
            "source": "STRANGLER_STAGE" if controller.override else "control table",
            "changed_at": None if record is None else record.changed_at.isoformat(),
            "changed_by": None if record is None else record.origin,
            "reason": None if record is None else record.reason,
        }
    )


@routes.put("/admin/stage")
async def set_stage(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    body = await json_body(request)
    try:
        target = Stage(str(body.get("stage")))
    except ValueError:
        raise Problem(
            422,
            "invalid_input",
            f"stage must be one of {', '.join(s.value for s in Stage)}",
            errors=[{"loc": ["body", "stage"], "msg": "unknown stage", "type": "enum"}],
        ) from None
    reason = body.get("reason")
    record = await request.app[CONTROLLER].set(
        target,
        reason=reason if isinstance(reason, str) else None,
        origin=f"admin-api:{request.remote or 'unknown'}",
        force=body.get("force") is True,
        confirm=body.get("confirm") is True,
    )
    return json_response({"stage": record.stage.value, "changed_at": record.changed_at.isoformat()})


@routes.get("/admin/status")
async def status(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    facade = request.app[FACADE]
    metrics = request.app[METRICS]
    lag = sorted(metrics.recent_lag)
    return json_response(
        {
            "stage": facade.stage.value,
            "backends": await backend_statuses(facade, metrics),
            "consistency_rate": metrics.consistency_rate(),
            "followers": [f.status.json() for f in request.app.get(FOLLOWING, ())],
            "guard": request.app.get(GUARD),
            # What a soak watches for leaks: tasks that never finish, streams never closed.
            "process": {
                "asyncio_tasks": len(asyncio.all_tasks()),
                "realtime_subscribers": request.app[HUB].subscribers,
                "realtime_outbox": request.app[HUB].outbox_depth,
            },
            "lag_ms": {
                "p50": statistics.median(lag) * 1000 if lag else None,
                "p99": lag[min(len(lag) - 1, int(len(lag) * 0.99))] * 1000 if lag else None,
            },
        }
    )


#: How long the status page waits for a store's ping or a journal count (the call itself
#: goes on, bounded by the store's timeout, and is never cancelled).
STATUS_WAIT_SECONDS = 1.0


async def _bounded(call: Awaitable[T], what: str) -> T:
    """``call``'s result, or ``StoreUnavailable`` after ``STATUS_WAIT_SECONDS``: the status
    page answers even while a store hangs."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    try:
        return await asyncio.wait_for(asyncio.shield(task), STATUS_WAIT_SECONDS)
    except TimeoutError:
        raise StoreUnavailable(f"{what}: no answer within {STATUS_WAIT_SECONDS:g}s") from None


async def backend_statuses(facade: DualWriteStore, metrics: FacadeMetrics) -> dict[str, Any]:
    """Both stores' health and repair queues. Side by side: a hung store delays the page
    by ``STATUS_WAIT_SECONDS`` once, not per ask; and each journal is counted once for
    both queues (on SecantusDB a count scans the journal, and the page is polled)."""

    async def queues() -> dict[Role, int] | None:
        try:
            return await _bounded(facade.pending_all(), "repair queue count")
        except StranglerError:
            return None

    old, new, depths = await asyncio.gather(
        backend_status(facade, metrics, "old"), backend_status(facade, metrics, "new"), queues()
    )
    old["repair_queue_depth"] = None if depths is None else depths["old"]
    new["repair_queue_depth"] = None if depths is None else depths["new"]
    return {"old": old, "new": new}


async def backend_status(
    facade: DualWriteStore, metrics: FacadeMetrics, role: Any
) -> dict[str, Any]:
    """One store's health; its ``repair_queue_depth`` is filled in by ``backend_statuses``."""
    store = facade.store(role)
    retired = role == "old" and facade.stage.old_retired
    breaker = facade.breakers[role]
    latency: float | None = None
    healthy, error = True, None
    if breaker.state != "closed":
        # Not answering: the breaker's probes say so already; asking again would make the
        # status page as slow as the hung store.
        healthy, error = False, f"circuit breaker {breaker.state.replace('_', ' ')}"
    elif not retired:  # once decommissioned, MongoDB is not asked (it may be gone)
        try:
            latency = await _bounded(store.ping(), f"{store.name} ping")
        except StranglerError as exc:
            healthy, error = False, str(exc)
    ops = errors = 0.0
    for metric in metrics.op_seconds.collect():
        for s in metric.samples:
            if s.name.endswith("_count") and s.labels.get("store") == store.name:
                ops += s.value
    for metric in metrics.errors.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels.get("store") == store.name:
                errors += s.value
    return {
        "store": store.name,
        "role": "MongoDB" if role == "old" else "Supabase",
        "healthy": healthy,
        "error": error,
        "ping_ms": None if latency is None else latency * 1000,
        "error_rate": errors / ops if ops else 0.0,
        "operations": int(ops),
        "repair_queue_depth": None,
        "decommissioned": retired,
        "breaker": breaker.json(),
    }


@routes.get("/admin/divergences")
async def divergences(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    raw = request.query.get("limit", "50")
    limit = min(int(raw), 1000) if raw.isdigit() and int(raw) > 0 else 50
    rows = await request.app[DIVERGENCES].divergences(limit)
    return json_response(
        {
            "items": [
                {**r, "at": r["at"].isoformat(), "record_id": str(r["record_id"])} for r in rows
            ]
        }
    )


@routes.post("/admin/verify")
async def start_verify(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    if request.app[FACADE].stage.old_retired:
        raise Conflict(
            "the migration is decommissioned: MongoDB is out of it, so there is nothing to "
            "compare Supabase with (a final check before decommissioning: 'strangler verify' "
            "at complete)"
        )
    job = request.app[JOBS].start(request.app[FACADE], request.app[RUNS])
    return json_response(job.json(), status=202)


@routes.get("/admin/verify/{job_id}")
async def verify_job(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    job = request.app[JOBS].jobs.get(request.match_info["job_id"])
    if job is None:
        raise Problem(404, "not_found", "no such verify job on this instance")
    return json_response(job.json())
