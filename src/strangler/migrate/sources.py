"""Where legacy documents come from: a live MongoDB, or a directory of mongoexport output.

Both yield batches of raw documents, as BSON types, in a stable order. A file line or array
element that cannot be parsed is yielded as a ``BadInput`` instead of stopping the run.

mongoexport files are ``chat_sessions.json`` and ``messages.json`` (optionally ``.gz``),
either JSON Lines (the default) or one JSON array (``--jsonArray``), in canonical or
relaxed Extended JSON.
"""

from __future__ import annotations

import codecs
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from bson import json_util
from bson.codec_options import DatetimeConversion
from bson.errors import BSONError
from pymongo import ASCENDING

from strangler.backends.mongo import MongoStore, translate_errors
from strangler.errors import ConfigError

_EJSON = json_util.JSONOptions(
    tz_aware=True,
    uuid_representation=4,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


@dataclass(frozen=True)
class BadInput:
    """A piece of a source that is not a document: where it was, what it said, why."""

    where: str
    text: str
    error: str


Item = dict[str, Any] | BadInput


class Source(Protocol):
    name: str

    def documents(
        self, collection: str, batch: int, skip: int = 0
    ) -> AsyncIterator[list[Item]]: ...

    async def estimate(self, collection: str) -> int | None:
        """About how many documents ``collection`` holds (for the ETA), if cheap to know."""
        ...


class MongoSource:
    """Raw documents from the app's MongoDB, in ``_id`` order."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.name = f"mongodb database {store.database!r}"

    async def estimate(self, collection: str) -> int | None:
        with translate_errors(f"count {collection}"):
            n: int = await self.store.collection(collection).estimated_document_count()
        return n

    async def documents(
        self, collection: str, batch: int, skip: int = 0
    ) -> AsyncIterator[list[Item]]:
        out: list[Item] = []
        with translate_errors(f"read {collection}"):
            cursor = self.store.collection(collection).find({}).sort("_id", ASCENDING).skip(skip)
            async for doc in cursor.batch_size(batch):
                out.append(doc)
                if len(out) >= batch:
                    yield out
                    out = []
        if out:
            yield out


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def _parse(text: str, where: str) -> Item:
    try:
        doc = json_util.loads(text, json_options=_EJSON)
    except (ValueError, TypeError, BSONError, OverflowError) as exc:
        return BadInput(where, text, f"{type(exc).__name__}: {exc}")
    if not isinstance(doc, dict):
        return BadInput(where, text, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _jsonl(handle: BinaryIO, path: Path) -> Iterator[Item]:
    for n, raw in enumerate(handle, start=1):
        where = f"{path.name}:{n}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield BadInput(where, raw.decode("utf-8", "replace"), f"invalid UTF-8: {exc}")
            continue
        if text.strip():
            yield _parse(text, where)


def _array(handle: BinaryIO, path: Path, chunk: int = 1 << 20) -> Iterator[Item]:
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
                    yield BadInput(f"{path.name}:end", "", "the array is not closed")
                return
            more()
            continue
        if not opened:
            if buf[pos] != "[":
                yield BadInput(f"{path.name}:start", buf[pos : pos + 200], "expected a JSON array")
                return
            opened, pos = True, pos + 1
            continue
        if buf[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if not eof:
                more()  # the element may continue in the next chunk
                continue
            yield BadInput(
                f"{path.name}:element {n + 1} and after",
                buf[pos : pos + 10_000],
                f"invalid JSON at element {n + 1}: {exc.msg}",
            )
            return
        n += 1
        where = f"{path.name}:element {n}"
        text, pos = buf[pos:end], end
        if isinstance(value, dict):
            yield _parse(text, where)
        else:
            yield BadInput(where, text, f"expected a JSON object, got {type(value).__name__}")


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

    async def estimate(self, collection: str) -> int | None:
        return None  # counting would mean reading the whole file once more

    async def documents(
        self, collection: str, batch: int, skip: int = 0
    ) -> AsyncIterator[list[Item]]:
        path = self.path(collection)
        with _open(path) as probe:
            is_array = probe.read(4096).lstrip()[:1] == b"["
        with _open(path) as handle:
            items = _array(handle, path) if is_array else _jsonl(handle, path)
            out: list[Item] = []
            for n, item in enumerate(items):
                if n < skip:
                    continue
                out.append(item)
                if len(out) >= batch:
                    yield out
                    out = []
            if out:
                yield out
