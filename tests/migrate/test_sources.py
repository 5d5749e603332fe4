"""Reading mongoexport JSON Lines in chunks: the loading process cuts whole lines and
never loses, repeats or splits one, whatever the batch size, the skip or the line sizes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strangler.migrate import sources
from strangler.migrate.sources import BadInput, FileSource, LinesChunk, TextChunk

lines_st = st.lists(
    st.one_of(
        st.just(""),  # blank lines are kept in the numbering, never read as documents
        st.text(alphabet="ab{}\"': ", min_size=1, max_size=40).filter(lambda t: t.strip()),
    ),
    max_size=40,
)


async def _read(directory: Path, batch: int, skip: int = 0) -> list[LinesChunk | TextChunk]:
    return [c async for c in FileSource(directory).chunks("messages", batch, skip)]  # type: ignore[misc]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=lines_st,
    batch=st.integers(1, 7),
    skip=st.integers(0, 12),
    newline_at_end=st.booleans(),
    cap=st.sampled_from([10, 60, 1 << 20]),
)
async def test_line_chunks_hold_every_line_once_in_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[str],
    batch: int,
    skip: int,
    newline_at_end: bool,
    cap: int,
) -> None:
    monkeypatch.setattr(sources, "MAX_CHUNK_BYTES", cap)
    monkeypatch.setattr(sources, "_READ", 16)  # many small reads: lines straddle them
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    (tmp_path / "messages.json").write_text(text)
    chunks = await _read(tmp_path, batch, skip)
    assert all(isinstance(c, LinesChunk) for c in chunks)
    texts = [c.texts() for c in chunks if isinstance(c, LinesChunk)]
    numbered = [(n, t) for c in texts for n, t in zip(c.numbers, c.texts, strict=True)]
    expected = [(n, t.encode()) for n, t in enumerate(lines, start=1) if t.strip() and n > skip]
    assert numbered == expected
    in_file = text.count("\n") + (bool(text) and not text.endswith("\n"))
    assert sum(len(c) for c in chunks) == max(0, in_file - skip)
    assert all(0 < len(c) <= batch for c in chunks)
    first = [c.first for c in chunks if isinstance(c, LinesChunk)]
    assert first == sorted(first)


async def test_a_line_longer_than_a_chunk_still_comes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MAX_CHUNK_BYTES", 100)
    big = '{"text": "' + "x" * 1000 + '"}'
    (tmp_path / "messages.json").write_text(f"a\n{big}\nb\n")
    chunks = await _read(tmp_path, 1000)
    texts = [t for c in chunks for t in c.texts().texts]  # type: ignore[union-attr]
    assert texts == [b"a", big.encode(), b"b"]


async def test_invalid_utf8_is_one_bad_line_not_a_bad_chunk(tmp_path: Path) -> None:
    (tmp_path / "messages.json").write_bytes(b'{"a": 1}\n{"b": "\xff"}\n{"c": 3}\n')
    (chunk,) = await _read(tmp_path, 10)
    texts = chunk.texts().texts  # type: ignore[union-attr]
    assert texts[0] == b'{"a": 1}' and texts[2] == b'{"c": 3}'
    assert isinstance(texts[1], BadInput) and texts[1].where == "messages.json:2"
    assert "invalid UTF-8" in texts[1].error


async def test_a_gzip_cut_short_ends_with_a_report_line_after_the_lines_it_held(
    tmp_path: Path,
) -> None:
    body = "".join(f'{{"n": {i}}}\n' for i in range(2000)).encode()
    packed = gzip.compress(body)
    (tmp_path / "messages.json.gz").write_bytes(packed[: len(packed) // 2])
    chunks = await _read(tmp_path, 500)
    *good, last = chunks
    assert isinstance(last, TextChunk) and isinstance(last.texts[0], BadInput)
    read = [t for c in good for t in c.texts().texts]  # type: ignore[union-attr]
    assert read == [f'{{"n": {i}}}'.encode() for i in range(len(read))]
    assert last.texts[0].where == f"messages.json.gz:{len(read) + 1} and after"
