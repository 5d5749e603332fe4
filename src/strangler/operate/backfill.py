"""``strangler backfill``: copy the legacy data into Supabase, reporting what it had to
repair or quarantine, with progress, a checkpoint and resume."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from strangler.config import Settings
from strangler.core.errors import ConfigError, InvalidInput, StranglerError
from strangler.core.partition import Part, mongo_slice
from strangler.core.stages import Stage
from strangler.migrate.backfill import Backfill, Counts, Orphans, summary_table
from strangler.migrate.checkpoint import Checkpoint
from strangler.migrate.dump import DumpSource, is_archive, looks_like_dump, refuse_archive
from strangler.migrate.partitions import InSlice, Slice, legacy_slice, sample_source
from strangler.migrate.report import Report
from strangler.migrate.runs import recorded
from strangler.migrate.sources import FileSource, MongoSource, Source
from strangler.migrate.transform import Collection
from strangler.operate.common import non_negative, partition, positive, stop_on_ctrl_c
from strangler.proxy.follower import FORWARD
from strangler.runtime import Jobs, Runtime, follow_options, mongo_store

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers

log = structlog.get_logger(__name__)
COLLECTIONS: tuple[Collection, Collection] = ("chat_sessions", "messages")


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "backfill",
        help="copy the legacy data into Supabase, reporting what it had to repair",
        description="Copies chat_sessions, then messages, from a live MongoDB, a mongodump "
        "directory or mongoexport files into Supabase (SUPABASE_DB_URL). Rows are inserted, never "
        "overwritten, so it is safe during dualwrite. Every document is stored, or written to "
        "the report (JSON Lines) with its reasons and its original, or both when it was "
        "repaired. Progress goes to the log as JSON lines.",
    )
    p.add_argument(
        "--source",
        metavar="SRC",
        help="a MongoDB URI; a mongodump --out directory (<db>/chat_sessions.bson and "
        "messages.bson, or .bson.gz from --gzip; --archive files are refused with how to dump "
        "a directory); or a directory with mongoexport's chat_sessions.json and messages.json "
        "(JSON Lines or --jsonArray, optionally .gz); default MONGO_URI",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="report file (default: backfill-report-<time>.jsonl)",
    )
    p.add_argument(
        "--orphans",
        choices=["quarantine", "adopt"],
        default="quarantine",
        help="messages whose session is missing: report them (default) or create "
        "a placeholder session",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="transform and validate everything, write nothing (the report is written)",
    )
    p.add_argument(
        "--batch-size",
        type=positive,
        default=5000,
        metavar="N",
        help="documents per chunk (and per COPY); default 5000",
    )
    p.add_argument(
        "--workers",
        type=non_negative,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes that decode and transform while this one loads; 0 does it all in "
        "this process (default: the number of CPUs, at most 2)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        default=Path(".strangler-backfill.checkpoint.json"),
        help="where progress is saved after every batch",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint after a crash or Ctrl-C (the report is appended to)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="follow MongoDB's change stream from the moment the backfill starts, so writes "
        "made during it (by the facade, old instances or scripts) are never missed: the usual "
        "full load plus change stream. Needs MONGO_URI and SUPABASE_DB_URL. The follower "
        "keeps its position afterwards, and 'strangler serve' goes on following from it",
    )
    p.add_argument(
        "--ignore-oplog-window",
        action="store_true",
        help="with --follow from a live MongoDB: start even though the backfill is estimated "
        "to outlast the oplog (how far back the change stream can resume)",
    )
    p.add_argument(
        "--partition",
        type=partition,
        metavar="K/N",
        help="load only slice K of N (1 <= K <= N), split by _id at points sampled from the "
        "data, so N processes on N hosts share the work: together they load exactly what one "
        "run would. Each first loads every session (few; never overwritten), then its slices "
        "of both collections; each keeps its own checkpoint (PATH.K-of-N) and record. The "
        "first process stores the split points in strangler.partition_plans and the others "
        "use them. In a Kubernetes Indexed Job: --partition $((JOB_COMPLETION_INDEX + 1))/N "
        "(deploy/k8s/backfill-job.yaml)",
    )
    p.add_argument(
        "--at-off",
        action="store_true",
        help="copy even though the stage is off and --follow is not given: writes made "
        "while it runs reach MongoDB alone and nothing captures them, so run 'strangler "
        "repair' and 'strangler verify' once dual writes have begun",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = args.report or Path(f"backfill-report-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    return asyncio.run(
        backfill(
            settings,
            source=args.source,
            report=report,
            orphans=args.orphans,
            dry_run=args.dry_run,
            batch_size=args.batch_size,
            workers=args.workers,
            checkpoint=args.checkpoint,
            resume=args.resume,
            follow=args.follow,
            at_off=args.at_off,
            ignore_oplog_window=args.ignore_oplog_window,
            part=args.partition,
        )
    )


class Progress:
    """Shows a backfill's progress: a line on a terminal, JSON log lines otherwise, and
    what the dashboard shows of the run (``shown``, kept in ``strangler.job_runs``)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.totals: dict[str, int | None] = {}
        self.tty = sys.stderr.isatty()
        self.shown: dict[str, dict[str, Any]] = {}

    def __call__(self, collection: str, c: Counts) -> None:
        rate = c.read / max(time.monotonic() - self.started, 1e-9)
        total = self.totals.get(collection)
        eta = (total - c.read) / rate if total and rate and total > c.read else None
        self.shown[collection] = {
            "read": c.read,
            "written": c.written,
            "repaired": c.repaired,
            "quarantined": c.quarantined,
            "vanished": c.vanished,
            "total": total,
            "rows_per_s": round(rate),
            "eta_s": None if eta is None else round(eta),
        }
        if self.tty:
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


