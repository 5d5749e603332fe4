"""``strangler demo``: everything on embedded defaults, with data kept between runs.

Starts SecantusDB (MongoDB wire protocol) and embedded PostgreSQL with their data under
``--data-dir``, seeds a legacy dataset into MongoDB the first time, applies the Supabase
schema, serves the HTTP API on the facade (the stage starts at ``off``; auth is disabled,
so ``X-User-Id`` names the user; a fresh admin token is printed), and runs until Ctrl-C,
when it stops the API and then both servers cleanly.

``--stage`` starts somewhere else on the ladder: the demo moves there with the real
commands (``strangler stage set``, and ``strangler backfill`` before any stage that reads
Supabase), forcing the moves whose evidence a fresh demo cannot have, with the reason
recorded. A real migration earns each move (README, "Runbook").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog
from pymongo import AsyncMongoClient

from strangler import schema
from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.core.stages import Stage
from strangler.embedded import EmbeddedMongo, EmbeddedPostgres, free_port
from strangler.embedded.legacy_data import generate
from strangler.embedded.mongo import IN_CHUNK as EMBEDDED_IN_CHUNK
from strangler.traffic import Traffic

log = structlog.get_logger(__name__)
DEMO_DB = "chat"


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    sessions: int = 2000
    messages_per_session: int = 5
    mongo_port: int = 27117
    pg_port: int = 54329
    api_port: int = 8080
    #: Where the API listens; ``api_port`` exactly when ``port_given`` (else a free one if
    #: it is taken).
    api_host: str = "127.0.0.1"
    port_given: bool = False
    #: The stage to start at (``--stage``).
    stage: Stage = Stage.OFF
    exit_after_setup: bool = False
    #: Requests a second of generated chat traffic (``--traffic``); 0: none.
    traffic: float = 0.0


def _port_or_free(port: int) -> int:
    with socket.socket() as sock:
        # As the servers do: a port with connections in TIME_WAIT from the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


async def _seed(mongo_uri: str, opts: DemoOptions) -> int:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_uri)
    try:
        db = client[DEMO_DB]
        existing: int = await db.chat_sessions.estimated_document_count()
        if existing:
            return 0
        batch_s: list[dict[str, object]] = []
        batch_m: list[dict[str, object]] = []
        for s, msgs in generate(opts.sessions, opts.messages_per_session):
            batch_s.append(s)
            batch_m.extend(msgs)
            if len(batch_m) >= 5000:
                await db.chat_sessions.insert_many(batch_s)
                await db.messages.insert_many(batch_m)
                batch_s, batch_m = [], []
        if batch_s:
            await db.chat_sessions.insert_many(batch_s)
            await db.messages.insert_many(batch_m)
        return opts.sessions
    finally:
        await client.close()


async def _setup(mongo: EmbeddedMongo, pg: EmbeddedPostgres, opts: DemoOptions) -> None:
    seeded = await _seed(mongo.uri, opts)
    applied = await schema.apply(pg.dsn)
    from strangler.runtime import new_store, old_store

    stores = Settings(
        mongo_uri=mongo.uri.replace("/?", f"/{DEMO_DB}?"), mongo_db=DEMO_DB, supabase_db_url=pg.dsn
    )
    async with old_store(stores) as mstore, new_store(stores) as pstore:
        await mstore.ensure_indexes()
        counts = (
            await mstore.count("chat_sessions"),
            await mstore.count("messages"),
            await pstore.count("chat_sessions"),
            await pstore.count("messages"),
        )
    mongo_uri = mongo.uri.replace("/?", f"/{DEMO_DB}?")
    seeded_note = " (seeded now)" if seeded else ""
    print(
        f"""
strangler demo is running (data in {opts.data_dir}).

  MongoDB (SecantusDB)   {mongo_uri}
                         {counts[0]} sessions, {counts[1]} messages{seeded_note}
  Postgres (Supabase)    {pg.dsn}
                         {counts[2]} sessions, {counts[3]} messages; schema: \
{", ".join(applied) if applied else "up to date"}
""",
        flush=True,
    )


async def _serve(mongo: EmbeddedMongo, pg: EmbeddedPostgres, opts: DemoOptions) -> None:
    """The HTTP API on the facade until SIGINT/SIGTERM, then a graceful stop."""
    from aiohttp import web

    from strangler.api import create_app, server

    token = secrets.token_urlsafe(18)
    mongo_uri = mongo.uri.replace("/?", f"/{DEMO_DB}?")
    settings = Settings(
        mongo_uri=mongo_uri,
        mongo_db=DEMO_DB,
        mongo_in_chunk=EMBEDDED_IN_CHUNK,
        supabase_db_url=pg.dsn,
        stage=None,  # the shared control table: it starts at off
        auth="disabled",
        admin_token=token,
    )
    port = opts.api_port if opts.port_given else _port_or_free(opts.api_port)
    runner = server.runner(create_app(settings))
    await runner.setup()
    try:
        await web.TCPSite(runner, opts.api_host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"demo: cannot listen on {opts.api_host}:{port} ({exc.strerror}); choose another "
            "--port, or leave it out to take a free one"
        ) from None
    shown = "127.0.0.1" if opts.api_host in ("0.0.0.0", "::", "") else opts.api_host
    api = f"http://{shown}:{port}"
    print(
        f"""  HTTP API               {api}   (OpenAPI: {api}/openapi.json)
  dashboard              {api}/admin   (sign in with the admin token)
  admin token            {token}

