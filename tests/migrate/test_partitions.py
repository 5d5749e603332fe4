"""Partitioned backfill, verify and repair on real servers: N partitions load, compare and
mend exactly what one run does, from a live MongoDB, export files and a dump."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from bson import ObjectId

from strangler.backends.postgres import PostgresJobRuns, PostgresPartitionPlans, PostgresStore
from strangler.backends.postgres.evidence import PostgresEvidence
from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.core.partition import Part
from strangler.migrate.backfill import BackfillResult, Counts
from strangler.operate.backfill import backfill
from strangler.operate.repair import run_repair
from strangler.operate.verify import verify
from tests.cli import strangler
from tests.migrate.corpus import NAIVE, Case, build
from tests.migrate.test_backfill import _check_accounting, _export, _insert, _report
from tests.migrate.test_dump import _dump

N = 3


def _settings(mongo_uri: str, mongo_db: str, pg: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        mongo_uri=mongo_uri,
        mongo_db=mongo_db,
        supabase_db_url=pg,
    )


def _more(n: int) -> tuple[list[Case], list[Case]]:
    """The hostile corpus, plus ``n`` ordinary sessions with a message each, so every
    slice has work."""
    sessions, messages = build()
    plain_sessions, plain_messages = _plain(n)
    return sessions + plain_sessions, messages + plain_messages


def _plain(n: int) -> tuple[list[Case], list[Case]]:
    """``n`` ordinary sessions with a message each."""
    sessions: list[Case] = []
    messages: list[Case] = []
    for i in range(n):
        sid = ObjectId()
        sessions.append(
            Case(
                f"plain-session-{i}",
                {"_id": sid, "title": f"t{i}", "created_at": NAIVE, "user_id": "u"},
                "ok",
            )
        )
        messages.append(
            Case(
                f"plain-message-{i}",
                {
                    "_id": ObjectId(),
                    "session_id": str(sid),
                    "sender": "user",
                    "content": {"type": "conversation", "text": str(i)},
                    "timestamp": NAIVE,
                },
                "ok",
            )
        )
    return sessions, messages


async def _runs(dsn: str, kind: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT params::text, result::text, status FROM strangler.job_runs"
            " WHERE kind = $1 ORDER BY id",
            kind,
        )
    finally:
        await conn.close()
    return [
        {"params": json.loads(r[0]), "result": json.loads(r[1] or "null"), "status": r[2]}
        for r in rows
    ]


def _printed(out: str) -> Any:
    """The JSON a command printed (log lines may come before it)."""
    return json.loads(out[out.index("{\n") :])


def _summed(runs: list[dict[str, Any]]) -> BackfillResult:
    total = BackfillResult()
    for run in runs:
        for name, counts in run["result"]["counts"].items():
            into = total.counts[name]
            for field, value in counts.items():
                setattr(into, field, getattr(into, field) + value)
    return total


@pytest.mark.parametrize(
    ("source", "workers"),
    [("live", 0), ("files", 2), ("dump", 0)],
    ids=["live-mongodb", "mongoexport-2-workers", "mongodump"],
)
async def test_n_partitions_load_exactly_what_one_run_loads(
    mongo_server: Any,
    mongo_db: str,
    clean_pg: str,
    tmp_path: Path,
    source: str,
    workers: int,
) -> None:
    """The hostile corpus (ids of every type, duplicates, orphans, lossy values) split in
    three: every document is stored or reported exactly once over the three runs, each
    counted by its own partition, and the three share one stored plan."""
    sessions, messages = _more(40)
    if source == "live":
        await _insert(mongo_server.uri, mongo_db, sessions, messages)
        src = mongo_server.uri.replace("/?", f"/{mongo_db}?")
    elif source == "files":
        _export(tmp_path, sessions, messages)
        src = str(tmp_path)
    else:
        src = str(_dump(tmp_path / "dump", sessions, messages, gz=True))
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    lines: list[dict[str, Any]] = []

    async def one(k: int) -> None:
        report = tmp_path / f"report-{k}.jsonl"
        code = await backfill(
            settings,
            source=src,
            report=report,
            orphans="quarantine",
            dry_run=False,
            batch_size=7,
            checkpoint=tmp_path / "cp.json",
            resume=False,
            workers=workers,
            at_off=True,
            part=Part(k, N),
        )
        assert code == 0
        lines.extend(_report(report))

    # Two start together (they race to store the plan), the third after.
    await asyncio.gather(one(1), one(2))
    await one(3)
    runs = await _runs(clean_pg, "backfill")
    assert [r["params"]["partition"] for r in runs][-1] == {"k": 3, "n": N}
    assert all(r["status"] == "done" for r in runs)
    for run in runs:
        assert run["result"]["counts"]["messages"]["read"] > 0, "every slice has work"
    async with PostgresStore(clean_pg) as pg:
        await _check_accounting(_summed(runs), lines, pg, sessions, messages)
    conn = await asyncpg.connect(clean_pg)
    try:
        plans = await conn.fetch("SELECT scope, partitions FROM strangler.partition_plans")
    finally:
        await conn.close()
    assert sorted(p["scope"].split(":")[1] for p in plans) == ["chat_sessions", "messages"]
    assert {p["partitions"] for p in plans} == {N}
    for k in range(1, N + 1):
        assert (tmp_path / f"cp.json.{k}-of-{N}").exists(), "a checkpoint per partition"


async def test_partitions_need_the_direct_database(tmp_path: Path) -> None:
    """Over the REST API the shared plan cannot be stored: refused, saying what to set."""
    sessions, messages = _more(2)
    _export(tmp_path, sessions, messages)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        supabase_url="http://127.0.0.1:9",
        supabase_key="k",
        stage="dualwrite",
    )
    with pytest.raises(ConfigError, match="SUPABASE_DB_URL"):
        await backfill(
            settings,
            source=str(tmp_path),
            report=tmp_path / "r.jsonl",
            orphans="quarantine",
            dry_run=False,
            batch_size=7,
            checkpoint=tmp_path / "cp.json",
            resume=False,
            part=Part(1, 2),
        )


def test_counts_add_up() -> None:
    """The helper that sums partitions' counts is itself checked."""
    runs = [
        {"result": {"counts": {"messages": {"read": 2, "written": 1}}}},
        {"result": {"counts": {"messages": {"read": 3, "written": 3}}}},
    ]
    assert _summed(runs).counts["messages"] == Counts(read=5, written=4)


