"""Tombstone retention: old records of deletes can be pruned, recent ones stay."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid

from strangler.backends.postgres import PostgresStore, PostgresTombstones
from tests.cli import strangler


async def test_prune_keeps_recent_tombstones(pg_store: PostgresStore) -> None:
    control = PostgresTombstones(pg_store)
    old, recent = uuid.uuid4(), uuid.uuid4()
    await control.tombstone("messages", [old, recent])
    async with pg_store.connection("age a tombstone") as conn:
        await conn.execute(
            "UPDATE strangler.tombstones SET deleted_at = now() - interval '40 days'"
            " WHERE record_id = $1",
            old,
        )
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    assert await control.prune_tombstones(cutoff, dry_run=True) == 1
    assert await control.tombstoned("messages", [old, recent]) == {old, recent}
    assert await control.prune_tombstones(cutoff) == 1
    assert await control.tombstoned("messages", [old, recent]) == {recent}


def test_cli_prune_explains_and_refuses_bad_input(clean_pg: str) -> None:
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return strangler(env, "tombstones", "prune", *args)

    ok = cli("--older-than-days", "30", "--dry-run")
    assert ok.returncode == 0 and "would prune 0 tombstones" in ok.stdout, ok.stderr
    bad = cli("--older-than-days", "-1")
    assert bad.returncode == 2 and "must be zero or more days" in bad.stderr
