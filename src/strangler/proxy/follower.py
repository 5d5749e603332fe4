"""Change capture: a follower copies every change made to one store into the other,
whoever made it, through the same state-based mirror as journal replay.

* The **forward** follower reads MongoDB's change stream while MongoDB is authoritative
  and Supabase holds data (``dualwrite``, ``shadow``): writes by old backend instances,
  cron jobs and scripts reach Supabase too.
* One follower of each direction runs across every instance: each instance competes for a
  lease (``FollowerState.claim``); the leader renews it, and when it dies another takes
  over once the lease ends.
* The position is saved only after the changes before it are applied, so a restart or a
  takeover resumes with nothing lost; applying a change twice is harmless, because the
  mirror copies state, not operations.
* A change the facade did not make is a **bypass write**: counted, logged with its id
  (``bypass_write_detected``) and recorded, so operators can find the writers that still go
  around the facade. A change is the facade's when, ``settle`` seconds after it was seen,
  the other store already holds the same state, or the facade journaled it.
* A document the backfill would quarantine (an id that cannot be mapped both ways, a
  record that cannot be read or stored) is reported (``stream_quarantined``) and the
  stream goes on: it never blocks and never vanishes.
* A feed that can no longer resume (``PositionLost``) makes the follower ``stale``: it
  stops and says what to do. It is never skipped ahead silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from strangler.core import origin
from strangler.core.errors import (
    CorruptRecord,
    DivergenceError,
    InvalidInput,
    PositionLost,
    StoreUnavailable,
    StranglerError,
)
from strangler.core.ports import (
    BulkDeleter,
    BulkReader,
    ChangeFeed,
    ChatStore,
    DivergenceLog,
    FollowerState,
    Tombstones,
    WriteJournal,
)
from strangler.core.records import Change, ChangeBatch, FeedPosition, FollowerRecord, Table
from strangler.core.stages import Role, Stage
from strangler.proxy.compare import diff_records
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.mirror import mirror

log = structlog.get_logger(__name__)

LocalState = Literal["leading", "standby", "stale", "idle"]
Outcome = Literal["same", "applied", "bypass", "reported", "skipped"]

#: The origin the facade's own writes carry where the store records one (the change log).
FACADE_ORIGIN = origin.FACADE

#: How often an idle follower lets its feed drop what is not its own (seconds).
PRUNE_IDLE_EVERY = 10.0

#: The reader's rest after a small batch (seconds; at most a quarter of the settle delay),
#: and what counts as small.
READ_REST = 0.1
SMALL_BATCH = 100

#: How long a follower keeps applying, once the stage left its stages, what was made before
#: the move (seconds); the rest waits for its next turn, from the saved position.
DRAIN_SECONDS = 10.0
#: The longest wait between a follower's retries while a store fails: short, so a store
#: that answers again (after a hang or a restart) is followed within a second, and cheap,
#: since each retry is bounded by the store's timeout.
RETRY_MAX = 1.0

#: Up to this many bypass writes in a batch get a log line each; more share one line.
LOG_EACH = 20
#: Up to this many bypass writes in a batch get a row each in the divergence log; the rest
#: of a flood (a script, a backlog) share one row that lists their ids.
RECORD_EACH = 50

#: What to do about a stale follower, in every message that reports one.
STALE_HELP = (
    "changes may have been missed: run 'strangler follow reset {name}' to follow from now, "
    "then 'strangler verify' and 'strangler repair' to copy what was missed before"
)


@dataclass(frozen=True)
class Direction:
    """Which store a follower reads, which it writes, and in which stages it runs:
    ``stages`` always; ``once_started`` only once it has a position (someone started it,
    e.g. ``strangler backfill --follow`` at ``off``)."""

    name: str
    source: Role
    target: Role
    stages: frozenset[Stage]
    once_started: frozenset[Stage] = frozenset()


FORWARD = Direction(
    "forward",
    "old",
    "new",
    frozenset({Stage.DUALWRITE, Stage.SHADOW}),
    once_started=frozenset({Stage.OFF}),
)
REVERSE = Direction(
    "reverse", "new", "old", frozenset({Stage.LIVE, Stage.RAMPDOWN, Stage.COMPLETE})
)
DIRECTIONS = (FORWARD, REVERSE)


@dataclass
class Counts:
    applied: int = 0
    bypass: int = 0
    reported: int = 0


@dataclass
class FollowerStatus:
    """What this instance knows of the follower, for ``/admin/status`` and the dashboard."""

    name: str
    state: LocalState = "idle"
    lag_seconds: float = 0.0
    #: Changes not yet applied (``ChangeFeed.backlog``, or those read ahead: a lower bound).
    lag_changes: int = 0
    lag_changes_exact: bool = True
    applied: int = 0
    bypass: int = 0
    reported: int = 0
    last_error: str | None = None
    #: (when, how many) of the last batches applied, for the rate over the last 10 s.
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    def applied_per_s(self, window: float = 10.0) -> float:
        since = time.monotonic() - window
        return sum(n for t, n in self.recent if t >= since) / window

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "leader": self.state == "leading",
            "lag_seconds": round(self.lag_seconds, 3),
            "lag_changes": self.lag_changes,
            "lag_changes_exact": self.lag_changes_exact,
            "applied": self.applied,
            "applied_per_s": round(self.applied_per_s(), 1),
            "bypass": self.bypass,
            "reported": self.reported,
            "last_error": self.last_error,
        }


class Follower:
    """Runs one direction's follower on this instance (leading or standing by)."""

    def __init__(
        self,
        direction: Direction,
        feed: ChangeFeed,
        state: FollowerState,
        stores: dict[Role, ChatStore],
        stage: Callable[[], Stage],
        metrics: FacadeMetrics,
        *,
        instance: str,
        readers: dict[Role, BulkReader],
        deleters: dict[Role, BulkDeleter] | None = None,
        journal: WriteJournal | None = None,
        tombstones: Tombstones | None = None,
        reports: DivergenceLog | None = None,
        lease_seconds: float = 6.0,
        settle: float = 0.5,
        settle_max: float | None = None,
        poll: float = 0.5,
        concurrency: int = 16,
        save_every: float = 5.0,
        always: bool = False,
        stage_since: Callable[[], dt.datetime | None] | None = None,
    ) -> None:
        self.direction = direction
        #: When the current stage began (the control table's record), if known: a follower
        #: that finds its stages left applies only what was made before then.
        self._stage_since = stage_since or (lambda: None)
        self._feed = feed
        self._state = state
        self._stores = stores
        self._stage = stage
        self._metrics = metrics
        self.instance = instance
        self._journal = journal
        #: Both stores as ``BulkReader``s: a batch is read in one query per store.
        self._readers = readers
        #: The stores that delete many records in one go: a batch's deletes in one call.
        self._deleters = deleters or {}
        self._tombstones = tombstones
        self._reports = reports
        self._lease = lease_seconds
        self._settle = settle
        #: The settle delay stretches to the facade's slowest recent second write, up to
        #: this (its secondary timeout and a margin for the journal write).
        self._settle_max = settle if settle_max is None else max(settle, settle_max)
        self._poll = poll
        self._concurrency = concurrency
        self._save_every = save_every
        #: Follow whatever the stage (``strangler backfill --follow``).
        self.always = always
        self.status = FollowerStatus(direction.name)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        #: Changes read from the feed and not applied yet (the reader adds, the applier
        #: subtracts); when the lag in changes was last counted.
        self._ahead = 0
        self._counted_at = 0.0
        #: Once the stage left this follower's stages: the move's time (what was made
        #: before it is still applied) and when the drain gives up (monotonic). Kept across
        #: a failed batch, so a store that fails mid-drain does not end the drain.
        self._drain: tuple[dt.datetime, float] | None = None
        #: Whether this instance led in the follower's stages and has not drained since:
        #: a move it learns of only after a failed batch still starts a drain.
        self._led = False
        self._show("idle")

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"follower-{self.direction.name}"
            )

    async def stop(self) -> None:
        """Stop after the batch in hand (never mid-mirror) and hand the lease back."""
        self._stop.set()
        if self._task is not None:
            _, late = await asyncio.wait([self._task], timeout=30)
            for task in late:
                task.cancel()
            self._task = None
        with contextlib.suppress(StranglerError):
            await self._state.release(self.direction.name, self.instance)

    def active(self, record: FollowerRecord | None = None) -> bool:
        """Whether to follow now: in its stages, or once started, or always."""
        stage = self._stage()
        if self.always or stage in self.direction.stages:
            return True
        started = record is not None and record.position is not None
        return started and stage in self.direction.once_started

    def _show(self, state: LocalState) -> None:
        self.status.state = state
        for s in ("leading", "standby", "stale", "idle"):
            self._metrics.follower_state.labels(self.direction.name, s).set(1 if s == state else 0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # --- the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        # Every write this task makes is marked as this follower's: the change log then
        # tells the other direction's follower it is not for copying back (core.origin).
        with origin.writing_as(origin.follower(self.direction.name)):
            await self._follow()

    async def _follow(self) -> None:
        name = self.direction.name
        backoff = self._poll
        while not self._stop.is_set():
            try:
                record = await self._state.load(name)
                if self.active(record):
                    self._drain = None  # back in its stages (or never left): no cutoff
                elif self._draining():
                    pass  # a drain a failed batch interrupted: lead again to finish it
                else:
                    self._show("idle")
                    self._metrics.follower_lag.labels(name).set(0)
                    self._set_behind(0, exact=True)
                    await self._prune_idle()
                    await self._pause(self._poll)
                    continue
                if record is not None and record.state == "stale":
                    self._show("stale")
                    self.status.last_error = record.state_reason
                    await self._pause(self._poll * 4)
                    continue
                if not await self._state.claim(name, self.instance, self._lease):
                    self._drained()  # another instance leads: a drain is its to do
                    self._show("standby")
                    await self._pause(self._lease / 3)
                    continue
                self._show("leading")
                log.info("follower_leading", follower=name, instance=self.instance)
                await self._lead(record)
                backoff = self._poll
            except PositionLost as exc:
                self._drained()
                await self._stale(str(exc))
            except StranglerError as exc:
                self.status.last_error = str(exc)
                # Warned while the wait grows, then quieter: an outage is a line or two,
                # not one a second.
                (log.warning if backoff < RETRY_MAX else log.debug)(
                    "follower_retry", follower=name, error=str(exc), in_s=backoff
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    def _begin_drain(self) -> tuple[dt.datetime, float]:
        """The stage has left this follower's stages: from the move's own time, not when
        this instance noticed it (a loop held up by its source restarting, or a slow
        batch, notices late, and a change made after the move, the next stage's or a
        replayed write, is not for it). Applied until then, for ``DRAIN_SECONDS`` at most."""
        if self._drain is None:
            cutoff = dt.datetime.now(dt.UTC)
            since = self._stage_since()
            if since is not None and since < cutoff:
                cutoff = since
            self._drain = (cutoff, time.monotonic() + DRAIN_SECONDS)
            log.info("follower_draining", follower=self.direction.name, before=cutoff.isoformat())
        return self._drain

    def _drained(self) -> None:
        self._drain = None
        self._led = False

    def _draining(self) -> bool:
        """Whether this instance has a drain to finish: one it began that a failed batch
        interrupted, or one a failed batch kept it from beginning (it led when the stage
        moved). False once the drain is past its time, said in a warning."""
        if self._drain is None and not self._led:
            return False
        _, until = self._begin_drain()
        if time.monotonic() <= until:
            return True
        self._drained()
        log.warning(
            "follower_drain_cut",
            follower=self.direction.name,
            what="changes made before the stage moved wait for this follower's next turn",
            what_to_do="strangler verify shows the records they concern",
        )
        return False

    async def _prune_idle(self) -> None:
        """Now and then while idle, let the feed drop what will never be this follower's
        (the change log's rows from stages it does not serve)."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_IDLE_EVERY
        pruned = await self._feed.prune_idle()
        if pruned:
            log.debug("follower_idle_pruned", follower=self.direction.name, changes=pruned)

    async def _stale(self, reason: str) -> None:
        name = self.direction.name
        help_ = STALE_HELP.format(name=name)
        self._show("stale")
        self.status.last_error = reason
        log.error("follower_stale", follower=name, error=reason, what_to_do=help_)
        with contextlib.suppress(StranglerError):
            await self._state.mark(name, "stale", f"{reason}; {help_}")
        with contextlib.suppress(StranglerError):
            await self._state.release(name, self.instance)

    async def _lead(self, record: FollowerRecord | None) -> None:
        name = self.direction.name
        position = None if record is None else record.position
        if position is None:  # never followed: from now (verify covers what came before)
            position = await self._feed.position_now()
            if not await self._state.advance(name, self.instance, position, None):
                return
        lost = asyncio.Event()
        done = asyncio.Event()  # tells the reader to stop (it is never cancelled mid-read)
        queue: asyncio.Queue[tuple[float, ChangeBatch] | BaseException] = asyncio.Queue(4)
        loop = asyncio.get_running_loop()
        renewer = loop.create_task(self._renew(lost))
        reader = loop.create_task(self._read(position, queue, done))
        saved_at = time.monotonic()
        #: When the stage left this follower's stages, as this instance saw it: the changes
        #: made before then are still applied (they were made while the source was
        #: authoritative), then the follower goes idle.
        if self.active(record):
            self._led = True
        cutoff, drain_until = self._drain or (None, 0.0)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                seen_at, batch = item
                if self._stop.is_set() or lost.is_set():
                    # (A lease lost to a store that stopped answering: this instance still
                    # drains after a move, once it can claim the lease again.)
                    return
                if cutoff is None and not self.active(record):
                    cutoff, drain_until = self._begin_drain()
                if cutoff is not None:
                    made_before = [c for c in batch.changes if c.at is None or c.at <= cutoff]
                    if (
                        not batch.changes
                        or len(made_before) < len(batch.changes)
                        or time.monotonic() > drain_until
                    ):
                        # Caught up to the move: what comes later is the next stage's. A
                        # partly later batch is applied in part and its position not saved,
                        # so a return to this follower's stages applies it again (harmless).
                        if made_before:
                            await self._apply(made_before)
                        if made_before == batch.changes and batch.changes:
                            self._draining()  # past its time, with more to apply: says so
                        else:
                            log.info("follower_drained", follower=name)
                        self._drained()
                        return
                counts = Counts()
                await self._count_behind()
                if batch.changes:
                    self._lag(batch.changes)
                    # Settle from when the batch was read, or from when its newest change
                    # was made if that is earlier (a backlog waits for nothing): the next
                    # batches are read meanwhile, so the delay adds to the lag once.
                    await self._pause(self.settle_now() - _age(batch.changes, seen_at))
                    counts = await self._apply(batch.changes)
                elif time.monotonic() - saved_at < self._save_every:
                    self._metrics.follower_lag.labels(name).set(0)
                    continue  # idle: save the position now and then, not every poll
                if not await self._state.advance(
                    name,
                    self.instance,
                    batch.position,
                    batch.at,
                    applied=counts.applied,
                    bypass=counts.bypass,
                    reported=counts.reported,
                    # Caught up when nothing more was read: the stage gates read this.
                    lag_seconds=0.0 if queue.empty() else self.status.lag_seconds,
                ):
                    log.warning("follower_lease_lost", follower=name, instance=self.instance)
                    return
                await self._feed.applied(batch.position)
                self._ahead -= len(batch.changes)
                saved_at = time.monotonic()
                if queue.empty():
                    self._metrics.follower_lag.labels(name).set(0)
                    self.status.lag_seconds = 0.0
        finally:
            done.set()
            while not reader.done():  # let it finish its read (at most the feed's wait)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0.01)
            renewer.cancel()
            await asyncio.gather(renewer, reader, return_exceptions=True)

    async def _read(
        self,
        position: FeedPosition,
        queue: asyncio.Queue[tuple[float, ChangeBatch] | BaseException],
        done: asyncio.Event,
    ) -> None:
        """Read batches ahead of the applier (at most the queue's size), with when each
        was read; an error goes to the applier, which raises it."""
        self._ahead = 0
        self._counted_at = 0.0  # count at the first batch
        # Under a trickle each read returns a change or two, and asking a store for
        # changes costs it (SecantusDB serves them from the cores that serve the writes).
        # A small batch is followed by a short rest, so the next read takes what came
        # meanwhile; the changes wait out the settle delay anyway, so it adds no lag.
        rest = min(READ_REST, self._settle / 4)
        try:
            async for batch in self._feed.batches(position):
                self._ahead += len(batch.changes)
                if not await _hand(queue, (time.monotonic(), batch), done):
                    return
                if rest and len(batch.changes) < SMALL_BATCH:
                    await asyncio.sleep(rest)
        except Exception as exc:  # handed over: the applier raises it in its own task
            await _hand(queue, exc, done)

    async def _renew(self, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                held = await self._state.claim(self.direction.name, self.instance, self._lease)
            except StranglerError:
                held = False  # cannot tell: stop writing positions until it can
            if not held:
                lost.set()
                return

    async def _count_behind(self) -> None:
        """The lag in changes, at most once a second: the feed's own count where it has
        one, else what was read ahead of the applier (a lower bound)."""
        if time.monotonic() - self._counted_at < 1.0:
            return
        self._counted_at = time.monotonic()
        try:
            counted = await self._feed.backlog()
        except StranglerError:
            counted = None
        if counted is None:
            self._set_behind(self._ahead, exact=False)
        else:
            self._set_behind(counted, exact=True)

    def _set_behind(self, n: int, *, exact: bool) -> None:
        self.status.lag_changes = n
        self.status.lag_changes_exact = exact
        self._metrics.follower_lag_changes.labels(self.direction.name).set(n)

    def settle_now(self) -> float:
        """How long to wait after a change before deciding whether the facade made it:
        the configured delay, stretched to how far this instance's facade's second
        writes trailed their first in the last minute (from sending the first to the
        second landing, or being journaled; the slowest), plus a fifth and 0.1 s, at most
        ``settle_max``. Under load the facade's second writes trail further behind, and one
        that lands after the decision would be taken for a bypass write (a false
        positive)."""
        slowest = self._metrics.slowest_secondary(60.0)
        if slowest is None:
            return self._settle
        return min(self._settle_max, max(self._settle, slowest * 1.2 + 0.1))

    def _lag(self, changes: list[Change]) -> None:
        oldest = min((c.at for c in changes if c.at is not None), default=None)
        if oldest is not None:
            lag = max(0.0, (dt.datetime.now(dt.UTC) - oldest).total_seconds())
            self.status.lag_seconds = lag
            self._metrics.follower_lag.labels(self.direction.name).set(lag)

    # --- applying changes -------------------------------------------------------------------
    async def _apply(self, changes: list[Change]) -> Counts:
        """Apply a batch: each record once (the mirror copies its latest state), after the
        settle delay (the caller's); sessions before messages. ``StoreUnavailable``
        propagates: the batch is retried from the saved position."""
        unique: dict[tuple[str, Any], Change] = {}
        for change in changes:  # the last change of a record carries its latest state
            key = (change.table, change.record_id or repr(change.legacy_id))
            unique.pop(key, None)
            unique[key] = change
        counts = Counts()
        # Sessions first: a message's mirror would otherwise bring its session over and
        # hide that the session, too, was written around the facade.
        for table in ("chat_sessions", "messages"):
            work = [c for c in unique.values() if c.table == table]
            if not work:
                continue
            for outcome in await self._batch(table, work):
                if outcome in ("applied", "bypass"):
                    counts.applied += 1
                if outcome == "bypass":
                    counts.bypass += 1
                if outcome == "reported":
                    counts.reported += 1
        name = self.direction.name
        self._metrics.follower_applied.labels(name).inc(counts.applied)
        self.status.applied += counts.applied
        self.status.recent.append((time.monotonic(), counts.applied))
        self.status.bypass += counts.bypass
        self.status.reported += counts.reported
        return counts

    async def _each(
        self, items: list[Any], one: Callable[[Any], Awaitable[Outcome]]
    ) -> list[Outcome]:
        """``one`` over ``items``, ``concurrency`` at a time; every started call runs to its
        end before the first error (a store outage) is raised."""
        out: list[Outcome] = []
        for start in range(0, len(items), self._concurrency):
            outcomes = await asyncio.gather(
                *(one(i) for i in items[start : start + self._concurrency]),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                out.append(outcome)
        return out

    async def _batch(self, table: Table, work: list[Change]) -> list[Outcome]:
        """The batched path, a few queries per batch whatever its size:

        1. the target is read in one query;
        2. where the feed knows the change's state (an insert, a replace) and the target
           does not hold the record at all, that state is inserted as it is, without
           overwriting (nothing newer can be lost: a later change of the record comes
           later in the stream, and a delete the facade made is tombstoned, so skipped);
        3. every other record that differs is read from the source in one query and
           copied as it is now;
        4. the journal and the tombstones are asked once; what is left is a bypass
           write, recorded in one statement;
        5. the records are written in one upsert and the source read again, to catch a
           change that raced the copy. Anything the upsert refuses goes one by one.
        """
        d = self.direction
        outcomes: list[Outcome] = []
        mapped: list[Change] = []
        # The facade's own changes are copied too, never skipped by their origin: an
        # instance that has not yet seen a move from complete to rampdown writes Supabase
        # alone, while the log already records the change under rampdown.
        for change in work:
            if origin.is_followers(change.origin):
                # The other direction's follower copied it here from this follower's
                # target, which holds that state or a newer one: copying it back could
                # only overwrite the newer one (core.origin).
                outcomes.append("same")
            elif change.record_id is None:
                await self._report(change, ["id_one_way"], "its _id maps to a UUID one way only")
                outcomes.append("reported")
            elif isinstance(change.state, CorruptRecord):
                await self._report(
                    change, change.state.reasons or [change.state.code], str(change.state)
                )
                outcomes.append("reported")
            else:
                mapped.append(change)
        if not mapped:
            return outcomes
        record_ids = [c.record_id for c in mapped if c.record_id is not None]
        theirs = await self._readers[d.target].read_many(table, record_ids)
        fresh: list[tuple[Change, Any]] = []  # known state, absent there: insert as is
        unknown: list[Change] = []
        for change in mapped:
            assert change.record_id is not None
            there = theirs.get(change.record_id)
            if change.state is not ... and change.state is not None and there is None:
                fresh.append((change, change.state))
            elif (
                change.state is not ...
                and not isinstance(there, CorruptRecord)
                and not (diff_records(change.state, there))
            ):
                outcomes.append("same")
            else:
                unknown.append(change)
        differing: list[tuple[Change, Any]] = []
        if unknown:
            ids_ = [c.record_id for c in unknown if c.record_id is not None]
            ours = await self._readers[d.source].read_many(table, ids_)
            for change in unknown:
                assert change.record_id is not None
                state = ours.get(change.record_id)
                if isinstance(state, CorruptRecord):
                    await self._report(change, state.reasons or [state.code], str(state))
                    outcomes.append("reported")
                    continue
                there = theirs.get(change.record_id)
                if not isinstance(there, CorruptRecord) and not diff_records(state, there):
                    outcomes.append("same")
                    continue
                differing.append((change, state))
        candidates = fresh + differing
        if not candidates:
            return outcomes
        ids_ = [c.record_id for c, _ in candidates if c.record_id is not None]
        journaled: set[uuid.UUID] = set()
        if self._journal is not None:  # by the journal's record_id index
            journaled = await self._journal.pending_ids(d.target, table, ids_)
        dead: set[uuid.UUID] = set()
        graves = self._tombstones if d.target == "new" else None
        if fresh and graves is not None and await graves.any_tombstones(table):
            dead = await graves.tombstoned(
                table, [c.record_id for c, _ in fresh if c.record_id is not None]
            )
        fresh = [(c, st) for c, st in fresh if c.record_id not in dead]
        outcomes += ["same"] * len(dead)  # the facade deleted it since: its delete comes later
        # A record the journal holds for the target is the replayer's to land (it copies
        # the state it finds then, this one or later): copying it here too doubles the
        # work just when a store comes back from an outage with a long journal, and a
        # message may not land before its session's entry has. Not where the stage does
        # not write the target: its entries are parked there, for a rollback.
        replayed = journaled if self._stage().writes_to(d.target) else set()
        held = [c for c, _ in fresh + differing if c.record_id in replayed]
        fresh = [(c, st) for c, st in fresh if c.record_id not in replayed]
        differing = [(c, st) for c, st in differing if c.record_id not in replayed]
        outcomes += ["same"] * len(held)
        candidates = fresh + differing
        bypassed = {
            c.record_id
            for c, _ in candidates
            if c.record_id not in journaled and c.origin != FACADE_ORIGIN
        }
        await self._bypass_many([c for c, _ in candidates if c.record_id in bypassed])
        gone = [c for c, state in differing if state is None]
        if gone and d.target == "new" and self._tombstones is not None:
            await self._tombstones.tombstone(table, [c.record_id for c in gone if c.record_id])
        one_by_one: list[tuple[Change, Any]] = []
        target = self._stores[d.target]
        deleter = self._deleters.get(d.target)
        if gone and deleter is not None:
            # Deletes in one go, then the source read again: one brought back meanwhile
            # is copied on its own.
            ids_ = [c.record_id for c in gone if c.record_id is not None]
            try:
                await deleter.delete_many(table, ids_)
                back = set(await self._readers[d.source].read_many(table, ids_))
            except StoreUnavailable:
                raise
            except StranglerError:  # not expected of a delete by id: one by one, reported
                back = set(ids_)
            for change in gone:
                if change.record_id in back:
                    one_by_one.append((change, ...))
                else:
                    outcomes.append("bypass" if change.record_id in bypassed else "applied")
        else:
            one_by_one += [(c, None) for c in gone]
        for group, overwrite in (
            ([x for x in differing if x[1] is not None], True),
            (fresh, False),
        ):
            if not group:
                continue
            try:
                if table == "chat_sessions":
                    await target.upsert_sessions([st for _, st in group], overwrite=overwrite)
                else:
                    await target.upsert_messages([st for _, st in group], overwrite=overwrite)
            except StoreUnavailable:
                raise
            except StranglerError:
                one_by_one += group  # a session missing there, a value refused: one by one
                continue
            if overwrite:  # read the source again: a change may have raced the copy
                written = [c.record_id for c, _ in group if c.record_id is not None]
                again = await self._readers[d.source].read_many(table, written)
                for change, state in group:
                    assert change.record_id is not None
                    if again.get(change.record_id) != state:
                        one_by_one.append((change, ...))  # changed meanwhile: copy again
                        continue
                    outcomes.append("bypass" if change.record_id in bypassed else "applied")
            else:
                for change, _ in group:
                    outcomes.append("bypass" if change.record_id in bypassed else "applied")

        async def copy(item: tuple[Change, Any]) -> Outcome:
            change, known = item
            outcome = await self._copy(change, known)
            if outcome == "applied" and change.record_id in bypassed:
                return "bypass"
            return outcome

        outcomes += await self._each(one_by_one, copy)
        return outcomes

    async def _bypass_many(self, changes: list[Change]) -> None:
        """Count, log and record bypass writes; recorded in one statement."""
        if not changes:
            return
        store = self._stores[self.direction.source].name
        for change in changes:
            self._metrics.bypass_writes.labels(store, change.table).inc()
        if len(changes) <= LOG_EACH:
            for change in changes:
                log.warning(
                    "bypass_write_detected",
                    follower=self.direction.name,
                    table=change.table,
                    id=str(change.record_id),
                    store=store,
                    op=change.op,
                )
        else:  # a flood (a script, a backlog): one line with every id, not one line each
            log.warning(
                "bypass_write_detected",
                follower=self.direction.name,
                table=changes[0].table,
                count=len(changes),
                ids=[str(c.record_id) for c in changes],
                store=store,
            )
        if self._reports is None:
            return
        rows: list[tuple[str, str, str, Any]] = [
            (
                c.table,
                str(c.record_id),
                "bypass_write",
                {"store": store, "op": c.op, "at": _iso(c.at)},
            )
            for c in changes[:RECORD_EACH]
        ]
        if len(changes) > RECORD_EACH:  # a flood: the rest in one row (and in the log line)
            rest = changes[RECORD_EACH:]
            rows.append(
                (
                    rest[0].table,
                    f"{len(rest)} more",
                    "bypass_write",
                    {
                        "store": store,
                        "op": "several",
                        "count": len(rest),
                        "ids": [str(c.record_id) for c in rest],
                        "at": _iso(rest[-1].at),
                    },
                )
            )
        try:
            await self._reports.record_many(stage=self._stage(), rows=rows)
        except StranglerError as exc:
            log.warning("bypass_write_not_persisted", error=str(exc), count=len(rows))

    async def _copy(self, change: Change, known: Any) -> Outcome:
        """Mirror one record (``known``: its source state, or ``...`` to read it); what
        cannot be copied is reported, and only a store outage is raised."""
        d = self.direction
        assert change.record_id is not None
        graves = self._tombstones if d.target == "new" else None
        if (
            known is not None  # a delete to copy goes ahead: it only agrees with the grave
            and graves is not None
            and await graves.tombstoned(change.table, [change.record_id])
        ):
            # Deleted in Supabase (by the facade, or a delete copied before): MongoDB may
            # not have the delete yet, and copying its state would bring the record back.
            return "same"
        try:
            await mirror(
                self._stores[d.source],
                self._stores[d.target],
                change.table,
                change.record_id,
                known=known,
            )
        except StoreUnavailable:
            raise
        except DivergenceError:
            return "skipped"  # it keeps changing: its next change brings it over
        except (CorruptRecord, InvalidInput) as exc:
            reasons = getattr(exc, "reasons", None) or [exc.code]
            await self._report(change, reasons, str(exc))
            return "reported"
        except StranglerError as exc:
            await self._report(change, [exc.code], str(exc))
            return "reported"
        return "applied"

    async def _report(self, change: Change, reasons: list[str], detail: str) -> None:
        self._metrics.follower_reported.labels(self.direction.name).inc()
        log.bind(follower=self.direction.name, table=change.table).warning(
            "stream_quarantined",
            id=str(change.record_id or change.legacy_id),
            reasons=reasons,
            detail=detail,
        )
        if self._reports is not None:
            diff = {
                "reasons": reasons,
                "detail": detail,
                "op": change.op,
                "legacy_id": repr(change.legacy_id),
                "original": change.document,
            }
            try:
                await self._reports.record_divergence(
                    stage=self._stage(),
                    table=change.table,
                    record_id=str(change.record_id or change.legacy_id),
                    kind="stream_quarantined",
                    diff=diff,
                )
            except StranglerError as exc:
                log.warning("stream_report_not_persisted", error=str(exc))


def _age(changes: list[Change], seen_at: float) -> float:
    """Seconds since the newest of ``changes`` was made (by its store's clock), or since
    the batch was read, whichever is more."""
    read = time.monotonic() - seen_at
    newest = max((c.at for c in changes if c.at is not None), default=None)
    if newest is None:
        return read
    return max(read, (dt.datetime.now(dt.UTC) - newest).total_seconds())


async def _hand(queue: asyncio.Queue[Any], item: Any, done: asyncio.Event) -> bool:
    """Put ``item`` in ``queue`` once there is room; False if ``done`` was set first."""
    while not done.is_set():
        try:
            queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            await asyncio.sleep(0.005)
    return False


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat()
