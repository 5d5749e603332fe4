"""Where legacy documents come from: a live MongoDB, or a directory of mongoexport output.

Both yield **chunks** of raw documents in a stable order, cheap to read and to hand to a
worker process: BSON bytes straight off the wire (``BsonChunk``), or the text of each JSON
line or array element (``TextChunk``). Decoding them is the worker's job
(``migrate.prepare``). A line or element that cannot even be cut out of the file is carried
as a ``BadInput`` instead of stopping the run.

mongoexport files are ``chat_sessions.json`` and ``messages.json`` (optionally ``.gz``),
either JSON Lines (the default) or one JSON array (``--jsonArray``), in canonical or
relaxed Extended JSON.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError

from strangler.core.errors import ConfigError
from strangler.core.ports import RawDocuments
from strangler.migrate.ejson import exact_loads

BSON_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=True,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


@dataclass(frozen=True)
class BadInput:
    """A piece of a source that is not a document: where it was, what it said, why."""

    where: str
    text: str
    error: str


Item = dict[str, Any] | BadInput


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Documents as JSON text, from ``name``: ``texts[i]`` is line or element ``numbers[i]``."""

    name: str
    unit: str  # "line" or "element"
    numbers: list[int]
    texts: list[bytes | BadInput]

    def __len__(self) -> int:
        return len(self.texts)

    def where(self, i: int) -> str:
        sep = ":" if self.unit == "line" else ":element "
        return f"{self.name}{sep}{self.numbers[i]}"


@dataclass(frozen=True, slots=True)
class LinesChunk:
    """JSON Lines as they are in the file, for a worker to split: ``data`` holds ``count``
    whole lines (blank ones included), the first of them line ``first`` of ``name``. The
    loading process only finds line ends; it never touches a line on its own."""

    name: str
    first: int
    count: int
    data: bytes

    def __len__(self) -> int:
        return self.count

    def texts(self) -> TextChunk:
        """The non-blank lines, each checked as UTF-8 (a line that is not becomes a
        ``BadInput``)."""
        lines = self.data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()  # the newline that ends the last line
        try:
            self.data.decode("utf-8")
            valid = True  # the usual case: one check for the whole chunk
        except UnicodeDecodeError:
            valid = False
        numbers: list[int] = []
        texts: list[bytes | BadInput] = []
        for n, raw in enumerate(lines, start=self.first):
            if not raw.strip():
                continue
            numbers.append(n)
            if valid:
                texts.append(raw)
                continue
            try:
                raw.decode("utf-8")
                texts.append(raw)
            except UnicodeDecodeError as exc:
                where = f"{self.name}:{n}"
                texts.append(
                    BadInput(where, raw.decode("utf-8", "replace"), f"invalid UTF-8: {exc}")
                )
        return TextChunk(self.name, "line", numbers, texts)


@dataclass(frozen=True, slots=True)
class BsonChunk:
    """Documents as they came from MongoDB: ``count`` BSON documents back to back. From a
    file (a mongodump), ``name`` and ``offset`` say where ``data`` starts in it, for the
    report lines of documents that do not decode."""

    data: bytes
    count: int
    name: str | None = None
    offset: int = 0

    def where(self, pos: int) -> str:
        """Where the document at byte ``pos`` of ``data`` came from."""
        if self.name is None:
            return f"BSON document at byte {pos}"
        return f"{self.name} at byte {self.offset + pos}"

    def __len__(self) -> int:
        return self.count


Chunk = TextChunk | LinesChunk | BsonChunk


def parse_text(text: bytes, where: str) -> Item:
    """One JSON document, exactly (``bson.json_util``), or why it is not one."""
    try:
        doc = exact_loads(text)
    except (ValueError, TypeError, BSONError, OverflowError) as exc:
        return BadInput(where, text.decode("utf-8", "replace"), f"{type(exc).__name__}: {exc}")
    except RecursionError:  # nested deeper than Python's parser goes; MongoDB allows 100
        return BadInput(where, text.decode("utf-8", "replace"), "JSON nested too deeply")
    if not isinstance(doc, dict):
        return BadInput(
            where,
            text.decode("utf-8", "replace"),
            f"expected a JSON object, got {type(doc).__name__}",
        )
    return doc


