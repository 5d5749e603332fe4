"""``strangler serve``: the chat backend's HTTP API on the facade."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from strangler.config import Settings

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the chat backend's HTTP API on the facade",
        description="Serves the chat API, realtime, the admin API, /healthz, /readyz and "
        "/metrics on STRANGLER_HOST:STRANGLER_PORT (default 0.0.0.0:8080). Needs MONGO_URI and "
        "SUPABASE_DB_URL, and SUPABASE_JWT_SECRET or SUPABASE_URL to verify tokens (or "
        "STRANGLER_AUTH=disabled for local development).",
    )
    p.add_argument("--host", help="address to bind (default STRANGLER_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default STRANGLER_PORT or 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from strangler.api import create_app
    from strangler.api.server import serve
    from strangler.operate.memtrace import tracing

    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    print(f"strangler: serving the chat API on http://{host}:{port} (Ctrl-C stops)", flush=True)

    async def main() -> None:
        async with tracing(settings.tracemalloc_dir, settings.tracemalloc_seconds):
            await serve(app, host, port, header_timeout=settings.header_timeout)

    asyncio.run(main())
    return 0
