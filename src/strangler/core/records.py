"""The value types every layer shares: tables, store limits, keyset positions and pages."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from strangler.core.errors import InvalidInput
from strangler.core.models import ChatSession, Message
from strangler.core.normalize import utc_ms
from strangler.core.stages import Role

Table = Literal["chat_sessions", "messages"]
TABLES: tuple[Table, Table] = ("chat_sessions", "messages")
T = TypeVar("T")


@dataclass(frozen=True)
class StoreLimits:
    """Limits every store enforces on writes, so both stores refuse the same inputs."""

    #: The largest ``content`` accepted, measured as compact UTF-8 JSON.
    max_content_bytes: int = 10 * 1024 * 1024
    #: The longest title accepted, in characters.
    max_title_chars: int = 1000


#: A message's place in history order: ``(timestamp, id)``.
Position = tuple[dt.datetime, uuid.UUID]


@dataclass(frozen=True, order=True)
class Keyset:
    """A position in a keyset-ordered listing: the sort value and the id that breaks ties.

    ``encode``/``decode`` give the opaque cursor string an API hands to clients.
    """

    at: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        ms = int(utc_ms(self.at).timestamp() * 1000)
        raw = f"{ms}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Keyset:
        """Parse a cursor made by :meth:`encode`; anything else raises ``InvalidInput``."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            ms, _, ident = raw.partition(":")
            at = dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC)
            return cls(at=utc_ms(at), id=uuid.UUID(ident))
        except (ValueError, binascii.Error, OverflowError, OSError):
            raise InvalidInput(
                f"invalid cursor {cursor[:40]!r}: pass back a cursor the API returned",
                errors=[{"loc": ["cursor"], "msg": "malformed cursor", "type": "cursor"}],
            ) from None

    @classmethod
    def of_session(cls, session: ChatSession) -> Keyset:
        return cls(session.created_at, session.id)

    @classmethod
    def of_message(cls, message: Message) -> Keyset:
        return cls(message.timestamp, message.id)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset listing. ``has_more`` says whether rows lie beyond it in the
    direction that was asked for."""

    items: list[T] = field(default_factory=list)
    has_more: bool = False


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """A history page as JSON: ``items`` is the UTF-8 JSON array of its messages, oldest
    first; ``first`` and ``last`` are the positions of its first and last message (None
    when it is empty); ``has_more`` as in ``Page``."""

    items: bytes
    has_more: bool
    first: Position | None
    last: Position | None

    def body(self) -> bytes:
        """The API's history response: ``api.serialize.page_json``'s shape, as bytes."""
        return b"".join(
            (
                b'{"items":',
                self.items,
                b',"has_more":true' if self.has_more else b',"has_more":false',
                b',"next_cursor":',
                _cursor(self.last),
                b',"prev_cursor":',
                _cursor(self.first),
                b"}",
            )
        )


def _cursor(at: Position | None) -> bytes:
    return b"null" if at is None else b'"' + Keyset(*at).encode().encode() + b'"'


@dataclass(frozen=True)
class EventDraft:
    """A realtime event to append to the event log (``api.events.Hub`` makes them)."""

    kind: str
    user_id: str
    session_id: uuid.UUID
    payload: Any


@dataclass(frozen=True)
class PendingWrite:
    """Bring ``record_id`` in ``table`` of the ``target`` store up to date.

    A record of *which* record must be brought up to date in *which* store, not of the
    write itself: replay copies the record's current state from the authoritative store
    (``proxy.mirror``), so replaying an entry twice, late, or out of order is harmless."""

    target: Role
    table: Table
    record_id: uuid.UUID
    #: The journal's own key, set once stored.
    key: Any = None
    attempts: int = 0
    last_error: str | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


#: A change feed's resume position, opaque to everything but its feed (JSON-able).
FeedPosition = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One change a feed reports: which record of which table, and what happened to it.

    ``record_id`` is None when the document's id cannot be mapped both ways (an arbitrary
    string or integer ``_id``): such a record cannot be looked up by its UUID, so it is
    reported instead of copied. ``document`` is the changed document as the feed saw it
    (relaxed Extended JSON), when it has it, for the report. ``state`` is the record as of
    this change when the feed knows it: the decoded document after an insert or replace,
    None after a delete, a ``CorruptRecord`` for a document that cannot be read, and
    ``...`` (unknown: read the store) after an update."""

    table: Table
    record_id: uuid.UUID | None
    op: str
    at: dt.datetime | None
    legacy_id: Any = None
    #: Makes ``document`` when a report needs it (converting every document up front
    #: cost a third of the feed's time).
    original: Callable[[], Any] | None = None
    state: Any = ...
    #: Who made it, when the store records that (``facade`` for the facade's own writes).
    origin: str | None = None

    @property
    def document(self) -> Any:
        return None if self.original is None else self.original()


@dataclass(frozen=True)
class ChangeBatch:
    """Changes in feed order, and the position to resume from once they are applied."""

    changes: list[Change]
    position: FeedPosition
    at: dt.datetime | None


@dataclass(frozen=True)
class FollowerRecord:
    """A follower as stored: where it is, who leads it, and its state."""

    name: str
    position: FeedPosition | None
    position_at: dt.datetime | None
    state: Literal["running", "stale", "stopped"]
    state_reason: str | None
    leader: str | None
    lease_until: dt.datetime | None
    applied: int
    bypass: int
    reported: int
    updated_at: dt.datetime

    def leader_now(self, now: dt.datetime) -> str | None:
        """The instance whose lease is still running at ``now``, if any."""
        live = self.lease_until is not None and self.lease_until > now
        return self.leader if live else None


def follower_summary(record: FollowerRecord | None, now: dt.datetime) -> dict[str, Any]:
    """A follower as the CLI and the dashboard show it (``never started`` without one)."""

    def iso(at: dt.datetime | None) -> str | None:
        return None if at is None else at.astimezone(dt.UTC).isoformat()

    return {
        "state": "never started" if record is None else record.state,
        "reason": None if record is None else record.state_reason,
        "leader": None if record is None else record.leader_now(now),
        "last_change_at": None if record is None else iso(record.position_at),
        "saved_at": None if record is None else iso(record.updated_at),
        "applied": 0 if record is None else record.applied,
        "bypass": 0 if record is None else record.bypass,
        "reported": 0 if record is None else record.reported,
    }
