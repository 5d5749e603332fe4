"""Typed settings, read from the environment (and ``.env``) once, at the entry point.

No other module reads ``os.environ``: ``cli.py`` and the app factory build ``Settings()``
and pass it down. Secrets are ``SecretStr``, so they never print in a log or a repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from strangler.core.stages import Stage


class Settings(BaseSettings):
    """Every knob strangler has. The env var names are the ones the seed ticket uses
    (``MONGO_URI``, ``SUPABASE_URL``, ``SUPABASE_KEY``) plus ``SUPABASE_DB_URL`` and
    ``STRANGLER_*`` for strangler's own settings."""

    # env_ignore_empty: a variable set to "" counts as unset (``MONGO_URI=`` in a compose
    # file or a ConfigMap is how many remove it), instead of an empty URL that fails later
    # with "connection refused".
    model_config = SettingsConfigDict(
        env_prefix="STRANGLER_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,
    )

    # --- the old store: the app's MongoDB -------------------------------------------
    mongo_uri: str | None = Field(default=None, validation_alias=AliasChoices("MONGO_URI"))
    mongo_db: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MONGO_DB", "STRANGLER_MONGO_DB"),
        description="database name; default: the one in MONGO_URI, else 'chat'",
    )
    mongo_in_chunk: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="ids per $in query to MongoDB; on SecantusDB (the embedded test server), "
        "whose $in costs grow with the square of its length, 25 is faster",
    )

    # --- the new store: Supabase -------------------------------------------------------
    supabase_db_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SUPABASE_DB_URL"),
        description="Postgres URL (direct, or Supavisor session/transaction pooler)",
    )
    supabase_url: str | None = Field(default=None, validation_alias=AliasChoices("SUPABASE_URL"))
    supabase_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SUPABASE_KEY"),
        description="the service-role key",
    )
    pg_statement_cache_size: int = Field(
        default=100,
        ge=0,
        description="asyncpg prepared-statement cache; 0 behind the transaction pooler (port 6543)",
    )
    pg_pool_size: int = Field(default=10, ge=1)
    new_backend: Literal["auto", "postgres", "rest"] = Field(
        default="auto",
        description="the Supabase store: postgres (SUPABASE_DB_URL), rest (SUPABASE_URL + "
        "SUPABASE_KEY), or auto: postgres when SUPABASE_DB_URL is set, else rest",
    )

    # --- the facade ------------------------------------------------------------------
    stage: Stage | None = Field(
        default=None,
        description="when set, fixes the stage and wins over the control table (rollback path)",
    )
    shadow_sample_rate: float = Field(default=1.0, ge=0, le=1)
    shadow_max_inflight: int = Field(default=32, ge=1)
    read_repair: bool = False
    secondary_timeout: float = Field(default=2.0, gt=0)
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="secondary failures or timeouts in a row that open a store's circuit "
        "breaker: its writes are then journaled at once, untried, until a probe succeeds",
    )
    breaker_probe_max_seconds: float = Field(
        default=0.5,
        gt=0,
        description="the longest wait between an open breaker's probes (they start at 0.25 s "
        "and double); it bounds how long a store that answers again stays cut off",
    )
    stage_poll_seconds: float = Field(default=1.0, gt=0)

    # --- change capture ----------------------------------------------------------------
    follow: bool = Field(
        default=True,
        description="run the change followers: writes that bypass the facade (old instances, "
        "scripts) reach the other store; one follower of each direction leads across all "
        "instances",
    )
    follow_settle_seconds: float = Field(
        default=0.5,
        ge=0,
        description="how long the forward follower waits after a change was made before it "
        "decides "
        "whether the facade made it (the facade's own second write lands within this)",
    )
    follow_lease_seconds: float = Field(
        default=6.0,
        gt=0,
        description="a follower's lease: when its instance dies, another takes over after this",
    )

    # --- stage gates -------------------------------------------------------------------
    gate_follower_lag_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a move that needs a follower refuses while its lag is above this",
    )
    gate_consistency: float = Field(
        default=0.999,
        ge=0,
        le=1,
        description="the shadow consistency rate a move to live needs (if shadow ran)",
    )
    gate_min_comparisons: int = Field(
        default=1000,
        ge=0,
        description="how many shadow comparisons that rate must rest on",
    )

    guard: bool = Field(
        default=True,
        description="at live and rampdown, step the stage back one step, once, when Supabase "
        "is clearly worse than MongoDB for STRANGLER_GUARD_SUSTAIN_SECONDS",
    )
    guard_window_seconds: float = Field(default=10.0, gt=0)
    guard_sustain_seconds: float = Field(default=20.0, ge=0)
    guard_max_error_rate: float = Field(default=0.05, ge=0, le=1)
    guard_max_p99_ratio: float = Field(default=3.0, gt=0)
    guard_max_divergence_rate: float = Field(default=0.01, ge=0, le=1)
    guard_min_samples: int = Field(default=20, ge=1)

    # --- behaviour -------------------------------------------------------------------
    store_timeout: float = Field(
        default=5.0, gt=0, description="seconds before a store call fails as unavailable"
    )
    max_content_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    tracemalloc_dir: Path | None = Field(
        default=None,
        description="diagnosing a soak: `strangler serve` traces allocations and writes a "
        "tracemalloc snapshot here every STRANGLER_TRACEMALLOC_SECONDS (compare two with "
        "bench/memdiff.py); costs CPU and memory, never for production",
    )
    tracemalloc_seconds: float = Field(default=300.0, gt=0)

    # --- the HTTP API ----------------------------------------------------------------
    host: str = Field(default="0.0.0.0", description="address `strangler serve` binds")
    port: int = Field(default=8080, ge=1, le=65535)
    auth: Literal["enabled", "disabled"] = Field(
        default="enabled",
        description="disabled: the user comes from X-User-Id (local development and the "
        "demo only; logged loudly)",
    )
    supabase_jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SUPABASE_JWT_SECRET"),
        description="verifies HS256 Supabase Auth tokens",
    )
    supabase_jwks_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SUPABASE_JWKS_URL"),
        description="verifies asymmetric tokens; default SUPABASE_URL + "
        "/auth/v1/.well-known/jwks.json when SUPABASE_URL is set",
    )
    jwt_audience: str = "authenticated"
    jwt_issuer: str | None = Field(
        default=None,
        description="the iss user tokens must carry; default SUPABASE_URL + /auth/v1 when "
        "SUPABASE_URL is set (Supabase Auth's issuer), else not checked",
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds a new connection has to send a request head"
    )
    body_timeout: float = Field(
        default=30.0, gt=0, description="seconds a client has to send a request body"
    )
    page_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        validation_alias=AliasChoices(
            "STRANGLER_PAGE_CACHE_SECONDS", "STRANGLER_HISTORY_CACHE_SECONDS"
        ),
        description="keep rendered history pages and session lists this long in rampdown "
        "and complete, dropped at once by this instance's writes and within moments by "
        "other instances' (realtime events); the expiry bounds how long a change made "
        "outside the API (SQL) can go unseen; 0 turns the cache off",
    )
    page_cache_mb: int = Field(
        default=64,
        ge=1,
        validation_alias=AliasChoices("STRANGLER_PAGE_CACHE_MB", "STRANGLER_HISTORY_CACHE_MB"),
        description="memory budget of each page cache (history pages, session lists), in MiB",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="bearer token for /admin; unset: the admin API is closed"
    )
    ensure_indexes: bool = Field(
        default=True,
        description="create the MongoDB indexes the chat queries need when the API starts "
        "(idempotent; a no-op when the legacy app already has them)",
    )
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    max_audio_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_pdf_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    # --- the dashboard's quotas panel ------------------------------------------------
    plan_db_bytes: int = Field(
        default=8 * 1024**3,
        gt=0,
        description="the database size your Supabase plan includes (default 8 GB, Pro; "
        "500 MB on Free)",
    )
    plan_max_rows: int | None = Field(
        default=None, gt=0, description="a row budget per chat table to warn against; unset: none"
    )
    quota_warn_ratio: float = Field(
        default=0.8, gt=0, le=1, description="a quota is flagged at this share of its limit"
    )
