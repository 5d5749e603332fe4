"""Stand-ins for parts that are not there, once the migration is decommissioned.

* ``AbsentStore``: MongoDB's place in the facade when ``MONGO_URI`` is unset. At
  ``decommissioned`` the facade never calls it; if the stage is moved back, every call
  fails as ``StoreUnavailable`` with a message that says what to set, so the facade journals
  what MongoDB would have got and nothing is lost.
* ``AbsentJournal``: MongoDB's journal (or, over REST, both): nothing is ever waiting in it.
* ``NoStages``, ``NoDivergences``, ``NoEvents``, ``NoJobRuns``, ``NoQuotas``,
  ``NoFollowers``, ``NoTombstones``: strangler's control plane when only Supabase's REST
  API is configured (``SUPABASE_URL`` and ``SUPABASE_KEY``): those tables live in the
  ``strangler`` schema, which PostgREST does not expose. Reads answer empty; anything that
  would need them fails with ``NotConfigured`` (API 501) that names ``SUPABASE_DB_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self

from strangler.core.errors import NotConfigured, StoreUnavailable
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message
from strangler.core.ports import JobKind, JobStatus
from strangler.core.records import FeedPosition, FollowerRecord, Keyset, Page, PendingWrite, Table
from strangler.core.stages import Role, Stage, StageRecord

#: Why MongoDB is absent, as every failure says it.
NOT_CONFIGURED = (
    "MongoDB is not configured (MONGO_URI is unset), and the migration is decommissioned: "
    "set MONGO_URI on every instance before moving the stage back to complete"
)

#: What the control plane needs over REST.
NEEDS_DB_URL = (
    "over Supabase's REST API alone (SUPABASE_URL and SUPABASE_KEY) strangler's own tables "
    "(stage history, divergences, job runs, realtime events) are out of reach: set "
    "SUPABASE_DB_URL, the database URL from Supabase's 'Connect' dialog"
)


class AbsentStore:
    """A ``ChatStore`` for a MongoDB that is no longer configured."""

    name = "mongo"

    def __init__(self, reason: str = NOT_CONFIGURED) -> None:
        self.reason = reason

    def _fail(self) -> NoReturn:
        raise StoreUnavailable(self.reason)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def ping(self) -> float:
        self._fail()

    async def create_session(self, session: ChatSession) -> ChatSession:
        self._fail()

    async def get_session(self, session_id: IdLike) -> ChatSession:
        self._fail()

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        self._fail()

    async def delete_session(self, session_id: IdLike) -> None:
        self._fail()

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
        self._fail()

    async def add_message(self, message: Message) -> Message:
        self._fail()

    async def get_message(self, message_id: IdLike) -> Message:
        self._fail()

    async def delete_message(self, message_id: IdLike) -> None:
        self._fail()

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        self._fail()

    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        self._fail()

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        self._fail()

    async def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        self._fail()
        yield []  # pragma: no cover - makes this an async generator

    async def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        self._fail()
        yield []  # pragma: no cover - makes this an async generator

    async def count(self, table: Table) -> int:
        self._fail()


class AbsentJournal:
    """A journal in a store that is not there: it never holds an entry. Adding one fails,
    so the facade reports the write as not durable instead of dropping it."""

    def __init__(self, name: str, reason: str = NOT_CONFIGURED) -> None:
        self.name = name
        self.reason = reason

    async def add(self, entries: Sequence[PendingWrite]) -> None:
        raise StoreUnavailable(self.reason)

    async def due(self, targets: Sequence[Role], limit: int) -> list[PendingWrite]:
        return []

    async def done(self, entries: Sequence[PendingWrite]) -> None:
        return None

    async def retry_later(self, entry: PendingWrite, error: str, delay: float) -> None:
        return None

    async def depth(self, target: Role | None = None) -> int:
        return 0

    async def depths(self) -> dict[Role, int]:
        return {"old": 0, "new": 0}

    async def hurry(self, target: Role) -> None:
        return None

    async def discard(self, target: Role) -> int:
        return 0

    async def pending_ids(
        self, target: Role, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        return set()


# --- the control plane over REST ------------------------------------------------------------
class NoStages:
    """Without MongoDB and without the database URL, the only stage that can be is
    ``decommissioned``; there is no history to show, and no move can be recorded."""

    def __init__(self) -> None:
        self._record = StageRecord(
            Stage.DECOMMISSIONED,
            dt.datetime.now(dt.UTC),
            "assumed",
            "MONGO_URI and SUPABASE_DB_URL are unset: Supabase's REST API alone",
        )

    async def read_stage(self) -> StageRecord | None:
        return self._record

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
        raise NotConfigured(NEEDS_DB_URL)

    async def transitions(self, limit: int = 50) -> list[dict[str, Any]]:
        return []


class NoDivergences:
    """Nothing is compared at ``decommissioned``; should anything be, it is refused."""

    async def record_divergence(
        self, *, stage: Stage, table: str, record_id: str, kind: str, diff: Any
    ) -> None:
        raise NotConfigured(NEEDS_DB_URL)

    async def record_many(self, *, stage: Stage, rows: Sequence[tuple[str, str, str, Any]]) -> None:
        raise NotConfigured(NEEDS_DB_URL)

    async def divergences(self, limit: int = 50) -> list[dict[str, Any]]:
        return []


class NoTombstones:
    async def tombstone(self, table: str, record_ids: Sequence[uuid.UUID]) -> None:
        return None  # only needed while MongoDB could bring a deleted row back

    async def tombstoned(self, table: str, record_ids: Sequence[uuid.UUID | str]) -> set[uuid.UUID]:
        return set()

    async def any_tombstones(self, table: str) -> bool:
        return False

    async def prune_tombstones(self, before: dt.datetime, *, dry_run: bool = False) -> int:
        raise NotConfigured(NEEDS_DB_URL)


class NoEvents:
    """No event log: the API answers realtime requests 501 (``api.realtime``), and
    publishing is a no-op, since no stream could be reading."""

    async def publish_event(
        self, kind: str, user_id: str, session_id: uuid.UUID, payload: Any
    ) -> int:
        return 0

    async def events_since(
        self,
        last_id: int,
        *,
        session_id: uuid.UUID | None = None,
        user_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        return []

    async def last_event_id(self) -> int:
        return 0

    async def prune_events(self, before: dt.datetime) -> int:
        return 0

    @contextlib.asynccontextmanager
    async def listen(self, notified: Callable[[], None]) -> AsyncIterator[asyncio.Event]:
        yield asyncio.Event()  # never notified, never lost


class NoJobRuns:
    async def start(self, kind: JobKind, params: dict[str, Any]) -> int:
        raise NotConfigured(NEEDS_DB_URL)

    async def update(
        self,
        run_id: int,
        *,
        progress: dict[str, Any] | None = None,
        status: JobStatus = "running",
        result: dict[str, Any] | None = None,
    ) -> None:
        raise NotConfigured(NEEDS_DB_URL)

    async def latest(
        self, kind: JobKind, *, partition: dict[str, int] | None = None, exact: bool = False
    ) -> dict[str, Any] | None:
        return None

    async def partitions(self, kind: JobKind) -> list[dict[str, Any]]:
        return []


class NoQuotas:
    async def read(self) -> dict[str, Any]:
        raise NotConfigured(NEEDS_DB_URL)


class NoFollowers:
    """No follower runs once MongoDB is gone."""

    async def claim(self, name: str, instance: str, lease_seconds: float) -> bool:
        return False

    async def release(self, name: str, instance: str) -> None:
        return None

    async def load(self, name: str) -> FollowerRecord | None:
        return None

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
        return False

    async def mark(self, name: str, state: str, reason: str | None) -> None:
        raise NotConfigured(NEEDS_DB_URL)

    async def reset(self, name: str, position: FeedPosition | None) -> None:
        raise NotConfigured(NEEDS_DB_URL)


__all__ = [
    "NEEDS_DB_URL",
    "NOT_CONFIGURED",
    "AbsentJournal",
    "AbsentStore",
    "NoDivergences",
    "NoEvents",
    "NoFollowers",
    "NoJobRuns",
    "NoQuotas",
    "NoStages",
    "NoTombstones",
]
