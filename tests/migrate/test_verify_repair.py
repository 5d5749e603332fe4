"""``verify`` finds every planted difference (whole or windowed with ``since``), ``repair``
fixes them, and the CLI reports both with the right exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core.models import ChatSession, Message
from strangler.migrate.repair import repair
from strangler.migrate.verify import diff_stores

OLD = dt.datetime(2021, 3, 1, tzinfo=dt.UTC)
RECENT = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
WINDOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _session(title: str, at: dt.datetime) -> ChatSession:
    return ChatSession.new(title=title, user_id="u1", created_at=at)


def _message(session: ChatSession, text: str, at: dt.datetime) -> Message:
    return Message.new(
        session_id=session.id,
        sender="user",
        content={"type": "conversation", "text": text},
        timestamp=at,
    )


@pytest.fixture
async def planted(mongo_store: MongoStore, pg_store: PostgresStore) -> dict[str, Any]:
    """Equal stores, then one difference of each kind, old and recent, planted in Postgres
    (the non-authoritative store before ``live``)."""
    sessions = [_session(f"s{i}", OLD if i % 2 else RECENT) for i in range(6)]
    messages = [_message(s, f"m{i}", s.created_at) for i, s in enumerate(sessions)]
    for store in (mongo_store, pg_store):
        await store.upsert_sessions(sessions)
        await store.upsert_messages(messages)
    old_s, recent_s = sessions[1], sessions[0]
    # missing from Postgres: one old session's message and one recent message
    await pg_store.delete_message(messages[1].id)
    await pg_store.delete_message(messages[0].id)
    # different: an old rename and a recent rename
    await pg_store.rename_session(old_s.id, "drifted old")
    await pg_store.rename_session(recent_s.id, "drifted recent")
    # extra in Postgres: a recent session Mongo never had
    extra = _session("ghost", RECENT)
    await pg_store.upsert_sessions([extra])
    return {"old": old_s, "recent": recent_s, "extra": extra, "messages": messages}


async def test_verify_counts_every_planted_difference_and_repair_fixes_them(
    mongo_store: MongoStore, pg_store: PostgresStore, planted: dict[str, Any]
) -> None:
    diffs = await diff_stores(mongo_store, pg_store)
    s, m = diffs["chat_sessions"], diffs["messages"]
    assert s.counts == {"missing": 0, "extra": 1, "different": 2}
    assert m.counts == {"missing": 2, "extra": 0, "different": 0}
    assert s.extra == [planted["extra"].id]
    assert s.different[planted["old"].id]["title"] == {
        "authoritative": "s1",
        "other": "drifted old",
    }
    results = await repair(mongo_store, pg_store, diffs)
    assert [(r.inserted, r.deleted, r.overwritten, r.failed) for r in results] == [
        (0, 1, 2, {}),
        (2, 0, 0, {}),
    ]
    after = await diff_stores(mongo_store, pg_store)
    assert all(d.equal for d in after.values())


async def test_verify_since_sees_only_recent_rows(
    mongo_store: MongoStore, pg_store: PostgresStore, planted: dict[str, Any]
) -> None:
    diffs = await diff_stores(mongo_store, pg_store, since=WINDOW)
    s, m = diffs["chat_sessions"], diffs["messages"]
    assert s.counts == {"missing": 0, "extra": 1, "different": 1}
    assert list(s.different) == [planted["recent"].id]
    assert m.counts == {"missing": 1, "extra": 0, "different": 0}
    assert m.missing == [planted["messages"][0].id]


async def test_verify_since_looks_up_rows_whose_legacy_time_the_window_cannot_match(
    mongo_server: Any, mongo_db: str, mongo_store: MongoStore, pg_store: PostgresStore
) -> None:
    """A legacy message whose timestamp is an ISO string is outside MongoDB's date window
    but inside Postgres's: found by id in MongoDB, it is equal, not extra. A real change in
    the timestamp is still reported as a difference."""
    session = _session("s", RECENT)
    ok, moved = _message(session, "a", RECENT), _message(session, "b", RECENT)
    await mongo_store.upsert_sessions([session])
    await pg_store.upsert_sessions([session])
    await mongo_store.upsert_messages([ok, moved])
    await pg_store.upsert_messages([ok, moved.model_copy(update={"timestamp": RECENT})])
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    legacy = client[mongo_db].messages
    await legacy.update_one(
        {"content.text": "a"}, {"$set": {"timestamp": "2026-11-20T00:00:00+00:00"}}
    )
    await legacy.update_one({"content.text": "b"}, {"$set": {"timestamp": OLD}})
    await client.close()
    diffs = await diff_stores(mongo_store, pg_store, since=WINDOW)
    m = diffs["messages"]
    assert m.counts == {"missing": 0, "extra": 0, "different": 1}, m.summary()
    assert list(m.different) == [moved.id]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strangler.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_verify_and_repair(
    mongo_server: Any, mongo_db: str, clean_pg: str, planted: dict[str, Any]
) -> None:
    env = {
        **os.environ,
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_STAGE": "dualwrite",
        "STRANGLER_LOG_FORMAT": "json",
    }
    out = _cli(env, "verify")
    assert out.returncode == 1, out.stderr
    assert f"extra in Supabase: {planted['extra'].id}" in out.stdout
    assert f"different {planted['old'].id} title: MongoDB 's1' / Supabase 'drifted old'" in (
        out.stdout
    )
    windowed = json.loads(_cli(env, "verify", "--json", "--since", "2026-01-01T00:00:00Z").stdout)
    assert windowed["since"] == "2026-01-01T00:00:00.000Z"
    assert [t["different"] for t in windowed["tables"]] == [1, 0]

    bad = _cli(env, "verify", "--since", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 date-time" in bad.stderr
    naive = _cli(env, "verify", "--since", "2026-01-01T00:00:00")
    assert naive.returncode == 2 and "no time zone" in naive.stderr

    dry = _cli(env, "repair", "--dry-run")
    assert dry.returncode == 0 and "would insert" in dry.stdout
    assert _cli(env, "verify").returncode == 1  # a dry run changes nothing
    fixed = _cli(env, "repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    again = _cli(env, "verify")
    assert again.returncode == 0 and "stores are equal" in again.stdout
    assert "Traceback" not in out.stderr + fixed.stderr + again.stderr


async def test_repair_reports_what_it_cannot_copy_and_repairs_the_rest(
    mongo_server: Any, mongo_db: str, mongo_store: MongoStore, pg_store: PostgresStore
) -> None:
    session = _session("s", RECENT)
    fine = _message(session, "fine", RECENT)
    await mongo_store.upsert_sessions([session])
    await mongo_store.upsert_messages([fine])
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
    await client[mongo_db].messages.insert_one(
        {
            "session_id": "0123456789abcdef01234567",  # no such session anywhere
            "sender": "user",
            "content": {"text": "orphan"},
            "timestamp": RECENT,
        }
    )
    await client.close()
    diffs = await diff_stores(mongo_store, pg_store)
    results = {r.table: r for r in await repair(mongo_store, pg_store, diffs)}
    assert results["chat_sessions"].inserted == 1
    assert results["messages"].inserted == 1
    assert len(results["messages"].failed) == 1
    assert "orphan" in next(iter(results["messages"].failed.values()))
    assert (await pg_store.get_message(fine.id)).content == fine.content


def test_verify_over_rest_needs_the_stage_given(mongo_server: Any, mongo_db: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SUPABASE_DB_URL", "STRANGLER_STAGE", "STRANGLER_NEW_BACKEND")
    }
    env |= {
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_URL": "http://127.0.0.1:9",
        "SUPABASE_KEY": "service-role",
        "STRANGLER_LOG_FORMAT": "json",
    }
    out = _cli(env, "verify")
    assert out.returncode == 2, out.stderr
    assert "set STRANGLER_STAGE" in out.stderr and "Traceback" not in out.stderr


async def test_verify_rereads_what_the_scans_found_different_before_reporting(
    mongo_store: MongoStore, pg_store: PostgresStore
) -> None:
    """Under live traffic a row written between the two scans, or whose secondary write is
    in flight, is equal a moment later: ``settle`` drops it; a real difference stays."""
    from strangler.migrate.verify import diff_table, settle

    s = _session("s", RECENT)
    late = _message(s, "sent during the verify", RECENT)
    drift = _session("drift", RECENT)
    for store in (mongo_store, pg_store):
        await store.upsert_sessions([s, drift])
    await mongo_store.upsert_messages([late])
    await pg_store.rename_session(drift.id, "drifted")
    scanned = await diff_table(mongo_store, pg_store, "messages")
    assert scanned.missing == [late.id]
    await pg_store.upsert_messages([late])  # the secondary write lands
    settled = await settle(mongo_store, pg_store, scanned, delay=0)
    assert settled.equal and settled.compared == scanned.compared

    sessions = await diff_table(mongo_store, pg_store, "chat_sessions")
    settled = await settle(mongo_store, pg_store, sessions, delay=0)
    assert list(settled.different) == [drift.id] and settled.counts["different"] == 1
    assert settled.different[drift.id]["title"] == {"authoritative": "drift", "other": "drifted"}


class _Stop(Exception):
    pass


async def test_an_interrupted_verify_resumes_after_its_last_checkpoint(
    mongo_store: MongoStore,
    pg_store: PostgresStore,
    planted: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verify stopped part way resumes from the saved state and ends with exactly the
    full run's counts; the tables finished before are not read again."""
    from strangler.migrate import verify

    monkeypatch.setattr(verify, "EVERY", 2)
    full = await diff_stores(mongo_store, pg_store)
    saved: dict[str, Any] = {}

    def checkpoint(table: str, state: dict[str, Any]) -> None:
        saved[table] = state

    def stop_in_messages(table: str, compared: int) -> None:
        if table == "messages" and compared >= 4:
            raise _Stop

    with pytest.raises(_Stop):
        await diff_stores(mongo_store, pg_store, checkpoint=checkpoint, progress=stop_in_messages)
    assert saved["chat_sessions"]["done"] is True
    assert saved["messages"]["done"] is False and saved["messages"]["after"] is not None
    before_resume = saved["messages"]["compared"]
    assert 0 < before_resume < full["messages"].compared

    scanned: list[str] = []
    original = verify._records

    def spy(store: Any, table: Any, *args: Any) -> Any:
        scanned.append(table)
        return original(store, table, *args)

    monkeypatch.setattr(verify, "_records", spy)
    resumed = await diff_stores(mongo_store, pg_store, resume=json.loads(json.dumps(saved)))
    assert set(scanned) == {"messages"}  # sessions were done: not read again
    for table in ("chat_sessions", "messages"):
        assert resumed[table].counts == full[table].counts, table
        assert resumed[table].compared == full[table].compared, table
    assert sorted(resumed["messages"].missing) == sorted(full["messages"].missing)


