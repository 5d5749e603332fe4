"""Which stores the settings describe, built (not opened) from ``Settings``.

The caller opens them with ``async with``; nothing here connects.
"""

from __future__ import annotations

from strangler.backends.base import StoreLimits
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.config.settings import Settings
from strangler.errors import ConfigError


def limits(settings: Settings) -> StoreLimits:
    return StoreLimits(max_content_bytes=settings.max_content_bytes)


#: Seconds a bulk job (backfill, verify, repair) allows one store call: a batch of
#: thousands of rows, or a scan's first query, takes far longer than a request.
BULK_TIMEOUT = 120.0


def old_store(settings: Settings, *, bulk: bool = False) -> MongoStore:
    """The legacy MongoDB store, from ``MONGO_URI``; ``bulk`` for long-running jobs."""
    if not settings.mongo_uri:
        raise ConfigError("MONGO_URI is not set: point it at the app's MongoDB")
    return MongoStore(
        settings.mongo_uri,
        database=settings.mongo_db,
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        limits=limits(settings),
    )


def new_store(settings: Settings, *, bulk: bool = False) -> PostgresStore:
    """The Supabase store, from ``SUPABASE_DB_URL``; ``bulk`` for long-running jobs."""
    if settings.supabase_db_url is None:
        raise ConfigError(
            "SUPABASE_DB_URL is not set: use the database URL from Supabase's "
            "'Connect' dialog (session pooler, port 5432, or direct)"
        )
    return PostgresStore(
        settings.supabase_db_url.get_secret_value(),
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        max_size=settings.pg_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
        limits=limits(settings),
    )
