"""``strangler tombstones prune``: forget deletes older than any source still to be loaded."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import TYPE_CHECKING

from strangler.config import Settings
from strangler.core.normalize import iso_z
from strangler.operate.common import days
from strangler.runtime import open_tombstones

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "tombstones",
        help="prune the record of deletes the backfill must not resurrect",
        description="The facade records every delete it makes during the migration, so a "
        "backfill from an older export cannot bring the row back. Once no backfill will run "
        "from a source older than N days, prune the older records.",
    )
    tomb = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = tomb.add_parser("prune", help="delete tombstones older than --older-than-days")
    q.add_argument(
        "--older-than-days",
        type=days,
        required=True,
        metavar="N",
        help="keep the deletes of the last N days (the age of the oldest source you may "
        "still backfill from)",
    )
    q.add_argument("--dry-run", action="store_true", help="only count them")
    q.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(prune(settings, older_than_days=args.older_than_days, dry_run=args.dry_run))


async def prune(settings: Settings, *, older_than_days: float, dry_run: bool) -> int:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    async with open_tombstones(settings) as tombstones:
        n = await tombstones.prune_tombstones(before, dry_run=dry_run)
    verb = "would prune" if dry_run else "pruned"
    print(f"{verb} {n} tombstones of deletes made before {iso_z(before)}")
    return 0
