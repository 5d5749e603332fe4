"""``strangler verify``: diff the two stores table by table (exit 1 when they differ)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from typing import TYPE_CHECKING, Any

from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.core.normalize import iso_z
from strangler.core.partition import Part
from strangler.core.ports import IdSampler
from strangler.core.records import TABLES, Table
from strangler.migrate.partitions import NO_PLANS, uuid_slice
from strangler.migrate.runs import recorded
from strangler.migrate.verify import Throttle, diff_stores
from strangler.operate.common import SAMPLES_SHOWN, moment, pairs, partition
from strangler.runtime import Jobs, old_store

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "verify",
        help="diff the two stores table by table (exit 1 when they differ)",
        description="Streams both stores in id order and compares every row after "
        "normalisation: rows missing from the non-authoritative store, extra rows, and rows "
        "that differ, with samples and field-level diffs. Exit 0: equal; 1: they differ. "
        "A run saves where it is every 1,000 rows (in strangler.job_runs); --resume continues "
        "an interrupted or crashed run from there. To read MongoDB from a secondary, put "
        "readPreference=secondaryPreferred (or secondary) in MONGO_URI.",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--since",
        type=moment,
        metavar="ISO8601",
        help="compare only sessions created and messages sent at or after this moment "
        "(e.g. 2026-11-25T09:00:00Z), to check recent traffic every few minutes",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the last verify run, if it was interrupted (Ctrl-C, a crash): each "
        "table from the last id it compared, with what it had found",
    )
    p.add_argument(
        "--partition",
        type=partition,
        metavar="K/N",
        help="compare only slice K of N of each table's ids (1 <= K <= N), so N processes "
        "on N hosts share a verify; the split points are sampled once and kept in "
        "strangler.partition_plans, and 'repair --partition K/N' mends the same slice. Stage "
        "moves take a partitioned verify as evidence once every slice has finished",
    )
    p.add_argument(
        "--max-rows-per-second",
        type=float,
        default=None,
        metavar="N",
        help="compare at most N rows a second, to spare a production MongoDB (default: as "
        "fast as the stores answer)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.max_rows_per_second is not None and args.max_rows_per_second <= 0:
        raise ConfigError("--max-rows-per-second must be more than 0")
    return asyncio.run(
        verify(
            settings,
            as_json=args.json,
            since=args.since,
            resume=args.resume,
            max_rows_per_second=args.max_rows_per_second,
            part=args.partition,
        )
    )


async def uuid_bounds(
    jobs: Jobs, old: object, part: Part
) -> dict[Table, tuple[uuid.UUID | None, uuid.UUID | None]]:
    """Each table's ``[lo, hi)`` for partition ``part`` (verify and repair share them).
    The plan samples MongoDB's ids when it is there, else Supabase's."""
    sampler = old if isinstance(old, IdSampler) else jobs.sampler
    if sampler is None:
        raise ConfigError(NO_PLANS)
    out = {}
    for table in TABLES:
        s = await uuid_slice(jobs.plans, table, part, sampler)
        out[table] = (s.lo, s.hi)
    return out


#: A run still marked running whose record has not moved for this long is taken for dead
#: (SIGKILL, a lost machine): its progress record is flushed every 2 s.
STALE_SECONDS = 30


async def _resumable(
    jobs: Jobs, stage: str, window: str | None, part: dict[str, int] | None = None
) -> dict[str, Any]:
    """The saved state of the last verify run (of this partition), if it can be resumed
    here; else why not."""
    last = (
        None if jobs.runs is None else await jobs.runs.latest("verify", partition=part, exact=True)
    )
    if last is None:
        which = "" if part is None else f" of partition {part['k']}/{part['n']}"
        raise ConfigError(f"verify --resume: no verify{which} has run yet; run it without --resume")
    status = last["status"]
    if status == "running":
        updated = dt.datetime.fromisoformat(last["updated_at"])
        if (dt.datetime.now(dt.UTC) - updated).total_seconds() < STALE_SECONDS:
            raise ConfigError(
                f"verify --resume: verify run {last['id']} is still running (updated "
                f"{last['updated_at']}); wait for it, or stop it first"
            )
    elif status not in ("interrupted", "failed"):
        raise ConfigError(
            f"verify --resume: the last verify run ({last['id']}) finished ({status}); "
            "nothing to resume. Run it without --resume"
        )
    state = last["progress"].get("resume")
    params = last["params"]
    if not state:
        raise ConfigError(
            f"verify --resume: verify run {last['id']} saved no position (it stopped in its "
            "first 1,000 rows, or ran before resumable verifies); run it without --resume"
        )
    if params.get("stage") != stage or params.get("since") != window:
        raise ConfigError(
            f"verify --resume: verify run {last['id']} compared stage {params.get('stage')} "
            f"since {params.get('since')}, not stage {stage} since {window}; run it without "
            "--resume (or with the same --since)"
        )
    return dict(state)


async def verify(
    settings: Settings,
    *,
    as_json: bool,
    since: dt.datetime | None = None,
    resume: bool = False,
    max_rows_per_second: float | None = None,
    part: Part | None = None,
) -> int:
    async with old_store(settings, bulk=True) as old, Jobs.open(settings) as jobs:
        old.use_legacy_ids(jobs.legacy_ids)  # a scan keeps one-way ids' originals
        new = jobs.new
        stage = await jobs.stage(settings)
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        window = None if since is None else iso_z(since)
        bounds = None if part is None else await uuid_bounds(jobs, old, part)
        tag = None if part is None else {"k": part.k, "n": part.n}
        state = await _resumable(jobs, stage.value, window, tag) if resume else None
        if state is not None and not as_json:
            print(
                "resuming: "
                + ", ".join(
                    f"{t} {'done' if s.get('done') else 'after ' + str(s.get('after'))} "
                    f"({s.get('compared', 0):,} compared)"
                    for t, s in state.items()
                ),
                flush=True,
            )
        params: dict[str, Any] = {
            "stage": stage.value,
            "since": window,
            "origin": "cli",
            "resumed": resume,
        }
        if tag is not None:
            params["partition"] = tag
        async with recorded(jobs.runs, "verify", params) as run:
            saved: dict[str, Any] = dict(state or {})
            run.progress["resume"] = saved

            def progress(table: str, compared: int) -> None:
                run.progress[table] = compared

            def checkpoint(table: str, table_state: dict[str, Any]) -> None:
                saved[table] = table_state

            throttle = None if max_rows_per_second is None else Throttle(max_rows_per_second)
            diffs = await diff_stores(
                auth,
                other,
                keep=1000,
                since=since,
                progress=progress,
                resume=state,
                checkpoint=checkpoint,
                throttle=throttle,
                bounds=bounds,
            )
            run.result = {
                "equal": all(d.equal for d in diffs.values()),
                "tables": [d.summary() for d in diffs.values()],
            }
    equal = all(d.equal for d in diffs.values())
    if as_json:
        print(
            json.dumps(
                {
                    "equal": equal,
                    "stage": stage.value,
                    "since": window,
                    "tables": [d.summary() for d in diffs.values()],
                },
                indent=2,
            )
        )
        return 0 if equal else 1
    auth_name, behind = ("MongoDB", "Supabase") if auth is old else ("Supabase", "MongoDB")
    print(
        f"stage {stage.value}: {auth_name} is authoritative"
        + (f"; rows since {window} only" if window else "")
        + ("" if part is None else f"; partition {part} of the ids only")
    )
    for d in diffs.values():
        c = d.counts
        print(
            f"{d.table:<14} compared {d.compared:>9}  missing {c['missing']:>7}  "
            f"extra {c['extra']:>7}  different {c['different']:>7}"
        )
        for record_id in d.missing[:SAMPLES_SHOWN]:
            print(f"    missing from {behind}: {record_id}")
        for record_id in d.extra[:SAMPLES_SHOWN]:
            print(f"    extra in {behind}: {record_id}")
        for record_id, fields in list(d.different.items())[:SAMPLES_SHOWN]:
            for name, (want, got) in pairs(fields):
                print(f"    different {record_id} {name}: {auth_name} {want!r} / {behind} {got!r}")
    print(
        "stores are equal"
        if equal
        else f"stores differ; run 'strangler repair' to make {behind} match "
        "(--json for every sample)"
    )
    return 0 if equal else 1