async def test_partitioned_verify_and_repair_cover_what_one_run_does(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path, capsys: Any
) -> None:
    """Supabase is damaged (rows missing, changed, extra). Three verify partitions find
    together exactly what one verify finds, three repair partitions mend it all, and a
    stage move's evidence counts the partitioned verify only once all three are done."""
    sessions, messages = _plain(90)
    await _insert(mongo_server.uri, mongo_db, sessions, messages)
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    code = await backfill(
        settings,
        source=None,
        report=tmp_path / "r.jsonl",
        orphans="quarantine",
        dry_run=False,
        batch_size=50,
        checkpoint=tmp_path / "cp.json",
        resume=False,
        at_off=True,
    )
    assert code == 0
    capsys.readouterr()
    conn = await asyncpg.connect(clean_pg)
    try:
        await conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT 9)"
        )
        await conn.execute(
            "UPDATE chat_sessions SET title = 'changed'"
            " WHERE id IN (SELECT id FROM chat_sessions ORDER BY id DESC LIMIT 7)"
        )
        await conn.execute(
            "INSERT INTO chat_sessions (id, title, created_at, user_id)"
            " SELECT gen_random_uuid(), 'extra', now(), 'x' FROM generate_series(1, 5)"
        )
    finally:
        await conn.close()

    assert await verify(settings, as_json=True) == 1
    whole = _printed(capsys.readouterr().out)
    parts = []
    for k in range(1, N + 1):
        code = await verify(settings, as_json=True, part=Part(k, N))
        parts.append(_printed(capsys.readouterr().out))
        assert code == (0 if parts[-1]["equal"] else 1)
        if k == 2:
            async with PostgresStore(clean_pg) as pg:
                facts = await PostgresEvidence(pg).gather(dt.datetime.now(dt.UTC))
            # Two of three slices: the whole verify before them is still the latest.
            assert facts.verify is not None and not facts.verify.clean
    assert [p["equal"] for p in parts].count(False) >= 2, "the damage spans slices"
    for i, table in enumerate(whole["tables"]):
        for field in ("compared", "missing", "extra", "different"):
            assert sum(p["tables"][i][field] for p in parts) == table[field], (table, field)
        assert all(p["tables"][i]["compared"] > 0 for p in parts), "every slice has rows"
    assert whole["tables"][0]["different"] == 7 and whole["tables"][0]["extra"] == 5
    assert whole["tables"][1]["missing"] == 9
    async with PostgresStore(clean_pg) as pg:
        facts = await PostgresEvidence(pg).gather(dt.datetime.now(dt.UTC))
    assert facts.verify is not None and not facts.verify.clean  # all three done, not equal

    for k in range(1, N + 1):
        assert await run_repair(settings, dry_run=False, part=Part(k, N)) == 0
    capsys.readouterr()
    for k in range(1, N + 1):
        assert await verify(settings, as_json=True, part=Part(k, N)) == 0
    async with PostgresStore(clean_pg) as pg:
        facts = await PostgresEvidence(pg).gather(dt.datetime.now(dt.UTC))
    assert facts.verify is not None and facts.verify.clean
    first = await _runs(clean_pg, "verify")
    assert facts.verify.started_at <= facts.verify.finished_at
    assert len([r for r in first if r["params"].get("partition")]) == 2 * N
    assert await verify(settings, as_json=True) == 0


