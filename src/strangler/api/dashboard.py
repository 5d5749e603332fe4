"""The operator dashboard at ``/admin``: plain HTML, CSS and JS from ``api/static``.

Sign-in takes the admin token once and sets an ``HttpOnly``, ``SameSite=Strict`` session
cookie (an HMAC of the token) limited to ``/admin``; the page then uses the same admin API
as ``curl`` does. Its JSON endpoints:

* ``GET /admin/overview``: stage, ladder, backends, quotas, backfill and verify runs,
  latest divergences and transitions, in one call;
* ``GET /admin/stage/preview?to=STAGE``: what a stage change will do, its warnings, and
  the evidence it needs (met or missing);
* ``GET /admin/stream``: Server-Sent Events, one ``tick`` a second with the windowed
  latency, error rate, consistency rate, secondary lag and repair-queue depth.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from strangler.api.auth import ADMIN_COOKIE
from strangler.api.http import body_timeout, json_response
from strangler.api.keys import (
    AUTH,
    CONTROLLER,
    DIVERGENCES,
    FACADE,
    FOLLOWER_STATE,
    FOLLOWING,
    GUARD,
    JOBS,
    METRICS,
    QUOTAS,
    RUNS,
    STAGES,
)
from strangler.api.ops import backend_statuses
from strangler.api.problems import Problem
from strangler.api.realtime import sse_response
from strangler.core.errors import InvalidInput, StranglerError
from strangler.core.ports import DivergenceLog, JobRuns
from strangler.core.records import follower_summary
from strangler.core.stages import Stage, check_transition
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.follower import DIRECTIONS
from strangler.proxy.metrics import FacadeMetrics

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

STATIC = Path(__file__).parent / "static"
#: The files the dashboard serves, with their media types; nothing else under /admin/static.
ASSETS = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
}
#: The page loads only its own files: no inline script, nothing from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
TICK_SECONDS = 1.0
WINDOW_SECONDS = 10.0
RECENT_DIVERGENCE = dt.timedelta(hours=1)
STORE_NAMES = {"old": "MongoDB", "new": "Supabase"}


def _page(name: str, status: int = 200, **values: str) -> web.Response:
    text = (STATIC / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return web.Response(
        text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def _signed_in(request: web.Request) -> bool:
    try:
        request.app[AUTH].admin(request)
    except StranglerError:
        return False
    return True


# --- pages and sign-in ---------------------------------------------------------------------


@routes.get("/admin")
async def page(request: web.Request) -> web.Response:
    if request.app[AUTH].admin_token is None:
        return _page(
            "login.html",
            403,
            message="The dashboard is disabled: set STRANGLER_ADMIN_TOKEN and restart.",
        )
    if not _signed_in(request):
        return _page("login.html", message="")
    return _page("dashboard.html")


@routes.get("/admin/static/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(
        body=(STATIC / name).read_bytes(),
        content_type=ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@routes.post("/admin/login")
async def login(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    if auth.admin_token is None:
        return _page("login.html", 403, message="The dashboard is disabled.")
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Problem(
            415,
            "unsupported_media_type",
            "send the sign-in form as application/x-www-form-urlencoded (field: token)",
        )
    try:
        async with asyncio.timeout(body_timeout(request)):
            form = await request.post()
    except TimeoutError:
        raise Problem(408, "request_timeout", "the sign-in form did not arrive in time") from None
    except ValueError as exc:  # a malformed body or multipart boundary
        raise Problem(400, "invalid_form", f"the sign-in form cannot be read: {exc}") from None
    token = form.get("token")
    if not isinstance(token, str) or not auth.check_admin_token(token.strip()):
        log.warning("dashboard_login_failed", remote=request.remote)
        return _page("login.html", 403, message="Wrong admin token.")
    resp = web.HTTPSeeOther("/admin")
    resp.set_cookie(
        ADMIN_COOKIE,
        auth.admin_cookie(),
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    log.info("dashboard_login", remote=request.remote)
    raise resp


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.Response:
    resp = web.HTTPSeeOther("/admin")
    resp.del_cookie(ADMIN_COOKIE, path="/admin")
    raise resp


# --- what the page shows -------------------------------------------------------------------


def describe(stage: Stage) -> dict[str, Any]:
    """What ``stage`` routes, in words an operator reads on the ladder."""
    writes = [STORE_NAMES[stage.authoritative]]
    if stage.secondary is not None:
        writes.append(STORE_NAMES[stage.secondary])
    return {
        "stage": stage.value,
        "reads": STORE_NAMES[stage.authoritative],
        "writes": writes,
        "shadow": stage.shadow_reads,
    }


def _changes(current: Stage, target: Stage) -> list[str]:
    a, b = describe(current), describe(target)
    out = []
    if a["reads"] != b["reads"]:
        out.append(f"Reads move from {a['reads']} to {b['reads']}.")
    if a["writes"] != b["writes"]:
        out.append(
            f"Writes go to {' then '.join(b['writes'])} (now: {' then '.join(a['writes'])})."
        )
    if a["shadow"] != b["shadow"]:
        other = "MongoDB" if b["reads"] == "Supabase" else "Supabase"
        out.append(
            f"Shadow reads of {other} are compared with every read."
            if b["shadow"]
            else "Shadow comparison stops."
        )
    if target == Stage.COMPLETE and current.order < target.order:
        out.append("MongoDB stops receiving writes; they are parked so a rollback can replay them.")
    if current == Stage.COMPLETE and target.order < current.order:
        out.append("Writes parked while complete are replayed into MongoDB.")
    if target.old_retired:
        out.append(
            "MongoDB leaves the migration for good: nothing is parked or copied for it, the "
            "writes still queued for it are dropped, and instances can run without MONGO_URI. "
            "Confirming this dialog is the explicit yes this move needs."
        )
    if current.old_retired:
        out.append(
            "MongoDB comes back as the rollback path, but it missed every write made while "
            "decommissioned: every instance needs MONGO_URI again, then run "
            "'strangler repair' to copy Supabase's data into it."
        )
    return out


async def _safe(coro: Any, default: Any = None) -> Any:
    """A panel whose store is down shows its error instead of failing the whole page."""
    try:
        return await coro
    except StranglerError as exc:
        return {"error": str(exc)} if default is None else default


async def _warnings(
    facade: DualWriteStore, divergences: DivergenceLog, runs: JobRuns, target: Stage
) -> list[str]:
    out = []
    for role in ("old", "new"):
        try:
            n = await facade.pending(role)
        except StranglerError as exc:
            out.append(f"The repair queue for {STORE_NAMES[role]} cannot be read: {exc}")
            continue
        if n:
            out.append(
                f"{n} write(s) have not reached {STORE_NAMES[role]} yet (pending repairs); "
                "a move that changes the authoritative store is refused until they land."
            )
    rows = await _safe(divergences.divergences(200), [])
    cutoff = dt.datetime.now(dt.UTC) - RECENT_DIVERGENCE
    recent = [r for r in rows if r["at"] >= cutoff]
    if recent:
        out.append(f"{len(recent)} divergence(s) recorded in the last hour.")
    last = await _safe(runs.latest("verify"), {})
    if not last:
        out.append("No verify has run yet: run one before moving reads.")
    elif last.get("status") != "done":
        out.append(f"The last verify did not finish ({last.get('status')}).")
    elif not (last.get("result") or {}).get("equal"):
        out.append(f"The last verify ({last['updated_at']}) found differences.")
    return out


@routes.get("/admin/stage/preview")
async def preview(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    app = request.app
    controller = app[CONTROLLER]
    current = await controller.refresh()
    target = Stage.parse(request.query.get("to", ""))  # InvalidInput: a 422 naming them
    blocked = None
    if controller.override is not None:
        blocked = (
            f"STRANGLER_STAGE={controller.override} is set on this instance and wins; "
            "change the environment variable and restart instead"
        )
    elif target == current:
        blocked = f"the stage is already {current}"
    else:
        try:
            check_transition(current, target, force=False)
        except InvalidInput as exc:
            blocked = str(exc)
    gate = controller.gate
    evidence = [] if gate is None or target == current else await gate.checks(current, target)
    return json_response(
        {
            "from": describe(current),
            "to": describe(target),
            "direction": "advance" if target.order > current.order else "roll back",
            "changes": _changes(current, target),
            "warnings": await _warnings(app[FACADE], app[DIVERGENCES], app[RUNS], target),
            "blocked": blocked,
            # What the move needs, judged from the records: a missing piece refuses it
            # unless forced with a reason (the same check as PUT /admin/stage).
            "evidence": [c.json() for c in evidence],
        }
    )


@routes.get("/admin/overview")
async def overview(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request)
    app = request.app
    facade, controller, metrics, runs = app[FACADE], app[CONTROLLER], app[METRICS], app[RUNS]
    stage = await controller.refresh()
    jobs = list(app[JOBS].jobs.values())
    recorded = await _safe(app[DIVERGENCES].divergences(200), [])
    divergences = [r for r in recorded if r["kind"] not in CAPTURE_KINDS][:20]
    captured = [r for r in recorded if r["kind"] in CAPTURE_KINDS][:20]
    transitions = await _safe(app[STAGES].transitions(10), [])
    return json_response(
        {
            "stage": stage.value,
            "source": "STRANGLER_STAGE" if controller.override else "control table",
            "ladder": [describe(s) for s in Stage],
            "backends": await backend_statuses(facade, metrics),
            "quotas": await _safe(app[QUOTAS].read()),
            "runs": {
                kind: await _safe(runs.latest(kind)) for kind in ("backfill", "verify", "repair")
            },
            # The latest partitioned run of each kind, partition by partition.
            "partitions": {
                kind: await _safe(runs.partitions(kind), [])
                for kind in ("backfill", "verify", "repair")
            },
            "verify_job": jobs[-1].json() if jobs else None,
            "divergences": [_divergence(r) for r in divergences],
            "followers": await _followers(app),
            "guard": app.get(GUARD),
            "bypass_writes": [_divergence(r) for r in captured],
            "transitions": [
                {**t, "at": t["at"].astimezone(dt.UTC).isoformat()} for t in transitions
            ],
        }
    )


#: Records a change follower makes: a write around the facade, a document it reported.
CAPTURE_KINDS = frozenset({"bypass_write", "stream_quarantined"})


async def _followers(app: web.Application) -> list[dict[str, Any]]:
    """Each follower as every instance shares it, with this instance's view of it."""
    here = {f.direction.name: f.status.json() for f in app.get(FOLLOWING, ())}
    now = dt.datetime.now(dt.UTC)
    out = []
    for d in DIRECTIONS:
        record = await _safe(app[FOLLOWER_STATE].load(d.name))
        out.append({"name": d.name, **follower_summary(record, now), "here": here.get(d.name)})
    return out


