"""Hostile export files: whatever bytes ``chat_sessions.json`` and ``messages.json`` hold,
the backfill ends with report lines or one clear error, never a traceback and never a
document silently lost (reliability issue: fuzzing)."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.backends.postgres import PostgresStore
from strangler.core.errors import StranglerError
from strangler.migrate.backfill import Backfill
from strangler.migrate.report import Report
from strangler.migrate.sources import FileSource

GOOD_SESSION = b'{"_id": {"$oid": "65f1a2b3c4d5e6f708192a3b"}, "title": "ok", "user_id": "u"}\n'
_rng = random.Random(5)

HOSTILE: dict[str, bytes] = {
    "random bytes": bytes(_rng.randrange(256) for _ in range(4096)),
    "invalid utf-8 in a line": GOOD_SESSION + b'{"_id": "x", "title": "\xff\xfe"}\n',
    "nul bytes": GOOD_SESSION + b'{"title": "a\x00b"}\n\x00\x00\x00\n',
    "deep nesting": b'{"_id": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
    "deep object nesting": b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"\n",
    "unclosed array": b"[" + GOOD_SESSION.rstrip() + b', {"title": "open"',
    "array then garbage": b"[" + GOOD_SESSION.rstrip() + b"] trailing {",
    "scalars": b'1\n"text"\nnull\ntrue\n[]\n{}\n',
    "huge numbers": b'{"_id": 1e999, "n": 123456789012345678901234567890, "x": -0.0}\n',
    "odd extended json": b'{"_id": {"$oid": 5}, "created_at": {"$date": {"$numberLong": "x"}}}\n'
    b'{"_id": {"$binary": {"base64": "!!", "subType": "zz"}}}\n{"$regex": 1}\n',
    "a long line": b'{"title": "' + b"a" * 2_000_000 + b'"}\n',
    "only whitespace": b"\n\n   \n\t\n",
}


def _write(directory: Path, name: str, data: bytes, *, gz: bool = False) -> None:
    for stale in directory.glob(f"{name}.json*"):
        stale.unlink()
    if gz:
        (directory / f"{name}.json.gz").write_bytes(data)
    else:
        (directory / f"{name}.json").write_bytes(data)


async def _run(directory: Path, pg: PostgresStore) -> tuple[object, list[str]]:
    """The backfill's result, or the StranglerError's message: anything else fails."""
    with Report(directory / "report.jsonl") as report:
        error: StranglerError | None = None
        try:
            result = await Backfill(FileSource(directory), pg, report, dry_run=True).run()
        except StranglerError as exc:
            error = exc
    if error is not None:
        assert str(error), "an error without a message"
        return error, []
    lines = (directory / "report.jsonl").read_text().splitlines()
    return result, lines


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_file_gives_report_lines_or_a_clear_error(
    case: str, clean_pg: str, tmp_path: Path
) -> None:
    _write(tmp_path, "chat_sessions", HOSTILE[case])
    _write(tmp_path, "messages", HOSTILE[case])
    async with PostgresStore(clean_pg) as pg:
        result, lines = await _run(tmp_path, pg)
    if isinstance(result, StranglerError):
        return
    for collection, counts in result.counts.items():  # type: ignore[attr-defined]
        # Nothing silently dropped: every document read is written or quarantined.
        assert counts.read == counts.written + counts.quarantined + counts.vanished, collection
    quarantined = sum(c.quarantined for c in result.counts.values())  # type: ignore[attr-defined]
    repaired = sum(c.repaired for c in result.counts.values())  # type: ignore[attr-defined]
    assert len(lines) >= quarantined and len(lines) <= quarantined + repaired


@pytest.mark.parametrize(
    "data",
    [b"\x1f\x8b\x08\x00garbage", gzip.compress(GOOD_SESSION * 1000)[:200], b"not gzip at all"],
    ids=["corrupt gzip", "truncated gzip", "plain text named .gz"],
)
async def test_a_broken_gzip_file_is_a_clear_error_or_report_lines(
    data: bytes, clean_pg: str, tmp_path: Path
) -> None:
    _write(tmp_path, "chat_sessions", data, gz=True)
    _write(tmp_path, "messages", b"")
    async with PostgresStore(clean_pg) as pg:
        result, lines = await _run(tmp_path, pg)
    if isinstance(result, StranglerError):
        assert "chat_sessions.json.gz" in str(result)
    else:
        assert lines, "a broken gzip must leave a trace in the report"


@settings(
    max_examples=int(os.environ.get("STRANGLER_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sessions=st.binary(max_size=2048)
    | st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    messages=st.binary(max_size=2048),
)
async def test_random_files_never_raise_anything_but_a_clear_error(
    sessions: bytes, messages: bytes, clean_pg: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    _write(directory, "chat_sessions", sessions)
    _write(directory, "messages", messages)
    async with PostgresStore(clean_pg) as pg:
        await _run(directory, pg)


@pytest.mark.parametrize("case", ["random bytes", "deep nesting", "unclosed array"])
def test_the_cli_never_prints_a_traceback(case: str, clean_pg: str, tmp_path: Path) -> None:
    _write(tmp_path, "chat_sessions", HOSTILE[case])
    _write(tmp_path, "messages", HOSTILE[case])
    env = {**os.environ, "SUPABASE_DB_URL": clean_pg, "STRANGLER_LOG_FORMAT": "json"}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "strangler.cli", "backfill", "--source", str(tmp_path)),
            *("--report", str(tmp_path / "r.jsonl"), "--checkpoint", str(tmp_path / "cp.json")),
            "--at-off",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode in (0, 1, 2), proc.stderr[-3000:]
