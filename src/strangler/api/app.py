"""The aiohttp application: ``create_app(settings)``, served by ``strangler serve``.

The runtime (both stores, the facade, the stage controller, the replayer, the control
plane; ``strangler.runtime``) and the realtime hub open in ``cleanup_ctx``, each part under
its own ``AppKey``. On shutdown, realtime streams end first, then requests drain, then the
hub and the facade close. Handlers take what they need from typed app
state (``api.keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Gauge

from strangler.api import chat, dashboard, openapi, ops, realtime, telemetry
from strangler.api.auth import Authenticator
from strangler.api.events import Hub
from strangler.api.invalidation import PageInvalidation
from strangler.api.jobs import VerifyJobs
from strangler.api.keys import (
    AUTH,
    CONTROLLER,
    DIVERGENCES,
    FACADE,
    FOLLOWER_STATE,
    FOLLOWING,
    GUARD,
    HISTORY_CACHE,
    HUB,
    INVALIDATION,
    JOBS,
    METRICS,
    OWNERS,
    QUOTAS,
    REALTIME_OFF,
    RUNS,
    SESSION_LIST_CACHE,
    SETTINGS,
    STAGES,
)
from strangler.api.owners import Owners
from strangler.api.page_cache import PageCache
from strangler.api.problems import problems
from strangler.config import Settings
from strangler.core import budget
from strangler.runtime import Runtime

log = structlog.get_logger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The chat backend's HTTP API over the dual-write facade. Raises ``ConfigError`` when
    the settings cannot work (for example auth enabled without a way to verify tokens)."""
    telemetry.configure()  # spans, if OpenTelemetry is installed and OTEL_* ask for it
    app = web.Application(
        middlewares=[telemetry.traced, problems, budgeted(settings.store_timeout, chat.routes)],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[AUTH] = Authenticator.from_settings(settings)
    app.add_routes(chat.routes)
    app.add_routes(ops.routes)
    app.add_routes(realtime.routes)
    app.add_routes(openapi.routes)
    dashboard.install(app)
    app[JOBS] = VerifyJobs()
    app[OWNERS] = Owners()
    app.cleanup_ctx.append(_runtime)
    app.on_shutdown.append(_close_streams)
    app.on_startup.append(_dump_tasks_on_sigusr1)
    return app


def budgeted(seconds: float, routes: web.RouteTableDef) -> Middleware:
    """The chat routes' store calls share one budget of ``seconds`` per request
    (``core.budget``): a hung store answers a request 503 within its timeout, however many
    calls the request makes. Realtime streams and the admin API are not budgeted: they
    live long, or do long work, on purpose."""
    handlers = {r.handler for r in routes if isinstance(r, web.RouteDef)}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.handler not in handlers:
            return await handler(request)
        with budget.request_budget(seconds):
            return await handler(request)

    return middleware


async def _dump_tasks_on_sigusr1(app: web.Application) -> None:
    """``kill -USR1 <pid>`` prints every asyncio task's stack to stderr: what a hung
    instance is waiting for."""

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        sys.stderr.flush()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def _runtime(app: web.Application) -> AsyncIterator[None]:
    async with Runtime.open(app[SETTINGS], ensure_indexes=True) as runtime:
        app[FACADE] = runtime.facade
        app[CONTROLLER] = runtime.controller
        app[METRICS] = metrics = runtime.metrics
        app[STAGES] = runtime.stages
        app[DIVERGENCES] = runtime.divergences
        app[RUNS] = runtime.runs
        app[QUOTAS] = runtime.quotas
        app[FOLLOWING] = runtime.following
        if runtime.guard is not None:
            app[GUARD] = runtime.guard.state
        app[FOLLOWER_STATE] = runtime.followers
        if runtime.realtime_off is not None:
            app[REALTIME_OFF] = runtime.realtime_off
        facade = runtime.facade
        hub = app[HUB] = Hub(
            runtime.events,
            publish_wait=app[SETTINGS].secondary_timeout,
            # The event log is in Postgres: wait for it only where Postgres is authoritative
            # and answering.
            skip_wait=lambda: (
                facade.stage.authoritative == "old" or facade.breakers["new"].state != "closed"
            ),
        )
        Gauge(
            "strangler_realtime_subscribers",
            "Open realtime streams on this instance (SSE and WebSocket)",
            registry=metrics.registry,
        ).set_function(lambda: hub.subscribers)
        Gauge(
            "strangler_realtime_outbox_depth",
            "Realtime events published here and not yet in Postgres's event log",
            registry=metrics.registry,
        ).set_function(lambda: hub.outbox_depth)
        owners = app[OWNERS]
        hub.on_event.append(
            lambda e: owners.forget(e.session_id) if e.kind == "session.deleted" else None
        )
        settings = app[SETTINGS]
        # Other instances' writes reach this one's caches as realtime events: without the
        # event log (Supabase's REST API alone) nothing would drop a stale page, so no cache.
        seconds = 0.0 if runtime.realtime_off else settings.page_cache_seconds
        caches = {
            name: PageCache(
                seconds,
                settings.page_cache_mb << 20,
                listening=hub,
                registry=metrics.registry,
                name=name,
            )
            for name in ("history", "session_list")
        }
        history = app[HISTORY_CACHE] = caches["history"]
        lists = app[SESSION_LIST_CACHE] = caches["session_list"]
        invalidation = app[INVALIDATION] = PageInvalidation(history, lists)
        hub.on_event.append(invalidation.on_event)
        await hub.start()
        try:
            yield
        finally:
            await app[JOBS].stop_all()
            await hub.stop()


async def _close_streams(app: web.Application) -> None:
    """Shutdown: end SSE and WebSocket streams first, so draining requests can finish."""
    if HUB in app:
        await app[HUB].close_streams()
