"""Which cached pages a change makes stale: the page caches' invalidation policy.

This instance drops them when it makes the change, before it answers, so a client always
reads its own writes; other instances drop them when the change's realtime event arrives
(``PageInvalidation.on_event``).

* a new message: the history pages it falls into (usually the last: it is appended);
* a deleted message: all of its session's history pages;
* a session created or renamed: its owner's session lists;
* a session deleted: its owner's session lists and all of its history pages.
"""

from __future__ import annotations

import datetime as dt
import uuid

from strangler.api.events import Event
from strangler.api.page_cache import PageCache
from strangler.core.records import Position

#: Realtime events after which a session's history pages are out of date.
CHANGES_HISTORY = frozenset({"message.created", "message.deleted", "session.deleted"})
#: Realtime events after which the session's owner's session lists are out of date.
CHANGES_SESSION_LISTS = frozenset({"session.created", "session.renamed", "session.deleted"})


class PageInvalidation:
    """Drops the pages of ``history`` and ``lists`` that a change makes stale."""

    def __init__(self, history: PageCache, lists: PageCache) -> None:
        self.history, self.lists = history, lists

    def session_written(self, user_id: str) -> None:
        """A session was created or renamed."""
        self.lists.invalidate(user_id)

    def session_deleted(self, session_id: uuid.UUID, user_id: str) -> None:
        self.history.invalidate(session_id)
        self.lists.invalidate(user_id)

    def message_added(self, session_id: uuid.UUID, at: Position) -> None:
        self.history.invalidate(session_id, at)

    def message_deleted(self, session_id: uuid.UUID) -> None:
        self.history.invalidate(session_id)

    def on_event(self, event: Event) -> None:
        """Another instance's change (or this one's, again: dropping twice is harmless)."""
        if event.kind in CHANGES_SESSION_LISTS:
            self.lists.invalidate(event.user_id)
        if event.kind not in CHANGES_HISTORY:
            return
        at = None
        if event.kind == "message.created" and isinstance(event.payload, dict):
            try:
                at = (
                    dt.datetime.fromisoformat(event.payload["timestamp"]),
                    uuid.UUID(event.payload["id"]),
                )
            except (KeyError, TypeError, ValueError):
                at = None  # not the shape the API publishes: drop them all
        self.history.invalidate(event.session_id, at)
