"""Ports: the small contracts the upper layers need, each implemented in ``backends/``.

``ChatStore`` is the main one: everything the chat app, the facade, backfill and verify
need. One contract, one package per implementation (``backends/mongo``,
``backends/postgres``, ``backends/supabase_rest``), and the dual-write facade in
``strangler.proxy`` implements it too. The others are capabilities of strangler's own
control plane (journal, stage, divergences, tombstones, events, job runs) and the fast
paths only some stores have (bulk loading, a send with its event, rendered history).
Only ``strangler.runtime`` decides which class implements which port.

Promises every implementation keeps (the conformance suite in ``tests/backends`` checks them):

* Ids are UUIDs; every method that takes an id also accepts the legacy 24-hex form, and an
  id that is neither raises ``InvalidInput``.
* Writes are validated before they reach a server (``validation.py``): U+0000 in any string
  and content over ``StoreLimits.max_content_bytes`` raise ``InvalidInput`` /
  ``PayloadTooLarge``, so both stores refuse exactly the same writes.
* ``create_*`` of an existing id raises ``Conflict``; a message for a missing session raises
  ``NotFound``; get/rename/delete of a missing record raise ``NotFound``.
* An unreachable server raises ``StoreUnavailable`` within the store's configured timeout.
* ``delete_session`` removes the session's messages too.
* ``upsert_*`` is idempotent: applying the same records twice leaves the same state.
* Listing is newest first on ``(created_at, id)``; history oldest first on ``(timestamp, id)``.
  Both are keyset-paginated, stable when the sort values are equal, and never skip or
  repeat a row.
* ``scan_*`` yields chunks in ascending UUID order, the order verify merges on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

from strangler.core.errors import CorruptRecord
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message
from strangler.core.pgcopy import CopyRows
from strangler.core.records import (
    ChangeBatch,
    EventDraft,
    FeedPosition,
    FollowerRecord,
    Keyset,
    Page,
    PendingWrite,
    RenderedPage,
    Table,
)
from strangler.core.stages import Role, Stage, StageRecord


@runtime_checkable
class ChatStore(Protocol):
    """Async storage for chat sessions and messages. Each store owns its client and is an
    async context manager: enter opens the pool, exit closes it."""

    #: A short name for logs and metrics: ``mongo``, ``postgres``, ``supabase_rest``, ...
    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def ping(self) -> float:
        """Round-trip to the server: the latency in seconds, or ``StoreUnavailable``."""
        ...

    # --- sessions ---------------------------------------------------------------
    async def create_session(self, session: ChatSession) -> ChatSession:
        """Insert a new session. ``Conflict`` if its id exists."""
        ...

    async def get_session(self, session_id: IdLike) -> ChatSession:
        """The session, or ``NotFound``."""
        ...

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        """Set the title and return the updated session, or ``NotFound``."""
        ...

    async def delete_session(self, session_id: IdLike) -> None:
        """Delete the session and its messages, or ``NotFound``."""
        ...

    async def list_sessions(
        self,
        user_id: str,
        *,
        search: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        limit: int = 50,
        after: Keyset | None = None,
    ) -> Page[ChatSession]:
        """The user's sessions newest first.

        ``search`` matches a case-insensitive substring of the title; ``created_from`` is
        inclusive and ``created_to`` exclusive; ``after`` continues past a previous page's
        last row.
        """
        ...

    # --- messages ---------------------------------------------------------------
    async def add_message(self, message: Message) -> Message:
        """Insert a new message: ``NotFound`` without its session, ``Conflict`` on a known id."""
        ...

    async def get_message(self, message_id: IdLike) -> Message:
        """The message, or ``NotFound``."""
        ...

    async def delete_message(self, message_id: IdLike) -> None:
        """Delete one message, or ``NotFound``."""
        ...

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        """A page of the session's messages, oldest first.

        With ``after``: the ``limit`` rows right after it. With ``before``: the ``limit``
        rows right before it (still returned oldest first). With neither: the first page.
        Giving both raises ``InvalidInput``. A missing session gives an empty page.
        """
        ...

    # --- bulk and scans (backfill, verify, repair) ---------------------------------
    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        """Insert or overwrite sessions by id. With ``overwrite=False`` an existing row is
        left as it is (the backfill never replaces a newer value). Returns how many rows
        were written (with ``overwrite=False``: inserted)."""
        ...

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        """As :meth:`upsert_sessions`; ``NotFound`` if a referenced session is missing."""
        ...

    def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        """Every session in ascending id order, in chunks of at most ``batch_size``; with
        ``since``, only those created at or after it."""
        ...

    def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        """Every message in ascending id order, in chunks of at most ``batch_size``; with
        ``since``, only those whose timestamp is at or after it."""
        ...

    async def count(self, table: Table) -> int:
        """How many rows the table holds."""
        ...


# --- fast paths some stores have ---------------------------------------------------------
class BulkLoader(Protocol):
    """Loads rows already encoded for PostgreSQL's binary COPY (``core.pgcopy``)."""

    async def insert_rows(self, table: Table, rows: CopyRows) -> int:
        """Insert every row, or none: ``Conflict`` if any id exists (the caller merges)."""
        ...


