"""Which stores the settings describe, built (not opened) from ``Settings``.

The caller opens them with ``async with``; nothing here connects.
"""

from __future__ import annotations

from typing import Literal

from strangler.backends.base import StoreLimits
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.backends.supabase_rest import SupabaseRestStore
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
            "'Connect' dialog (session pooler, port 5432, or direct). The facade and the "
            "API need it (the stage control, journal and realtime log live in Postgres); "
            "backfill, verify and repair also work with SUPABASE_URL and SUPABASE_KEY alone"
        )
    return PostgresStore(
        settings.supabase_db_url.get_secret_value(),
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        max_size=settings.pg_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
        limits=limits(settings),
    )


def new_backend(settings: Settings) -> Literal["postgres", "rest"]:
    """Which Supabase store the settings choose (``STRANGLER_NEW_BACKEND``):

    * ``SUPABASE_DB_URL`` set: the direct Postgres store (unless ``rest`` is asked for);
    * only ``SUPABASE_URL`` and ``SUPABASE_KEY``: the REST store;
    * neither: ``ConfigError`` saying what to set.
    """
    has_db = settings.supabase_db_url is not None
    has_rest = bool(settings.supabase_url) and settings.supabase_key is not None
    choice = settings.new_backend
    if choice == "postgres" or (choice == "auto" and has_db):
        if not has_db:
            raise ConfigError("STRANGLER_NEW_BACKEND=postgres needs SUPABASE_DB_URL")
        return "postgres"
    if has_rest:
        return "rest"
    raise ConfigError(
        "no Supabase store: set SUPABASE_DB_URL (the database URL, fastest) or SUPABASE_URL "
        "and SUPABASE_KEY (the service-role key; REST, no database password needed)"
        if choice == "auto"
        else "STRANGLER_NEW_BACKEND=rest needs SUPABASE_URL and SUPABASE_KEY"
    )


def new_chat_store(settings: Settings, *, bulk: bool = False) -> PostgresStore | SupabaseRestStore:
    """The Supabase store for backfill, verify and repair: direct or REST, as chosen by
    :func:`new_backend`. The facade itself still needs the direct store (:func:`new_store`)."""
    if new_backend(settings) == "postgres":
        return new_store(settings, bulk=bulk)
    assert settings.supabase_url is not None and settings.supabase_key is not None
    return SupabaseRestStore(
        settings.supabase_url,
        settings.supabase_key.get_secret_value(),
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        limits=limits(settings),
    )
