"""Backfill: copy every legacy document into the new store, or report why not.

* Sessions load before the messages that reference them.
* Worker processes (``migrate.prepare``) decode and transform the next chunks while this
  process loads the current one, so both cores work; ``workers=0`` does it all here.
* Rows are inserted, never overwritten: a value the facade wrote during ``dualwrite`` is
  newer than the legacy one, so it wins.
* After each chunk is written, its ids are checked against the tombstones the facade
  leaves for deletes (or, without them, against the live source), and anything deleted
  meanwhile is deleted again, so no delete is resurrected.
* Every source document ends up stored (equal after normalisation), or in the report, or
  both when it was repaired: ``read == written + quarantined + vanished`` per collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import structlog

from strangler.core import ids
from strangler.core.errors import NotFound, StoreUnavailable
from strangler.core.pgcopy import CopyRows, RowWriter
from strangler.core.ports import ChatStore, LegacyIds
from strangler.core.records import Table
from strangler.migrate.checkpoint import Checkpoint
from strangler.migrate.partitions import InSlice
from strangler.migrate.prepare import Note, Prepared, prepare
from strangler.migrate.readahead import read_ahead
from strangler.migrate.report import Report, describe
from strangler.migrate.sources import BadInput, Chunk, Item, MongoSource, Source, decode_chunk
from strangler.migrate.transform import Collection

log = structlog.get_logger(__name__)
Orphans = Literal["quarantine", "adopt"]


class Target(ChatStore, Protocol):
    """A store the backfill can load: the chat store plus a bulk insert of ready rows."""

    async def insert_rows(self, table: Table, rows: CopyRows) -> int: ...


@dataclass
class Counts:
    """``read == written + quarantined + vanished``; ``repaired`` is part of ``written``."""

    read: int = 0
    written: int = 0
    repaired: int = 0
    quarantined: int = 0
    #: Deleted from the live source while the backfill ran; the delete is respected.
    vanished: int = 0


@dataclass
class BackfillResult:
    counts: dict[Collection, Counts] = field(
        default_factory=lambda: {"chat_sessions": Counts(), "messages": Counts()}
    )
    seconds: float = 0.0


Progress = Callable[[str, Counts], None]
#: Tries to load a batch of messages while live traffic keeps deleting their sessions.
SESSION_RACE_ATTEMPTS = 10
#: Which of these ids were deleted through the facade (``Tombstones.tombstoned``).
Tombstones = Callable[[str, list[str]], Awaitable[set[uuid.UUID]]]


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    gc.disable()  # a worker builds plain tuples, never cycles: collecting only costs time


@contextlib.contextmanager
def _workers(n: int) -> Iterator[Executor | None]:
    if n <= 0:
        yield None
        return
    # Forking is instant and the workers start with every module imported; spawning costs
    # each worker half a second of imports (a second of the two CPUs, on the critical path
    # of a short run). Fork only a single-threaded process, though: a thread holding a lock
    # at the fork would leave the child that lock forever held.
    method = "fork" if threading.active_count() == 1 else "spawn"
    pool = ProcessPoolExecutor(
        n, mp_context=multiprocessing.get_context(method), initializer=_worker_init
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Originals:
    """The source documents of a chunk, decoded exactly on first need (rare: a duplicate,
    an orphan, or the delete re-check without tombstones)."""

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self._docs: list[Item] | None = None

    def __getitem__(self, position: int) -> Item:
        if self._docs is None:
            self._docs = decode_chunk(self.chunk)
        return self._docs[position]


@dataclass
class _Batch:
    """A prepared chunk as the loader works through it."""

    collection: Collection
    chunk: Chunk
    prepared: Prepared
    rows: CopyRows = field(init=False)
    positions: list[int] = field(default_factory=list)
    quarantined: set[int] = field(default_factory=set)
    vanished: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rows = self.prepared.rows
        self.originals = _Originals(self.chunk)
        self.quarantined = set(self.prepared.notes) - set(self.prepared.positions)

    def note(self, position: int, reason: str, *, quarantine: bool) -> None:
        note = self.prepared.notes.get(position)
        if note is None:
            source_id, original = describe(self.originals[position])
            note = self.prepared.notes[position] = Note(position, [], source_id, original)
        note.reasons.append(reason)
        if quarantine:
            self.quarantined.add(position)

    def keep(self, keep: Callable[[int, int], bool]) -> None:
        """Keep the rows for which ``keep(row index, position)`` is true."""
        kept = [i for i, p in enumerate(self.positions) if keep(i, p)]
        if len(kept) < len(self.positions):
            self.rows = self.rows.subset(kept)
            self.positions = [self.positions[i] for i in kept]

    def stored(self) -> Iterator[tuple[int, int]]:
        """``(row index, position)`` of the rows stored and not deleted since."""
        for i, p in enumerate(self.positions):
            if p not in self.vanished:
                yield i, p


class Backfill:
    def __init__(
        self,
        source: Source,
        target: Target,
        report: Report,
        *,
        orphans: Orphans = "quarantine",
        dry_run: bool = False,
        batch_size: int = 5000,
        workers: int = 0,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
        checkpoint_path: Path | None = None,
        tombstones: Tombstones | None = None,
        any_tombstones: Callable[[str], Awaitable[bool]] | None = None,
        stop: asyncio.Event | None = None,
        keep: dict[Collection, InSlice] | None = None,
        known_sessions: set[bytes] | None = None,
        legacy_ids: LegacyIds | None = None,
    ) -> None:
        #: Set (by Ctrl-C) to stop after the batch in hand, its checkpoint saved: the run
        #: then raises ``KeyboardInterrupt``. A flag, not a cancel, so no database call is
        #: cut in the middle and no cancel can be lost in a racing wake-up.
        self.stop = stop
        self.source = source
        #: Where the originals of one-way legacy ids are kept (``strangler.legacy_ids``).
        self.legacy_ids = legacy_ids
        self.tombstones = tombstones
        #: Whether a table has any tombstone at all: skips the per-chunk lookup when not.
        self.any_tombstones = any_tombstones
        self.target = target
        self.report = report
        self.orphans = orphans
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.result = BackfillResult()
        #: Ids stored in this run (16 bytes each): a second document mapping to one of them
        #: is a duplicate.
        self._seen: dict[Collection, set[bytes]] = {"chat_sessions": set(), "messages": set()}
        #: Sessions known to be in the target (16-byte ids): a partitioned run starts with
        #: those of the pass that loaded every session.
        self.sessions: set[bytes] = set() if known_sessions is None else known_sessions
        #: A file source's partition: each collection's slice, kept by the workers.
        self.keep = keep or {}
        self.checkpoint = checkpoint or Checkpoint(source=source.name)
        self.checkpoint_path = checkpoint_path
        for name, saved in self.checkpoint.counts.items():
            self.result.counts[name] = Counts(**saved)  # type: ignore[index]

    async def run(
        self, collections: tuple[Collection, ...] = ("chat_sessions", "messages")
    ) -> BackfillResult:
        """Load ``collections`` (in that order), from the checkpoint on."""
        start = time.monotonic()
        cp = self.checkpoint
        if cp.done:
            return self.result
        todo = collections[collections.index(cp.collection) :]
        with _workers(self.workers) as pool:
            async for batch in self._prepared(todo, cp.offset, pool):
                if batch.collection != cp.collection:
                    cp.collection, cp.offset = batch.collection, 0
                await self._load(batch)
                cp.offset += len(batch.chunk)
                self._save_checkpoint()
                if self.progress is not None:
                    self.progress(batch.collection, self.result.counts[batch.collection])
                if self.stop is not None and self.stop.is_set():
                    raise KeyboardInterrupt
        cp.done = True
        self._save_checkpoint()
        self.result.seconds = time.monotonic() - start
        return self.result

    async def _chunks(
        self, collections: tuple[Collection, ...], skip: int
    ) -> AsyncIterator[tuple[Collection, Chunk]]:
        """The chunks of each collection in turn, the first from ``skip`` on."""
        for n, collection in enumerate(collections):
            async for chunk in self.source.chunks(collection, self.batch_size, 0 if n else skip):
                yield collection, chunk

    async def _prepared(
        self, collections: tuple[Collection, ...], skip: int, pool: Executor | None
    ) -> AsyncIterator[_Batch]:
        """Chunks of the source, transformed, in order.

        With workers, a reader task keeps the source busy while this process loads: it
        reads ahead and hands each chunk to a worker, up to two chunks per worker in
        flight, which bounds memory. The reader goes on to the next collection as soon as
        one is read (a live MongoDB may take seconds before its first batch: meanwhile the
        last chunks of the one before are loaded). It is stopped between reads, never
        cancelled in the middle of one (an async MongoDB read must not be cancelled)."""
        if pool is None:
            async for collection, chunk in self._chunks(collections, skip):
                keep = self.keep.get(collection)
                yield _Batch(collection, chunk, prepare(collection, chunk, keep))
            return
        loop = asyncio.get_running_loop()

        async def submitted() -> AsyncIterator[tuple[Collection, Chunk, asyncio.Future[Prepared]]]:
            async for collection, chunk in self._chunks(collections, skip):
                keep = self.keep.get(collection)
                yield (
                    collection,
                    chunk,
                    loop.run_in_executor(pool, prepare, collection, chunk, keep),
                )

        async with contextlib.aclosing(read_ahead(submitted(), 2 * self.workers)) as items:
            async for collection, chunk, future in items:
                yield _Batch(collection, chunk, await future)

    def _save_checkpoint(self) -> None:
        if self.checkpoint_path is None or self.dry_run:
            return
        self.checkpoint.counts = {k: asdict(v) for k, v in self.result.counts.items()}
        self.checkpoint.save(self.checkpoint_path)

    async def _load(self, batch: _Batch) -> None:
        collection, prepared = batch.collection, batch.prepared
        seen = self._seen[collection]
        keys = prepared.rows.ids
        if seen.isdisjoint(keys) and len(set(keys)) == len(keys):  # the usual case, in C
            seen.update(keys)
            batch.positions = list(prepared.positions)
        else:
            batch.positions = list(prepared.positions)

            def first(i: int, position: int) -> bool:
                if keys[i] in seen:
                    batch.note(position, "duplicate_id", quarantine=True)
                    return False
                seen.add(keys[i])
                return True

            batch.keep(first)
        if collection == "messages":
            await self._orphans(batch)
        if batch.rows and not self.dry_run:
            if collection == "chat_sessions":
                await self.target.insert_rows(collection, batch.rows)
            else:
                try:
                    await self.target.insert_rows(collection, batch.rows)
                except NotFound:
                    # A session was deleted while we held its messages.
                    await self._messages_without_session(batch)
            await self._undo_deleted(batch)
        if collection == "chat_sessions":
            self.sessions.update(batch.rows.ids[i] for i, _ in batch.stored())
        one_way = self._account(batch)
        if one_way and self.legacy_ids is not None and not self.dry_run:
            await self.legacy_ids.remember(collection, one_way)

    def _account(self, batch: _Batch) -> list[tuple[uuid.UUID, str | int]]:
        """Counts and report lines for a loaded batch; returns the stored records whose
        ``_id`` maps one way, with that ``_id`` (``strangler.legacy_ids`` keeps it)."""
        counts = self.result.counts[batch.collection]
        counts.read += batch.prepared.read
        counts.quarantined += len(batch.quarantined)
        counts.vanished += len(batch.vanished)
        counts.written += len(batch.rows) - len(batch.vanished)
        one_way: list[tuple[uuid.UUID, str | int]] = []
        if not batch.prepared.notes:
            return one_way
        stored = {p: batch.rows.id_text(i) for i, p in enumerate(batch.positions)}
        for position, note in sorted(batch.prepared.notes.items()):
            if position in batch.vanished:
                continue  # gone from the source: nothing to store, nothing to report
            quarantined = position in batch.quarantined
            counts.repaired += not quarantined
            self.report.write(
                collection=batch.collection,
                target_id=None if quarantined else stored[position],
                action="quarantined" if quarantined else "repaired",
                reasons=note.reasons,
                described=(note.source_id, note.original),
            )
            legacy = note.source_id
            if not quarantined and "id_one_way" in note.reasons and ids.one_way(legacy):
                one_way.append((uuid.UUID(stored[position]), legacy))
        return one_way

    async def _orphans(self, batch: _Batch) -> None:
        """Messages whose session is neither in the source nor in the target."""
        refs = batch.rows.refs or []
        unknown = set(refs).difference(self.sessions)
        if not unknown:
            return
        for sid in unknown:
            with contextlib.suppress(NotFound):
                await self.target.get_session(uuid.UUID(bytes=sid))
                self.sessions.add(sid)  # created in the new store (by the facade)
        adopted = RowWriter("chat_sessions")
        rows = batch.rows

        def keep(i: int, position: int) -> bool:
            if refs[i] in self.sessions:
                return True
            if self.orphans == "quarantine":
                batch.note(position, "orphan_session", quarantine=True)
                return False
            sid = str(uuid.UUID(bytes=refs[i]))
            adopted.session(sid, "(recovered session)", rows.timestamp(i), "")
            self.sessions.add(refs[i])
            batch.note(position, "orphan_adopted", quarantine=False)
            return True

        batch.keep(keep)
        if adopted and not self.dry_run:
            await self.target.insert_rows("chat_sessions", adopted.done())

    async def _messages_without_session(self, batch: _Batch) -> None:
        """Store the messages whose session still exists. The others had a session when
        the chunk was read (orphans are caught before), so it was deleted meanwhile: they
        vanished with it."""
        refs = batch.rows.refs or []
        for _ in range(SESSION_RACE_ATTEMPTS):
            present: set[bytes] = set()
            for sid in set(refs):
                with contextlib.suppress(NotFound):
                    await self.target.get_session(uuid.UUID(bytes=sid))
                    present.add(sid)
            keep = batch.rows.subset([i for i, r in enumerate(refs) if r in present])
            try:
                if keep:
                    await self.target.insert_rows("messages", keep)
            except NotFound:
                continue  # another of these sessions was deleted meanwhile: look again
            break
        else:
            raise StoreUnavailable(
                f"{SESSION_RACE_ATTEMPTS} attempts to load a batch of messages each met a "
                "session deleted meanwhile; run the backfill again with --resume"
            )
        batch.vanished.update(
            p for r, p in zip(refs, batch.positions, strict=True) if r not in present
        )

    async def _gone(self, batch: _Batch) -> set[bytes]:
        """Ids of rows of this chunk deleted (through the facade, or in the live source)
        since they were read."""
        if self.tombstones is None and not isinstance(self.source, MongoSource):
            return set()  # a file source without tombstones cannot know
        stored = dict(batch.stored())
        if not stored:
            return set()
        ids = batch.rows.ids
        if self.tombstones is not None:
            if self.any_tombstones is not None and not await self.any_tombstones(batch.collection):
                return set()  # nothing was deleted through the facade at all
            texts = [batch.rows.id_text(i) for i in stored]
            dead = await self.tombstones(batch.collection, texts)
            return {ids[i] for i in stored if uuid.UUID(bytes=ids[i]) in dead}
        assert isinstance(self.source, MongoSource)
        legacy = {}
        for i, position in stored.items():
            doc = batch.originals[position]
            if not isinstance(doc, BadInput):
                legacy[doc["_id"]] = ids[i]
        present = await self.source.documents.present_ids(batch.collection, list(legacy))
        return {record_id for legacy_id, record_id in legacy.items() if legacy_id not in present}

    async def _undo_deleted(self, batch: _Batch) -> None:
        """Delete again what was deleted while we copied it, and mark it vanished."""
        gone = await self._gone(batch)
        if not gone:
            return
        for i, position in enumerate(batch.positions):
            if batch.rows.ids[i] not in gone:
                continue
            batch.vanished.add(position)
            record_id = uuid.UUID(bytes=batch.rows.ids[i])
            log.info("backfill_delete_replayed", collection=batch.collection, id=str(record_id))
            with contextlib.suppress(NotFound):
                if batch.collection == "chat_sessions":
                    await self.target.delete_session(record_id)
                else:
                    await self.target.delete_message(record_id)


def summary_table(result: BackfillResult, *, dry_run: bool) -> str:
    head = (
        f"{'collection':<14} {'read':>10} {'written':>10} {'repaired':>10} "
        f"{'quarantined':>12} {'vanished':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, c in result.counts.items():
        lines.append(
            f"{name:<14} {c.read:>10} {c.written:>10} {c.repaired:>10} {c.quarantined:>12} "
            f"{c.vanished:>9}"
        )
    lines.append("vanished: deleted from MongoDB while the backfill ran (the delete is kept)")
    if dry_run:
        lines.append("(dry run: nothing was written; 'written' counts what would be)")
    return "\n".join(lines)
