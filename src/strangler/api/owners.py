"""Who owns a session, remembered for authorisation checks on the hot paths (history,
send, events), so they cost no store read.

A session's owner never changes. A deleted session is forgotten at once on this instance
and, through the realtime event log, on the others within the NOTIFY delay; ``ttl`` bounds
anything missed. Until then a deleted session's history reads as an empty page instead
of a 404: nothing is exposed, because the owner is the same user.
"""

from __future__ import annotations

import time
import uuid


class Owners:
    def __init__(self, ttl: float = 30.0, size: int = 100_000) -> None:
        self.ttl, self.size = ttl, size
        self._owners: dict[uuid.UUID, tuple[str, float]] = {}

    def get(self, session_id: uuid.UUID) -> str | None:
        hit = self._owners.get(session_id)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, session_id: uuid.UUID, user_id: str) -> None:
        now = time.monotonic()
        # Oldest first (re-inserted last), so the expired ones are at the front: drop them.
        # Without this, entries stayed until 100,000 of them (a soak's RSS crept up).
        self._owners.pop(session_id, None)
        while self._owners:
            oldest = next(iter(self._owners))
            if self._owners[oldest][1] > now:
                break
            del self._owners[oldest]
        if len(self._owners) >= self.size:
            self._owners.clear()  # crude but bounded; it refills from the store
        self._owners[session_id] = (user_id, now + self.ttl)

    def forget(self, session_id: uuid.UUID) -> None:
        self._owners.pop(session_id, None)
