"""The Supabase schema: SQL migrations in the Supabase CLI layout, and how to apply them.

The files live in ``strangler/schema/migrations/`` (``supabase/migrations`` in the repo is
a link to them), named ``<timestamp>_<name>.sql``. Each file is idempotent; ``apply``
also records what it applied in ``strangler.schema_migrations`` and holds an advisory lock,
so two instances starting at once do not race.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg import exceptions as pgerr

from strangler.core.errors import StoreError, StoreUnavailable

_LOCK_KEY = 0x5374_7261_6E67  # "Strang": one advisory lock for schema changes


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration, in the order its timestamp gives."""
    folder = resources.files("strangler.schema") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def render() -> str:
    """All migrations as one SQL script, for ``strangler schema print``."""
    parts = [f"-- migration: {m.name}\n{m.sql.rstrip()}\n" for m in migrations()]
    return "\n".join(parts)


async def apply(
    dsn: str, *, connect_timeout: float = 30.0, statement_cache_size: int = 0
) -> list[str]:
    """Apply the migrations not yet recorded; returns their names (empty when up to date).

    Raises ``StoreUnavailable`` when the database cannot be reached, ``StoreError`` when a
    statement fails (the failing migration is rolled back as a whole).
    """
    try:
        conn = await asyncpg.connect(
            dsn, timeout=connect_timeout, statement_cache_size=statement_cache_size
        )
    except (
        OSError,
        TimeoutError,
        asyncpg.InterfaceError,
        pgerr.PostgresConnectionError,
        pgerr.InvalidAuthorizationSpecificationError,
        pgerr.InvalidPasswordError,
    ) as exc:
        raise StoreUnavailable(
            f"postgres: cannot connect to apply the schema: {exc}", store="postgres"
        ) from exc
    applied: list[str] = []
    current = ""
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS strangler;"
            "CREATE TABLE IF NOT EXISTS strangler.schema_migrations ("
            " name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in await conn.fetch("SELECT name FROM strangler.schema_migrations")}
        for m in migrations():
            if m.name in done:
                continue
            current = m.name
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO strangler.schema_migrations (name) VALUES ($1)", m.name
                )
            applied.append(m.name)
    except asyncpg.PostgresError as exc:
        raise StoreError(
            f"postgres: migration {current or '(setup)'} failed: {exc}", store="postgres"
        ) from exc
    except (OSError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(
            f"postgres: connection lost while applying the schema: {exc}", store="postgres"
        ) from exc
    finally:
        try:
            await conn.close(timeout=5)
        except (OSError, TimeoutError, asyncpg.InterfaceError):
            conn.terminate()
    return applied