def decode_chunk(chunk: Chunk) -> list[Item]:
    """Every document of a chunk, read exactly (slow; the backfill's workers read fast)."""
    if isinstance(chunk, BsonChunk):
        return list(bson.decode_all(chunk.data, BSON_OPTIONS))
    if isinstance(chunk, LinesChunk):
        chunk = chunk.texts()
    return [
        t if isinstance(t, BadInput) else parse_text(t, chunk.where(i))
        for i, t in enumerate(chunk.texts)
    ]


#: How long the progress bar's total may take to learn (seconds). MongoDB answers an
#: estimated count from metadata at once; SecantusDB scans the collection, which on a large
#: one costs a third of the backfill's own read: then the bar goes without a total.
ETA_PATIENCE = 0.1


class Source(Protocol):
    name: str

    def chunks(self, collection: str, batch: int, skip: int = 0) -> AsyncIterator[Chunk]:
        """Chunks of up to ``batch`` documents, after skipping the first ``skip``."""
        ...

    async def estimate(self, collection: str, patience: float = ETA_PATIENCE) -> int | None:
        """About how many documents ``collection`` holds (for the ETA), if known within
        ``patience`` seconds."""
        ...


class MongoSource:
    """Raw documents from the app's MongoDB, in ``_id`` order."""

    def __init__(
        self, documents: RawDocuments, where: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.documents = documents
        self.name = f"mongodb database {documents.database!r}"
        #: A partition's slice of each collection, as a query (``core.partition``).
        self.where = where or {}
        self._estimates: dict[str, int] = {}

    async def estimate(self, collection: str, patience: float = ETA_PATIENCE) -> int | None:
        if collection not in self._estimates:
            n = await self.documents.estimated_count(collection, patience)
            if n is None:
                return None
            self._estimates[collection] = n
        return self._estimates[collection]

    async def chunks(self, collection: str, batch: int, skip: int = 0) -> AsyncIterator[Chunk]:
        """Raw BSON batches: the documents are decoded by the backfill's workers."""
        where = self.where.get(collection)
        async for data in self.documents.raw_batches(collection, batch, skip, where):
            yield BsonChunk(data, _count_bson(data))


def _count_bson(data: bytes) -> int:
    n = pos = 0
    while pos < len(data):
        pos += int.from_bytes(data[pos : pos + 4], "little")
        n += 1
    return n


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


#: What reading a damaged file raises: a corrupt or truncated gzip stream, an I/O error.
_UNREADABLE = (OSError, EOFError, zlib.error)


def _guarded(
    items: Iterator[tuple[int, bytes | BadInput]], path: Path
) -> Iterator[tuple[int, bytes | BadInput]]:
    """The items, until the file cannot be read further (a corrupt or truncated ``.gz``);
    then one ``BadInput`` for the rest of it, so the damage is reported, not a traceback."""
    last = 0
    try:
        for number, text in items:
            last = number
            yield number, text
    except _UNREADABLE as exc:
        yield last + 1, _unreadable(path, last + 1, exc)


def _unreadable(path: Path, line: int, exc: BaseException) -> BadInput:
    """The report line for the part of a file from ``line`` on that cannot be read."""
    return BadInput(
        f"{path.name}:{line} and after",
        "",
        f"the file cannot be read past this point ({type(exc).__name__}: {exc}); "
        "re-export it or fix the archive, then run again with --resume",
    )


#: A chunk of JSON Lines holds at most this many bytes (unless one line is longer), so a
#: file of huge documents still loads in bounded memory.
MAX_CHUNK_BYTES = 16 << 20
_READ = 4 << 20


def _line_chunks(
    handle: BinaryIO, path: Path, batch: int, skip: int
) -> Iterator[LinesChunk | TextChunk]:
    """Chunks of up to ``batch`` whole lines (fewer past ``MAX_CHUNK_BYTES``), after
    skipping ``skip`` lines. A file that cannot be read further (a corrupt or truncated
    ``.gz``) ends with one ``BadInput`` for the rest of it, so the damage is reported."""
    buf, pos, line, eof = b"", 0, 1, False
    broken: BaseException | None = None
    while True:
        while True:  # cut every chunk the buffer holds
            want = skip or batch
            end, n = pos, 0
            while n < want and end - pos <= MAX_CHUNK_BYTES:
                nl = buf.find(b"\n", end)
                if nl < 0:
                    break
                end, n = nl + 1, n + 1
            if n < want and end - pos <= MAX_CHUNK_BYTES:  # not a full chunk
                if not eof:
                    break  # read more
                if end < len(buf):
                    end, n = len(buf), n + 1  # the last line has no newline
                if n == 0:
                    break
            if skip:
                skip -= n
            else:
                yield LinesChunk(path.name, line, n, buf[pos:end])
            line, pos = line + n, end
        if eof:
            break
        try:
            data = handle.read(_READ)
        except _UNREADABLE as exc:
            broken, data = exc, b""
            cut = buf.rfind(b"\n", pos) + 1
            buf = buf[pos:cut] if cut else b""  # a partial last line is part of the damage
            pos = 0
        buf, pos, eof = buf[pos:] + data, 0, not data
    if broken is not None:
        yield TextChunk(path.name, "line", [line], [_unreadable(path, line, broken)])


def _array(
    handle: BinaryIO, path: Path, chunk: int = 1 << 20
) -> Iterator[tuple[int, bytes | BadInput]]:
    """Stream the elements of one big JSON array without loading the whole file.

    After an element that cannot be parsed, the array cannot be resynchronised, so the rest
    is reported as one ``BadInput`` (with its offset), never dropped silently.
    """
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    decoder = json.JSONDecoder()
    buf, pos, eof, n, opened = "", 0, False, 0, False

    def more() -> None:
        nonlocal buf, pos, eof
        data = handle.read(chunk)
        eof = not data
        buf = buf[pos:] + decode(data, final=eof)
        pos = 0

    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(buf):
            if eof:
                if opened:
                    yield n + 1, BadInput(f"{path.name}:end", "", "the array is not closed")
                return
            more()
            continue
        if not opened:
            if buf[pos] != "[":
                yield (
                    0,
                    BadInput(f"{path.name}:start", buf[pos : pos + 200], "expected a JSON array"),
                )
                return
            opened, pos = True, pos + 1
            continue
        if buf[pos] == "]":
            return
        try:
            _, end = decoder.raw_decode(buf, pos)
        except RecursionError:
            yield (
                n + 1,
                BadInput(
                    f"{path.name}:element {n + 1} and after",
                    buf[pos : pos + 10_000],
                    f"element {n + 1} is nested too deeply to read; the rest of the array "
                    "cannot be split into documents",
                ),
            )
            return
        except json.JSONDecodeError as exc:
            if not eof:
                more()  # the element may continue in the next chunk
                continue
            yield (
                n + 1,
                BadInput(
                    f"{path.name}:element {n + 1} and after",
                    buf[pos : pos + 10_000],
                    f"invalid JSON at element {n + 1}: {exc.msg}",
                ),
            )
            return
        n += 1
        text, pos = buf[pos:end], end
        yield n, text.encode("utf-8", "surrogatepass")


class FileSource:
    """Documents from mongoexport files in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory} is not a directory of mongoexport files")
        self.name = f"files in {self.directory}"

    def path(self, collection: str) -> Path:
        for name in (
            f"{collection}.json",
            f"{collection}.json.gz",
            f"{collection}.jsonl",
            f"{collection}.jsonl.gz",
        ):
            if (self.directory / name).exists():
                return self.directory / name
        raise ConfigError(
            f"no {collection}.json or {collection}.json.gz in {self.directory} "
            f"(export it with: mongoexport --collection={collection} --out={collection}.json)"
        )

    async def estimate(self, collection: str, patience: float = ETA_PATIENCE) -> int | None:
        return None  # counting would mean reading the whole file once more

    async def chunks(self, collection: str, batch: int, skip: int = 0) -> AsyncIterator[Chunk]:
        """JSON Lines come as ``LinesChunk``s (``skip`` counts lines, blank ones too); an
        array's elements as ``TextChunk``s (``skip`` counts elements)."""
        path = self.path(collection)
        try:
            with _open(path) as probe:
                is_array = probe.read(4096).lstrip()[:1] == b"["
        except _UNREADABLE:
            is_array = False  # the first read reports it
        with _open(path) as handle:
            if not is_array:
                for lines in _line_chunks(handle, path, batch, skip):
                    yield lines
                return
            items = _guarded(_array(handle, path), path)
            numbers: list[int] = []
            texts: list[bytes | BadInput] = []
            for seen, (number, text) in enumerate(items):
                if seen < skip:
                    continue
                numbers.append(number)
                texts.append(text)
                if len(texts) >= batch:
                    yield TextChunk(path.name, "element", numbers, texts)
                    numbers, texts = [], []
            if texts:
                yield TextChunk(path.name, "element", numbers, texts)
