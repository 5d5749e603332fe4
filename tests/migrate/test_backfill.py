"""Backfill of a hostile legacy corpus, from a live MongoDB and from mongoexport files.

Every source document must be accounted for: stored (equal to its transform after
normalisation), or in the report, or both when it was repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId, json_util
from pymongo import AsyncMongoClient

from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core.errors import NotFound
from strangler.core.pgcopy import CopyRows
from strangler.embedded.legacy_data import generate
from strangler.migrate.backfill import Backfill, BackfillResult
from strangler.migrate.checkpoint import Checkpoint
from strangler.migrate.report import Report, relaxed
from strangler.migrate.sources import FileSource, MongoSource
from strangler.migrate.transform import transform_message, transform_session
from strangler.proxy.compare import normalise
from tests.migrate.corpus import Case, build


async def _insert(mongo_uri: str, db: str, sessions: list[Case], messages: list[Case]) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, uuidRepresentation="standard")
    try:
        await client[db].chat_sessions.insert_many([c.doc for c in sessions])
        await client[db].messages.insert_many([c.doc for c in messages])
    finally:
        await client.close()


def _export(directory: Path, sessions: list[Case], messages: list[Case]) -> None:
    """chat_sessions as canonical JSON Lines, messages as a gzipped relaxed --jsonArray."""
    canonical = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, uuid_representation=4)
    relaxed_opts = json_util.JSONOptions(
        json_mode=json_util.JSONMode.RELAXED, uuid_representation=4
    )
    with open(directory / "chat_sessions.json", "w", encoding="utf-8") as fh:
        for c in sessions:
            fh.write(json_util.dumps(c.doc, json_options=canonical) + "\n")
    with gzip.open(directory / "messages.json.gz", "wt", encoding="utf-8") as fh:
        fh.write(
            "[\n"
            + ",\n".join(json_util.dumps(c.doc, json_options=relaxed_opts) for c in messages)
            + "\n]\n"
        )


@contextlib.asynccontextmanager
async def _live_backfill(
    mongo_uri: str, db: str, dsn: str, report_path: Path, **options: Any
) -> AsyncIterator[tuple[BackfillResult, PostgresStore]]:
    """The corpus loaded into MongoDB is backfilled into Postgres; yields the result and the
    still-open target store."""
    async with MongoStore(mongo_uri, database=db) as mongo, PostgresStore(dsn) as pg:
        with Report(report_path) as report:
            result = await Backfill(MongoSource(mongo), pg, report, **options).run()
        yield result, pg


def _report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def _check_accounting(
    result: BackfillResult,
    lines: list[dict[str, Any]],
    store: PostgresStore,
    sessions: list[Case],
    messages: list[Case],
) -> None:
    by_source = {
        (ln["collection"], json.dumps(ln["source_id"], sort_keys=True)): ln for ln in lines
    }
    assert len(by_source) == len(lines), "one report line per document"
    for collection, cases, transform in (
        ("chat_sessions", sessions, transform_session),
        ("messages", messages, transform_message),
    ):
        counts = result.counts[collection]  # type: ignore[index]
        assert counts.read == len(cases)
        assert counts.written + counts.quarantined == counts.read
        assert counts.repaired == sum(c.action == "repaired" for c in cases)
        assert counts.quarantined == sum(c.action == "quarantined" for c in cases)
        pair = [c for c in cases if c.name in ("objectid", "duplicate-of-objectid")]
        if pair:
            # Two ids that map to one UUID: whichever the source yields first is stored
            # (MongoDB sorts strings before ObjectIds), the other is reported; never both lost.
            keys = [(collection, json.dumps(relaxed(c.doc["_id"]), sort_keys=True)) for c in pair]
            reported = [by_source.get(k) for k in keys]
            assert sum(r is not None for r in reported) == 1
            dup = next(r for r in reported if r is not None)
            assert dup["reasons"] == ["duplicate_id"]
            kept = pair[reported.index(None)]
            stored = await store.get_session(transform_session(kept.doc).record.id)  # type: ignore[union-attr]
            assert normalise(stored) == normalise(transform_session(kept.doc).record)
            cases = [c for c in cases if c not in pair]
        for case in cases:
            key = (collection, json.dumps(relaxed(case.doc["_id"]), sort_keys=True))
            line = by_source.get(key)
            if case.action == "ok":
                assert line is None, f"{case.name}: unexpected report line {line}"
            else:
                assert line is not None, f"{case.name}: missing from the report"
                assert line["action"] == case.action, case.name
                assert case.reason in line["reasons"], (case.name, line["reasons"])
                assert line["original"] is not None
            expected = transform(case.doc).record
            if case.action == "quarantined":
                if expected is not None and case.reason != "duplicate_id":
                    with pytest.raises(NotFound):
                        await (
                            store.get_session(expected.id)
                            if collection == "chat_sessions"
                            else store.get_message(expected.id)
                        )
                continue
            assert expected is not None
            stored = await (
                store.get_session(expected.id)
                if collection == "chat_sessions"
                else store.get_message(expected.id)
            )
            assert normalise(stored) == normalise(expected), case.name


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
async def test_hostile_corpus_from_live_mongo_is_fully_accounted_for(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path, workers: int
) -> None:
    sessions, messages = build()
    await _insert(mongo_server.uri, mongo_db, sessions, messages)
    async with _live_backfill(
        mongo_server.uri,
        mongo_db,
        clean_pg,
        tmp_path / "report.jsonl",
        batch_size=7,
        workers=workers,
    ) as (result, pg):
        await _check_accounting(result, _report(tmp_path / "report.jsonl"), pg, sessions, messages)
        nul = next(c for c in sessions if c.name == "nul-title")
        stored = await pg.get_session(transform_session(nul.doc).record.id)  # type: ignore[union-attr]
        assert stored.title == "bad\ufffdtitle"


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
async def test_hostile_corpus_from_mongoexport_files_is_fully_accounted_for(
    clean_pg: str, tmp_path: Path, workers: int
) -> None:
    sessions, messages = build()
    _export(tmp_path, sessions, messages)
    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(
                FileSource(tmp_path), pg, report, batch_size=5, workers=workers
            ).run()
        await _check_accounting(result, _report(tmp_path / "report.jsonl"), pg, sessions, messages)


async def test_corrupt_and_truncated_files_become_report_lines(
    clean_pg: str, tmp_path: Path
) -> None:
    sessions, messages = build()
    _export(tmp_path, sessions[:3], messages[:1])
    sessions_file = tmp_path / "chat_sessions.json"
    sessions_file.write_text(
        sessions_file.read_text()
        + '{"_id": {"$oid": "not-hex"}, "title": \n'  # broken JSON
        + "[1, 2]\n"  # not an object
    )
    raw = gzip.decompress((tmp_path / "messages.json.gz").read_bytes()).decode()
    (tmp_path / "messages.json.gz").unlink()
    (tmp_path / "messages.json").write_text(raw.rstrip().rstrip("]")[:-20])  # truncated
    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(FileSource(tmp_path), pg, report).run()
    lines = _report(tmp_path / "report.jsonl")
    assert result.counts["chat_sessions"].read == 5
    assert result.counts["chat_sessions"].quarantined == 2
    assert result.counts["messages"].quarantined == 1
    assert all(ln["reasons"] == ["unparseable"] for ln in lines)
    assert {ln["original"]["where"] for ln in lines} >= {
        "chat_sessions.json:4",
        "chat_sessions.json:5",
    }


async def test_dry_run_writes_nothing_but_reports_everything(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    sessions, messages = build()
    await _insert(mongo_server.uri, mongo_db, sessions, messages)
    async with _live_backfill(
        mongo_server.uri, mongo_db, clean_pg, tmp_path / "report.jsonl", dry_run=True
    ) as (result, pg):
        assert await pg.count("chat_sessions") == 0
        assert await pg.count("messages") == 0
    expected_lines = sum(c.action != "ok" for c in sessions + messages)
    assert len(_report(tmp_path / "report.jsonl")) == expected_lines
    assert result.counts["messages"].written == sum(c.action != "quarantined" for c in messages)


async def test_orphans_can_be_adopted_into_placeholder_sessions(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    sessions, messages = build()
    await _insert(mongo_server.uri, mongo_db, sessions, messages)
    async with _live_backfill(
        mongo_server.uri, mongo_db, clean_pg, tmp_path / "report.jsonl", orphans="adopt"
    ) as (_, pg):
        orphan = next(c for c in messages if c.name == "orphan")
        record = transform_message(orphan.doc).record
        assert record is not None
        assert (await pg.get_message(record.id)).session_id == record.session_id  # type: ignore[union-attr]
        assert (await pg.get_session(record.session_id)).title == "(recovered session)"  # type: ignore[union-attr]
    line = next(
        ln for ln in _report(tmp_path / "report.jsonl") if ln["target_id"] == str(record.id)
    )
    assert "orphan_adopted" in line["reasons"]


def test_cli_backfill_prints_a_summary_and_never_a_traceback(clean_pg: str, tmp_path: Path) -> None:
    sessions, messages = build()
    _export(tmp_path, sessions, messages)
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "strangler.cli",
            "backfill",
            "--source",
            str(tmp_path),
            "--report",
            str(tmp_path / "r.jsonl"),
            "--at-off",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "chat_sessions" in out.stdout and "quarantined" in out.stdout
    assert "Traceback" not in out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "strangler.cli", "backfill", "--source", str(tmp_path / "nope")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "neither a MongoDB URI nor a directory" in bad.stderr
    # At off, without --follow or --at-off: refused, saying why and what to do.
    at_off = subprocess.run(
        [sys.executable, "-m", "strangler.cli", "backfill", "--source", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert at_off.returncode == 2, at_off.stderr
    assert "the stage is off" in at_off.stderr and "nothing captures them" in at_off.stderr
    assert "--follow" in at_off.stderr and "--at-off" in at_off.stderr
    assert "Traceback" not in at_off.stderr


async def test_an_interrupted_backfill_resumes_from_its_checkpoint(
    clean_pg: str, tmp_path: Path
) -> None:
    sessions, messages = build()
    _export(tmp_path, sessions, messages)
    checkpoint = tmp_path / "cp.json"
    batches = {"n": 0}

    def interrupt_after_a_message_batch(collection: str, _: Any) -> None:
        if collection == "messages":
            batches["n"] += 1
            if batches["n"] == 2:
                raise KeyboardInterrupt  # Ctrl-C after a committed batch

    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report, pytest.raises(KeyboardInterrupt):
            await Backfill(
                FileSource(tmp_path),
                pg,
                report,
                batch_size=4,
                checkpoint_path=checkpoint,
                progress=interrupt_after_a_message_batch,
            ).run()
        saved = Checkpoint.load(checkpoint, FileSource(tmp_path).name)
        assert (saved.collection, saved.offset, saved.done) == ("messages", 8, False)
        with Report(tmp_path / "report.jsonl", append=True) as report:
            result = await Backfill(
                FileSource(tmp_path),
                pg,
                report,
                batch_size=4,
                checkpoint=saved,
                checkpoint_path=checkpoint,
            ).run()
        assert Checkpoint.load(checkpoint, FileSource(tmp_path).name).done
        await _check_accounting(result, _report(tmp_path / "report.jsonl"), pg, sessions, messages)


def test_ctrl_c_on_the_real_cli_leaves_a_checkpoint_that_resumes(
    clean_pg: str, tmp_path: Path
) -> None:
    """SIGINT on a running ``strangler backfill`` (with worker processes): it stops with
    exit code 130 and no traceback, and ``--resume`` finishes the job without loss."""
    relaxed_opts = json_util.JSONOptions(
        json_mode=json_util.JSONMode.RELAXED, uuid_representation=4
    )
    n_sessions, per = 200, 250  # long enough (at 100 a batch) to be mid-run at Ctrl-C
    with (
        open(tmp_path / "chat_sessions.json", "w") as fs,
        open(tmp_path / "messages.json", "w") as fm,
    ):
        for session, msgs in generate(n_sessions, per, seed=9):
            fs.write(json_util.dumps(session, json_options=relaxed_opts) + "\n")
            fm.writelines(json_util.dumps(m, json_options=relaxed_opts) + "\n" for m in msgs)
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}
    args = [
        sys.executable,
        "-m",
        "strangler.cli",
        "backfill",
        "--source",
        str(tmp_path),
        "--report",
        str(tmp_path / "r.jsonl"),
        "--checkpoint",
        str(tmp_path / "cp.json"),
        "--at-off",
        "--batch-size",
        "100",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        if b'"backfill_progress"' in line and b'"messages"' in line:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest.decode()
    assert b"Traceback" not in rest
    saved = Checkpoint.load(tmp_path / "cp.json", FileSource(tmp_path).name)
    assert saved.collection == "messages" and not saved.done
    assert 0 < saved.offset < n_sessions * per

    resumed = subprocess.run(
        [*args, "--resume"], env=env, capture_output=True, timeout=120, check=False
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert Checkpoint.load(tmp_path / "cp.json", FileSource(tmp_path).name).done
    quarantined = sum(
        ln["action"] == "quarantined" and ln["collection"] == "messages"
        for ln in _report(tmp_path / "r.jsonl")
    )
    count = asyncio.run(_count_messages(clean_pg))
    assert count == n_sessions * per - quarantined


async def _count_messages(dsn: str) -> int:
    async with PostgresStore(dsn) as pg:
        return await pg.count("messages")


async def test_sessions_deleted_again_and_again_while_their_messages_load(
    clean_pg: str, tmp_path: Path
) -> None:
    """Live traffic keeps deleting sessions while the backfill loads their messages: each
    retry looks again, the messages of deleted sessions count as vanished, and the run
    finishes (it used to fail on the second foreign-key error)."""
    oids = [f"65f1a2b3c4d5e6f70819{i:04x}" for i in range(4)]
    sessions = [{"_id": {"$oid": oid}, "title": "t", "user_id": "u"} for oid in oids]
    messages = [
        {
            "_id": {"$oid": f"75f1a2b3c4d5e6f70819{n:04x}"},
            "session_id": oid,
            "sender": "user",
            "content": {"type": "conversation", "text": f"m{n}"},
            "timestamp": {"$date": "2024-03-01T12:00:00Z"},
        }
        for n, oid in enumerate(oids * 3)
    ]
    for name, docs in (("chat_sessions", sessions), ("messages", messages)):
        (tmp_path / f"{name}.json").write_text("".join(json.dumps(d) + "\n" for d in docs))

    class DeletingStore(PostgresStore):
        """Deletes one more session just before each of the first three message loads."""

        deletes = 0

        async def insert_rows(self, table: str, rows: CopyRows) -> int:  # type: ignore[override]
            if table == "messages" and self.deletes < 3:
                await self.delete_session(rows.tuples()[0][1])
                self.deletes += 1
            return await super().insert_rows(table, rows)  # type: ignore[arg-type]

    async with DeletingStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(FileSource(tmp_path), pg, report, batch_size=100).run()
        counts = result.counts["messages"]
        assert pg.deletes == 3
        assert counts.read == 12 and counts.vanished == 9 and counts.written == 3
        assert await pg.count("messages") == 3
        assert await pg.count("chat_sessions") == 1


async def test_lone_surrogates_in_export_files_are_replaced_and_reported(
    clean_pg: str, tmp_path: Path
) -> None:
    """A ``\\ud800`` escape in a mongoexport file is a string UTF-8 cannot hold: the document
    is stored with U+FFFD in its place and reported (with its original, still escaped); a
    proper surrogate pair is an ordinary character."""
    sid, m1, m2 = ObjectId(), ObjectId(), ObjectId()
    (tmp_path / "chat_sessions.json").write_text(
        f'{{"_id": {{"$oid": "{sid}"}}, "title": "bad \\ud800 title", "user_id": "u", '
        '"created_at": {"$date": "2024-01-01T00:00:00Z"}}\n'
    )
    (tmp_path / "messages.json").write_text(
        f'{{"_id": {{"$oid": "{m1}"}}, "session_id": "{sid}", "sender": "user", '
        '"content": {"text": "a\\udfffb"}, "timestamp": {"$date": "2024-01-01T00:00:01Z"}}\n'
        f'{{"_id": {{"$oid": "{m2}"}}, "session_id": "{sid}", "sender": "user", '
        '"content": {"text": "\\ud83d\\ude00"}, "timestamp": {"$date": "2024-01-01T00:00:02Z"}}\n'
    )
    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(FileSource(tmp_path), pg, report, workers=0).run()
        assert (await pg.get_session(str(sid))).title == "bad \ufffd title"
        assert (await pg.get_message(str(m1))).content == {"text": "a\ufffdb"}
        assert (await pg.get_message(str(m2))).content == {"text": "\U0001f600"}
    assert result.counts["messages"].written == 2 and result.counts["messages"].repaired == 1
    lines = _report(tmp_path / "report.jsonl")
    assert [ln["reasons"] for ln in lines] == [["surrogate_replaced"], ["surrogate_replaced"]]
    assert lines[1]["original"]["content"] == {"text": "a\udfffb"}
