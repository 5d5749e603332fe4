"""Replays the write journals until every pending secondary write has landed.

One tracked background task per facade. It wakes every ``interval`` seconds, or at once
when a write was journaled, takes the due entries for the stores the current stage writes
to (entries for a store the stage does not use wait, parked, for the rollback that needs
them), mirrors each record from the other store, and backs off exponentially on failure.

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
from collections.abc import Callable
from typing import Any

import structlog

from strangler.core.errors import CorruptRecord, StranglerError
from strangler.core.ports import ChatStore, WriteJournal
from strangler.core.records import PendingWrite
from strangler.core.stages import Role, Stage, other
from strangler.proxy.breaker import Breaker
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.mirror import mirror

log = structlog.get_logger(__name__)


#: Records mirrored at once by one replay batch.
CONCURRENCY = 16


class Replayer:
    def __init__(
        self,
        stores: dict[Role, ChatStore],
        journals: dict[Role, WriteJournal],
        stage: Callable[[], Stage],
        metrics: FacadeMetrics,
        *,
        interval: float = 0.5,
        batch: int = 200,
        max_backoff: float = 30.0,
        breakers: dict[Role, Breaker] | None = None,
    ) -> None:
        self._stores = stores
        self._breakers = breakers or {}
        self._journals = journals
        self._stage = stage
        self._metrics = metrics
        self._interval = interval
        self._batch = batch
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

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
            # A full batch means more are due: keep going (a rollback from complete may
            # have thousands of parked writes to replay) until a batch comes back short.
            while await self.run_once() >= self._batch and not self._stopping:
                pass

    async def run_once(self) -> int:
        """One pass over both journals; returns how many entries landed."""
        stage = self._stage()
        roles: tuple[Role, Role] = ("old", "new")
        targets = [r for r in roles if stage.writes_to(r) and self._closed(r)]
        landed = 0
        for role, journal in self._journals.items():
            if stage.old_retired and role == "old":
                continue  # MongoDB's own journal: MongoDB need not even be reachable
            try:
                if stage.old_retired:
                    dropped = await journal.discard("old")
                    if dropped:
                        log.warning("mongo_journal_dropped", journal=journal.name, count=dropped)
                if targets:
                    landed += await self._drain(journal, targets)
                for target in roles:
                    self._metrics.queue_depth.labels(target).set(await journal.depth(target))
            except StranglerError as exc:
                log.debug("journal_unavailable", journal=role, error=str(exc))
        return landed

    def _closed(self, role: Role) -> bool:
        breaker = self._breakers.get(role)
        return breaker is None or breaker.state == "closed"

    async def _drain(self, journal: WriteJournal, targets: list[Role]) -> int:
        """One batch: each record is mirrored once however many entries name it (mirroring
        copies its current state), up to ``CONCURRENCY`` records at a time. Every mirror
        runs to completion; none is cancelled."""
        entries = await journal.due(targets, self._batch)
        groups: dict[tuple[Role, str, Any], list[PendingWrite]] = {}
        for entry in entries:
            groups.setdefault((entry.target, entry.table, entry.record_id), []).append(entry)
        done: list[PendingWrite] = []
        dead: list[PendingWrite] = []
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
                    breaker = self._breakers.get(entry.target)
                    if breaker is not None:
                        breaker.failure(f"{type(exc).__name__}: {exc}")
                    self._metrics.repairs.labels("retry").inc(len(group))
                    for e in group:
                        delay = min(self._max_backoff, 0.5 * 2 ** min(e.attempts, 10))
                        await journal.retry_later(e, f"{type(exc).__name__}: {exc}", delay)
                    return
            done.extend(group)
            breaker = self._breakers.get(entry.target)
            if breaker is not None:
                breaker.success()
            self._metrics.repairs.labels("landed").inc(len(group))
            now = dt.datetime.now(dt.UTC)
            for e in group:
                self._metrics.observe_lag((now - e.created_at).total_seconds())

        await asyncio.gather(*(land(g) for g in groups.values()))
        await journal.done(done + dead)
        if done:
            log.info("secondary_writes_replayed", journal=journal.name, count=len(done))
        return len(done)
