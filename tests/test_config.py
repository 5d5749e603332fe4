"""Settings come from the seed's env var names; secrets never print; selection explains itself."""

from __future__ import annotations

import pytest

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.runtime import new_chat_store, new_store, old_store


def test_settings_read_the_seed_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://db.internal:27017/chat")
    monkeypatch.setenv("SUPABASE_DB_URL", "postgresql://postgres:hunter2@db.example:5432/postgres")
    monkeypatch.setenv("SUPABASE_KEY", "service-role-secret")
    monkeypatch.setenv("STRANGLER_STORE_TIMEOUT", "2.5")
    monkeypatch.setenv("STRANGLER_PG_STATEMENT_CACHE_SIZE", "0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.mongo_uri == "mongodb://db.internal:27017/chat"
    assert settings.store_timeout == 2.5
    assert settings.pg_statement_cache_size == 0
    shown = repr(settings) + str(settings.model_dump())
    assert "hunter2" not in shown
    assert "service-role-secret" not in shown
    assert isinstance(old_store(settings), MongoStore)
    assert isinstance(new_store(settings), PostgresStore)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_urls_say_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    """Unset, or set to "" (how a compose file or a ConfigMap often removes one): either
    way the error names the variable, instead of a connection refused to an empty URL."""
    for name in ("MONGO_URI", "SUPABASE_DB_URL", "STRANGLER_STAGE"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.supabase_db_url is None and settings.stage is None
    with pytest.raises(ConfigError, match="MONGO_URI"):
        old_store(settings)
    with pytest.raises(ConfigError, match="SUPABASE_DB_URL"):
        new_store(settings)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SUPABASE_DB_URL": "postgresql://u:p@h/db"}, PostgresStore),
        ({"SUPABASE_URL": "https://p.supabase.co", "SUPABASE_KEY": "k"}, SupabaseRestStore),
        (
            {
                "SUPABASE_DB_URL": "postgresql://u:p@h/db",
                "SUPABASE_URL": "https://p.supabase.co",
                "SUPABASE_KEY": "k",
            },
            PostgresStore,
        ),
        (
            {
                "SUPABASE_DB_URL": "postgresql://u:p@h/db",
                "SUPABASE_URL": "https://p.supabase.co",
                "SUPABASE_KEY": "k",
                "STRANGLER_NEW_BACKEND": "rest",
            },
            SupabaseRestStore,
        ),
    ],
    ids=["db-url", "url-and-key", "both", "both-rest-chosen"],
)
def test_the_supabase_store_is_chosen_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: type
) -> None:
    for name in ("SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_KEY", "STRANGLER_NEW_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert isinstance(new_chat_store(Settings(_env_file=None)), expected)  # type: ignore[call-arg]


def test_no_supabase_store_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="SUPABASE_URL and SUPABASE_KEY"):
        new_chat_store(Settings(_env_file=None))  # type: ignore[call-arg]
    monkeypatch.setenv("STRANGLER_NEW_BACKEND", "postgres")
    monkeypatch.setenv("SUPABASE_URL", "https://p.supabase.co")
    monkeypatch.setenv("SUPABASE_KEY", "k")
    with pytest.raises(ConfigError, match="needs SUPABASE_DB_URL"):
        new_chat_store(Settings(_env_file=None))  # type: ignore[call-arg]


def test_the_page_cache_is_on_by_default_and_takes_its_old_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("STRANGLER_PAGE_CACHE_SECONDS", "STRANGLER_HISTORY_CACHE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().page_cache_seconds == 10
    monkeypatch.setenv("STRANGLER_HISTORY_CACHE_SECONDS", "0")
    assert Settings().page_cache_seconds == 0
    monkeypatch.setenv("STRANGLER_PAGE_CACHE_SECONDS", "3")  # the new name wins
    assert Settings().page_cache_seconds == 3


def test_the_in_size_of_mongodb_queries_reaches_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """``STRANGLER_MONGO_IN_CHUNK``: MongoDB's default of 100 ids per ``$in``, or what the
    environment says (25 suits SecantusDB); nonsense is refused by name."""
    monkeypatch.setenv("MONGO_URI", "mongodb://db.internal:27017/chat")
    monkeypatch.delenv("STRANGLER_MONGO_IN_CHUNK", raising=False)
    assert old_store(Settings(_env_file=None)).in_chunk == 100  # type: ignore[call-arg]
    monkeypatch.setenv("STRANGLER_MONGO_IN_CHUNK", "25")
    assert old_store(Settings(_env_file=None)).in_chunk == 25  # type: ignore[call-arg]
    monkeypatch.setenv("STRANGLER_MONGO_IN_CHUNK", "0")
    with pytest.raises(ValueError, match="mongo_in_chunk"):
        Settings(_env_file=None)  # type: ignore[call-arg]
