"""Operator commands behind the CLI: the stage, verify and repair.

Each opens both stores from ``Settings``, does one job and returns an exit code; the CLI
only parses arguments and prints.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from typing import Any

from strangler.config import Settings
from strangler.config.selection import new_store, old_store
from strangler.migrate.repair import repair
from strangler.migrate.verify import diff_stores
from strangler.proxy.stages import Stage
from strangler.proxy.wiring import FacadeOptions, assemble


def _origin() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


async def stage_get(settings: Settings, *, as_json: bool) -> int:
    async with old_store(settings) as old, new_store(settings) as new:
        facade = assemble(old, new, FacadeOptions.from_settings(settings))
        stage = await facade.controller.refresh()
        assert facade.control is not None
        record = await facade.control.read_stage()
        history = await facade.control.transitions(5)
        pending = {"old": await facade.pending("old"), "new": await facade.pending("new")}
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
    ladder = "  ".join(f"[{s.value}]" if s == stage else s.value for s in Stage)
    print(f"ladder: {ladder}")
    return 0


async def stage_set(settings: Settings, target: Stage, *, reason: str | None, force: bool) -> int:
    async with old_store(settings) as old, new_store(settings) as new:
        facade = assemble(old, new, FacadeOptions.from_settings(settings))
        record = await facade.controller.set(target, reason=reason, origin=_origin(), force=force)
    print(
        f"stage is now {record.stage.value}; running instances follow within "
        f"{settings.stage_poll_seconds:g}s"
    )
    return 0


async def verify(settings: Settings, *, as_json: bool) -> int:
    async with old_store(settings) as old, new_store(settings) as new:
        facade = assemble(old, new, FacadeOptions.from_settings(settings))
        stage = await facade.controller.refresh()
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        diffs = await diff_stores(auth, other, keep=1000)
    equal = all(d.equal for d in diffs.values())
    if as_json:
        print(
            json.dumps(
                {
                    "equal": equal,
                    "stage": stage.value,
                    "tables": [d.summary() for d in diffs.values()],
                },
                indent=2,
            )
        )
    else:
        for d in diffs.values():
            c = d.counts
            print(
                f"{d.table:<14} compared {d.compared:>9}  missing {c['missing']:>7}  "
                f"extra {c['extra']:>7}  different {c['different']:>7}"
            )
        behind = "Supabase" if auth is old else "MongoDB"
        print(
            "stores are equal"
            if equal
            else f"stores differ; run 'strangler repair' to make {behind} match"
        )
    return 0 if equal else 1


async def run_repair(settings: Settings, *, dry_run: bool) -> int:
    async with old_store(settings) as old, new_store(settings) as new:
        facade = assemble(old, new, FacadeOptions.from_settings(settings))
        stage = await facade.controller.refresh()
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        diffs = await diff_stores(auth, other)
        results = await repair(auth, other, diffs, dry_run=dry_run)
    verb = "would repair" if dry_run else "repaired"
    for r in results:
        print(f"{r.table:<14} {verb} {r.repaired}")
    sys.stdout.flush()
    return 0
