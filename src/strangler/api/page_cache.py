"""A cache of rendered pages: history pages and session lists
(``STRANGLER_PAGE_CACHE_SECONDS``, 10 by default; 0 turns it off).

History pages are most of a chat backend's reads, and with session lists nearly all the
rest; each costs a Postgres round trip plus decoding and rendering its rows. This instance
keeps the rendered JSON of recent pages and serves them again until something changes
them. A page belongs to a *scope*: a session for history pages, a user for session lists.
The rules that keep that correct:

* **Where.** Only in stages that read from Supabase without shadow comparisons
  (``rampdown``, ``complete``), where every change goes through the facade. The stage is
  part of the key, so a stage change never serves an older stage's page.
* **This instance's writes** (send, delete a message; create, rename, delete a session)
  drop the scope's pages before the request returns: a client reads its own writes here. A
  new message drops only the history pages whose span it falls into (usually just the
  last page), since history is ordered by time and a message is appended.
* **Other instances' writes** arrive as realtime events (``api.events.Hub``), which drop the
  scope's pages on every instance, usually within milliseconds of the commit. This is the
  trade: for that moment another instance may serve the page as it was. A message's event
  is committed with the message itself (``backends.postgres.outbox``).
* **Only while listening.** Events are only prompt while the Hub's ``LISTEN`` connection
  is up; otherwise pages are neither served nor kept, and a reconnect starts afresh.
* **Fill races.** A page read before a change and stored after it would stay stale, so each
  fill remembers the scope's generation when the read began and is only kept if nothing
  dropped the scope meanwhile.
* **Backstop.** Entries expire after the configured seconds, for changes made outside the
  API (SQL in the Supabase dashboard), and each cache holds at most its byte budget.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from strangler.core.models import Message
from strangler.core.records import Keyset, Page, Position, RenderedPage
from strangler.core.stages import Stage

#: How long a scope's generation is remembered after its last change, and how long a fill
#: may take to be kept. Forgotten, a generation reads as 0 again: a fill that began since
#: the change holds 1 or more and is refused (a miss, never a stale page), and one that
#: began before the change is older than this, so it is refused too.
GENERATION_SECONDS = 60.0

#: Page parameters: ``(after cursor, before cursor, limit)`` as the request gave them.
PageKey = tuple[str | None, str | None, int]


@dataclass(frozen=True, slots=True)
class Span:
    """The stretch of a session's history a page was read from: a message added or
    removed inside it changes the page, one outside it does not. Bounds are positions in
    history order, each inclusive or not; None is unbounded."""

    low: Position | None
    high: Position | None
    low_inclusive: bool = False
    high_inclusive: bool = True

    @classmethod
    def of_page(
        cls, after: Position | None, before: Position | None, first: Position | None,
        last: Position | None, has_more: bool,
    ) -> Span:  # fmt: skip
        """The span of a page read ``after``/``before`` a cursor (or from the start), whose
        first and last messages are ``first`` and ``last``; ``has_more`` says whether more
        lie beyond the page in the direction it was read."""
        if before is not None:  # the newest messages before the cursor, up to the limit
            low = first if has_more else None
            return cls(low, before, low_inclusive=True, high_inclusive=False)
        return cls(after, last if has_more else None)

    @classmethod
    def of_history(
        cls, after: Keyset | None, before: Keyset | None, page: Page[Message] | RenderedPage
    ) -> Span:
        """The span of a history page the store gave (as records, or rendered by Postgres)
        for these cursors."""
        if isinstance(page, RenderedPage):
            first, last = page.first, page.last
        else:
            items = page.items
            first = (items[0].timestamp, items[0].id) if items else None
            last = (items[-1].timestamp, items[-1].id) if items else None
        return cls.of_page(
            None if after is None else (after.at, after.id),
            None if before is None else (before.at, before.id),
            first,
            last,
            page.has_more,
        )

    def holds(self, at: Position) -> bool:
        """Whether a message at ``at`` lies in the span (so adding or removing it changes
        the page)."""
        above = self.low is None or at > self.low or (self.low_inclusive and at == self.low)
        below = self.high is None or at < self.high or (self.high_inclusive and at == self.high)
        return above and below


#: The span of a page that any change to its scope changes.
EVERYTHING = Span(None, None)


class Listening(Protocol):
    """What the cache needs to know of the realtime listener (``api.events.Hub``): whether
    it is listening now, and a number that changes with every (re)connection."""

    listening: bool
    listen_epoch: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a miss remembers so that its fill can be checked (see ``PageCache.put``)."""

    scope: Hashable
    key: tuple[Stage, Hashable]
    generation: int
    epoch: int
    #: When the miss was (``time.monotonic``): a fill older than ``GENERATION_SECONDS`` is
    #: not kept, since its scope's generation may have been forgotten meanwhile.
    issued: float


_Entry = tuple[bytes, float, Span]


