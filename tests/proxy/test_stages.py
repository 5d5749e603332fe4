"""Stages: the routing table, stage control shared across instances, and a full walk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from strangler.backends.postgres import PostgresStageStore
from strangler.core.errors import ConfirmationRequired, Conflict, InvalidInput, StranglerError
from strangler.core.models import ChatSession, Message
from strangler.core.records import PendingWrite
from strangler.migrate.repair import repair
from strangler.migrate.verify import diff_stores
from strangler.proxy import DualWriteStore, Stage
from tests.conftest import StoreFactory


@pytest.mark.parametrize(
    ("stage", "authoritative", "secondary", "shadow"),
    [
        ("off", "old", None, False),
        ("dualwrite", "old", "new", False),
        ("shadow", "old", "new", True),
        ("live", "new", "old", True),
        ("rampdown", "new", "old", False),
        ("complete", "new", None, False),
        ("decommissioned", "new", None, False),
    ],
)
def test_each_stage_routes_as_designed(
    stage: str, authoritative: str, secondary: str | None, shadow: bool
) -> None:
    s = Stage.parse(stage)
    assert (s.authoritative, s.secondary, s.shadow_reads) == (authoritative, secondary, shadow)


def test_unknown_stage_names_the_valid_ones() -> None:
    with pytest.raises(
        InvalidInput, match="off, dualwrite, shadow, live, rampdown, complete, decommissioned"
    ):
        Stage.parse("migrated")


async def test_env_override_wins_over_the_control_table(make_store: StoreFactory) -> None:
    async with make_store("facade:shared") as shared, make_store("facade:live") as pinned:
        await shared.controller.set(Stage.DUALWRITE, reason="start")
        await pinned.controller.refresh()
        assert pinned.stage == Stage.LIVE
        with pytest.raises(Conflict, match="STRANGLER_STAGE"):
            await pinned.controller.set(Stage.RAMPDOWN)


async def test_moves_skip_stages_only_with_force_and_are_recorded(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:shared") as f:
        with pytest.raises(InvalidInput, match="skips 1 stage"):
            await f.controller.set(Stage.SHADOW)
        await f.controller.set(Stage.SHADOW, reason="drill", origin="test", force=True)
        await f.controller.set(Stage.DUALWRITE, reason="back", origin="test")
        history = await PostgresStageStore(f.new).transitions()  # type: ignore[arg-type]
        assert [(h["from_stage"], h["to_stage"], h["reason"], h["forced"]) for h in history] == [
            ("shadow", "dualwrite", "back", False),
            ("off", "shadow", "drill", True),
        ]


async def test_complete_is_refused_while_repairs_are_pending(make_store: StoreFactory) -> None:
    async with make_store("facade:shared") as f:
        for stage in (Stage.DUALWRITE, Stage.SHADOW, Stage.LIVE, Stage.RAMPDOWN):
            await f.controller.set(stage)
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        await f.replayer.stop()  # keep the entry pending
        await f.journals["new"].add(
            [PendingWrite(target="old", table="chat_sessions", record_id=s.id)]
        )
        with pytest.raises(Conflict, match="1 write"):
            await f.controller.set(Stage.COMPLETE)
        assert await f.replayer.run_once() == 1
        await f.controller.set(Stage.COMPLETE)
        assert f.stage == Stage.COMPLETE


async def test_decommissioning_takes_a_yes_drops_what_was_queued_for_mongo_and_is_final(
    make_store: StoreFactory,
) -> None:
    async with make_store("facade:shared") as f:
        await f.controller.set(Stage.COMPLETE, reason="drill", force=True)
        await f.replayer.stop()  # keep the entries pending
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        await f.journals["new"].add(
            [PendingWrite(target="old", table="chat_sessions", record_id=s.id)]
        )
        assert await f.pending("old") == 2  # parked by the write, and the one added
        with pytest.raises(ConfirmationRequired, match=r"the 2 write\(s\) still queued"):
            await f.controller.set(Stage.DECOMMISSIONED)
        assert f.stage == Stage.COMPLETE
        await f.controller.set(Stage.DECOMMISSIONED, confirm=True)
        # Nothing is parked for MongoDB any more, and the replayer drops what was.
        await f.create_session(ChatSession.new(title="after", user_id="u"))
        assert await f.pending("old") == 2
        await f.replayer.run_once()
        assert await f.pending("old") == 0
        assert await f.journals["new"].depth() == 0
        # Leaving it is a forced move that says why.
        with pytest.raises(InvalidInput, match="MongoDB was decommissioned"):
            await f.controller.set(Stage.COMPLETE)
        await f.controller.set(Stage.COMPLETE, reason="undo", force=True)
        assert f.stage == Stage.COMPLETE


async def test_every_instance_converges_within_five_seconds(make_store: StoreFactory) -> None:
    async with make_store("facade:shared") as a, make_store("facade:shared") as b:
        await a.controller.set(Stage.DUALWRITE)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while b.stage != Stage.DUALWRITE:
            assert loop.time() - start < 5, "instance b did not converge"
            await asyncio.sleep(0.05)


async def _traffic(
    f: DualWriteStore, stop: asyncio.Event, failures: list[BaseException], tag: str
) -> int:
    n = 0
    while not stop.is_set():
        n += 1
        try:
            s = await f.create_session(ChatSession.new(title=f"{tag}{n}", user_id=tag))
            await f.add_message(
                Message.new(
                    session_id=s.id, sender="user", content={"type": "conversation", "text": "hi"}
                )
            )
            await f.rename_session(s.id, f"{tag}{n} renamed")
            await f.history(s.id)
            if n % 4 == 0:
                await f.delete_session(s.id)
        except StranglerError as exc:
            failures.append(exc)
        await asyncio.sleep(0.005)
    return n


async def _set_when_allowed(f: DualWriteStore, stage: Stage, others: list[DualWriteStore]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            await f.controller.set(stage, reason="walk", origin="test")
            break
        except Conflict:  # repairs still pending for the store that becomes authoritative
            assert loop.time() < deadline, f"could not move to {stage}"
            await asyncio.sleep(0.1)
    while any(o.stage != stage for o in others):
        assert loop.time() < deadline, f"other instances did not converge on {stage}"
        await asyncio.sleep(0.05)


async def test_full_walk_off_to_complete_and_back_under_traffic(make_store: StoreFactory) -> None:
    async with make_store("facade:shared") as a, make_store("facade:shared") as b:
        stop, failures = asyncio.Event(), []
        workers = [
            asyncio.create_task(_traffic(f, stop, failures, tag))
            for f, tag in ((a, "a"), (a, "c"), (b, "b"))
        ]
        try:
            await asyncio.sleep(0.3)
            await _set_when_allowed(a, Stage.DUALWRITE, [b])
            # The runbook's backfill: what was written before dual writes began.
            await repair(a.old, a.new, await diff_stores(a.old, a.new))
            walk = [
                Stage.SHADOW,
                Stage.LIVE,
                Stage.RAMPDOWN,
                Stage.COMPLETE,
                Stage.RAMPDOWN,
                Stage.LIVE,
                Stage.SHADOW,
                Stage.DUALWRITE,
            ]
            for stage in walk:
                await asyncio.sleep(0.4)
                await _set_when_allowed(a, stage, [b])
            await asyncio.sleep(0.4)
        finally:
            stop.set()
            counts = await asyncio.gather(*workers)
        assert failures == []
        assert min(counts) > 20
        await _set_when_allowed(a, Stage.OFF, [b])
        for f in (a, b):
            await f.shadow.drain()
            await f.replayer.run_once()
        diffs = await diff_stores(a.old, a.new)
        assert all(d.equal for d in diffs.values()), {t: d.summary() for t, d in diffs.items()}
        assert await a.pending("old") == await a.pending("new") == 0


@pytest.mark.parametrize(
    ("stage", "rendered"),
    [
        ("off", False),
        ("dualwrite", False),
        ("shadow", False),
        ("live", False),  # Postgres serves it, but a shadow read compares records
        ("rampdown", True),
        ("complete", True),
    ],
)
async def test_history_is_rendered_by_postgres_only_where_it_serves_unshadowed(
    make_store: StoreFactory, stage: str, rendered: bool
) -> None:
    """``rendered_history`` gives Postgres' JSON page where it is the same read as
    ``history`` (Postgres serves it, nothing compares it), and None elsewhere."""
    async with make_store(f"facade:{stage}") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        for i in range(3):
            await f.add_message(
                Message.new(
                    session_id=s.id, sender="user", content={"type": "conversation", "text": str(i)}
                )
            )
        page = await f.rendered_history(s.id, limit=2)
        if not rendered:
            assert page is None
            return
        assert page is not None
        records = await f.history(s.id, limit=2)
        assert page.has_more is records.has_more is True
        assert page.first == (records.items[0].timestamp, records.items[0].id)
        assert page.last == (records.items[-1].timestamp, records.items[-1].id)


async def test_a_delete_at_live_leaves_a_tombstone_in_supabase(make_store: Any) -> None:
    """At ``live`` the forward follower may still drain what MongoDB got before the move;
    a tombstone keeps it from inserting again a record deleted in Supabase meanwhile."""
    from strangler.backends.postgres.tombstones import PostgresTombstones
    from strangler.core.models import ChatSession

    async with make_store("facade:live") as f:
        s = await f.create_session(ChatSession.new(title="t", user_id="u"))
        await f.delete_session(s.id)
        graves = PostgresTombstones(f.new)
        assert s.id in await graves.tombstoned("chat_sessions", [s.id])
