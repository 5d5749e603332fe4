"""Replays the write journals until every pending secondary write has landed.

One tracked background task per facade. It wakes every ``interval`` seconds, or at once
when a write was journaled, takes the due entries for the stores the current stage writes
to (entries for a store the stage does not use wait, parked, for the rollback that needs
them), mirrors the records from the other store (in bulk where the store reads in bulk),
and backs off exponentially on failure.

A store whose circuit breaker is open (``breaker.py``) is left alone: its entries wait,
untried, until the breaker closes and makes them due at once. The replayer's own failures
and successes count toward the breaker too.

At ``decommissioned`` MongoDB is out of the migration: the replayer reads only Supabase's
journal, and drops what is left in it for MongoDB (the move there was confirmed knowing it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable

import structlog

from strangler.core.errors import CorruptRecord, StranglerError
from strangler.core.ports import BulkDeleter, BulkReader, ChatStore, WriteJournal
from strangler.core.records import PendingWrite, Table
from strangler.core.stages import Role, Stage, other
from strangler.proxy.breaker import Breaker
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.mirror import mirror, mirror_many

log = structlog.get_logger(__name__)


#: Records mirrored at once by one replay batch.
CONCURRENCY = 16
#: Entries a replay batch asks for. A 30 s hang under 80 requests/s leaves about 1,500;
#: SecantusDB reads every due entry for each ``due`` (its index lookups fetch all matches
#: before the limit), so small batches paid for the rest of the journal again each time:
#: 1,500 entries drained 1.1x as fast in one batch as in three of 500 (``bench/replay.py
#: --batch 500 --batch 2000``, with 60 requests/s through the facade).
BATCH = 2000
#: Seconds between counts of a journal's depth for the metric.
DEPTH_EVERY = 1.0
#: ... while a drain is under way (its batches come back full): a count scans MongoDB's
#: journal on SecantusDB, and once a second it took a third of a drain's time.
DEPTH_EVERY_DRAINING = 10.0


class Replayer:
    def __init__(
        self,
        stores: dict[Role, ChatStore],
        journals: dict[Role, WriteJournal],
        stage: Callable[[], Stage],
        metrics: FacadeMetrics,
        *,
        interval: float = 0.5,
        batch: int = BATCH,
        max_backoff: float = 30.0,
        breakers: dict[Role, Breaker] | None = None,
        readers: dict[Role, BulkReader] | None = None,
        deleters: dict[Role, BulkDeleter] | None = None,
    ) -> None:
        self._stores = stores
        #: The stores that delete many records in one go (``mirror_many``'s targets).
        self._deleters = deleters or {}
        #: The stores that read many records in one query (``mirror_many``'s sources).
        self._readers = readers or {}
        self._counted: dict[Role, float] = {}
        #: (journal, target) -> entries, as last counted.
        self._depths: dict[tuple[Role, Role], int] = {}
        self._breakers = breakers or {}
        self._journals = journals
        self._stage = stage
        self._metrics = metrics
        self._interval = interval
        self.batch = batch
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The journals whose last batch came back full (a drain under way).
        self._draining: set[Role] = set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="replayer")

    async def stop(self, wait: float = 10.0) -> None:
        """Finish the pass in progress, then stop (cancelling only as a last resort, since
        cancelling a store call mid-flight can upset its driver)."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=wait)
        if not done:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._stopping = False

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self._stopping:
                return
            await self.drain()

    async def drain(self) -> int:
        """Land what is due, as the background task does when woken; returns how many
        landed. A full batch means more are due: it keeps going (a rollback from complete
        may have thousands of parked writes to replay) until a batch comes back short.
        (Forgetting a batch while the next was copied measured no faster: 936-1,179
        entries/s from MongoDB's journal against 1,105-1,425 one after the other.)"""
        landed = 0
        while not self._stopping:
            n = await self.run_once()
            landed += n
            if n < self.batch:
                break
        return landed

    async def run_once(self) -> int:
        """One pass over both journals; returns how many entries landed."""
        stage = self._stage()
        roles: tuple[Role, Role] = ("old", "new")
        targets = [r for r in roles if stage.writes_to(r) and self._closed(r)]
        landed = 0
        for role, journal in self._journals.items():
            if stage.old_retired and role == "old":
                self._depths = {k: n for k, n in self._depths.items() if k[0] != role}
                continue  # MongoDB's own journal: MongoDB need not even be reachable
            try:
                if stage.old_retired:
                    dropped = await journal.discard("old")
                    if dropped:
                        log.warning("mongo_journal_dropped", journal=journal.name, count=dropped)
                if targets:
                    n = await self._drain(journal, targets)
                    landed += n
                    if n >= self.batch:
                        self._draining.add(role)
                    else:
                        self._draining.discard(role)
                # Counting is not free (a scan of MongoDB's journal): once a second at most,
                # not after every batch of a drain.
                now = time.monotonic()
                every = DEPTH_EVERY_DRAINING if role in self._draining else DEPTH_EVERY
                if now - self._counted.get(role, 0.0) >= every:
                    self._counted[role] = now
                    for target, n in (await journal.depths()).items():
                        self._depths[(role, target)] = n
            except StranglerError as exc:
                log.debug("journal_unavailable", journal=role, error=str(exc))
        for target in roles:  # both journals' entries for each store
            depth = sum(n for (_, t), n in self._depths.items() if t == target)
            self._metrics.queue_depth.labels(target).set(depth)
        return landed

    def _closed(self, role: Role) -> bool:
        breaker = self._breakers.get(role)
        return breaker is None or breaker.state == "closed"

    async def _drain(self, journal: WriteJournal, targets: list[Role]) -> int:
        """One batch: each record is mirrored once however many entries name it (mirroring
        copies its current state). Where the source reads in bulk, each table's records go
        in one ``mirror_many`` (sessions first, so their messages find them); what that
        leaves, and everything elsewhere, is mirrored one by one, up to ``CONCURRENCY`` at
        a time. Every mirror runs to completion; none is cancelled."""
        started = time.monotonic()
        entries = await journal.due(targets, self.batch)
        asked = time.monotonic()
        groups: dict[tuple[Role, Table, uuid.UUID], list[PendingWrite]] = {}
        for entry in entries:
            groups.setdefault((entry.target, entry.table, entry.record_id), []).append(entry)
        done: list[PendingWrite] = []
        dead: list[PendingWrite] = []
        singles: list[list[PendingWrite]] = []
        why: Counter[str] = Counter()  # why records went one by one, for the log line
        by_table: dict[tuple[Role, Table], list[uuid.UUID]] = {}
        for target, table, record_id in sorted(groups, key=lambda k: k[1] != "chat_sessions"):
            by_table.setdefault((target, table), []).append(record_id)
        for (target, table), record_ids in by_table.items():
            mine = [groups[(target, table, i)] for i in record_ids]
            reader = self._readers.get(other(target))
            if reader is None or len(record_ids) < 2:
                singles += mine
                continue
            try:
                left = set(
                    await mirror_many(
                        reader,
                        self._stores[target],
                        table,
                        record_ids,
                        deleter=self._deleters.get(target),
                        why=why,
                    )
                )
            except StranglerError as exc:  # a store is not answering: all wait a while
                for group in mine:
                    await self._retry(journal, group, exc)
                continue
            for record_id, group in zip(record_ids, mine, strict=True):
                if record_id in left:
                    singles.append(group)
                else:
                    self._landed(group, done)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def land(group: list[PendingWrite]) -> None:
            entry = group[0]
            async with gate:
                try:
                    await mirror(
                        self._stores[other(entry.target)],
                        self._stores[entry.target],
                        entry.table,
                        entry.record_id,
                    )
                except CorruptRecord as exc:
                    # It can never land (an orphan in the source): set it aside, loudly,
                    # rather than retry forever and block the move to complete. Verify still
                    # shows it.
                    log.error(
                        "secondary_write_dead_lettered",
                        table=entry.table,
                        id=str(entry.record_id),
                        target=entry.target,
                        error=str(exc),
                    )
                    self._metrics.repairs.labels("dead_letter").inc(len(group))
                    dead.extend(group)
                    return
                except StranglerError as exc:
                    await self._retry(journal, group, exc)
                    return
            self._landed(group, done)

        bulk = time.monotonic()
        await asyncio.gather(*(land(g) for g in singles))
        landed = time.monotonic()
        await journal.done(done + dead)
        if done:
            log.info(
                "secondary_writes_replayed",
                journal=journal.name,
                count=len(done),
                # Where a batch's time goes: asking the journal, copying (records in bulk,
                # then one by one: deletes, refused batches), forgetting.
                due_s=round(asked - started, 3),
                copy_s=round(landed - asked, 3),
                bulk_s=round(bulk - asked, 3),
                one_by_one=len(singles),
                one_by_one_why={k: n for k, n in why.items() if n},
                done_s=round(time.monotonic() - landed, 3),
            )
        return len(done)

    def _landed(self, group: list[PendingWrite], done: list[PendingWrite]) -> None:
        done.extend(group)
        breaker = self._breakers.get(group[0].target)
        if breaker is not None:
            breaker.success()
        self._metrics.repairs.labels("landed").inc(len(group))
        now = dt.datetime.now(dt.UTC)
        for e in group:
            self._metrics.observe_lag((now - e.created_at).total_seconds())

    async def _retry(
        self, journal: WriteJournal, group: list[PendingWrite], exc: StranglerError
    ) -> None:
        breaker = self._breakers.get(group[0].target)
        if breaker is not None:
            breaker.failure(f"{type(exc).__name__}: {exc}")
        self._metrics.repairs.labels("retry").inc(len(group))
        for e in group:
            delay = min(self._max_backoff, 0.5 * 2 ** min(e.attempts, 10))
            await journal.retry_later(e, f"{type(exc).__name__}: {exc}", delay)
