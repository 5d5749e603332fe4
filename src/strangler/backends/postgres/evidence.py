"""The records a stage move's evidence is judged from (``strangler.core.evidence``), read
from Postgres in one round trip: the stage history, the latest finished backfill and verify,
the divergences since, both followers, and the shadow comparisons since ``shadow`` began."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from strangler.backends.postgres.runs import partitions_sql
from strangler.backends.postgres.store import PostgresStore
from strangler.core.evidence import HARMLESS_KINDS, Facts, FollowerFact, JobFact

_MOVES = """
SELECT
  (SELECT max(at) FROM strangler.stage_transitions
    WHERE from_stage = 'off' AND to_stage = 'dualwrite') AS dualwrite_since,
  (SELECT max(at) FROM strangler.stage_transitions WHERE to_stage = 'shadow') AS shadow_since,
  (SELECT max(at) FROM strangler.stage_transitions
    WHERE to_stage = 'live' AND from_stage IN ('off', 'dualwrite', 'shadow')) AS live_since
"""

_LATEST = (
    "SELECT started_at, updated_at, params::text, result::text FROM strangler.job_runs"
    " WHERE kind = $1 AND status = 'done' AND NOT params ? 'partition'"
    " ORDER BY id DESC LIMIT 1"
)
#: The latest finished run of each partition of the latest partitioned run: evidence once
#: every partition has one.
_PARTS = partitions_sql("started_at, updated_at, params::text, result::text", done=True)


class PostgresEvidence:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def gather(self, now: dt.datetime) -> Facts:
        async with self._store.connection("gather stage evidence") as conn:
            moves = await conn.fetchrow(_MOVES)
            backfill = _newer(
                _job(await conn.fetchrow(_LATEST, "backfill"), "backfill"),
                _whole(await conn.fetch(_PARTS, "backfill"), "backfill"),
            )
            verify = _newer(
                _job(await conn.fetchrow(_LATEST, "verify"), "verify"),
                _whole(await conn.fetch(_PARTS, "verify"), "verify"),
            )
            diverged = 0
            if verify is not None:
                diverged = await conn.fetchval(
                    "SELECT count(*) FROM strangler.divergences"
                    " WHERE at >= $1 AND kind <> ALL($2::text[])",
                    verify.started_at,
                    sorted(HARMLESS_KINDS),
                )
            followers = await conn.fetch(
                "SELECT name, state, CASE WHEN lease_until > now() THEN leader END,"
                " lag_seconds, updated_at FROM strangler.followers"
            )
            dualwrite_since = moves["dualwrite_since"]
            shadow_since = moves["shadow_since"]
            if shadow_since is not None and (
                dualwrite_since is None or shadow_since < dualwrite_since
            ):
                shadow_since = None  # shadow ran before these dual writes: not this time
            compared = matched = 0
            if shadow_since is not None:
                row = await conn.fetchrow(
                    "SELECT coalesce(sum(compared), 0), coalesce(sum(matched), 0)"
                    " FROM strangler.shadow_counts"
                    " WHERE minute >= date_trunc('minute', $1::timestamptz)",
                    shadow_since,
                )
                compared, matched = int(row[0]), int(row[1])
        by_name = {
            r[0]: FollowerFact(state=r[1], leader=r[2], lag_seconds=r[3], saved_at=r[4])
            for r in followers
        }
        return Facts(
            now=now,
            dualwrite_since=dualwrite_since,
            shadow_since=shadow_since,
            live_since=moves["live_since"],
            backfill=backfill,
            verify=verify,
            divergences_since_verify=int(diverged),
            forward=by_name.get("forward"),
            reverse=by_name.get("reverse"),
            compared=compared,
            matched=matched,
        )

    async def add_comparisons(self, instance: str, compared: int, matched: int) -> None:
        """Count shadow comparisons made by ``instance`` in the current minute."""
        async with self._store.connection("count shadow comparisons") as conn:
            await conn.execute(
                "INSERT INTO strangler.shadow_counts (instance, minute, compared, matched)"
                " VALUES ($1, date_trunc('minute', now()), $2, $3)"
                " ON CONFLICT (instance, minute) DO UPDATE SET"
                " compared = shadow_counts.compared + $2, matched = shadow_counts.matched + $3",
                instance,
                compared,
                matched,
            )


def _job(row: Any, kind: str) -> JobFact | None:
    if row is None:
        return None
    params = orjson.loads(row[2]) or {}
    result = orjson.loads(row[3]) if row[3] else {}
    if kind == "verify":
        return JobFact(
            started_at=row[0],
            finished_at=row[1],
            clean=bool(result.get("equal")),
            full=params.get("since") is None,
        )
    return JobFact(
        started_at=row[0],
        finished_at=row[1],
        clean=True,  # done: what it could not load is in its report, and verify finds it
        follow=bool(params.get("follow")),
    )


def _whole(rows: list[Any], kind: str) -> JobFact | None:
    """A partitioned run as one, once every partition has finished: from the first start
    to the last end, clean only if every slice was (each slice's verify compared it after
    the first start, so the divergences counted since then cover them all)."""
    if not rows:
        return None
    n = int(orjson.loads(rows[0][2])["partition"]["n"])
    if len(rows) < n:
        return None
    parts = [f for f in (_job(r, kind) for r in rows) if f is not None]
    return JobFact(
        started_at=min(f.started_at for f in parts),
        finished_at=max(f.finished_at for f in parts),
        clean=all(f.clean for f in parts),
        full=all(f.full for f in parts),
        follow=all(f.follow for f in parts),
    )


def _newer(a: JobFact | None, b: JobFact | None) -> JobFact | None:
    if a is None or b is None:
        return a or b
    return a if a.finished_at >= b.finished_at else b