async def _slice(
    origin: Source, part: Part, jobs: Jobs
) -> tuple[Source, dict[Collection, InSlice] | None]:
    """The source as partition ``part`` reads it, and the filter the workers keep its
    documents with: a live MongoDB selects the slice on the server (and every aliasing
    string id, few, which the filter sorts out); a file or dump source is read whole."""
    slices: dict[Collection, Slice] = {}
    for c in COLLECTIONS:

        def sample(size: int, c: Collection = c) -> Awaitable[list[Any]]:
            return sample_source(origin, c, size)

        # One plan per collection whatever the source: any points give exact slices, and
        # hosts that name the same dump by different paths must still split alike.
        s = await legacy_slice(jobs.plans, f"backfill:{c}", part, sample)
        slices[c] = s
        log.info("backfill_partition", collection=c, slice=s.describe())
    keep = {c: InSlice(part, s.lo, s.hi) for c, s in slices.items()}
    if isinstance(origin, MongoSource):
        where: dict[str, dict[str, Any]] = {c: mongo_slice(s.lo, s.hi) for c, s in slices.items()}
        return MongoSource(origin.documents, where), keep
    return origin, keep


def _deletes(jobs: Jobs) -> dict[str, Any]:
    """What a backfill checks deletes against: the facade's tombstones (none over REST)."""
    t = jobs.tombstones
    return {} if t is None else {"tombstones": t.tombstoned, "any_tombstones": t.any_tombstones}


async def _every_session(
    origin: Source, jobs: Jobs, dry_run: bool, batch_size: int, workers: int, stop: Any
) -> set[bytes]:
    """A partition's first pass: every session, inserted if absent and not counted (the
    partition that owns each one counts and reports it), so that this partition's messages
    find theirs. Returns the ids of the sessions now in the target."""
    loader = Backfill(
        origin,
        jobs.new,
        Report(None),
        dry_run=dry_run,
        batch_size=batch_size,
        workers=workers,
        stop=stop,
        legacy_ids=jobs.legacy_ids,
        **_deletes(jobs),
    )
    started = time.monotonic()
    await loader.run(("chat_sessions",))
    log.info(
        "backfill_sessions_loaded",
        detail="every session, for this partition's messages (counted by their own partition)",
        sessions=len(loader.sessions),
        seconds=round(time.monotonic() - started, 1),
    )
    return loader.sessions


async def _refuse_at_off(settings: Settings, jobs: Jobs) -> None:
    """At ``off`` nothing captures the writes made while a backfill runs: say so, and
    refuse unless the operator asked for it (``--at-off``) or follows (``--follow``)."""
    if settings.stage is None and jobs.stages is None:
        return  # over REST without STRANGLER_STAGE the stage cannot be read
    if await jobs.stage(settings) != Stage.OFF:
        return
    raise InvalidInput(
        "the stage is off: writes made while this backfill runs reach MongoDB alone and "
        "nothing captures them, so the copy would miss them. Start dual writes first "
        "('strangler stage set dualwrite'), or pass --follow to follow MongoDB's change "
        "stream during the backfill, or --at-off to copy anyway (then run 'strangler repair' "
        "and 'strangler verify' once dual writes have begun)"
    )


#: How long a partition other than the first waits, with --follow, for the follower that
#: partition 1 (or a serve instance) starts.
FOLLOWER_WAIT = 120.0


