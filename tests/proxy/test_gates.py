"""Evidence-gated stage moves, end to end on real servers: the issue's scenario (messages
written at ``off``, then a walk to ``shadow`` with no backfill and no verify) is refused,
naming what is missing; after a backfill, a verify and the follower catching up, the same
walk reaches ``live`` with every message served from Supabase. A forced move needs a reason
and records what it went without; the admin API answers with the same checklist."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from strangler.config import Settings
from strangler.core.errors import EvidenceMissing, InvalidInput
from strangler.core.models import ChatSession, Message
from strangler.core.stages import Stage
from strangler.operate.backfill import backfill
from strangler.operate.verify import verify
from strangler.runtime import Runtime
from tests.cli import strangler


def _settings(mongo_uri: str, mongo_db: str, pg: str, **extra: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mongo_uri=mongo_uri,
        mongo_db=mongo_db,
        supabase_db_url=pg,
        stage_poll_seconds=0.1,
        follow_settle_seconds=0.1,
        follow_lease_seconds=1.5,
        **extra,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Runtime]:
    """A running instance (facade, followers, comparison counter), as ``serve`` runs it."""
    async with Runtime.open(settings) as runtime:
        yield runtime


async def _forward_leads(runtime: Runtime) -> None:
    for _ in range(100):
        record = await runtime.followers.load("forward")
        if record is not None and record.leader and record.position is not None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the forward follower did not start")


async def test_the_walk_is_refused_until_the_evidence_is_there(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    settings = _settings(mongo_server.uri, mongo_db, clean_pg, gate_min_comparisons=20)
    async with serving(settings) as runtime:
        facade, controller = runtime.facade, runtime.controller
        # Messages written at off: MongoDB alone has them.
        s = await facade.create_session(ChatSession.new(title="at off", user_id="alice"))
        sent = [
            await facade.add_message(
                Message.new(
                    session_id=s.id, sender="user", content={"type": "conversation", "text": str(i)}
                )
            )
            for i in range(5)
        ]
        await controller.set(Stage.DUALWRITE, reason="test")  # the first step needs nothing
        await _forward_leads(runtime)
        with pytest.raises(EvidenceMissing) as refused:
            await controller.set(Stage.SHADOW, reason="test")
        message = str(refused.value)
        assert "backfill" in message and "strangler backfill" in message
        assert "verify" in message and "strangler verify" in message
        missing = [c["key"] for c in refused.value.checks if not c["ok"]]
        assert missing == ["backfill", "verify"]
        assert await controller.refresh() == Stage.DUALWRITE  # nothing moved

        # A force needs a reason.
        with pytest.raises(InvalidInput, match="needs a reason"):
            await controller.set(Stage.SHADOW, force=True)

        # The runbook: backfill, verify (the forward follower runs meanwhile).
        code = await backfill(
            settings,
            source=mongo_server.uri.replace("/?", f"/{mongo_db}?"),
            report=tmp_path / "r.jsonl",
            orphans="quarantine",
            dry_run=False,
            batch_size=100,
            checkpoint=tmp_path / "cp.json",
            resume=False,
        )
        assert code == 0
        with pytest.raises(EvidenceMissing) as refused:  # a backfill alone is not enough
            await controller.set(Stage.SHADOW, reason="test")
        assert [c["key"] for c in refused.value.checks if not c["ok"]] == ["verify"]
        assert await verify(settings, as_json=True) == 0
        await controller.set(Stage.SHADOW, reason="evidence complete")

        # Before live: shadow reads consistent over enough comparisons (20 here).
        with pytest.raises(EvidenceMissing) as refused:
            await controller.set(Stage.LIVE, reason="test")
        assert [c["key"] for c in refused.value.checks if not c["ok"]] == ["consistency"]
        await asyncio.sleep(0.3)  # every instance sees shadow
        for _ in range(30):
            await facade.history(s.id, limit=50)
        await facade.shadow.drain()
        assert runtime.counter is not None
        await runtime.counter.flush()
        await controller.set(Stage.LIVE, reason="shadow consistent")
        await asyncio.sleep(0.3)
        page = await facade.history(s.id, limit=50)
        assert [m.id for m in page.items] == [m.id for m in sent]  # served from Supabase


async def test_a_forced_move_records_what_it_went_without(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    async with Runtime.open(settings, start=False) as runtime:
        controller = runtime.controller
        await controller.set(Stage.DUALWRITE, reason="test")
        await controller.set(Stage.SHADOW, reason="a drill on an empty database", force=True)
        latest = (await runtime.stages.transitions(1))[0]
        assert latest["forced"] is True
        assert latest["reason"] == "a drill on an empty database"
        assert {m["key"] for m in latest["missing"]} >= {"backfill", "verify"}
        assert all(not m["ok"] for m in latest["missing"])
        # A rollback needs nothing.
        await controller.set(Stage.DUALWRITE, reason="back")
        assert (await runtime.stages.transitions(1))[0]["missing"] is None


async def test_the_cli_lists_the_evidence_and_exits_4(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    env = {
        **os.environ,
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_LOG_FORMAT": "json",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return strangler(env, "stage", *args)

    assert (await asyncio.to_thread(cli, "set", "dualwrite")).returncode == 0
    got = await asyncio.to_thread(cli, "get")
    assert got.returncode == 0, got.stderr
    assert "next: shadow: missing backfill, verify" in got.stdout
    dry = await asyncio.to_thread(cli, "set", "shadow", "--dry-run")
    assert dry.returncode == 4, dry.stderr
    assert "[MISSING] a backfill" in dry.stdout and "strangler backfill" in dry.stdout
    refused = await asyncio.to_thread(cli, "set", "shadow")
    assert refused.returncode == 4, refused.stderr
    assert "refusing to move to shadow" in refused.stderr
    assert "strangler verify" in refused.stderr and "Traceback" not in refused.stderr
    no_reason = await asyncio.to_thread(cli, "set", "shadow", "--force")
    assert no_reason.returncode == 2 and "needs a reason" in no_reason.stderr
    forced = await asyncio.to_thread(cli, "set", "shadow", "--force", "--reason", "drill")
    assert forced.returncode == 0, forced.stderr
    assert "forced: the missing pieces are recorded" in forced.stdout
