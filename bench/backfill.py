"""Backfill and verify throughput, side by side in one run.

Generates ``--sessions`` sessions with ``--messages`` messages in the legacy shape, then:

* file source → Postgres: ``strangler backfill`` on mongoexport JSON Lines, rows/s, against a
  raw ``COPY`` of the same already-transformed rows (target >= 0.75x at 200k messages,
  0.8x at 1M), and the naive
  row-by-row INSERT the seed ticket suggests;
* mongodump directory → Postgres: the same, from ``<db>/*.bson`` (target: at least the
  files figure);
* live MongoDB (SecantusDB) → Postgres: rows/s against a bare scan of the source (>= 0.9x),
  with the CPU seconds of the backfill, SecantusDB and Postgres in that run;
* peak RSS of the backfill process (<= 400 MB), measured on the real CLI in a subprocess;
* verify of both stores: rows/s against the slower store's bare scan (>= 0.8x);
* partitions: ``--partitions`` N processes side by side (``--partition K/N``), for the
  live backfill and the CLI verify, against one run; the rows they load must be one run's.

    python bench/backfill.py [--sessions 20000] [--messages 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import bson
from bson import json_util
from pymongo import MongoClient

from _common import CpuSplit, conditions, save, servers
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres.store import MESSAGE_COLS, PostgresStore, _message_row
from strangler.embedded.legacy_data import generate
from strangler.migrate.transform import transform_message
from strangler.migrate.verify import diff_stores
from strangler.runtime import BULK_TIMEOUT

RELAXED = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, uuid_representation=4)


def _tree_peaks_kb(pid: int, peaks: dict[int, int]) -> int:
    """Update ``peaks`` with each process's high-water RSS (VmHWM) in the tree under
    ``pid``; returns the tree's current total RSS (VmRSS), in kB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
            hwm = int(status.split("VmHWM:")[1].split()[0])
            peaks[p] = max(peaks.get(p, 0), hwm)
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, IndexError, ValueError):
            continue
    return total


