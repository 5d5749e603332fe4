"""``strangler stage get|set``: the migration stage every instance follows."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from strangler.config import Settings
from strangler.core.errors import ConfigError
from strangler.core.evidence import Check, missing
from strangler.core.records import follower_summary
from strangler.core.stages import Stage
from strangler.operate.common import origin
from strangler.proxy.follower import DIRECTIONS
from strangler.runtime import Runtime

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "stage",
        help="show or change the migration stage every instance follows",
        description="Stages, in order: off, dualwrite, shadow, live, rampdown, complete, "
        "decommissioned (the finish line: MongoDB is no longer needed; 'set decommissioned "
        "--confirm' drops what is still queued for it, and afterwards every command and "
        "'strangler serve' run without MONGO_URI). "
        "'set' moves one step at a time, and a move forward needs evidence from the records: "
        "before shadow and live, a backfill since dual writes began, a clean full verify "
        "after it, nothing pending toward Supabase, no divergence since, the forward "
        "follower keeping up (and before live, shadow reads 99.9% consistent over 1,000 "
        "comparisons); before complete, MongoDB caught up. A refusal lists each missing "
        "piece and the command that supplies it (exit 4); 'set STAGE --dry-run' shows the "
        "list without moving. --force --reason '...' moves anyway and records what was "
        "missing. Moves back (a rollback) need no evidence. Running instances follow "
        "within STRANGLER_STAGE_POLL_SECONDS. If STRANGLER_STAGE is set, it wins: change it "
        "and restart instead (the env-var rollback path).",
    )
    p.add_argument("action", choices=["get", "set"])
    p.add_argument("stage", nargs="?", help="with 'set': the stage to move to")
    p.add_argument("--reason", help="why (recorded with the transition)")
    p.add_argument(
        "--force",
        action="store_true",
        help="skip stages, move without the evidence, or ignore pending repairs (needs "
        "--reason; recorded with what was missing)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with 'set': show the evidence the move needs, and what the records show; "
        "move nothing (exit 4 if a piece is missing)",
    )
    p.add_argument(
        "--confirm",
        action="store_true",
        help="with 'set decommissioned': yes, MongoDB leaves the migration (writes still "
        "queued for it are dropped; the refusal says how many)",
    )
    p.add_argument("--json", action="store_true", help="with 'get': machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "get":
        return asyncio.run(get(settings, as_json=args.json))
    if not args.stage:
        raise ConfigError(
            "strangler stage set needs a STAGE (" + ", ".join(s.value for s in Stage) + ")"
        )
    target = Stage.parse(args.stage)
    if args.dry_run:
        return asyncio.run(check(settings, target))
    return asyncio.run(
        set_(settings, target, reason=args.reason, force=args.force, confirm=args.confirm)
    )


def _checklist(found: list[Check]) -> list[str]:
    return [
        f"  [{'ok' if c.ok else 'MISSING'}] {c.need}: {c.found}"
        + ("" if c.ok or not c.fix else f" -> {c.fix}")
        for c in found
    ]


async def check(settings: Settings, target: Stage) -> int:
    """The evidence ``target`` needs from here, judged; nothing moves."""
    async with Runtime.open(settings, start=False) as runtime:
        current = await runtime.controller.refresh()
        gate = runtime.controller.gate
        found = [] if gate is None else await gate.checks(current, target)
    print(f"{current.value} -> {target.value}:")
    if not found:
        print("  no evidence needed (a rollback, or the first step)")
    for line in _checklist(found):
        print(line)
    return 4 if missing(found) else 0


async def get(settings: Settings, *, as_json: bool) -> int:
    async with Runtime.open(settings, start=False) as runtime:
        stage = await runtime.controller.refresh()
        record = await runtime.stages.read_stage()
        history = await runtime.stages.transitions(5)
        followers = {d.name: await runtime.followers.load(d.name) for d in DIRECTIONS}
        facade = runtime.facade
        pending = {"old": await facade.pending("old"), "new": await facade.pending("new")}
        ladder = list(Stage)
        after = ladder[ladder.index(stage) + 1] if stage != ladder[-1] else None
        gate = runtime.controller.gate
        ahead = [] if after is None or gate is None else await gate.checks(stage, after)
    now = dt.datetime.now(dt.UTC)
    info: dict[str, Any] = {
        "stage": stage.value,
        "source": "STRANGLER_STAGE"
        if settings.stage
        else "assumed: Supabase's REST API alone"
        if record is not None and record.origin == "assumed"
        else "control table",
        "control_table": None
        if record is None
        else {
            "stage": record.stage.value,
            "changed_at": record.changed_at.isoformat(),
            "origin": record.origin,
            "reason": record.reason,
        },
        "pending_repairs": {"mongo": pending["old"], "supabase": pending["new"]},
        "recent_transitions": [{**h, "at": h["at"].isoformat()} for h in history],
        "followers": {name: follower_summary(r, now) for name, r in followers.items()},
        "next": None
        if after is None
        else {"stage": after.value, "evidence": [c.json() for c in ahead]},
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"stage: {stage.value}  (from {info['source']})")
    if record is not None:
        print(
            f"changed {record.changed_at:%Y-%m-%d %H:%M:%S %Z} by {record.origin}"
            + (f": {record.reason}" if record.reason else "")
        )
    print(f"pending repairs: {pending['old']} for MongoDB, {pending['new']} for Supabase")
    for name, f in info["followers"].items():
        print(
            f"{name} follower: {f['state']}; applied {f['applied']:,}, bypass writes "
            f"{f['bypass']:,}, reported {f['reported']:,}"
            + (f" ({f['reason']})" if f["reason"] else "")
        )
    rungs = "  ".join(f"[{s.value}]" if s == stage else s.value for s in Stage)
    print(f"ladder: {rungs}")
    if after is not None:
        lacking = missing(ahead)
        print(
            f"next: {after.value}: "
            + (
                "no evidence missing"
                if not lacking
                else f"missing {', '.join(c.key for c in lacking)} "
                f"('strangler stage set {after.value} --dry-run' says what supplies it)"
            )
        )
    return 0


async def set_(
    settings: Settings, target: Stage, *, reason: str | None, force: bool, confirm: bool = False
) -> int:
    async with Runtime.open(settings, start=False) as runtime:
        current = await runtime.controller.refresh()
        gate = runtime.controller.gate
        found = [] if gate is None else await gate.checks(current, target)
        record = await runtime.controller.set(
            target, reason=reason, origin=origin(), force=force, confirm=confirm
        )
    if found:
        print(
            "evidence:" + (" (forced: the missing pieces are recorded)" if missing(found) else "")
        )
        for line in _checklist(found):
            print(line)
    print(
        f"stage is now {record.stage.value}; running instances follow within "
        f"{settings.stage_poll_seconds:g}s"
    )
    if record.stage.old_retired:
        print(
            "MongoDB is out of the migration: remove MONGO_URI from every instance's "
            "environment and restart them, one at a time (README, 'Runbook', last step)"
        )
    return 0