class PageCache:
    """Rendered pages by scope (a session's history pages, a user's session lists)."""

    def __init__(
        self,
        ttl: float,
        max_bytes: int,
        *,
        listening: Listening,
        registry: CollectorRegistry | None = None,
        name: str = "history",
    ) -> None:
        self.ttl, self.max_bytes = ttl, max_bytes
        self.listening = listening
        self._pages: OrderedDict[Hashable, dict[tuple[Stage, Hashable], _Entry]]
        self._pages = OrderedDict()
        self._bytes = 0
        #: scope -> (generation, when it was last bumped), oldest bump first.
        self._generations: dict[Hashable, tuple[int, float]] = {}
        #: Bumped whenever everything is dropped (budget, reconnect): older fills are void.
        self._epoch = 0
        self._listen_epoch = -1
        self.lookups = Counter(
            f"strangler_{name}_cache_total",
            f"Cached {name} page lookups: hit, miss, or bypass (cache off for this stage or "
            "while realtime events are not flowing)",
            ["result"],
            registry=registry,
        )

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def usable(self, stage: Stage) -> bool:
        """Whether pages may be served and kept now."""
        if not self.enabled or stage.authoritative != "new" or stage.shadow_reads:
            return False
        epoch = self.listening.listen_epoch
        if not self.listening.listening:
            return False
        if epoch != self._listen_epoch:  # (re)connected: events may have been missed before
            self.clear()
            self._listen_epoch = epoch
        return True

    def get(self, stage: Stage, scope: Hashable, page: Hashable) -> bytes | Ticket | None:
        """The rendered page; or, on a miss, a ``Ticket`` for ``put``; or None when the cache
        cannot be used now (read the store and do not keep the page)."""
        if not self.usable(stage):
            self.lookups.labels("bypass").inc()
            return None
        key = (stage, page)
        pages = self._pages.get(scope)
        hit = None if pages is None else pages.get(key)
        if hit is not None and hit[1] > time.monotonic():
            self._pages.move_to_end(scope)
            self.lookups.labels("hit").inc()
            return hit[0]
        self.lookups.labels("miss").inc()
        return Ticket(scope, key, self._generation(scope), self._epoch, time.monotonic())

    def put(self, ticket: Ticket, body: bytes, span: Span = EVERYTHING) -> bool:
        """Keep a page read after ``get`` gave ``ticket``, unless the scope changed (or
        the cache was emptied, or stopped being usable) since; returns whether it was kept.
        ``span`` says which later messages change this page (history pages only)."""
        now = time.monotonic()
        if (
            ticket.epoch != self._epoch
            or now - ticket.issued >= GENERATION_SECONDS
            or self._generation(ticket.scope) != ticket.generation
            or not self.usable(ticket.key[0])
            or len(body) > self.max_bytes
        ):
            return False
        pages = self._pages.setdefault(ticket.scope, {})
        old = pages.get(ticket.key)
        if old is not None:
            self._bytes -= len(old[0])
        pages[ticket.key] = (body, now + self.ttl, span)
        self._bytes += len(body)
        self._pages.move_to_end(ticket.scope)
        while self._bytes > self.max_bytes and self._pages:
            _, evicted = self._pages.popitem(last=False)
            self._bytes -= sum(len(e[0]) for e in evicted.values())
        self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        """Drop expired pages from the least recently used end, so the cache holds what is
        alive, not its budget's worth of pages nobody will be served (a soak showed RSS
        creeping up until the budget was reached); and forget generations no fill in
        flight can hold (bumped more than ``GENERATION_SECONDS`` ago)."""
        while self._pages:
            scope, pages = next(iter(self._pages.items()))
            if any(e[1] > now for e in pages.values()):
                break
            del self._pages[scope]
            self._bytes -= sum(len(e[0]) for e in pages.values())
        while self._generations:
            scope, (_, bumped) = next(iter(self._generations.items()))
            if bumped > now - GENERATION_SECONDS:
                break
            del self._generations[scope]

    def invalidate(self, scope: Hashable, at: Position | None = None) -> None:
        """The scope changed: void the fills that began before now, and drop its pages;
        only those whose span holds ``at`` when the change is one message at ``at`` (a
        new message usually lands after every history page but the last)."""
        now = time.monotonic()
        generation = self._generation(scope) + 1
        self._generations.pop(scope, None)  # re-inserted last: the order is by bump time
        self._generations[scope] = (generation, now)
        self._prune(now)
        pages = self._pages.get(scope)
        if not pages:
            return
        stale = [k for k, e in pages.items() if at is None or e[2].holds(at)]
        for key in stale:
            self._bytes -= len(pages.pop(key)[0])
        if not pages:
            del self._pages[scope]
        if len(self._generations) > 100_000:
            self.clear()  # bounded: the epoch voids every fill in flight

    def _generation(self, scope: Hashable) -> int:
        hit = self._generations.get(scope)
        return 0 if hit is None else hit[0]

    def clear(self) -> None:
        self._pages.clear()
        self._generations.clear()
        self._bytes = 0
        self._epoch += 1