class BulkReader(Protocol):
    """Many records of one table by id, in one round trip (a follower's batch)."""

    async def read_many(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ChatSession | Message | CorruptRecord]:
        """The records the store holds among ``record_ids`` (absent ones are left out); a
        stored document that cannot be read as a record maps to its ``CorruptRecord``."""
        ...


class BulkDeleter(Protocol):
    """Many records of one table deleted in one round trip (or a few), whatever their
    number (a replay batch's deletes)."""

    async def delete_many(self, table: Table, record_ids: Sequence[uuid.UUID]) -> None:
        """Delete the records the store holds among ``record_ids``, a session with its
        messages; ids it does not hold are no error."""
        ...


class RawDocuments(Protocol):
    """The legacy database's documents as raw BSON, for the backfill's worker processes."""

    @property
    def database(self) -> str: ...

    def raw_batches(
        self, collection: str, batch: int, skip: int = 0, where: dict[str, Any] | None = None
    ) -> AsyncIterator[bytes]:
        """BSON batches of up to ``batch`` documents in ``_id`` order, after ``skip``; with
        ``where`` (a query), only the documents it matches (a partition's slice)."""
        ...

    async def sample_ids(self, collection: str, size: int) -> list[Any]:
        """About ``size`` ``_id`` values picked at random (a partition plan's sample)."""
        ...

    async def estimated_count(self, collection: str, patience: float = 2.0) -> int | None:
        """About how many documents ``collection`` holds; None if the server takes longer
        than ``patience`` seconds to say."""
        ...

    async def present_ids(self, collection: str, legacy_ids: list[Any]) -> set[Any]:
        """Which of ``legacy_ids`` (raw ``_id`` values) the collection still holds."""
        ...

    async def oplog_window(self) -> float | None:
        """How far back, in seconds, a change stream can resume; None if not told."""
        ...


class MessageSender(Protocol):
    """A send with what goes along with it, in one statement (a transactional outbox)."""

    async def send(self, message: Message, *, park: bool, event: EventDraft | None) -> None:
        """Insert ``message``, with its journal entry for the old store (``park``) and its
        realtime ``event``, all or nothing. Errors as ``ChatStore.add_message``."""
        ...