def _cli_parallel(commands: list[list[str]], env: dict[str, str]) -> float:
    """Run the CLI commands side by side (N partitions as N processes); returns the wall
    time until the last one ends."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "strangler.cli", *c], env=env, stdout=subprocess.DEVNULL
        )
        for c in commands
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    if any(c not in (0, 1) for c in codes):  # verify exits 1 when the stores differ
        raise SystemExit(f"a partition failed: exit codes {codes}")
    return seconds


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    n: int = await conn.fetchval(
        "SELECT (SELECT count(*) FROM chat_sessions) + (SELECT count(*) FROM messages)"
    )
    await conn.close()
    return n


def _cli_backfill(source: str, dsn: str, workdir: Path) -> tuple[float, int, int]:
    """Run the real CLI; returns (seconds, peak RSS in MB of the CLI process itself, peak
    RSS in MB of the CLI and its worker processes together).

    Sampled from /proc every 0.1 s: each process's high-water mark (VmHWM, exact) and the
    tree's summed RSS (the largest sum seen). ``getrusage(RUSAGE_CHILDREN)`` is not used:
    a child forked from this large bench process inherits its resident pages before
    ``exec``, and that inflates the child's recorded peak.
    """
    env = {
        **os.environ,
        "SUPABASE_DB_URL": dsn,
        "STRANGLER_LOG_FORMAT": "json",
        "STRANGLER_LOG_LEVEL": "warning",
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strangler.cli",
            "backfill",
            "--source",
            source,
            "--report",
            str(workdir / "report.jsonl"),
            "--checkpoint",
            str(workdir / "cp.json"),
            "--at-off",  # nothing writes meanwhile: a bench, not a migration
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    tree_peak, peaks = 0, {}
    while proc.poll() is None:
        tree_peak = max(tree_peak, _tree_peaks_kb(proc.pid, peaks))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"strangler backfill failed with exit code {proc.returncode}")
    return seconds, peaks.get(proc.pid, 0) // 1024, tree_peak // 1024


def _generate(mongo_uri: str, work: Path, sessions: int, per: int) -> None:
    """The same legacy data into MongoDB, into mongoexport JSON Lines files, and into a
    mongodump directory (``work/dump/chat/*.bson``)."""
    (work / "dump" / "chat").mkdir(parents=True)
    with (
        MongoClient(mongo_uri) as client,
        open(work / "chat_sessions.json", "w") as fs,
        open(work / "messages.json", "w") as fm,
        open(work / "dump" / "chat" / "chat_sessions.bson", "wb") as ds,
        open(work / "dump" / "chat" / "messages.bson", "wb") as dm,
    ):
        db = client.chat
        s_buf: list[Any] = []
        m_buf: list[Any] = []
        for s, msgs in generate(sessions, per, seed=5):
            fs.write(json_util.dumps(s, json_options=RELAXED) + "\n")
            ds.write(bson.encode(s))
            for m in msgs:
                fm.write(json_util.dumps(m, json_options=RELAXED) + "\n")
                dm.write(bson.encode(m))
            s_buf.append(s)
            m_buf.extend(msgs)
            if len(m_buf) >= 20_000:  # big batches: SecantusDB commits (and syncs) per call
                db.chat_sessions.insert_many(s_buf)
                db.messages.insert_many(m_buf)
                s_buf, m_buf = [], []
        if s_buf:
            db.chat_sessions.insert_many(s_buf)
        if m_buf:
            db.messages.insert_many(m_buf)


async def _reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("TRUNCATE chat_sessions, messages CASCADE")
    await conn.close()


async def main(args: argparse.Namespace) -> int:
    per = max(1, args.messages // args.sessions)
    results: dict[str, Any] = {}
    with servers() as (mongo, pg), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        await schema.apply(pg.dsn)
        print(f"generating {args.sessions} sessions x {per} messages ...", flush=True)
        _generate(mongo.uri, work, args.sessions, per)
        total = args.sessions * (per + 1)

        # Raw COPY ceiling: the same rows, transformed beforehand, straight into Postgres.
        rows = []
        with MongoClient(mongo.uri, tz_aware=True, uuidRepresentation="standard") as client:
            for doc in client.chat.messages.find({}):
                record = transform_message(doc).record
                if record is not None:
                    rows.append(_message_row(record))
        async with PostgresStore(pg.dsn, timeout=BULK_TIMEOUT) as store:
            async with MongoStore(mongo.uri, database="chat") as m:
                sessions = [s async for chunk in m.scan_sessions() for s in chunk]
            await store.upsert_sessions(sessions)
            async with store.connection("bench copy") as conn:
                start = time.perf_counter()
                for i in range(0, len(rows), 50_000):  # one call per 50k rows: no timeout
                    await conn.copy_records_to_table(
                        "messages",
                        records=rows[i : i + 50_000],
                        columns=[c.strip() for c in MESSAGE_COLS.split(",")],
                    )
                copy_rate = len(rows) / (time.perf_counter() - start)
            # The naive row-by-row INSERT the seed ticket suggests, on a sample.
            await _reset(pg.dsn)
            await store.upsert_sessions(sessions)
            sample = rows[:5000]
            async with store.connection("bench naive") as conn:
                start = time.perf_counter()
                for r in sample:
                    await conn.execute(
                        f"INSERT INTO messages ({MESSAGE_COLS}) VALUES "
                        "($1, $2, $3, $4, $5, $6, $7, $8)",
                        *r,
                    )
                naive_rate = len(sample) / (time.perf_counter() - start)
        print(
            f"  raw COPY {copy_rate:,.0f} rows/s; naive INSERT {naive_rate:,.0f} rows/s", flush=True
        )

        await _reset(pg.dsn)
        seconds, rss_files, tree_files = _cli_backfill(str(work), pg.dsn, work)
        file_rate = total / seconds
        print(f"  files: {file_rate:,.0f} rows/s, RSS {rss_files} MB / {tree_files} MB", flush=True)

        await _reset(pg.dsn)
        seconds, rss_dump, tree_dump = _cli_backfill(str(work / "dump"), pg.dsn, work)
        dump_rate = total / seconds
        print(f"  dump: {dump_rate:,.0f} rows/s, RSS {rss_dump} MB / {tree_dump} MB", flush=True)

        # Live MongoDB: the backfill against a bare scan of the source.
        await _reset(pg.dsn)
        # In _id order from the _id index, as the backfill reads (without the hint,
        # SecantusDB sorts the whole collection first: twice as slow).
        by_id = [("_id", 1)]
        with MongoClient(mongo.uri) as client:
            # Once untimed: the first read after the load is slower (cold caches), and the
            # backfill that follows would have the warm ones.
            for _ in client.chat.messages.find_raw_batches({}).sort("_id", 1).hint(by_id):
                pass
        with MongoClient(mongo.uri) as client, CpuSplit({"SecantusDB": mongo}) as scan_cpu:
            start = time.perf_counter()
            messages = client.chat.messages.find({}).sort("_id", 1).hint(by_id)
            n = sum(1 for _ in messages.batch_size(2000))
            n += sum(1 for _ in client.chat.chat_sessions.find({}).sort("_id", 1).hint(by_id))
            scan_rate = n / (time.perf_counter() - start)
        # CPU of each party, to tell a slow pipeline from a busy machine: the backfill's
        # process tree (its worker processes included), SecantusDB, Postgres.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with CpuSplit({"SecantusDB": mongo, "Postgres": pg}) as live_cpu:
            seconds, rss_live, tree_live = _cli_backfill(
                mongo.uri.replace("/?", "/chat?"), pg.dsn, work
            )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        live_rate = total / seconds
        cpu = {
            "backfill": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            **live_cpu.seconds,
        }
        cores = os.cpu_count() or 1
        floor = sum(cpu.values()) / cores
        cpu_line = ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
        print(
            f"  scan {scan_rate:,.0f} rows/s (SecantusDB {scan_cpu.seconds['SecantusDB']:.1f} s "
            f"CPU in {scan_cpu.wall:.1f} s); live: {live_rate:,.0f} rows/s in {seconds:.1f} s, "
            f"RSS {rss_live} MB / {tree_live} MB; CPU {cpu_line}: at least {floor:.1f} s on "
            f"{cores} cores",
            flush=True,
        )

        # Partitions: N processes side by side on this machine, each --partition K/N (one
        # worker each, so N loaders and N workers share the 2 cores), against one run.
        n_parts = args.partitions
        env = {
            **os.environ,
            "SUPABASE_DB_URL": pg.dsn,
            "MONGO_URI": mongo.uri,
            "MONGO_DB": "chat",
            "STRANGLER_LOG_FORMAT": "json",
            "STRANGLER_LOG_LEVEL": "warning",
        }
        await _reset(pg.dsn)
        part_seconds = _cli_parallel(
            [
                [
                    "backfill",
                    "--partition",
                    f"{k}/{n_parts}",
                    "--workers",
                    "1",
                    "--at-off",
                    "--report",
                    str(work / f"report-{k}.jsonl"),
                    "--checkpoint",
                    str(work / "cp-part.json"),
                ]
                for k in range(1, n_parts + 1)
            ],
            env,
        )
        part_rows = await _count(pg.dsn)
        part_rate = part_rows / part_seconds
        print(
            f"  live, {n_parts} partitions: {part_rate:,.0f} rows/s, {part_rows:,} rows "
            f"(one run: {total:,})",
            flush=True,
        )
        verify_one = _cli_parallel([["verify"]], env)
        verify_parts = _cli_parallel(
            [["verify", "--partition", f"{k}/{n_parts}"] for k in range(1, n_parts + 1)], env
        )
        print(
            f"  verify CLI: one run {verify_one:.1f} s, {n_parts} partitions {verify_parts:.1f} s",
            flush=True,
        )

        async with (
            MongoStore(mongo.uri, database="chat", timeout=BULK_TIMEOUT) as m,
            PostgresStore(pg.dsn, timeout=BULK_TIMEOUT) as p,
        ):
            start = time.perf_counter()
            diffs = await diff_stores(m, p)
            verify_rate = sum(d.compared for d in diffs.values()) / (time.perf_counter() - start)
            equal = all(d.equal for d in diffs.values())
            start = time.perf_counter()
            scanned = sum([len(c) async for c in m.scan_messages(batch_size=2000)])
            slower_scan = scanned / (time.perf_counter() - start)

    results = {
        "rows": total,
        "copy_ceiling_rows_per_s": copy_rate,
        "naive_insert_rows_per_s": naive_rate,
        "file_backfill_rows_per_s": file_rate,
        "file_vs_copy": file_rate / copy_rate,
        "dump_backfill_rows_per_s": dump_rate,
        "dump_vs_copy": dump_rate / copy_rate,
        "live_backfill_rows_per_s": live_rate,
        "bare_scan_rows_per_s": scan_rate,
        "live_vs_scan": live_rate / scan_rate,
        "scan_seconds": scan_cpu.wall,
        "scan_cpu_secantus_s": scan_cpu.seconds["SecantusDB"],
        "live_seconds": total / live_rate,
        "live_cpu_s": cpu,
        "live_cpu_floor_s": floor,
        "peak_rss_mb": max(rss_files, rss_dump, rss_live),
        "peak_rss_tree_mb": max(tree_files, tree_dump, tree_live),
        "verify_rows_per_s": verify_rate,
        "slower_store_scan_rows_per_s": slower_scan,
        "verify_vs_scan": verify_rate / slower_scan,
        "verify_equal": equal,
        "partitions": n_parts,
        "partitioned_live_rows_per_s": part_rate,
        "partitioned_live_rows": part_rows,
        "partitioned_vs_one_live_run": part_rate / live_rate,
        "verify_cli_one_run_s": verify_one,
        "verify_cli_partitioned_s": verify_parts,
    }
    print(f"\n{total:,} rows ({args.sessions:,} sessions, {args.sessions * per:,} messages)")
    print(f"  raw COPY ceiling            {copy_rate:>10,.0f} rows/s")
    print(f"  naive row-by-row INSERT     {naive_rate:>10,.0f} rows/s")
    print(
        f"  backfill from files         {file_rate:>10,.0f} rows/s  {file_rate / copy_rate:5.2f}x "
        f"COPY  (target >= 0.75x at 200k, 0.8x at 1M)"
    )
    print(
        f"  backfill from a mongodump   {dump_rate:>10,.0f} rows/s  {dump_rate / copy_rate:5.2f}x "
        f"COPY  (target >= the files figure)"
    )
    print(f"  bare scan of MongoDB        {scan_rate:>10,.0f} rows/s")
    print(
        f"  backfill from live MongoDB  {live_rate:>10,.0f} rows/s  {live_rate / scan_rate:5.2f}x "
        f"scan  (target >= 0.9x)"
    )
    print(
        f"    CPU of the live run: {cpu_line}: at least {floor:.1f} s on {cores} cores, "
        f"so at most {total / floor / scan_rate:.2f}x the scan's rate here"
    )
    print(f"  peak RSS of the backfill    {results['peak_rss_mb']:>10} MB  (target <= 400 MB)")
    print(f"    with its worker processes {results['peak_rss_tree_mb']:>10} MB  (summed)")
    print(
        f"  verify                      {verify_rate:>10,.0f} rows/s  "
        f"{verify_rate / slower_scan:5.2f}x slower store's scan  (target >= 0.8x); "
        f"equal={equal}"
    )
    print(
        f"  {n_parts} partitions, live       {part_rate:>10,.0f} rows/s  "
        f"{part_rate / live_rate:5.2f}x one run; {part_rows:,} rows of {total:,}"
    )
    print(
        f"  verify: one CLI run {verify_one:.1f} s; {n_parts} partitions side by side "
        f"{verify_parts:.1f} s ({verify_one / verify_parts:.2f}x)"
    )
    print(f"saved {save('backfill', {'conditions': conditions(), **results})}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument(
        "--partitions", type=int, default=2, help="processes for the partitioned runs"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