async def _follow(
    settings: Settings, stack: contextlib.AsyncExitStack, part: Part | None = None
) -> None:
    """Start the forward follower before the first document is read, for the length of
    the backfill (on ``stack``). If no follower has a position yet, or the saved one is
    stale, it follows from now; if one is running already, it goes on from where it is.
    Of a partitioned backfill only partition 1 starts it from nothing: the others wait for
    it (several resets at once would each move its position to their own "now")."""
    if not settings.mongo_uri or settings.supabase_db_url is None:
        raise ConfigError(
            "--follow needs MONGO_URI (the change stream) and SUPABASE_DB_URL (where the "
            "follower keeps its position)"
        )
    runtime = await stack.enter_async_context(Runtime.open(settings, start=False))
    record = await runtime.followers.load(FORWARD.name)
    if part is not None and part.k > 1:
        waited = 0.0
        while record is None or record.position is None or record.state != "running":
            if waited >= FOLLOWER_WAIT:
                raise ConfigError(
                    f"--follow with --partition {part}: the forward follower is not running "
                    f"after {FOLLOWER_WAIT:.0f} s. Partition 1 starts it (or a 'strangler "
                    "serve' instance runs it); start partition 1 first, or leave --follow off "
                    "the other partitions"
                )
            await asyncio.sleep(0.5)
            waited += 0.5
            record = await runtime.followers.load(FORWARD.name)
    if record is None or record.position is None or record.state != "running":
        position = await runtime.feeds[FORWARD.name].position_now()
        await runtime.followers.reset(FORWARD.name, position)
        log.info("backfill_follow_started", follower=FORWARD.name, at=position.get("at"))
    else:
        log.info("backfill_follow_continues", follower=FORWARD.name, leader=record.leader)
    follower = runtime.backfill_follower(follow_options(settings))
    follower.start()
    stack.push_async_callback(follower.stop)


async def _source(settings: Settings, src: str, stack: contextlib.AsyncExitStack) -> Source:
    """``--source``: a mongodump directory, a directory of mongoexport files, or a MongoDB
    URI (opened on ``stack``)."""
    path = Path(src)
    if path.is_dir():  # noqa: ASYNC240 (one stat, once, before any I/O starts)
        return DumpSource(path) if looks_like_dump(path) else FileSource(path)
    if path.is_file() and is_archive(path):  # noqa: ASYNC240
        raise refuse_archive(path)
    if src.startswith(("mongodb://", "mongodb+srv://")):
        mongo = await stack.enter_async_context(mongo_store(settings, src, bulk=True))
        return MongoSource(mongo)
    raise ConfigError(
        f"--source {src!r} is neither a MongoDB URI nor a directory (of mongodump or "
        "mongoexport output)"
    )


#: The backfill's rate as a share of a bare scan of the source: bench/backfill.py measured
#: 0.66-0.95x; the lower end, so the estimate errs long.
SCAN_SHARE = 0.6

#: How long the preflight waits for each collection's estimated count (seconds): longer
#: than the progress bar's, since without the counts there is no check at all.
PREFLIGHT_PATIENCE = 2.0
#: Refuse when the estimate passes this share of the oplog window.
WINDOW_MARGIN = 0.8
#: A backfill estimated under this many seconds is never refused: no working oplog holds
#: less (a young one's window is only its age, and it has not filled yet).
SHORT_BACKFILL = 300.0


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


async def sample_rate(origin: MongoSource, collection: str, seconds: float = 2.0) -> float | None:
    """Documents a second a raw scan of ``collection`` reads, over up to ``seconds`` (the
    backfill's ceiling); None if it is empty or unreadable."""
    start = time.perf_counter()
    count = 0
    try:
        async for chunk in origin.chunks(collection, 2000):
            count += len(chunk)
            if time.perf_counter() - start >= seconds:
                break
    except StranglerError:
        return None
    took = time.perf_counter() - start
    return count / took if count and took > 0 else None