def _divergence(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "at": row["at"].astimezone(dt.UTC).isoformat(),
        "record_id": str(row["record_id"]),
    }


# --- live charts ---------------------------------------------------------------------------


class Streams:
    """Open dashboard streams; shutdown ends them at their next tick. Every open stream
    shares one tick a second: the tick counts the repair queues (a scan of the journal on
    SecantusDB), and ten operators watching an incident must not cost ten counts."""

    def __init__(self) -> None:
        self.closing = False
        self._last: tuple[float, bytes] | None = None
        self._lock = asyncio.Lock()

    async def tick(self, compute: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
        """The latest tick, computed again once it is half a tick old."""
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= TICK_SECONDS / 2:
                self._last = (now, orjson.dumps(await compute()))
            return self._last[1]


STREAMS = web.AppKey("dashboard_streams", Streams)


async def tick(
    facade: DualWriteStore, metrics: FacadeMetrics, divergences: DivergenceLog
) -> dict[str, Any]:
    window = metrics.window(WINDOW_SECONDS)
    queue: dict[str, int | None] = {}
    try:
        depths = await facade.pending_all()
        queue = {STORE_NAMES[role]: depths[role] for role in ("old", "new")}
    except StranglerError:
        queue = {STORE_NAMES[role]: None for role in ("old", "new")}
    rows = await _safe(divergences.divergences(1), [])
    latest = rows[0]["id"] if rows else 0
    stores = {
        STORE_NAMES[role]: window["stores"].get(facade.store(role).name) for role in ("old", "new")
    }
    return {
        "t": time.time(),
        "stage": facade.stage.value,
        "stores": stores,
        "consistency_rate": window["consistency_rate"],
        "comparisons": window["comparisons"],
        "lag_p99_ms": window["lag_p99_ms"],
        "repair_queue": queue,
        "latest_divergence": latest,
    }


@routes.get("/admin/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    request.app[AUTH].admin(request)
    app = request.app
    facade, metrics, divergences = app[FACADE], app[METRICS], app[DIVERGENCES]
    streams = app[STREAMS]
    resp = await sse_response(request, retry_ms=2000)
    try:
        while not streams.closing:
            data = await streams.tick(lambda: tick(facade, metrics, divergences))
            await resp.write(b"event: tick\ndata: " + data + b"\n\n")
            await asyncio.sleep(TICK_SECONDS)
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    return resp


def install(app: web.Application) -> None:
    app.add_routes(routes)
    app[STREAMS] = Streams()

    async def close(app: web.Application) -> None:
        app[STREAMS].closing = True

    app.on_shutdown.append(close)
