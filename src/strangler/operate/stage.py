"""``strangler stage get|set``: the migration stage every instance follows."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from strangler.config import Settings
from strangler.core.errors import ConfigError
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
        description="Stages, in order: off, dualwrite, shadow, live, rampdown, complete. "
        "'set' moves one step at a time (--force to skip), refuses while repairs are pending "
        "for the store that becomes authoritative, and records who, when and why. Running "
        "instances follow within STRANGLER_STAGE_POLL_SECONDS. If STRANGLER_STAGE is set, it "
        "wins: change it and restart instead (the env-var rollback path).",
    )
    p.add_argument("action", choices=["get", "set"])
    p.add_argument("stage", nargs="?", help="with 'set': the stage to move to")
    p.add_argument("--reason", help="why (recorded with the transition)")
    p.add_argument(
        "--force",
        action="store_true",
        help="skip stages or ignore pending repairs (you accept the risk)",
    )
    p.add_argument("--json", action="store_true", help="with 'get': machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "get":
        return asyncio.run(get(settings, as_json=args.json))
    if not args.stage:
        raise ConfigError(
            "strangler stage set needs a STAGE (off, dualwrite, shadow, live, rampdown, complete)"
        )
    return asyncio.run(
        set_(settings, Stage.parse(args.stage), reason=args.reason, force=args.force)
    )


async def get(settings: Settings, *, as_json: bool) -> int:
    async with Runtime.open(settings, start=False) as runtime:
        stage = await runtime.controller.refresh()
        record = await runtime.stages.read_stage()
        history = await runtime.stages.transitions(5)
        followers = {d.name: await runtime.followers.load(d.name) for d in DIRECTIONS}
        facade = runtime.facade
        pending = {"old": await facade.pending("old"), "new": await facade.pending("new")}
    now = dt.datetime.now(dt.UTC)
    info: dict[str, Any] = {
        "stage": stage.value,
        "source": "STRANGLER_STAGE" if settings.stage else "control table",
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
    ladder = "  ".join(f"[{s.value}]" if s == stage else s.value for s in Stage)
    print(f"ladder: {ladder}")
    return 0


async def set_(settings: Settings, target: Stage, *, reason: str | None, force: bool) -> int:
    async with Runtime.open(settings, start=False) as runtime:
        record = await runtime.controller.set(target, reason=reason, origin=origin(), force=force)
    print(
        f"stage is now {record.stage.value}; running instances follow within "
        f"{settings.stage_poll_seconds:g}s"
    )
    return 0
