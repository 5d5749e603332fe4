"""Store latency and throughput, side by side in one run.

For each store (MongoStore on SecantusDB, PostgresStore on embedded PostgreSQL) and for 1
and 32 concurrent clients: p50/p99 and ops/s of ``create_session``, ``add_message`` and a
50-message history page. The same history page is also issued as raw asyncpg SQL (and as a
raw PyMongo find), interleaved call by call with the store's, so the overhead ratio is
taken under the same conditions.

Target (Foundation issue): PostgresStore history p50 ≤ 1.3x the raw asyncpg query.

With ``STRANGLER_TEST_POSTGREST_URL`` and ``STRANGLER_TEST_POSTGREST_KEY`` (a live PostgREST
or Supabase project, e.g. ``docker compose up`` and ``http://localhost:8000``), the REST store
(``SupabaseRestStore``) runs the same writes and history page, interleaved with
PostgresStore, and its ratio to the direct store is printed. Without them it is skipped.

    python bench/stores.py [--ops N] [--history-samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from _common import Stat, conditions, print_table, save, servers, timed
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.mongo.codec import session_ref_candidates
from strangler.backends.postgres.store import MESSAGE_COLS, PostgresStore
from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.core.models import ChatSession, Message

HISTORY_SQL = (
    f"SELECT {MESSAGE_COLS} FROM messages WHERE session_id = $1 ORDER BY timestamp, id LIMIT $2"
)
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: A live PostgREST for the REST store, as the conformance suite takes it.
REST_URL = os.environ.get("STRANGLER_TEST_POSTGREST_URL")
REST_KEY = os.environ.get("STRANGLER_TEST_POSTGREST_KEY", "")


def _content(i: int) -> dict[str, Any]:
    return {"type": "conversation", "text": f"message {i} " + "lorem ipsum " * 8}


async def _run_concurrent(n_ops: int, clients: int, op: Any, stat: Stat) -> None:
    per = n_ops // clients

    async def worker(w: int) -> None:
        for i in range(w * per, (w + 1) * per):
            await timed(stat, lambda i=i: op(i))

    start = asyncio.get_running_loop().time()
    async with asyncio.TaskGroup() as tg:
        for w in range(clients):
            tg.create_task(worker(w))
    stat.wall = asyncio.get_running_loop().time() - start


async def bench_writes(store: Any, label: str, clients: int, n_ops: int) -> list[Stat]:
    sessions = [
        ChatSession.new(
            title=f"s{i}", user_id=f"u{i % 50}", created_at=T0 + dt.timedelta(seconds=i)
        )
        for i in range(n_ops)
    ]
    create = Stat(f"{label} create_session c={clients}")
    await _run_concurrent(n_ops, clients, lambda i: store.create_session(sessions[i]), create)
    messages = [
        Message.new(session_id=sessions[i % 100].id, sender="user", content=_content(i))
        for i in range(n_ops)
    ]
    add = Stat(f"{label} add_message c={clients}")
    await _run_concurrent(n_ops, clients, lambda i: store.add_message(messages[i]), add)
    return [create, add]


async def seed_history(store: Any) -> ChatSession:
    s = ChatSession.new(title="history", user_id="bench", created_at=T0)
    await store.create_session(s)
    await store.upsert_messages(
        [
            Message.new(
                session_id=s.id,
                sender="user" if i % 2 else "assistant",
                content=_content(i),
                timestamp=T0 + dt.timedelta(seconds=i),
            )
            for i in range(200)
        ]
    )
    return s


async def bench_history(pairs: list[tuple[str, Any]], clients: int, samples: int) -> list[Stat]:
    """Interleave the callables call by call, so each one sees the same machine state."""
    stats = {name: Stat(f"history page 50: {name} c={clients}") for name, _ in pairs}
    per = max(1, samples // clients)

    async def worker() -> None:
        for _ in range(per):
            for name, fn in pairs:
                await timed(stats[name], fn)

    async with asyncio.TaskGroup() as tg:
        for _ in range(clients):
            tg.create_task(worker())
    for st in stats.values():
        # The pair shares the wall clock; each one's throughput is over its own share of it.
        st.wall = sum(st.samples) / clients
    return list(stats.values())


async def run_level(
    clients: int, mongo_uri: str, pg_dsn: str, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every measurement at one concurrency level, on fresh data."""
    rows: list[dict[str, Any]] = []
    db = f"bench_c{clients}"
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("TRUNCATE chat_sessions, messages CASCADE")
    await conn.close()
    async with AsyncExitStack() as stack:
        mongo = await stack.enter_async_context(MongoStore(mongo_uri, database=db))
        pg = await stack.enter_async_context(PostgresStore(pg_dsn, max_size=32))
        rest = (
            await stack.enter_async_context(
                SupabaseRestStore(REST_URL, REST_KEY, max_connections=max(clients, 2))
            )
            if REST_URL
            else None
        )
        await mongo.ensure_indexes()
        stores: list[tuple[str, Any]] = [("mongo", mongo), ("postgres", pg)]
        stores += [("rest", rest)] if rest is not None else []
        for label, store in stores:
            rows += [st.row() for st in await bench_writes(store, label, clients, args.ops)]
        hm = await seed_history(mongo)
        hp = await seed_history(pg)
        hr = await seed_history(rest) if rest is not None else None
        raw_pool = await asyncpg.create_pool(pg_dsn, min_size=clients, max_size=max(clients, 2))
        raw_mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, tz_aware=True)
        refs = session_ref_candidates(hm.id)

        async def raw_pg() -> Any:
            async with raw_pool.acquire() as c:
                return await c.fetch(HISTORY_SQL, hp.id, 51)

        async def raw_mg() -> Any:
            cursor = raw_mongo[db].messages.find({"session_id": {"$in": refs}})
            return await cursor.sort([("timestamp", 1), ("_id", 1)]).limit(51).to_list(None)

        pg_pairs: list[tuple[str, Any]] = [
            ("raw asyncpg", raw_pg),
            ("PostgresStore", lambda: pg.history(hp.id)),
        ]
        if rest is not None and hr is not None:
            pg_pairs.append(("SupabaseRestStore", lambda: rest.history(hr.id)))
        try:
            pg_stats = await bench_history(pg_pairs, clients, args.history_samples)
            mg_stats = await bench_history(
                [("raw pymongo", raw_mg), ("MongoStore", lambda: mongo.history(hm.id))],
                clients,
                max(60, args.history_samples // 5),
            )
        finally:
            await raw_pool.close()
            await raw_mongo.close()
    rows += [st.row() for st in pg_stats + mg_stats]
    p50 = {r["name"]: r["p50_ms"] for r in rows}

    def h(name: str) -> float:
        return p50[f"history page 50: {name} c={clients}"]

    ratios = {
        f"PostgresStore / raw asyncpg history p50, c={clients}": h("PostgresStore")
        / h("raw asyncpg"),
        f"MongoStore / raw pymongo history p50, c={clients}": h("MongoStore") / h("raw pymongo"),
        f"MongoStore / PostgresStore history p50, c={clients}": h("MongoStore")
        / h("PostgresStore"),
    }
    for op in ("create_session", "add_message"):
        ratios[f"mongo / postgres {op} p50, c={clients}"] = (
            p50[f"mongo {op} c={clients}"] / p50[f"postgres {op} c={clients}"]
        )
        if REST_URL:
            ratios[f"rest / postgres {op} p50, c={clients}"] = (
                p50[f"rest {op} c={clients}"] / p50[f"postgres {op} c={clients}"]
            )
    if REST_URL:
        ratios[f"SupabaseRestStore / PostgresStore history p50, c={clients}"] = h(
            "SupabaseRestStore"
        ) / h("PostgresStore")
    return rows, ratios


async def main(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    with servers() as (mongo_server, pg_server):
        await schema.apply(pg_server.dsn)
        for clients in (1, 32):
            level_rows, level_ratios = await run_level(
                clients, mongo_server.uri, pg_server.dsn, args
            )
            rows += level_rows
            ratios |= level_ratios
    print_table(rows)
    print("\nratios (side by side in this run):")
    for k, v in ratios.items():
        print(f"  {k:<52} {v:6.2f}x")
    target = ratios["PostgresStore / raw asyncpg history p50, c=1"]
    verdict = "MET" if target <= 1.3 else "MISSED"
    print(f"\ntarget: PostgresStore history p50 <= 1.3x raw asyncpg (c=1): {target:.2f}x {verdict}")
    if not REST_URL:
        print(
            "REST store (SupabaseRestStore): skipped; set STRANGLER_TEST_POSTGREST_URL and "
            "STRANGLER_TEST_POSTGREST_KEY to a live PostgREST (docker compose up) to include it"
        )
    path = save("stores", {"conditions": conditions(), "rows": rows, "ratios": ratios})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=960, help="writes per operation and level")
    parser.add_argument("--history-samples", type=int, default=1000)
    sys.exit(asyncio.run(main(parser.parse_args())))