async def oplog_preflight(origin: MongoSource, *, ignore: bool) -> float | None:
    """With --follow from a live MongoDB: estimate the backfill's duration (the documents
    to read over a 2 s sample of the scan rate) and compare it with the oplog window, how
    far back the change stream can resume. Refuse when it would not fit (unless
    ``ignore``); warn when the server does not tell. Returns the estimate in seconds."""
    store = origin.documents
    counts = [await origin.estimate(c, PREFLIGHT_PATIENCE) for c in ("chat_sessions", "messages")]
    rate = await sample_rate(origin, "messages")
    if any(c is None for c in counts) or not rate:
        log.info("oplog_preflight_skipped", reason="cannot estimate the backfill's duration")
        return None
    total = sum(c for c in counts if c is not None)
    eta = total / (rate * SCAN_SHARE)
    window = await store.oplog_window()
    if window is None:
        log.warning(
            "oplog_window_unknown",
            estimated_seconds=round(eta),
            documents=total,
            action="check that the oplog covers more than the estimate: "
            "db.getReplicationInfo() in mongosh ('log length start to end')",
        )
        return eta
    if eta <= max(window * WINDOW_MARGIN, SHORT_BACKFILL):
        log.info("oplog_window_ok", estimated_seconds=round(eta), oplog_seconds=round(window))
        return eta
    message = (
        f"the backfill is estimated to take about {_hours(eta)} ({total:,} documents at "
        f"about {rate * SCAN_SHARE:,.0f}/s), but MongoDB's oplog holds only {_hours(window)} "
        "of changes: if the follower falls that far behind, it cannot resume and changes "
        "made during the backfill would need a verify and repair to find. Enlarge the oplog "
        "first (replSetResizeOplog, or oplogMinRetentionHours), or backfill from a mongodump "
        "directory taken after dual writes began, or pass --ignore-oplog-window"
    )
    if ignore:
        log.warning("oplog_window_too_short", detail=message)
        return eta
    raise ConfigError(message)


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
    follow: bool = False,
    at_off: bool = False,
    ignore_oplog_window: bool = False,
    part: Part | None = None,
) -> int:
    src = source or settings.mongo_uri
    if not src:
        raise ConfigError(
            "no source: pass --source (a MongoDB URI or a directory of "
            "mongoexport files) or set MONGO_URI"
        )
    progress = Progress()
    async with contextlib.AsyncExitStack() as stack:
        if follow and not dry_run:
            await _follow(settings, stack, part)
        origin = await _source(settings, src, stack)
        if follow and isinstance(origin, MongoSource):
            await oplog_preflight(origin, ignore=ignore_oplog_window)
        jobs = await stack.enter_async_context(Jobs.open(settings))
        sliced, keep, label = origin, None, origin.name
        if part is not None:
            sliced, keep = await _slice(origin, part, jobs)
            checkpoint = checkpoint.with_name(f"{checkpoint.name}.{part.k}-of-{part.n}")
            label = f"{origin.name} partition {part}"  # a checkpoint names its slice
        saved = Checkpoint.load(checkpoint, label) if resume else Checkpoint(source=label)
        tombstones = jobs.tombstones
        if tombstones is None and isinstance(origin, FileSource):
            log.warning(
                "backfill_without_tombstones",
                detail="over REST there are no tombstones: a delete made through the facade "
                "after this export was taken can come back; prefer a live MongoDB source, or "
                "set SUPABASE_DB_URL",
            )
        if not (dry_run or follow or at_off):
            await _refuse_at_off(settings, jobs)
        rep = stack.enter_context(Report(report, append=resume))
        for name in ("chat_sessions", "messages"):
            progress.totals[name] = await origin.estimate(name)
        params: dict[str, Any] = {
            "source": origin.name,
            "resume": resume,
            "orphans": orphans,
            "follow": follow,
        }
        if part is not None:
            params["partition"] = {"k": part.k, "n": part.n}
        run = await stack.enter_async_context(
            # A dry run writes nothing, not even its own record.
            recorded(None if dry_run else jobs.runs, "backfill", params)
        )
        run.progress["collections"] = progress.shown
        stop = stack.enter_context(stop_on_ctrl_c("backfill"))
        known = None
        if part is not None and not saved.done:
            known = await _every_session(origin, jobs, dry_run, batch_size, workers, stop)
        result = await Backfill(
            sliced,
            jobs.new,
            rep,
            orphans=orphans,
            dry_run=dry_run,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            checkpoint=saved,
            checkpoint_path=checkpoint,
            stop=stop,
            keep=keep,
            known_sessions=known,
            legacy_ids=jobs.legacy_ids,
            **_deletes(jobs),
        ).run()
        run.result = {
            "seconds": round(result.seconds, 1),
            "report": str(report),
            "counts": {k: vars(c) for k, c in result.counts.items()},
        }
    if progress.tty:
        sys.stderr.write("\n")
    print(summary_table(result, dry_run=dry_run))
    print(
        f"{result.seconds:.1f}s; report: {report} ({rep.lines} lines: repaired or "
        "quarantined documents, with their originals)"
    )
    if follow and not dry_run:
        print(
            "changes made during the backfill were followed; the forward follower keeps its "
            "position, and 'strangler serve' goes on from it ('strangler follow status')"
        )
    return 0