async def test_a_throttled_verify_keeps_to_its_rate() -> None:
    import time

    from strangler.migrate.verify import Throttle

    throttle = Throttle(1000)
    start = time.monotonic()
    for _ in range(4):
        await throttle.take(100)
    took = time.monotonic() - start
    assert 0.3 <= took < 0.6, took  # 400 rows at 1,000/s: the first 100 are free


def test_cli_verify_resume_says_when_there_is_nothing_to_resume(
    mongo_server: Any, mongo_db: str, clean_pg: str, planted: dict[str, Any]
) -> None:
    env = {
        **os.environ,
        "MONGO_URI": mongo_server.uri
        + ("&" if "?" in mongo_server.uri else "?")
        + "readPreference=secondaryPreferred",
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_STAGE": "dualwrite",
        "STRANGLER_LOG_FORMAT": "json",
    }
    # A read preference in the URI is honoured (a single server serves it as a primary).
    done = _cli(env, "verify", "--max-rows-per-second", "500")
    assert done.returncode == 1, done.stderr
    assert "extra in Supabase" in done.stdout
    again = _cli(env, "verify", "--resume")
    assert again.returncode == 2
    assert "nothing to resume" in again.stderr and "without --resume" in again.stderr
    bad = _cli(env, "verify", "--max-rows-per-second", "0")
    assert bad.returncode == 2 and "more than 0" in bad.stderr
    assert "Traceback" not in done.stderr + again.stderr + bad.stderr
