"""The realtime event log's in-process end: ``Hub`` publishes changes to
``strangler.events``, listens for ``NOTIFY strangler_events`` from every instance, and fans
events out to this instance's subscribers (see ``api.realtime`` for the streams).

Publishing goes through an in-memory **outbox**: one writer task appends the events to the
log in the order they were published. Where Postgres is authoritative a request waits for
its event, at most ``publish_wait`` seconds (the secondary timeout); where MongoDB leads,
or while Postgres's circuit breaker is open (``skip_wait``), it does not wait at all:
nothing on the request path waits on the store that is not authoritative, so a Postgres
that hangs while MongoDB leads costs requests nothing. The events are not lost: they stay
queued, in order, and reach the log once Postgres answers again. The outbox holds at most
``OUTBOX_MAX`` events; past that a new event is dropped and logged
(``realtime_event_dropped``). On shutdown the writer gets ``SHUTDOWN_FLUSH`` seconds to
empty it, and what is left is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
import structlog

from strangler.api.problems import Problem
from strangler.core import budget
from strangler.core.errors import StranglerError
from strangler.core.ports import EventLog
from strangler.core.records import EventDraft

log = structlog.get_logger(__name__)

#: Message payloads larger than this go out without content; clients fetch the message.
MAX_INLINE_BYTES = 64 * 1024
#: Events older than this are pruned (a client away longer reloads instead of replaying).
RETENTION = dt.timedelta(days=1)
PRUNE_EVERY = 600.0  # seconds
#: Events the outbox holds while Postgres does not answer (about 8 minutes at 20/s).
OUTBOX_MAX = 10_000
#: Seconds the outbox gets to empty itself on shutdown.
SHUTDOWN_FLUSH = 5.0


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    user_id: str
    session_id: uuid.UUID
    payload: Any

    # Encoded once per event, not once per subscriber (cached_property writes the
    # instance's __dict__ directly, which a frozen dataclass allows).
    @cached_property
    def sse(self) -> bytes:
        """The event as a Server-Sent Events message."""
        return (
            f"id: {self.id}\nevent: {self.kind}\ndata: ".encode()
            + orjson.dumps(self.payload)
            + b"\n\n"
        )

    @cached_property
    def ws_text(self) -> str:
        """The event as a WebSocket text message."""
        return orjson.dumps(self.json()).decode()

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.kind, "data": self.payload}


class Subscription:
    """One stream's place in the hub. ``alive`` says whether its client is still connected;
    the hub ends subscriptions whose client has gone (``Hub.sweep``)."""

    def __init__(
        self, hub: Hub, key: tuple[str, str], alive: Callable[[], bool] | None = None
    ) -> None:
        self.hub, self.key = hub, key
        self.alive = alive or (lambda: True)
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=10_000)

    def deliver(self, event: Event | None) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:  # a stuck client: drop it, it reconnects with Last-Event-ID
            self.hub.unsubscribe(self)
            self.end()

    def end(self) -> None:
        """Tell the stream to end, even when its queue is full."""
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.get_nowait()
                self.queue.put_nowait(None)


class Hub:
    """This instance's end of the event log: publishes, listens, fans out."""

    def __init__(
        self,
        event_log: EventLog,
        *,
        poll_seconds: float = 1.0,
        publish_wait: float = 2.0,
        skip_wait: Callable[[], bool] | None = None,
    ) -> None:
        self.event_log = event_log
        self.poll_seconds = poll_seconds
        self.publish_wait = publish_wait
        self._skip_wait = skip_wait or (lambda: False)
        #: Events published here and not yet in the log, oldest first.
        self._outbox: deque[tuple[EventDraft, asyncio.Future[None]]] = deque()
        self._outbox_wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._subs: dict[tuple[str, str], set[Subscription]] = defaultdict(set)
        #: Called with every event from every instance (for example to forget owners).
        self.on_event: list[Callable[[Event], None]] = []
        self._last = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._stop = asyncio.Event()
        self._next_prune = time.monotonic() + PRUNE_EVERY
        self._next_sweep = 0.0
        #: Whether the LISTEN connection is up, and how many times it has (re)connected:
        #: while it is up, every instance's changes arrive within moments.
        self.listening = False
        self.listen_epoch = 0

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        with contextlib.suppress(StranglerError):
            self._last = await self.event_log.last_event_id()
        self._tasks = [
            asyncio.create_task(self._listen(), name="realtime-listen"),
            asyncio.create_task(self._pump(), name="realtime-pump"),
        ]
        self._writer = asyncio.create_task(self._write_outbox(), name="realtime-outbox")

    async def close_streams(self) -> None:
        """Tell every subscriber to end (shutdown closes streams before draining requests)."""
        self._closing = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.deliver(None)

    async def stop(self) -> None:
        """End the loops. They stop on a flag, not by cancellation: Python 3.11's
        ``wait_for`` can swallow a cancel that races its wake-up, and then ``stop`` would
        wait forever (seen on shutdown)."""
        await self.close_streams()
        self._stop.set()
        self._wake.set()
        self._outbox_wake.set()
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer}, timeout=SHUTDOWN_FLUSH)
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            if self._outbox:
                log.error(
                    "realtime_events_lost_on_shutdown",
                    count=len(self._outbox),
                    detail="Postgres did not take them within the shutdown flush; the "
                    "changes themselves are stored, only their realtime events are gone",
                )
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=10)
            for task in late:  # still in a store call after 10 s: give up on it
                task.cancel()

    # --- publishing ----------------------------------------------------------------------
    @staticmethod
    def draft(kind: str, user_id: str, session_id: uuid.UUID, payload: Any) -> EventDraft:
        """The event for a change, as it is stored: a message over ``MAX_INLINE_BYTES`` goes
        out without its content (clients fetch it)."""
        if kind == "message.created" and len(orjson.dumps(payload)) > MAX_INLINE_BYTES:
            payload = {k: payload.get(k) for k in ("id", "session_id", "sender", "timestamp")}
            payload["truncated"] = True
        return EventDraft(kind, user_id, session_id, payload)

    async def publish(self, kind: str, user_id: str, session_id: uuid.UUID, payload: Any) -> None:
        """Record a change through the outbox; never fails the request that made it, and
        waits for the log at most ``publish_wait`` (not at all while Postgres hangs)."""
        event = self.draft(kind, user_id, session_id, payload)
        if len(self._outbox) >= OUTBOX_MAX:
            log.error(
                "realtime_event_dropped",
                kind=kind,
                session_id=str(session_id),
                queued=len(self._outbox),
                detail="the outbox is full: Postgres has not taken events for a while",
            )
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((event, done))
        self._outbox_wake.set()
        # Within a request, no longer than what is left of its budget (``core.budget``).
        wait = budget.remaining(self.publish_wait)
        if wait <= 0 or self._skip_wait():
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), wait)
        except TimeoutError:
            log.warning(
                "realtime_publish_delayed",
                kind=kind,
                queued=len(self._outbox),
                detail="Postgres is slow: the event stays queued and is published in order",
            )

    @property
    def outbox_depth(self) -> int:
        return len(self._outbox)

    async def _write_outbox(self) -> None:
        """The one writer: the oldest event first, retried (with backoff) until the log
        takes it, so events reach the log in the order they were published."""
        backoff = 0.1
        while True:
            if not self._outbox:
                if self._stop.is_set():
                    return
                await self._outbox_wake.wait()
                self._outbox_wake.clear()
                continue
            event, done = self._outbox[0]
            try:
                await self.event_log.publish_event(
                    event.kind, event.user_id, event.session_id, event.payload
                )
            except StranglerError as exc:
                if self._stop.is_set() and backoff >= 1.0:
                    return  # shutting down and Postgres is not answering
                log.debug("realtime_publish_retry", error=str(exc), in_s=backoff)
                await _first(self._stop, within=backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            self._outbox.popleft()
            if not done.done():
                done.set_result(None)
            self.published()

    def published(self) -> None:
        """An event was stored by this instance (``publish``, or a write that carried it):
        deliver it here now, without waiting for the NOTIFY."""
        self._wake.set()

    # --- subscribing ---------------------------------------------------------------------
    def subscribe(
        self, key: tuple[str, str], alive: Callable[[], bool] | None = None
    ) -> Subscription:
        """A subscription to ``key``'s events; ``alive`` tells whether its client is still
        connected (see ``sweep``)."""
        if self._closing:
            raise StoreUnavailableForStreams()
        sub = Subscription(self, key, alive)
        self._subs[key].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    @property
    def subscribers(self) -> int:
        """Subscriptions on this instance (SSE streams and WebSockets)."""
        return sum(len(subs) for subs in self._subs.values())

    def sweep(self) -> int:
        """End the subscriptions whose client has gone, so that a stream whose client
        disconnected stops waiting for its next event or heartbeat (up to 15 s) and events
        are not fanned out to it meanwhile. Returns how many were ended."""
        gone = [sub for subs in self._subs.values() for sub in subs if not sub.alive()]
        for sub in gone:
            self.unsubscribe(sub)
            sub.end()
        return len(gone)

    async def backlog(
        self, last_id: int, *, session_id: uuid.UUID | None = None, user_id: str | None = None
    ) -> list[Event]:
        rows = await self.event_log.events_since(last_id, session_id=session_id, user_id=user_id)
        return [_event(r) for r in rows]

    # --- listening -----------------------------------------------------------------------
    async def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                async with self.event_log.listen(self._wake.set) as closed:
                    self.listen_epoch += 1
                    self.listening = True
                    try:
                        self._wake.set()  # catch up on what happened while not listening
                        await _first(closed, self._stop)
                    finally:
                        self.listening = False
            except (StranglerError, OSError) as exc:
                log.debug("realtime_listen_retry", error=str(exc))
            await _first(self._stop, within=self.poll_seconds)

    async def _pump(self) -> None:
        while not self._stop.is_set():
            await _first(self._wake, within=self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                await self._fetch()
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + PRUNE_EVERY
                    await self.event_log.prune_events(dt.datetime.now(dt.UTC) - RETENTION)
            except StranglerError as exc:
                log.debug("realtime_fetch_failed", error=str(exc))
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.poll_seconds
                if gone := self.sweep():
                    log.debug("realtime_clients_gone", subscriptions=gone)

    async def _fetch(self) -> None:
        while True:
            rows = await self.event_log.events_since(self._last)
            for row in rows:
                event = _event(row)
                self._last = event.id
                for hook in self.on_event:
                    hook(event)
                for key in (("session", str(event.session_id)), ("user", event.user_id)):
                    for sub in list(self._subs.get(key, ())):
                        sub.deliver(event)
            if len(rows) < 1000:
                return


async def _first(*events: asyncio.Event, within: float | None = None) -> None:
    """Wait until any of ``events`` is set, or ``within`` seconds pass."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


class StoreUnavailableForStreams(Problem):
    def __init__(self) -> None:
        super().__init__(503, "shutting_down", "this instance is shutting down; reconnect")


def _event(row: dict[str, Any]) -> Event:
    return Event(row["id"], row["kind"], row["user_id"], row["session_id"], row["payload"])
