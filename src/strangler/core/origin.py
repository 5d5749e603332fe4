"""Who is writing: a change follower marks the writes it makes, so a store that records
each change's origin (Postgres's change log) records them as the follower's, and the
follower of the other direction does not copy them back.

Copying them back is an echo at best, and a loss at worst: the forward follower copies
MongoDB's records into Supabase one change at a time, so while it is behind, Supabase can
hold a record's older state for a moment (its insert, before its rename). Were the
reverse follower to copy that state back, it would overwrite MongoDB's newer one, and the
forward follower would then copy the older state on. A change the forward follower made
came from MongoDB, which holds that state or a newer one: it is never for MongoDB.

The mark is a context variable, so every store call the follower's task makes, and the
tasks it starts, carry it; the facade's requests never do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

#: The origin of the facade's own writes (the Postgres connections' session setting).
FACADE = "facade"
#: Every follower's origin starts with this, then its direction's name.
FOLLOWER_PREFIX = "follower:"

_current: ContextVar[str | None] = ContextVar("strangler_writer", default=None)


def follower(name: str) -> str:
    """The origin of the writes of the follower called ``name``."""
    return f"{FOLLOWER_PREFIX}{name}"


def is_followers(origin: str | None) -> bool:
    """Whether ``origin`` marks a follower's write (any direction's)."""
    return origin is not None and origin.startswith(FOLLOWER_PREFIX)


def current() -> str | None:
    """The origin this task's writes carry, if it is marked (``writing_as``)."""
    return _current.get()


@contextlib.contextmanager
def writing_as(origin: str) -> Iterator[None]:
    """Mark the writes made in this block (by this task and the tasks it starts)."""
    token = _current.set(origin)
    try:
        yield
    finally:
        _current.reset(token)
