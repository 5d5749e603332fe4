"""``strangler partitions list|forget``: the split points that partitioned runs share."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.core.ports import JobKind, JobRuns
from strangler.runtime import Jobs

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers

#: A partition run whose record moved within this many seconds is taken to be running (a
#: run updates its progress every few seconds; one that died leaves "running" behind).
ALIVE_SECONDS = 300.0
#: Over the REST API alone the plans' table is out of reach.
NO_PLANS = (
    "the partition plans are kept in strangler.partition_plans, which the REST API cannot "
    "reach: set SUPABASE_DB_URL (the direct database URL) to list or forget them"
)
#: Which job kinds use the plans of a scope.
KINDS: dict[str, tuple[JobKind, ...]] = {"backfill": ("backfill",), "uuid": ("verify", "repair")}


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "partitions",
        help="list or forget the split points partitioned runs share",
        description="A partitioned backfill, verify or repair (--partition K/N) splits by "
        "split points that the first of its N processes samples from the data and stores in "
        "strangler.partition_plans; the others use the same ones, so the N slices cover "
        "every id once. A plan is kept per collection (backfill:<collection>) or table "
        "(uuid:<table>) and N, and reused by later runs with the same N: still exact, but "
        "less even once the data has changed shape. 'forget' deletes plans so the next "
        "partitioned run samples afresh.",
    )
    act = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = act.add_parser("list", help="the stored plans")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=run)
    f = act.add_parser(
        "forget",
        help="delete plans, so the next partitioned run samples afresh",
        description="Delete stored plans. Refused while a partitioned run that would use "
        "them is running (its slices come from the plan it started with: a new plan would "
        "split differently, leaving gaps and overlaps), unless --force.",
    )
    f.add_argument(
        "--scope",
        metavar="SCOPE",
        help="only this scope (as 'list' shows it: backfill:messages, uuid:chat_sessions, ...)",
    )
    f.add_argument("--partitions", type=int, metavar="N", help="only the plans for N partitions")
    f.add_argument("--dry-run", action="store_true", help="only say what would go")
    f.add_argument(
        "--force",
        action="store_true",
        help="forget even though a partitioned run seems to be running (it died, and its "
        "record still says running)",
    )
    f.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        return asyncio.run(list_plans(settings, as_json=args.json))
    return asyncio.run(
        forget(
            settings,
            scope=args.scope,
            partitions=args.partitions,
            dry_run=args.dry_run,
            force=args.force,
        )
    )


async def list_plans(settings: Settings, *, as_json: bool) -> int:
    async with Jobs.open(settings) as jobs:
        if jobs.plans is None:
            raise ConfigError(NO_PLANS)
        plans = await jobs.plans.plans()
    if as_json:
        print(json.dumps(plans, indent=2))
        return 0
    if not plans:
        print("no partition plans stored (a partitioned run makes one when it starts)")
        return 0
    print(f"{'scope':<26} {'N':>4} {'points':>7} {'sampled':>8}  made")
    for plan in plans:
        print(
            f"{plan['scope']:<26} {plan['partitions']:>4} {plan['points']:>7} "
            f"{plan['sampled']:>8}  {plan['created_at']}"
        )
    return 0


async def running(runs: JobRuns | None, kinds: tuple[JobKind, ...]) -> list[dict[str, Any]]:
    """The partition runs of ``kinds`` whose record says running and moved lately."""
    if runs is None:
        return []
    now = dt.datetime.now(dt.UTC)
    alive = []
    for kind in kinds:
        for r in await runs.partitions(kind):
            updated = dt.datetime.fromisoformat(r["updated_at"])
            if r["status"] == "running" and (now - updated).total_seconds() < ALIVE_SECONDS:
                alive.append(r)
    return alive


async def forget(
    settings: Settings,
    *,
    scope: str | None,
    partitions: int | None,
    dry_run: bool,
    force: bool,
) -> int:
    async with Jobs.open(settings) as jobs:
        if jobs.plans is None:
            raise ConfigError(NO_PLANS)
        chosen = [
            p
            for p in await jobs.plans.plans()
            if (scope is None or p["scope"] == scope)
            and (partitions is None or p["partitions"] == partitions)
        ]
        if not chosen:
            print("no stored plan matches: nothing to forget ('strangler partitions list')")
            return 0
        kinds = tuple(
            sorted({k for p in chosen for k in KINDS.get(p["scope"].split(":", 1)[0], ())})
        )
        busy = await running(jobs.runs, kinds)
        if busy and not force:
            names = ", ".join(
                f"{r['kind']} {r['params']['partition']['k']}/{r['params']['partition']['n']} "
                f"(last progress {r['updated_at']})"
                for r in busy
            )
            print(
                f"refused: partitioned runs are running: {names}. Each splits by the plan it "
                "started with; a new plan would split differently and leave gaps or overlaps. "
                "Wait for them to end (or stop them), or add --force if they died."
            )
            return 1
        verb = "would forget" if dry_run else "forgetting"
        for plan in chosen:
            print(f"{verb} the plan of {plan['scope']} in {plan['partitions']} partitions")
        if dry_run:
            return 0
        gone = 0
        for plan in chosen:
            gone += await jobs.plans.forget(plan["scope"], plan["partitions"])
    print(f"forgot {gone} plan(s); the next partitioned run samples afresh")
    return 0
