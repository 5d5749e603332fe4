"""``strangler repair``: make the non-authoritative store match the authoritative one."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

from strangler.config import Settings
from strangler.core.partition import Part
from strangler.migrate.repair import repair
from strangler.migrate.runs import recorded
from strangler.migrate.verify import diff_stores
from strangler.operate.common import SAMPLES_SHOWN, moment, partition
from strangler.operate.verify import uuid_bounds
from strangler.runtime import Jobs, old_store

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "repair",
        help="make the non-authoritative store match the authoritative one",
        description="Diffs the stores, then inserts what is missing, deletes what is extra and "
        "overwrites what differs in the store that is not authoritative for the stage. Each "
        "record is copied state by state, so it is safe while the facade serves traffic. "
        "Exit 0: all repaired; 1: some records could not be (they are listed).",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what would change")
    p.add_argument(
        "--since",
        type=moment,
        metavar="ISO8601",
        help="repair only rows created or sent at or after this moment (as verify --since)",
    )
    p.add_argument(
        "--partition",
        type=partition,
        metavar="K/N",
        help="repair only slice K of N of each table's ids (the slices 'verify --partition' "
        "uses), so N processes on N hosts share the work",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(
        run_repair(settings, dry_run=args.dry_run, since=args.since, part=args.partition)
    )


async def run_repair(
    settings: Settings,
    *,
    dry_run: bool,
    since: dt.datetime | None = None,
    part: Part | None = None,
) -> int:
    async with old_store(settings, bulk=True) as old, Jobs.open(settings) as jobs:
        old.use_legacy_ids(jobs.legacy_ids)  # a scan keeps one-way ids' originals
        new = jobs.new
        stage = await jobs.stage(settings)
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        bounds = None if part is None else await uuid_bounds(jobs, old, part)
        params: dict[str, Any] = {"stage": stage.value, "dry_run": dry_run, "origin": "cli"}
        if part is not None:
            params["partition"] = {"k": part.k, "n": part.n}
        async with recorded(jobs.runs, "repair", params) as run:
            diffs = await diff_stores(auth, other, since=since, bounds=bounds)
            results = await repair(auth, other, diffs, dry_run=dry_run)
            run.result = {
                "tables": [
                    {
                        "table": r.table,
                        "inserted": r.inserted,
                        "deleted": r.deleted,
                        "overwritten": r.overwritten,
                        "failed": len(r.failed),
                    }
                    for r in results
                ]
            }
    behind = "Supabase" if auth is old else "MongoDB"
    verb = "would" if dry_run else ""
    print(
        f"stage {stage.value}: making {behind} match"
        + ("" if part is None else f", partition {part} of the ids")
        + (" (dry run)" if dry_run else "")
    )
    failed = 0
    for r in results:
        print(
            f"{r.table:<14} {verb + ' ' if verb else ''}insert {r.inserted:>7}  "
            f"delete {r.deleted:>7}  overwrite {r.overwritten:>7}"
            + (f"  failed {len(r.failed)}" if r.failed else "")
        )
        for record_id, error in list(r.failed.items())[:SAMPLES_SHOWN]:
            print(f"    failed {record_id}: {error}")
        failed += len(r.failed)
    sys.stdout.flush()
    return 1 if failed else 0
