"""Operator commands behind the CLI: the stage, verify and repair.

Each opens both stores from ``Settings``, does one job and returns an exit code; the CLI
only parses arguments and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import json
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.backends.postgres_control import PostgresControl
from strangler.backends.postgres_runs import recorded
from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.config import Settings
from strangler.config.selection import BULK_TIMEOUT, new_chat_store, new_store, old_store
from strangler.errors import ConfigError
from strangler.migrate.backfill import Backfill, Counts, Orphans, summary_table
from strangler.migrate.checkpoint import Checkpoint
from strangler.migrate.repair import repair
from strangler.migrate.report import Report
from strangler.migrate.sources import FileSource, MongoSource, Source
from strangler.migrate.verify import diff_stores
from strangler.normalize import iso_z
from strangler.proxy.stages import Stage
from strangler.proxy.wiring import FacadeOptions, assemble

log = structlog.get_logger(__name__)


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


async def verify(settings: Settings, *, as_json: bool, since: dt.datetime | None = None) -> int:
    async with old_store(settings, bulk=True) as old, new_chat_store(settings, bulk=True) as new:
        stage = await _stage(settings, old, new)
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        window = None if since is None else iso_z(since)
        params = {"stage": stage.value, "since": window, "origin": "cli"}
        async with recorded(new, "verify", params) as run:

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
            for name, (want, got) in _pairs(fields):
                print(f"    different {record_id} {name}: {auth_name} {want!r} / {behind} {got!r}")
    print(
        "stores are equal"
        if equal
        else f"stores differ; run 'strangler repair' to make {behind} match "
        "(--json for every sample)"
    )
    return 0 if equal else 1


SAMPLES_SHOWN = 5


def _pairs(fields: dict[str, Any]) -> list[tuple[str, tuple[Any, Any]]]:
    """``(field, (authoritative, other))`` from a field-level diff, values shortened."""
    return [
        (name, (_short(v.get("authoritative")), _short(v.get("other"))))
        for name, v in fields.items()
    ]


def _short(value: Any, limit: int = 60) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def run_repair(settings: Settings, *, dry_run: bool, since: dt.datetime | None = None) -> int:
    async with old_store(settings, bulk=True) as old, new_chat_store(settings, bulk=True) as new:
        stage = await _stage(settings, old, new)
        auth, other = (old, new) if stage.authoritative == "old" else (new, old)
        params = {"stage": stage.value, "dry_run": dry_run, "origin": "cli"}
        async with recorded(new, "repair", params) as run:
            diffs = await diff_stores(auth, other, since=since)
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
    print(f"stage {stage.value}: making {behind} match" + (" (dry run)" if dry_run else ""))
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


async def prune_tombstones(settings: Settings, *, older_than_days: float, dry_run: bool) -> int:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    async with new_store(settings) as new:
        n = await PostgresControl(new).prune_tombstones(before, dry_run=dry_run)
    verb = "would prune" if dry_run else "pruned"
    print(f"{verb} {n} tombstones of deletes made before {iso_z(before)}")
    return 0


async def _stage(
    settings: Settings, old: MongoStore, new: PostgresStore | SupabaseRestStore
) -> Stage:
    """The stage: from the control table over the direct store; over REST, where the
    control table is out of reach, it must be given as STRANGLER_STAGE."""
    if isinstance(new, PostgresStore):
        return await assemble(old, new, FacadeOptions.from_settings(settings)).controller.refresh()
    if settings.stage is None:
        raise ConfigError(
            "over the REST API the shared stage cannot be read: set STRANGLER_STAGE to the "
            "current stage (or SUPABASE_DB_URL to use the direct store)"
        )
    return settings.stage


def _is_directory(path: str) -> bool:
    return Path(path).is_dir()


@contextlib.contextmanager
def _stop_on_ctrl_c(job: str) -> Iterator[asyncio.Event]:
    """An event that the first Ctrl-C (or SIGTERM) sets, for a job to stop at its next
    checkpoint; a second one interrupts at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning(
            f"{job}_stopping", detail="stopping after the batch in hand; Ctrl-C again stops now"
        )

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, first)
            handled.append(sig)
    try:
        yield stop
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def backfill(
    settings: Settings,
    *,
    source: str | None,
    report: Path,
    orphans: Orphans,
    dry_run: bool,
    batch_size: int,
    checkpoint: Path,
    resume: bool,
    workers: int = 0,
) -> int:
    src = source or settings.mongo_uri
    if not src:
        raise ConfigError(
            "no source: pass --source (a MongoDB URI or a directory of "
            "mongoexport files) or set MONGO_URI"
        )
    started = time.monotonic()
    totals: dict[str, int | None] = {}
    tty = sys.stderr.isatty()
    #: What the dashboard shows of this run (``strangler.job_runs``), refreshed as it goes.
    shown: dict[str, dict[str, Any]] = {}

    def progress(collection: str, c: Counts) -> None:
        rate = c.read / max(time.monotonic() - started, 1e-9)
        total = totals.get(collection)
        eta = (total - c.read) / rate if total and rate and total > c.read else None
        shown[collection] = {
            "read": c.read,
            "written": c.written,
            "repaired": c.repaired,
            "quarantined": c.quarantined,
            "vanished": c.vanished,
            "total": total,
            "rows_per_s": round(rate),
            "eta_s": None if eta is None else round(eta),
        }
        if tty:
            of = f"/{total:,}" if total else ""
            left = f"  ETA {eta:,.0f}s" if eta is not None else ""
            sys.stderr.write(
                f"\r{collection:<14} {c.read:>10,}{of} rows {rate:>9,.0f} rows/s{left}   "
            )
            sys.stderr.flush()
            return
        log.info(
            "backfill_progress",
            collection=collection,
            read=c.read,
            written=c.written,
            repaired=c.repaired,
            quarantined=c.quarantined,
            total=total,
            rows_per_s=round(rate),
            eta_s=None if eta is None else round(eta),
        )

    async with contextlib.AsyncExitStack() as stack:
        if _is_directory(src):
            origin: Source = FileSource(Path(src))
        elif src.startswith(("mongodb://", "mongodb+srv://")):
            mongo = await stack.enter_async_context(
                MongoStore(src, database=settings.mongo_db, timeout=BULK_TIMEOUT)
            )
            origin = MongoSource(mongo)
        else:
            raise ConfigError(f"--source {src!r} is neither a MongoDB URI nor a directory")
        saved = Checkpoint.load(checkpoint, origin.name) if resume else None
        target = new_chat_store(settings, bulk=True)
        await stack.enter_async_context(target)
        control = PostgresControl(target) if isinstance(target, PostgresStore) else None
        if control is None and isinstance(origin, FileSource):
            log.warning(
                "backfill_without_tombstones",
                detail="over REST there are no tombstones: a delete made through the facade "
                "after this export was taken can come back; prefer a live MongoDB source, or "
                "set SUPABASE_DB_URL",
            )
        rep = stack.enter_context(Report(report, append=resume))
        for name in ("chat_sessions", "messages"):
            totals[name] = await origin.estimate(name)
        params = {"source": origin.name, "resume": resume, "orphans": orphans}
        run = await stack.enter_async_context(
            # A dry run writes nothing, not even its own record.
            recorded(None if dry_run else target, "backfill", params)
        )
        run.progress["collections"] = shown
        stop = stack.enter_context(_stop_on_ctrl_c("backfill"))
        result = await Backfill(
            origin,
            target,
            rep,
            orphans=orphans,
            dry_run=dry_run,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            checkpoint=saved,
            checkpoint_path=checkpoint,
            tombstones=None if control is None else control.tombstoned,
            any_tombstones=None if control is None else control.any_tombstones,
            stop=stop,
        ).run()
        run.result = {
            "seconds": round(result.seconds, 1),
            "report": str(report),
            "counts": {k: vars(c) for k, c in result.counts.items()},
        }
    if tty:
        sys.stderr.write("\n")
    print(summary_table(result, dry_run=dry_run))
    print(
        f"{result.seconds:.1f}s; report: {report} ({rep.lines} lines: repaired or "
        "quarantined documents, with their originals)"
    )
    return 0