async def test_verify_resume_finds_its_own_partition(
    mongo_server: Any, mongo_db: str, clean_pg: str
) -> None:
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    with pytest.raises(ConfigError, match="no verify of partition 2/3"):
        await verify(settings, as_json=True, resume=True, part=Part(2, 3))


async def test_only_partition_one_starts_the_follower(
    mongo_server: Any,
    mongo_db: str,
    clean_pg: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --follow and no follower running, a partition other than the first waits for
    the one partition 1 starts, and says what to do when it never comes; it never resets
    the follower's position itself."""
    from strangler.operate import backfill as backfill_module

    sessions, messages = _plain(4)
    await _insert(mongo_server.uri, mongo_db, sessions, messages)
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    monkeypatch.setattr(backfill_module, "FOLLOWER_WAIT", 1.0)

    async def run(k: int) -> int:
        return await backfill(
            settings,
            source=None,
            report=tmp_path / f"r{k}.jsonl",
            orphans="quarantine",
            dry_run=False,
            batch_size=50,
            checkpoint=tmp_path / "cp.json",
            resume=False,
            follow=True,
            part=Part(k, 2),
        )

    with pytest.raises(ConfigError, match="start partition 1 first"):
        await run(2)
    conn = await asyncpg.connect(clean_pg)
    try:
        assert await conn.fetchval("SELECT count(*) FROM strangler.followers") == 0
    finally:
        await conn.close()
    assert await run(1) == 0  # starts the follower
    assert await run(2) == 0  # finds it running, goes on with it


async def test_plans_are_listed_and_forgotten_but_not_under_a_running_partition(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    """``strangler partitions list|forget``: a plan outlives its runs until it is forgotten,
    and forgetting is refused while a partition that splits by it still runs."""
    sessions, messages = _more(10)
    _export(tmp_path, sessions, messages)
    settings = _settings(mongo_server.uri, mongo_db, clean_pg)
    code = await backfill(
        settings,
        source=str(tmp_path),
        report=tmp_path / "r.jsonl",
        orphans="quarantine",
        dry_run=False,
        batch_size=7,
        checkpoint=tmp_path / "cp.json",
        resume=False,
        workers=0,
        at_off=True,
        part=Part(1, 2),
    )
    assert code == 0
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}
    listed = strangler(env, "partitions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    scopes = {(p["scope"], p["partitions"]) for p in json.loads(listed.stdout)}
    assert scopes == {("backfill:chat_sessions", 2), ("backfill:messages", 2)}
    assert "backfill:messages" in strangler(env, "partitions", "list").stdout

    # Partition 2 of the same backfill is running: it splits by the stored plan.
    async with PostgresStore(clean_pg) as pg:
        runs = PostgresJobRuns(pg)
        run_id = await runs.start("backfill", {"partition": {"k": 2, "n": 2}})
        refused = strangler(env, "partitions", "forget")
        assert refused.returncode == 1
        assert "backfill 2/2" in refused.stdout and "--force" in refused.stdout
        dry = strangler(env, "partitions", "forget", "--force", "--dry-run")
        assert dry.returncode == 0 and "would forget" in dry.stdout
        assert len(await PostgresPartitionPlans(pg).plans()) == 2
        # A verify is not using backfill plans: a uuid: plan would be refused, not these.
        await runs.update(run_id, status="done")
        gone = strangler(env, "partitions", "forget", "--scope", "backfill:messages")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert [p["scope"] for p in await PostgresPartitionPlans(pg).plans()] == [
            "backfill:chat_sessions"
        ]
        assert strangler(env, "partitions", "forget").returncode == 0
        assert await PostgresPartitionPlans(pg).plans() == []
    assert "no partition plans" in strangler(env, "partitions", "list").stdout
    assert "nothing to forget" in strangler(env, "partitions", "forget").stdout
