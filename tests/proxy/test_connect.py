"""``strangler.connect(settings)``: the one call an existing backend makes."""

from __future__ import annotations

from typing import Any

import pytest

import strangler
from strangler.config import Settings
from strangler.core.models import ChatSession, Message
from strangler.proxy import DualWriteStore, Stage


async def test_connect_opens_both_stores_and_follows_the_env_stage(
    monkeypatch: pytest.MonkeyPatch, mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    monkeypatch.setenv("MONGO_URI", mongo_server.uri)
    monkeypatch.setenv("MONGO_DB", mongo_db)
    monkeypatch.setenv("SUPABASE_DB_URL", clean_pg)
    monkeypatch.setenv("STRANGLER_STAGE", "dualwrite")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    async with strangler.connect(settings) as store:
        assert isinstance(store, DualWriteStore)
        assert store.stage == Stage.DUALWRITE
        s = await store.create_session(ChatSession.new(title="hello", user_id="u1"))
        m = await store.add_message(
            Message.new(
                session_id=s.id, sender="user", content={"type": "conversation", "text": "hi"}
            )
        )
        assert await store.old.get_message(m.id) == await store.new.get_message(m.id) == m


def test_an_invalid_env_stage_is_a_clear_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_STAGE", "migrated")
    with pytest.raises(ValueError, match="stage"):
        Settings(_env_file=None)  # type: ignore[call-arg]
