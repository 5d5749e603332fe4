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


def old_store(settings: Settings) -> MongoStore:
    """The legacy MongoDB store, from ``MONGO_URI``."""
    if not settings.mongo_uri:
        raise ConfigError("MONGO_URI is not set: point it at the app's MongoDB")
    return MongoStore(
        settings.mongo_uri,
        database=settings.mongo_db,
        timeout=settings.store_timeout,
        limits=limits(settings),
    )


def new_store(settings: Settings) -> PostgresStore:
    """The Supabase store, from ``SUPABASE_DB_URL``."""
    if settings.supabase_db_url is None:
        raise ConfigError(
            "SUPABASE_DB_URL is not set: use the database URL from Supabase's "
            "'Connect' dialog (session pooler, port 5432, or direct)"
        )
    return PostgresStore(
        settings.supabase_db_url.get_secret_value(),
        timeout=settings.store_timeout,
        max_size=settings.pg_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
        limits=limits(settings),
    )