class HistoryRenderer(Protocol):
    """History pages rendered as the API's JSON by the store itself."""

    async def history_json(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> RenderedPage:
        """The page ``ChatStore.history`` gives for these arguments, as JSON bytes."""
        ...


# --- strangler's control plane -----------------------------------------------------------
class WriteJournal(Protocol):
    """Where pending secondary writes are kept until they land.

    Each store keeps a journal in its own database, and entries go to the *authoritative*
    store's journal: that store just accepted the write, so it is reachable exactly when the
    entry has to be recorded, and every instance sees it."""

    name: str

    async def add(self, entries: Sequence[PendingWrite]) -> None:
        """Record entries durably. Raises ``StoreUnavailable`` if that is impossible."""
        ...

    async def due(self, targets: Sequence[Role], limit: int) -> list[PendingWrite]:
        """Entries for ``targets`` whose next attempt is due, oldest first, never handed to
        two instances' replayers at once: Postgres leases each entry (another replayer skips
        it until the lease ends or ``retry_later``/``done`` settles it); MongoDB leases the
        whole journal to one replayer at a time (the others get nothing meanwhile)."""
        ...

    async def done(self, entries: Sequence[PendingWrite]) -> None:
        """Forget entries that have landed."""
        ...

    async def retry_later(self, entry: PendingWrite, error: str, delay: float) -> None:
        """Count a failed attempt and hide the entry for ``delay`` seconds."""
        ...

    async def depth(self, target: Role | None = None) -> int:
        """How many entries are waiting (for ``target``, or in all)."""
        ...

    async def depths(self) -> dict[Role, int]:
        """How many entries are waiting for each store, in one query (what the status page
        and the depth metric ask, instead of one count per store)."""
        ...

    async def hurry(self, target: Role) -> None:
        """Make every entry for ``target`` due now (its store answers again, after its
        circuit breaker held them back)."""
        ...

    async def discard(self, target: Role) -> int:
        """Drop every entry waiting for ``target`` (MongoDB, once it is decommissioned);
        returns how many there were."""
        ...

    async def pending_ids(
        self, target: Role, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``record_ids`` have an entry waiting for ``target``."""
        ...


class StageStore(Protocol):
    """The stage every instance converges on, and its history."""

    async def read_stage(self) -> StageRecord | None:
        """The shared stage, or None if it was never set (which means ``off``)."""
        ...

    async def write_stage(
        self,
        target: Stage,
        *,
        origin: str,
        reason: str | None,
        forced: bool,
        expected: Stage,
        missing: list[dict[str, Any]] | None = None,
    ) -> StageRecord:
        """Move the stage from ``expected`` to ``target`` and record the transition (with
        the evidence a forced move went without); ``Conflict`` if another operator changed
        it first."""
        ...

    async def transitions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest transitions, newest first."""
        ...


class DivergenceLog(Protocol):
    """Where shadow reads record the disagreements they find."""

    async def record_divergence(
        self, *, stage: Stage, table: str, record_id: str, kind: str, diff: Any
    ) -> None: ...

    async def record_many(self, *, stage: Stage, rows: Sequence[tuple[str, str, str, Any]]) -> None:
        """Record several at once: ``(table, record_id, kind, diff)`` each."""
        ...

    async def divergences(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest divergences, newest first."""
        ...


class Tombstones(Protocol):
    """Deletes made through the facade, so a backfill cannot bring a deleted row back."""

    async def tombstone(self, table: str, record_ids: Sequence[uuid.UUID]) -> None: ...

    async def tombstoned(self, table: str, record_ids: Sequence[uuid.UUID | str]) -> set[uuid.UUID]:
        """Which of ``record_ids`` were deleted."""
        ...

    async def any_tombstones(self, table: str) -> bool:
        """Whether any delete of ``table`` was recorded (a cheap check before a lookup)."""
        ...

    async def prune_tombstones(self, before: dt.datetime, *, dry_run: bool = False) -> int:
        """Forget deletes made before ``before``; how many (would be) pruned."""
        ...


class EventLog(Protocol):
    """The realtime event log that every instance appends to and reads from."""

    async def publish_event(
        self, kind: str, user_id: str, session_id: uuid.UUID, payload: Any
    ) -> int:
        """Append an event and wake every instance's listener; returns its id."""
        ...

    async def events_since(
        self,
        last_id: int,
        *,
        session_id: uuid.UUID | None = None,
        user_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Events after ``last_id`` (all, or one session's, or one user's), oldest first:
        dicts with ``id``, ``kind``, ``user_id``, ``session_id`` and ``payload``."""
        ...

    async def last_event_id(self) -> int: ...

    async def prune_events(self, before: dt.datetime) -> int: ...

    def listen(self, notified: Callable[[], None]) -> AbstractAsyncContextManager[asyncio.Event]:
        """While the block runs, ``notified`` is called whenever any instance appends; the
        event it yields is set when the listening connection is lost."""
        ...


JobKind = Literal["backfill", "verify", "repair"]
JobStatus = Literal["running", "done", "failed", "interrupted"]


class JobRuns(Protocol):
    """Backfill, verify and repair runs, with their progress and results."""

    async def start(self, kind: JobKind, params: dict[str, Any]) -> int: ...

    async def update(
        self,
        run_id: int,
        *,
        progress: dict[str, Any] | None = None,
        status: JobStatus = "running",
        result: dict[str, Any] | None = None,
    ) -> None: ...

    async def latest(
        self, kind: JobKind, *, partition: dict[str, int] | None = None, exact: bool = False
    ) -> dict[str, Any] | None:
        """The latest run of ``kind``; with ``exact``, the latest of that partition only
        (``partition=None``: of the runs that were not partitioned)."""
        ...

    async def partitions(self, kind: JobKind) -> list[dict[str, Any]]:
        """The latest run of each partition of the latest partitioned run (by K)."""
        ...


class PartitionPlans(Protocol):
    """The split points the processes of a partitioned job share (``core.partition``)."""

    async def plan(self, scope: str, partitions: int) -> list[Any] | None:
        """The stored points (JSON values) of ``scope`` split in ``partitions``, if any."""
        ...

    async def propose(
        self, scope: str, partitions: int, points: list[Any], sampled: int
    ) -> list[Any]:
        """Store ``points`` unless a plan exists already; the plan that is stored either way
        (the first process's: every process then splits alike)."""
        ...

    async def plans(self) -> list[dict[str, Any]]:
        """Every stored plan: ``scope``, ``partitions``, ``points`` (how many), ``sampled``
        and ``created_at``."""
        ...

    async def forget(self, scope: str | None = None, partitions: int | None = None) -> int:
        """Delete the plans of ``scope`` (all scopes if None) for ``partitions`` (every N if
        None), so the next partitioned run samples afresh; returns how many went."""
        ...


@runtime_checkable
class IdSampler(Protocol):
    """A random sample of a table's ids, for a plan in UUID order (verify, repair)."""

    async def sample_uuids(self, table: Table, size: int) -> list[uuid.UUID]: ...


class LegacyIds(Protocol):
    """The original ``_id`` of each record whose legacy id maps to its UUID one way only (an
    arbitrary string or an integer: ``core.ids.one_way``). MongoDB's store asks it to find
    such a record by its UUID, and to write one back under its old ``_id``."""

    async def remember(self, table: Table, pairs: Sequence[tuple[uuid.UUID, str | int]]) -> None:
        """Keep each ``(UUID, original)``; one already kept stays as it is."""
        ...

    async def originals(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str | int]:
        """The originals kept for those of ``record_ids`` that have one."""
        ...


class Quotas(Protocol):
    """What the hosting plan limits, and how much of it is used."""

    async def read(self) -> dict[str, Any]: ...


# --- change capture ------------------------------------------------------------------------
class ChangeFeed(Protocol):
    """Every change to the chat tables of one store, whoever made it, in commit order."""

    name: str

    def batches(self, after: FeedPosition | None) -> AsyncIterator[ChangeBatch]:
        """Batches of changes after ``after`` (from now when None); an empty batch now and
        then while idle, so the position keeps up. ``PositionLost`` if the feed can no
        longer resume from ``after``; ``StoreUnavailable`` if the store is down."""
        ...

    async def position_now(self) -> FeedPosition:
        """The position of the latest change: following from it misses nothing after."""
        ...

    async def applied(self, position: FeedPosition) -> None:
        """The changes up to ``position`` are copied and its position saved (a feed that
        is a queue forgets them now)."""
        ...

    async def prune_idle(self) -> int:
        """While its follower is idle: drop what will never be for it; how many."""
        ...

    async def backlog(self) -> int | None:
        """Changes still to copy, where the feed can count them without reading them (a
        change log); None where it cannot (a change stream)."""
        ...


class FollowerState(Protocol):
    """Followers' durable positions, leases and states, shared by every instance."""

    async def claim(self, name: str, instance: str, lease_seconds: float) -> bool:
        """Take or renew the lease on follower ``name``; True if ``instance`` holds it."""
        ...

    async def release(self, name: str, instance: str) -> None: ...

    async def load(self, name: str) -> FollowerRecord | None: ...

    async def advance(
        self,
        name: str,
        instance: str,
        position: FeedPosition,
        at: dt.datetime | None,
        *,
        applied: int = 0,
        bypass: int = 0,
        reported: int = 0,
        lag_seconds: float | None = None,
    ) -> bool:
        """Save the position once the changes before it are applied, with the lag then;
        False (nothing saved) if ``instance`` no longer holds the lease."""
        ...

    async def mark(self, name: str, state: str, reason: str | None) -> None:
        """Set the state (``running``, ``stale``, ``stopped``) with its reason."""
        ...

    async def reset(self, name: str, position: FeedPosition | None) -> None:
        """Start over from ``position`` (None: from now), running."""
        ...
