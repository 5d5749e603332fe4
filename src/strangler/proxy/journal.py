"""The durable journal of secondary writes that still have to land.

A record of *which* record must be brought up to date in *which* store, not of the write
itself: replay copies the record's current state from the authoritative store
(``mirror.py``), so replaying an entry twice, late, or out of order is harmless, and a
write that failed on the authoritative store can never appear on the other one.

Each store keeps a journal in its own database (``MongoJournal``, ``PostgresJournal``), and
entries go to the *authoritative* store's journal: that store just accepted the write, so
it is reachable exactly when the entry has to be recorded, and every instance sees it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from strangler.backends.base import Table
from strangler.proxy.stages import Role


@dataclass(frozen=True)
class PendingWrite:
    """Bring ``record_id`` in ``table`` of the ``target`` store up to date."""

    target: Role
    table: Table
    record_id: uuid.UUID
    #: The journal's own key, set once stored.
    key: Any = None
    attempts: int = 0
    last_error: str | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class WriteJournal(Protocol):
    """Where pending secondary writes are kept until they land."""

    name: str

    async def add(self, entries: Sequence[PendingWrite]) -> None:
        """Record entries durably. Raises ``StoreUnavailable`` if that is impossible."""
        ...

    async def due(self, targets: Sequence[Role], limit: int) -> list[PendingWrite]:
        """Entries for ``targets`` whose next attempt is due, oldest first. A journal may
        claim them for a lease (Postgres does: another instance's replayer skips them until
        the lease ends or ``retry_later``/``done`` settles them)."""
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
