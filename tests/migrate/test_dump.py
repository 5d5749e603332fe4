"""A mongodump directory as the backfill's source (``migrate.dump``): dumps are built with
real BSON encoding, the hostile corpus included, plain and ``--gzip``; damage becomes report
lines, an ``--archive`` file a clear refusal."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.backends.postgres import PostgresStore
from strangler.migrate import dump
from strangler.migrate.backfill import Backfill
from strangler.migrate.dump import DumpSource, bson_chunks
from strangler.migrate.report import Report
from strangler.migrate.sources import BsonChunk, TextChunk
from tests.migrate.corpus import Case, build
from tests.migrate.test_backfill import _check_accounting, _report

OPTIONS: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)


def _dump(directory: Path, sessions: list[Case], messages: list[Case], *, gz: bool) -> Path:
    """What ``mongodump --out=directory [--gzip]`` writes for database ``chat``."""
    db = directory / "chat"
    db.mkdir(parents=True)
    for name, cases in (("chat_sessions", sessions), ("messages", messages)):
        data = b"".join(bson.encode(c.doc, codec_options=OPTIONS) for c in cases)
        if gz:
            (db / f"{name}.bson.gz").write_bytes(gzip.compress(data))
        else:
            (db / f"{name}.bson").write_bytes(data)
        (db / f"{name}.metadata.json").write_text('{"indexes": []}')
    return directory


@pytest.mark.parametrize(
    ("gz", "workers"), [(False, 0), (True, 2)], ids=["plain-in-process", "gzip-2-workers"]
)
async def test_hostile_corpus_from_a_mongodump_is_fully_accounted_for(
    clean_pg: str, tmp_path: Path, gz: bool, workers: int
) -> None:
    sessions, messages = build()
    root = _dump(tmp_path / "dump", sessions, messages, gz=gz)
    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(
                DumpSource(root), pg, report, batch_size=5, workers=workers
            ).run()
        await _check_accounting(result, _report(tmp_path / "report.jsonl"), pg, sessions, messages)


def _docs(n: int, pad: int = 0) -> list[bytes]:
    return [bson.encode({"_id": i, "text": "x" * (i % 7 + pad)}) for i in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 30),
    batch=st.integers(1, 8),
    skip=st.integers(0, 35),
    read=st.sampled_from([1, 7, 64, 4 << 20]),
)
def test_bson_chunks_hold_every_document_once_in_order(
    n: int, batch: int, skip: int, read: int
) -> None:
    docs = _docs(n)
    original = dump._READ
    dump._READ = read  # cut documents across reads
    try:
        chunks = list(bson_chunks(io.BytesIO(b"".join(docs)), "messages.bson", batch, skip))
    finally:
        dump._READ = original
    assert all(isinstance(c, BsonChunk) and 0 < c.count <= batch for c in chunks)
    got = [d for c in chunks for d in bson.decode_all(c.data)]  # type: ignore[union-attr]
    assert got == [bson.decode(d) for d in docs[skip:]]
    # Each chunk knows where it starts in the file.
    for c in chunks:
        assert isinstance(c, BsonChunk)
        start = c.offset
        assert b"".join(docs)[start : start + len(c.data)] == c.data


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("cut", "ends 10 bytes into a document"),
        ("length", "a document length of -1 bytes"),
        ("nul", "does not end with a NUL byte"),
        ("gzip", "cannot be read past this point"),
    ],
)
def test_a_damaged_dump_ends_with_one_report_line_after_the_documents_it_held(
    tmp_path: Path, damage: str, why: str
) -> None:
    docs = _docs(6, pad=20)
    data = b"".join(docs)
    good = sum(len(d) for d in docs[:4])
    if damage == "cut":
        data = data[: good + 10]
    elif damage == "length":
        data = data[:good] + (-1).to_bytes(4, "little", signed=True) + data[good + 4 :]
    elif damage == "nul":
        bad = bytearray(docs[4])
        bad[-1] = 7
        data = data[:good] + bytes(bad) + docs[5]
    path = tmp_path / "messages.bson"
    if damage == "gzip":
        packed = gzip.compress(data)
        path = tmp_path / "messages.bson.gz"
        path.write_bytes(packed[: len(packed) // 2])
        with gzip.open(path, "rb") as handle:
            chunks = list(bson_chunks(handle, path.name, 2))
    else:
        path.write_bytes(data)
        with path.open("rb") as handle:
            chunks = list(bson_chunks(handle, path.name, 2))
    *held, last = chunks
    assert isinstance(last, TextChunk)
    (bad_input,) = last.texts
    assert why in bad_input.error, bad_input  # type: ignore[union-attr]
    assert "--resume" in bad_input.error  # type: ignore[union-attr]
    read = [d for c in held for d in bson.decode_all(c.data)]  # type: ignore[union-attr]
    if damage != "gzip":
        assert read == [bson.decode(d) for d in docs[:4]]
        assert bad_input.where == f"{path.name} at byte {good} and after"  # type: ignore[union-attr]


async def test_damage_is_reported_by_the_backfill_and_the_rest_lands(
    clean_pg: str, tmp_path: Path
) -> None:
    sessions, _ = build()
    ok_sessions = [c for c in sessions if c.action == "ok"][:3]
    root = _dump(tmp_path / "dump", ok_sessions, [], gz=False)
    # A framed document whose contents do not decode (element type 0x7f does not exist),
    # then a file cut short.
    broken = bytearray(bson.encode({"a": 1}))
    broken[4] = 0x7F
    messages_file = root / "chat" / "messages.bson"
    messages_file.write_bytes(bytes(broken) + bson.encode({"_id": 1})[:-3])
    async with PostgresStore(clean_pg) as pg:
        with Report(tmp_path / "report.jsonl") as report:
            result = await Backfill(DumpSource(root), pg, report).run()
    assert result.counts["chat_sessions"].written == 3
    lines = _report(tmp_path / "report.jsonl")
    wheres = sorted(ln["original"]["where"] for ln in lines)
    assert wheres == ["messages.bson at byte 0", f"messages.bson at byte {len(broken)} and after"]
    assert all(ln["action"] == "quarantined" for ln in lines)


def test_the_cli_reads_a_dump_and_refuses_an_archive_saying_what_to_do(
    clean_pg: str, tmp_path: Path
) -> None:
    sessions, messages = build()
    root = _dump(tmp_path / "dump", sessions, messages, gz=True)
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}
    cli = [sys.executable, "-m", "strangler", "backfill", "--at-off"]
    ok = subprocess.run(
        [*cli, "--source", str(root), "--report", str(tmp_path / "r.jsonl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    table = {ln.split()[0]: ln.split()[1:] for ln in ok.stdout.splitlines() if ln.strip()}
    assert table["chat_sessions"][0] == str(len(sessions))  # read: every document
    assert table["messages"][0] == str(len(messages))
    archive = tmp_path / "chat.archive"
    archive.write_bytes(gzip.compress(dump.ARCHIVE_MAGIC + b"\x00" * 64))
    refused = subprocess.run(
        [*cli, "--source", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "mongodump --archive file" in refused.stderr
    assert "--out=dump/" in refused.stderr
    assert "Traceback" not in refused.stderr
