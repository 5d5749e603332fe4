"""The ``ChatStore`` contract: everything the chat app, the facade, backfill and verify need.

One contract, one file per implementation (``mongo.py``, ``postgres.py``,
``supabase_rest.py``), and the dual-write facade in ``strangler.proxy`` implements it too.

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

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, Literal, Protocol, Self, TypeVar, runtime_checkable

from strangler.errors import (
    Conflict,
    CorruptRecord,
    InvalidInput,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from strangler.ids import IdLike
from strangler.models import ChatSession, Message
from strangler.normalize import utc_ms

__all__ = [
    "ChatStore",
    "Conflict",
    "CorruptRecord",
    "IdLike",
    "InvalidInput",
    "Keyset",
    "NotFound",
    "Page",
    "StoreError",
    "StoreLimits",
    "StoreUnavailable",
    "Table",
]

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
