"""``strangler verify``: diff the two stores table by table (exit 1 when they differ)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING

from strangler.config import Settings
from strangler.core.normalize import iso_z
from strangler.migrate.runs import recorded
from strangler.migrate.verify import diff_stores
from strangler.operate.common import SAMPLES_SHOWN, moment, pairs
from strangler.runtime import Jobs, old_store

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "verify",
        help="diff the two stores table by table (exit 1 when they differ)",
        description="Streams both stores in id order and compares every row after "
        "normalisation: rows missing from the non-authoritative store, extra rows, and rows "
        "that differ, with samples and field-level diffs. Exit 0: equal; 1: they differ.",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--since",
        type=moment,
        metavar="ISO8601",
        help="compare only sessions created and messages sent at or after this moment "
        "(e.g. 2026-11-25T09:00:00Z), to check recent traffic every few minutes",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(verify(settings, as_json=args.json, since=args.since))


async def verify(settings: Settings, *, as_json: bool, since: dt.datetime | None = None) -> int:
    async with old_store(settings, bulk=True) as old, Jobs.open(settings) as jobs:
        new = jobs.new
        stage = await jobs.stage(settings)
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        window = None if since is None else iso_z(since)
        params = {"stage": stage.value, "since": window, "origin": "cli"}
        async with recorded(jobs.runs, "verify", params) as run:

            def progress(table: str, compared: int) -> None:
                run.progress[table] = compared

            diffs = await diff_stores(auth, other, keep=1000, since=since, progress=progress)
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
