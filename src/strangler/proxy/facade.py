"""``DualWriteStore``: the staged dual-write facade, itself a ``ChatStore``.

Writes go to the authoritative store first; once it holds the write, the same write goes
to the secondary store (``Stage.secondary``), inline and bounded by ``secondary_timeout``.
If that fails, the record is journaled in the authoritative store's database (in the other
store's if the authoritative one stops answering right after the write) and the replayer
brings it over later, so the request still succeeds and no acknowledged write is lost. A
write that fails on the authoritative store is never sent to the other one.

Reads are served by the authoritative store; in ``shadow`` and ``live`` a sampled read of
the other store is compared off the request path (``shadow.py``).

Each store has a circuit breaker (``breaker.py``): once the secondary store keeps failing
or timing out, its writes are journaled at once and its shadow reads skipped, so a hung
secondary costs requests nothing, until a probe finds it answering again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog

from strangler.core import budget, ids, tracing
from strangler.core.errors import Conflict, NotFound, StoreUnavailable, StranglerError
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message
from strangler.core.ports import (
    BulkDeleter,
    BulkReader,
    ChatStore,
    HistoryRenderer,
    MessageSender,
    Tombstones,
    WriteJournal,
)
from strangler.core.records import EventDraft, Keyset, Page, PendingWrite, RenderedPage, Table
from strangler.core.stages import Role, Stage
from strangler.proxy.breaker import STATE_VALUE, Breaker, State
from strangler.proxy.compare import diff_pages, diff_records
from strangler.proxy.control import StageController
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.mirror import mirror
from strangler.proxy.replay import Replayer
from strangler.proxy.shadow import ShadowReader

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: The least time a landed write's journal entry gets in each journal (``_journal``).
JOURNAL_GRACE = 0.25


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a secondary write's failure as seen: its request already journaled the record."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("late_secondary_write_failed", error=repr(task.exception()))


async def _secondary_add_message(auth: ChatStore, sec: ChatStore, m: Message) -> None:
    try:
        await sec.add_message(m)
    except (Conflict, NotFound):  # there already, or its session is not: copy what auth has
        await mirror(auth, sec, "messages", m.id)


class DualWriteStore:
    """A ``ChatStore`` over two stores, routed by stage. Use it as ``async with``: that
    starts (and on exit stops) the stage poller, the replayer and the shadow tasks. The
    two stores are opened and closed by the caller (``strangler.connect`` does both)."""

    name = "dualwrite"

    def __init__(
        self,
        old: ChatStore,
        new: ChatStore,
        *,
        controller: StageController,
        journals: dict[Role, WriteJournal],
        metrics: FacadeMetrics | None = None,
        shadow: ShadowReader | None = None,
        secondary_timeout: float = 2.0,
        replay_interval: float = 0.5,
        tombstones: Tombstones | None = None,
        sender: MessageSender | None = None,
        pages: HistoryRenderer | None = None,
        breaker_failures: int = 5,
        breaker_probe_max: float = 0.5,
        readers: dict[Role, BulkReader] | None = None,
        deleters: dict[Role, BulkDeleter] | None = None,
    ) -> None:
        self.old = old
        self.new = new
        self.controller = controller
        self.journals = journals
        self.metrics = metrics or FacadeMetrics()
        self.shadow = shadow or ShadowReader(self.metrics)
        self.secondary_timeout = secondary_timeout
        self._stores: dict[Role, ChatStore] = {"old": old, "new": new}
        #: One circuit breaker per store (``breaker.py``), probing with the store's ping.
        self.breakers: dict[Role, Breaker] = {
            role: Breaker(
                store.name,
                store.ping,
                failures=breaker_failures,
                probe_initial=min(0.25, breaker_probe_max),
                probe_max=breaker_probe_max,
                probe_timeout=secondary_timeout,
                on_change=self._show_breaker,
                on_close=lambda role=role: self._breaker_closed(role),  # type: ignore[misc]
            )
            for role, store in self._stores.items()
        }
        for breaker in self.breakers.values():
            self.metrics.breaker_state.labels(breaker.store).set(0)
        self.replayer = Replayer(
            self._stores,
            journals,
            lambda: self.stage,
            self.metrics,
            interval=replay_interval,
            breakers=self.breakers,
            readers=readers,
            deleters=deleters,
        )
        #: Capabilities of the new store, where it has them (chosen by ``strangler.runtime``):
        #: tombstones for deletes made while it is secondary, a send that carries its event,
        #: and history pages it renders itself.
        self.tombstones = tombstones
        self.sender = sender
        self.pages = pages
        #: Changes still to be copied into a store by a follower (the change log's depth
        #: for MongoDB): pending like journal entries, so no move outruns them.
        self.backlogs: dict[Role, Callable[[], Awaitable[int]]] = {}
        #: At ``complete``, park every write's id for MongoDB (off when the reverse
        #: follower copies them from the change log instead).
        self.park_at_complete = True
        self._background: set[asyncio.Task[None]] = set()
        #: Entries no journal took in time, still being written by a background task.
        self._unjournaled: Counter[Role] = Counter()

    # --- lifecycle -------------------------------------------------------------------
    @property
    def stage(self) -> Stage:
        return self.controller.stage

    async def __aenter__(self) -> Self:
        await self.controller.start()
        self.metrics.stage.labels(self.stage.value).set(1)
        self.replayer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shadow.drain()
        if self._background:  # secondary writes that outlived their request
            await asyncio.wait(set(self._background), timeout=self.secondary_timeout * 5)
        await self.replayer.stop()
        for breaker in self.breakers.values():
            await breaker.stop()
        await self.controller.stop()

    def _show_breaker(self, store: str, state: State) -> None:
        self.metrics.breaker_state.labels(store).set(STATE_VALUE[state])

    def _breaker_closed(self, role: Role) -> None:
        """``role``'s store answers again: what was journaled for it is due now."""

        async def hurry() -> None:
            for journal in self.journals.values():
                try:
                    await journal.hurry(role)
                except StranglerError as exc:
                    log.debug("journal_not_hurried", journal=journal.name, error=str(exc))
            self.replayer.wake()

        task = asyncio.get_running_loop().create_task(hurry())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def store(self, role: Role) -> ChatStore:
        return self._stores[role]

    async def pending(self, role: Role) -> int:
        """Writes still to land in ``role``'s store (see ``pending_all``)."""
        return (await self.pending_all())[role]

    async def pending_all(self) -> dict[Role, int]:
        """Writes still to land in each store: journal entries across both journals (each
        asked once, for both stores), and changes a follower has yet to copy there
        (``backlogs``). At ``decommissioned`` MongoDB's journal is not asked (MongoDB may
        be gone)."""
        totals: dict[Role, int] = {r: self._unjournaled[r] for r in ("old", "new")}
        for r, journal in self.journals.items():
            if self.stage.old_retired and r == "old":
                continue
            for role, n in (await journal.depths()).items():
                totals[role] += n
        for role, backlog in self.backlogs.items():
            totals[role] += await backlog()
        return totals

    async def ping(self) -> float:
        return await self._read("ping", lambda s: s.ping())

    # --- routing -----------------------------------------------------------------------
    async def _call(self, store: ChatStore, op: str, fn: Callable[[ChatStore], Awaitable[T]]) -> T:
        authoritative = store is self.store(self.stage.authoritative)
        try:
            with tracing.span(f"{store.name} {op}", {"db.system.name": store.name}):
                async with self.metrics.timed(store.name, op):
                    result = await budget.bounded(lambda: fn(store), store.name)
        except StoreUnavailable:
            if authoritative:
                self.metrics.ready.set(0)
            raise
        if authoritative:
            self.metrics.ready.set(1)
        return result

    async def _read(
        self, op: str, fn: Callable[[ChatStore], Awaitable[T]], *, stage: Stage | None = None
    ) -> T:
        """``fn`` on the stage's authoritative store (the caller shadows it, if it does)."""
        stage = stage or self.stage
        with self._span(op, stage) as span:
            if stage.shadow_reads:
                span.set_attribute("strangler.shadow_read", True)
            return await self._call(self.store(stage.authoritative), op, fn)

    def _span(self, op: str, stage: Stage) -> Any:
        """The facade's span for ``op``: the routing decision as its attributes (built only
        when tracing is on: this runs for every call)."""
        if not tracing.enabled():
            return tracing.NO_SPAN
        return tracing.span(f"facade {op}", self._routing(stage))

    def _routing(self, stage: Stage) -> dict[str, Any]:
        """The routing decision, as span attributes."""
        secondary = stage.secondary
        return {
            "strangler.stage": stage.value,
            "strangler.authoritative": self.store(stage.authoritative).name,
            "strangler.secondary": "" if secondary is None else self.store(secondary).name,
        }

    def _shadow(
        self,
        stage: Stage,
        table: str,
        key: str,
        result: Any,
        fn: Callable[[ChatStore], Awaitable[Any]],
        differ: Any,
    ) -> None:
        if not stage.shadow_reads:
            return
        other_role: Role = "new" if stage.authoritative == "old" else "old"
        if self.breakers[other_role].state != "closed":
            self.metrics.shadow_dropped.inc()  # it is not answering: do not pile reads on it
            return
        auth = self.store(stage.authoritative)
        other = self.store(other_role)
        # The other store's read is timed, so its latency shows while it is not serving.
        self.shadow.submit(
            table,
            key,
            result,
            lambda: fn(auth),
            lambda: self._call(other, f"shadow_{table}", fn),
            differ,
        )

    async def _read_record(
        self, table: str, record_id: uuid.UUID, fn: Callable[[ChatStore], Awaitable[T]]
    ) -> T:
        stage = self.stage
        try:
            result = await self._read(f"get_{table}", fn, stage=stage)
        except NotFound:
            self._shadow(stage, table, str(record_id), None, fn, diff_records)
            raise
        self._shadow(stage, table, str(record_id), result, fn, diff_records)
        return result

    async def _write(
        self,
        op: str,
        table: Table,
        record_ids: Sequence[uuid.UUID],
        primary: Callable[[ChatStore], Awaitable[T]],
        secondary: Callable[[ChatStore, ChatStore, T], Coroutine[Any, Any, None]],
        *,
        stage: Stage | None = None,
        parked: bool = False,
    ) -> T:
        """``parked``: ``primary`` wrote the ids' journal entries for MongoDB itself."""
        stage = stage or self.stage
        with self._span(op, stage) as span:
            auth_role = stage.authoritative
            auth = self.store(auth_role)
            started = time.perf_counter()
            result = await self._call(auth, op, primary)
            target = stage.secondary
            if target is None:
                if stage == Stage.COMPLETE and not parked and self.park_at_complete:
                    # Park the ids for MongoDB, so a rollback from complete can catch it up.
                    await self._journal(auth_role, "old", table, record_ids, park=True)
                return result
            outcome = await self._to_secondary(
                stage,
                op,
                table,
                record_ids,
                auth,
                self.store(target),
                secondary,
                result,
                started=started,
            )
            span.set_attribute("strangler.secondary_write", outcome)
            span.set_attribute("strangler.journaled", outcome != "ok")
            return result

    async def _to_secondary(
        self,
        stage: Stage,
        op: str,
        table: Table,
        record_ids: Sequence[uuid.UUID],
        auth: ChatStore,
        sec: ChatStore,
        secondary: Callable[[ChatStore, ChatStore, T], Coroutine[Any, Any, None]],
        result: T,
        *,
        started: float | None = None,
    ) -> str:
        """The same write on the secondary store, bounded by ``secondary_timeout``; if it
        fails or is late the ids are journaled instead. Never fails the request. Returns
        what happened: ``ok``, ``journaled`` (failed or late) or ``breaker_open``
        (journaled untried). ``started``: when the authoritative write was sent (the second
        write trails it by the time from then until it lands, which a follower's settle
        delay must cover)."""
        done_at = time.perf_counter()
        started = done_at if started is None else started
        target = stage.secondary
        assert target is not None
        breaker = self.breakers[target]
        if not breaker.allow():
            # The store is not answering: journal now instead of waiting for the timeout.
            self.metrics.breaker_skipped.labels(sec.name).inc()
            self.metrics.secondary_writes.labels("journaled").inc()
            await self._journal(stage.authoritative, target, table, record_ids)
            return "breaker_open"
        # The secondary write runs as a tracked task that is never cancelled: cancelling a
        # PyMongo operation mid-server-selection corrupts its topology lock. The request waits
        # at most secondary_timeout; past that the record is journaled and the task finishes
        # on its own, bounded by the store's own timeouts (replay is idempotent either way).

        async def timed_secondary() -> None:
            with tracing.span(f"{sec.name} {op}", {"db.system.name": sec.name}):
                async with self.metrics.timed(sec.name, op):
                    await secondary(auth, sec, result)

        task = asyncio.get_running_loop().create_task(timed_secondary())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_retrieve)
        # At most the secondary timeout, and within a request no longer than what is left
        # of its budget (``core.budget``): a request answers within the store timeout.
        wait = budget.remaining(self.secondary_timeout)
        try:
            await asyncio.wait_for(asyncio.shield(task), wait)
        except Exception as exc:  # no secondary failure, of any kind, may fail the request
            cut = isinstance(exc, TimeoutError) and wait < self.secondary_timeout
            # Not the store's fault: a budget cut short, or an answer (Conflict, NotFound).
            if not cut and not isinstance(exc, (Conflict, NotFound)):
                breaker.failure(f"{type(exc).__name__}: {exc}")
            log.bind(stage=stage.value, table=table, op=op, target=target).warning(
                "secondary_write_failed",
                error=f"{type(exc).__name__}: {exc}",
                ids=[str(i) for i in record_ids[:5]],
            )
            self.metrics.secondary_writes.labels("journaled").inc()
            self.metrics.observe_late(time.perf_counter() - started)
            await self._journal(stage.authoritative, target, table, record_ids)
            return "journaled"
        breaker.success()
        self.metrics.secondary_writes.labels("ok").inc()
        landed = time.perf_counter()
        self.metrics.observe_lag(landed - done_at)
        self.metrics.observe_trail(landed - started)
        return "ok"

    async def _journal(
        self,
        journal_role: Role,
        target: Role,
        table: Table,
        record_ids: Sequence[uuid.UUID],
        *,
        park: bool = False,
    ) -> None:
        """Record that ``record_ids`` are still to land in ``target``. The write already
        landed in the authoritative store, so the entry must not be lost, and the request
        must still answer in time: the authoritative store's journal gets what is left of
        the request's budget (at least ``JOURNAL_GRACE``), then the other store's journal
        gets ``JOURNAL_GRACE``; if neither takes it, a background task keeps trying both
        with their full timeouts and the request answers now. (A full run with 30 s hangs
        had renames answer after 7 s: the rename landed, then Postgres hung, and its
        journal entry waited out the store timeout on top of the secondary timeout.)"""
        entries = [PendingWrite(target=target, table=table, record_id=i) for i in record_ids]
        order = self._journal_order(journal_role)
        errors: list[str] = []
        role = await self._add_to_first(order, entries, errors)
        if role is not None:
            if role != journal_role:
                log.warning(
                    "journaled_elsewhere",
                    journal=self.journals[role].name,
                    target=target,
                    table=table,
                    error=errors[0],
                )
            if not park:
                self.replayer.wake()
            return
        # Neither journal took it in time: keep trying without the request.
        self._unjournaled[target] += len(entries)
        task = asyncio.get_running_loop().create_task(
            self._journal_later(order, target, entries, errors, park=park)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _journal_order(self, journal_role: Role) -> list[Role]:
        """The authoritative store's journal first, then the other store's (not MongoDB's
        once it is retired)."""
        others = [r for r in self.journals if r != journal_role]
        if self.stage.old_retired:
            others = [r for r in others if r != "old"]
        return ([journal_role] if journal_role in self.journals else []) + others

    async def _add_to_first(
        self, order: list[Role], entries: list[PendingWrite], errors: list[str]
    ) -> Role | None:
        """Add ``entries`` to the first journal in ``order`` that takes them; the role, or
        None (each refusal appended to ``errors``). Within a request each journal gets what
        is left of its budget, at least ``JOURNAL_GRACE``; elsewhere, its full timeout."""
        for role in order:
            try:
                with budget.grace(JOURNAL_GRACE):
                    await self.journals[role].add(entries)
            except StranglerError as exc:
                errors.append(f"{self.journals[role].name}: {exc}")
                continue
            return role
        return None

    async def _journal_later(
        self,
        order: list[Role],
        target: Role,
        entries: list[PendingWrite],
        errors: list[str],
        *,
        park: bool,
    ) -> None:
        try:
            role = await self._add_to_first(order, entries, errors)
            if role is not None:
                log.warning(
                    "journaled_late",
                    journal=self.journals[role].name,
                    target=target,
                    entries=len(entries),
                )
                if not park:
                    self.replayer.wake()
                return
            # The authoritative store took the write but no journal took its entry. The
            # request succeeded; verify/repair will find this record.
            log.error(
                "journal_write_failed",
                target=target,
                table=entries[0].table,
                errors=errors,
                ids=[str(e.record_id) for e in entries[:20]],
                parked=park,
                action="run `strangler verify` then `strangler repair` once the stores answer",
            )
        finally:
            self._unjournaled[target] -= len(entries)

    async def _tombstone(self, target: ChatStore, table: Table, record_id: uuid.UUID) -> None:
        """Before deleting from the new store while it is secondary (backfill time), leave a
        tombstone there, so a backfill running now cannot bring the row back."""
        if target is self.new and self.tombstones is not None:
            await self.tombstones.tombstone(table, [record_id])

    # --- sessions ------------------------------------------------------------------------
    async def create_session(self, session: ChatSession) -> ChatSession:
        async def secondary(auth: ChatStore, sec: ChatStore, s: ChatSession) -> None:
            try:
                await sec.create_session(s)
            except Conflict:
                await mirror(auth, sec, "chat_sessions", s.id, known=s)

        return await self._write(
            "create_session",
            "chat_sessions",
            [session.id],
            lambda st: st.create_session(session),
            secondary,
        )

    async def get_session(self, session_id: IdLike) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        return await self._read_record("chat_sessions", sid, lambda st: st.get_session(sid))

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")

        async def secondary(auth: ChatStore, sec: ChatStore, renamed: ChatSession) -> None:
            try:
                await sec.rename_session(sid, title)
            except NotFound:
                await mirror(auth, sec, "chat_sessions", sid)
                return
            # Concurrent renames: whoever writes the secondary last must write the final
            # value, so check the authoritative store again after writing.
            try:
                now = await auth.get_session(sid)
            except NotFound:
                now = None
            if now != renamed:
                await mirror(auth, sec, "chat_sessions", sid, known=now)

        return await self._write(
            "rename_session",
            "chat_sessions",
            [sid],
            lambda st: st.rename_session(sid, title),
            secondary,
        )

    async def delete_session(self, session_id: IdLike) -> None:
        await self._delete("chat_sessions", ids.parse_id(session_id, field="session_id"))

    async def _delete(self, table: Table, record_id: uuid.UUID) -> None:
        """Delete a session (with its messages) or a message, in the stage's stores."""

        stage = self.stage

        def delete(st: ChatStore) -> Awaitable[None]:
            if table == "chat_sessions":
                return st.delete_session(record_id)
            return st.delete_message(record_id)

        async def primary(st: ChatStore) -> None:
            if stage == Stage.LIVE:
                # Supabase leads, and the forward follower may still be draining what
                # MongoDB got before the move: a tombstone keeps it from inserting again
                # a record deleted here meanwhile (MongoDB's delete comes after its cutoff).
                # A 60-minute soak found one such session back at the end.
                await self._tombstone(st, table, record_id)
            await delete(st)

        async def secondary(auth: ChatStore, sec: ChatStore, _: None) -> None:
            await self._tombstone(sec, table, record_id)
            with contextlib.suppress(NotFound):
                await delete(sec)

        op = "delete_session" if table == "chat_sessions" else "delete_message"
        await self._write(op, table, [record_id], primary, secondary, stage=stage)

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
        stage = self.stage

        def fn(st: ChatStore) -> Awaitable[Page[ChatSession]]:
            return st.list_sessions(
                user_id,
                search=search,
                created_from=created_from,
                created_to=created_to,
                limit=limit,
                after=after,
            )

        page = await self._read("list_sessions", fn, stage=stage)
        self._shadow(stage, "chat_sessions", f"list:{user_id}", page, fn, diff_pages)
        return page

    # --- messages --------------------------------------------------------------------------
    async def add_message(self, message: Message) -> Message:
        return await self._write(
            "add_message",
            "messages",
            [message.id],
            lambda st: st.add_message(message),
            _secondary_add_message,
        )

    async def send_message(self, message: Message, event: EventDraft) -> tuple[Message, bool]:
        """``add_message``, and where the new store is authoritative and has a
        ``MessageSender``, the message's realtime event and its journal entry for the old
        store in the same statement: one round trip instead of three, and the event exists
        exactly when the message does. Returns the stored message and whether ``event``
        went with it; if not, the caller publishes it."""
        stage = self.stage
        sender = self.sender
        if stage.authoritative != "new" or sender is None:
            return await self.add_message(message), False

        park = stage == Stage.COMPLETE and self.park_at_complete

        async def primary(_: ChatStore) -> Message:
            await sender.send(message, park=park, event=event)
            return message

        stored = await self._write(
            "add_message",
            "messages",
            [message.id],
            primary,
            _secondary_add_message,
            stage=stage,
            parked=park,
        )
        return stored, True

    async def get_message(self, message_id: IdLike) -> Message:
        mid = ids.parse_id(message_id, field="message_id")
        return await self._read_record("messages", mid, lambda st: st.get_message(mid))

    async def delete_message(self, message_id: IdLike) -> None:
        await self._delete("messages", ids.parse_id(message_id, field="message_id"))

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        sid = ids.parse_id(session_id, field="session_id")
        stage = self.stage

        def fn(st: ChatStore) -> Awaitable[Page[Message]]:
            return st.history(sid, limit=limit, after=after, before=before)

        page = await self._read("history", fn, stage=stage)
        self._shadow(stage, "messages", f"history:{sid}", page, fn, diff_pages)
        return page

    async def rendered_history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> RenderedPage | None:
        """``history``'s page already rendered as the API's JSON by the new store (its
        ``HistoryRenderer``), where that is the same read: the new store serves it and no
        shadow read compares it (``rampdown``, ``complete``). Otherwise None, and the caller
        reads ``history``. Errors as ``history``."""
        stage = self.stage
        pages = self.pages
        if stage.authoritative != "new" or stage.shadow_reads or pages is None:
            return None
        sid = ids.parse_id(session_id, field="session_id")
        return await self._read(
            "history",
            lambda _: pages.history_json(sid, limit=limit, after=after, before=before),
            stage=stage,
        )

    # --- bulk and scans ---------------------------------------------------------------------
    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        async def secondary(auth: ChatStore, sec: ChatStore, _: int) -> None:
            await sec.upsert_sessions(sessions, overwrite=overwrite)

        return await self._write(
            "upsert_sessions",
            "chat_sessions",
            [s.id for s in sessions],
            lambda st: st.upsert_sessions(sessions, overwrite=overwrite),
            secondary,
        )

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        async def secondary(auth: ChatStore, sec: ChatStore, _: int) -> None:
            await sec.upsert_messages(messages, overwrite=overwrite)

        return await self._write(
            "upsert_messages",
            "messages",
            [m.id for m in messages],
            lambda st: st.upsert_messages(messages, overwrite=overwrite),
            secondary,
        )

    def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        return self.store(self.stage.authoritative).scan_sessions(
            batch_size=batch_size, after=after, since=since
        )

    def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        return self.store(self.stage.authoritative).scan_messages(
            batch_size=batch_size, after=after, since=since
        )

    async def count(self, table: Table) -> int:
        return await self._read(f"count_{table}", lambda s: s.count(table))
