"""What a Supabase plan limits, read from Postgres: connections, database and table
sizes, and row counts, each against its limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strangler.backends.postgres.store import PostgresStore


@dataclass(frozen=True)
class QuotaPlan:
    db_bytes: int
    max_rows: int | None
    warn_ratio: float


def _item(name: str, used: int, limit: int | None, warn: float, unit: str) -> dict[str, Any]:
    ratio = None if not limit else used / limit
    return {
        "name": name,
        "used": used,
        "limit": limit,
        "unit": unit,
        "ratio": ratio,
        "warn": ratio is not None and ratio >= warn,
    }


async def quotas(store: PostgresStore, plan: QuotaPlan) -> dict[str, Any]:
    """What the Supabase plan limits, used against its limit, each flagged at ``warn_ratio``.

    Row counts are the planner's estimates (``pg_class.reltuples``), exact counts only for
    tables never analysed: ``count(*)`` on a large table is a scan, and this runs every few
    seconds while the dashboard is open.
    """
    async with store.connection("quotas") as conn:
        in_use: int = await conn.fetchval("SELECT count(*) FROM pg_stat_activity")
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections"))
        db_size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, c.reltuples::bigint AS est"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname IN ('chat_sessions', 'messages')"
            " ORDER BY c.relname"
        )
        rows = {}
        for t in tables:
            est = int(t["est"])
            if est < 0:  # never analysed
                est = await conn.fetchval(f'SELECT count(*) FROM public."{t["relname"]}"')
            rows[t["relname"]] = est
    warn = plan.warn_ratio
    items = [
        _item("connections", in_use, max_conn - reserved, warn, "connections"),
        _item("database size", db_size, plan.db_bytes, warn, "bytes"),
    ]
    items += [
        _item(f"{t['relname']} size", int(t["bytes"]), plan.db_bytes, warn, "bytes") for t in tables
    ]
    items += [_item(f"{name} rows", n, plan.max_rows, warn, "rows") for name, n in rows.items()]
    return {"warn_ratio": warn, "items": items}


class PostgresQuotas:
    """``Quotas`` for one store and plan."""

    def __init__(self, store: PostgresStore, plan: QuotaPlan) -> None:
        self._store = store
        self._plan = plan

    async def read(self) -> dict[str, Any]:
        return await quotas(self._store, self._plan)