Try, in another terminal:
  curl -s {api}/sessions -H 'X-User-Id: alice' -H 'Content-Type: application/json' \\
       -d '{{"title": "Trip"}}'
  curl -s {api}/admin/status -H 'Authorization: Bearer {token}'
  curl -s -X PUT {api}/admin/stage -H 'Authorization: Bearer {token}' \\
       -H 'Content-Type: application/json' -d '{{"stage": "dualwrite"}}'
  export MONGO_URI='{mongo_uri}' SUPABASE_DB_URL='{pg.dsn}'
  .venv/bin/strangler backfill --source "$MONGO_URI"    # copy the legacy data to Supabase
  .venv/bin/strangler verify                            # diff MongoDB and Supabase

Auth is disabled in the demo: X-User-Id names the user. Press Ctrl-C to stop.
""",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    traffic = Traffic(api, rate=opts.traffic) if opts.traffic > 0 else None
    generating = asyncio.create_task(traffic.run()) if traffic is not None else None
    if traffic is not None:
        print(f"generating chat traffic: about {opts.traffic:g} requests/s", flush=True)
    try:
        await stop.wait()
    finally:
        if traffic is not None and generating is not None:
            traffic.stop()
            stats = await generating
            print(f"traffic: {stats.requests} requests, {stats.errors} errors", flush=True)
        print("stopping the API ...", flush=True)
        await runner.cleanup()


def _walk_to(target: Stage, mongo_uri: str, pg_dsn: str) -> None:
    """Move the shared stage to ``target`` with strangler's own commands, as an operator
    would, printing each: dual writes first, a backfill before a stage that reads Supabase,
    then the rest forced (the demo has no verify, shadow reads or traffic to show)."""
    env = {**os.environ, "MONGO_URI": mongo_uri, "SUPABASE_DB_URL": pg_dsn}
    env.pop("STRANGLER_STAGE", None)
    reason = f"strangler demo --stage {target.value}: a demo, not evidence"

    def cli(*argv: str) -> None:
        print(f"$ strangler {' '.join(argv)}", flush=True)
        done = subprocess.run([sys.executable, "-m", "strangler", *argv], env=env, check=False)
        if done.returncode != 0:
            raise ConfigError(
                f"demo: 'strangler {' '.join(argv)}' failed (exit {done.returncode}); see above"
            )

    ladder = list(Stage)
    current = Stage.OFF
    if ladder.index(target) >= ladder.index(Stage.DUALWRITE):
        cli("stage", "set", "dualwrite", "--reason", reason)
        current = Stage.DUALWRITE
    if ladder.index(target) >= ladder.index(Stage.SHADOW):
        cli("backfill", "--source", mongo_uri)
    if target != current:
        confirm = ["--confirm"] if target.old_retired else []
        cli("stage", "set", target.value, "--force", "--reason", reason, *confirm)


def run(opts: DemoOptions) -> int:
    """Start, seed, serve until Ctrl-C (or stop right away with ``exit_after_setup``)."""
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    mongo = EmbeddedMongo(opts.data_dir / "mongo", port=_port_or_free(opts.mongo_port))
    pg = EmbeddedPostgres(opts.data_dir / "pg", port=_port_or_free(opts.pg_port))
    print("starting embedded MongoDB and PostgreSQL ...", flush=True)
    mongo.start()
    try:
        pg.start()
        try:
            asyncio.run(_setup(mongo, pg, opts))
            if opts.stage != Stage.OFF:
                _walk_to(opts.stage, mongo.uri.replace("/?", f"/{DEMO_DB}?"), pg.dsn)
            if not opts.exit_after_setup:
                asyncio.run(_serve(mongo, pg, opts))
        finally:
            print("stopping PostgreSQL ...", flush=True)
            pg.stop()
    finally:
        print("stopping MongoDB ...", flush=True)
        mongo.stop()
    print("stopped cleanly; data kept in", opts.data_dir)
    return 0
