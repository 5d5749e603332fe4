"""The aiohttp application: ``create_app(settings)``, served by ``strangler serve``.

The facade (both stores, the stage controller, the replayer) opens in ``cleanup_ctx`` and
closes after the last request has drained. Handlers take what they need from typed app
state (``api.keys``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from strangler.api import chat, ops
from strangler.api.auth import Authenticator
from strangler.api.keys import AUTH, FACADE, SETTINGS
from strangler.api.problems import problems
from strangler.config import Settings
from strangler.proxy.wiring import connect


def create_app(settings: Settings) -> web.Application:
    """The chat backend's HTTP API over the dual-write facade. Raises ``ConfigError`` when
    the settings cannot work (for example auth enabled without a way to verify tokens)."""
    app = web.Application(middlewares=[problems], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[AUTH] = Authenticator.from_settings(settings)
    app.add_routes(chat.routes)
    app.add_routes(ops.routes)
    app.cleanup_ctx.append(_facade)
    return app


async def _facade(app: web.Application) -> AsyncIterator[None]:
    async with connect(app[SETTINGS]) as facade:
        app[FACADE] = facade
        yield
