"""A ``mongodump`` output directory as a backfill source (``strangler backfill --source DIR``).

``mongodump --out=DIR`` writes ``DIR/<db>/<collection>.bson`` (``.bson.gz`` with
``--gzip``): the collection's documents as BSON, back to back, each starting with its
length. ``DumpSource`` cuts them into ``BsonChunk``s by those lengths and hands the bytes
to the backfill's workers undecoded, as a live MongoDB's batches are: the loading process
reads 4-byte lengths and nothing else.

What cannot be cut out is reported, never raised: a length that no BSON document can have,
a document that does not end where its length says, a file cut short, a corrupt gzip
stream. Each ends the file's reading with one report line for the rest of it (past a bad
length nothing can be found again). A document that is framed right but does not decode
is reported by the worker, by file and byte offset (``BsonChunk.where``).

``mongodump --archive`` files (one stream for every collection) are refused with the
commands that make a directory instead.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from strangler.core.errors import ConfigError
from strangler.migrate.sources import (
    _UNREADABLE,
    ETA_PATIENCE,
    MAX_CHUNK_BYTES,
    BadInput,
    BsonChunk,
    Chunk,
    TextChunk,
    _open,
)

#: The first four bytes of a ``mongodump --archive`` file.
ARCHIVE_MAGIC = (0x8199E26D).to_bytes(4, "little")
GZIP_MAGIC = b"\x1f\x8b"
#: MongoDB's largest document (16 MiB) and its smallest (``{}``: 5 bytes).
MAX_DOCUMENT = 16 * 1024 * 1024
MIN_DOCUMENT = 5
_READ = 4 << 20
_LENGTH = struct.Struct("<i")


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a ``mongodump --archive`` file (gzipped or not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == GZIP_MAGIC:
            with gzip.open(path, "rb") as g:
                head = g.read(4)
    except _UNREADABLE:
        return False
    return head == ARCHIVE_MAGIC


def refuse_archive(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} is a mongodump --archive file, which strangler does not read: dump to a "
        'directory instead, e.g. `mongodump --uri="$MONGO_URI" --out=dump/` (add --gzip to '
        "compress), or unpack this archive with `mongorestore --archive=... "
        "--nsInclude='<db>.*'` into a MongoDB and backfill from that; then run "
        "`strangler backfill --source dump/`"
    )


def find_dump(directory: Path, collection: str) -> Path | None:
    """``<collection>.bson[.gz]`` in ``directory`` or in one database folder under it."""
    names = (f"{collection}.bson", f"{collection}.bson.gz")
    for name in names:
        if (directory / name).is_file():
            return directory / name
    found = [d / n for d in sorted(directory.iterdir()) if d.is_dir() for n in names]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise ConfigError(
            f"{directory} holds {collection} from more than one database "
            f"({', '.join(str(p.parent.name) for p in found)}): pass the folder of the one "
            f"to load, e.g. --source {found[0].parent}"
        )
    return found[0] if found else None


def looks_like_dump(directory: Path) -> bool:
    return any(p.suffix == ".bson" or p.name.endswith(".bson.gz") for p in _files(directory))


def _files(directory: Path) -> Iterator[Path]:
    for p in directory.iterdir():
        if p.is_file():
            yield p
        elif p.is_dir():
            yield from (q for q in p.iterdir() if q.is_file())


class DumpSource:
    """Documents from a ``mongodump`` directory, in the order the dump holds them."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory} is not a mongodump output directory")
        self.name = f"mongodump in {self.directory}"

    def path(self, collection: str) -> Path:
        found = find_dump(self.directory, collection)
        if found is None:
            raise ConfigError(
                f"no {collection}.bson or {collection}.bson.gz in {self.directory} or a "
                f'database folder under it (dump it with: mongodump --uri="$MONGO_URI" '
                f"--collection={collection} --out={self.directory})"
            )
        return found

    async def estimate(self, collection: str, patience: float = ETA_PATIENCE) -> int | None:
        return None  # counting would mean reading the whole dump once more

    async def chunks(self, collection: str, batch: int, skip: int = 0) -> AsyncIterator[Chunk]:
        """``BsonChunk``s of up to ``batch`` documents (fewer past ``MAX_CHUNK_BYTES``),
        after skipping the first ``skip``; what cannot be cut out, as one report line."""
        path = self.path(collection)
        with _open(path) as handle:
            for chunk in bson_chunks(handle, path.name, batch, skip):
                yield chunk


def bson_chunks(handle: BinaryIO, name: str, batch: int, skip: int = 0) -> Iterator[Chunk]:
    """Cut a stream of BSON documents into chunks (see ``DumpSource.chunks``)."""
    buf = b""
    pos = 0  # where the next document starts in buf
    offset = 0  # buf's first byte, in the file
    number = 0  # documents cut so far
    start_pos, count = 0, 0  # the chunk being gathered
    eof = False
    problem: str | None = None
    while True:
        end = len(buf)
        while True:  # cut every whole document the buffer holds
            if end - pos < 4:
                break
            (size,) = _LENGTH.unpack_from(buf, pos)
            if not MIN_DOCUMENT <= size <= MAX_DOCUMENT:
                problem = f"a document length of {size} bytes, which no BSON document has"
                break
            if end - pos < size:
                break
            if buf[pos + size - 1] != 0:
                problem = f"the {size}-byte document there does not end with a NUL byte"
                break
            pos += size
            number += 1
            if number <= skip:
                start_pos = pos
                continue
            count += 1
            if count >= batch or pos - start_pos >= MAX_CHUNK_BYTES:
                yield BsonChunk(buf[start_pos:pos], count, name, offset + start_pos)
                start_pos, count = pos, 0
        if problem is not None or eof:
            break
        try:
            data = handle.read(_READ)
        except _UNREADABLE as exc:
            data = b""
            problem = f"the file cannot be read past this point ({type(exc).__name__}: {exc})"
        keep = start_pos if count else pos  # the gathered chunk's bytes stay; the rest goes
        buf, offset = buf[keep:] + data, offset + keep
        pos, start_pos = pos - keep, start_pos - keep
        eof = not data
        if problem is not None:
            break
    if count:
        yield BsonChunk(buf[start_pos:pos], count, name, offset + start_pos)
    if problem is None and pos < len(buf):
        problem = f"the file ends {len(buf) - pos} bytes into a document (cut short)"
    if problem is not None:
        yield TextChunk(
            name,
            "element",
            [number + 1],
            [
                BadInput(
                    f"{name} at byte {offset + pos} and after",
                    "",
                    f"{problem}; documents from here on cannot be read. Dump the collection "
                    "again (mongodump), then run the backfill again with --resume",
                )
            ],
        )
