"""New messages with what goes along with them, in one statement: a transactional outbox.

Where Postgres is authoritative, a sent message carries its realtime event (``strangler.
events``, with ``NOTIFY strangler_events``) and, at ``complete``, its journal entry for
MongoDB (``strangler.pending_writes``, so a rollback can catch MongoDB up). One statement
writes all three, so they exist exactly when the message does, in one round trip and one
commit instead of three.

Sends that arrive while a statement is in flight wait and go together in the next one
(``MessageOutbox``): under load a statement carries several messages, and each costs a
fraction of a round trip. Nothing waits on a timer, so an idle instance sends at once. If
a batch fails on one message (a duplicate id, a session deleted meanwhile), its messages are
sent one by one, so each caller gets its own answer.

A send keeps its request's time budget (``core.budget``) though another task runs its
statement: a statement may take until the earliest deadline among its sends, and a send
whose deadline passes while it waits for a statement is answered unavailable, unsent. (A
full chaos run with Postgres hung had sends answer 503 only after 6.7 s: they queued
behind statements that each waited out the whole store timeout.)

Event ids are drawn under a transaction-level advisory lock held until commit
(``EVENTS_LOCK``), so they commit in order: a reader that has seen id N and reads
``id > N`` from then on can never miss a smaller id that commits later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from strangler.backends.postgres.store import MESSAGE_COLS, PostgresStore
from strangler.core import budget
from strangler.core.errors import StoreUnavailable, StranglerError
from strangler.core.models import Message
from strangler.core.records import EventDraft

#: The advisory lock every event append takes before its ids are drawn, held to commit.
EVENTS_LOCK = 0x53_54_52_45_56  # "STREV"

#: Append one event (``$1``-``$4``: kind, user, session, payload) and NOTIFY its id.
PUBLISH_EVENT = (
    f"WITH l AS (SELECT pg_advisory_xact_lock({EVENTS_LOCK})),"
    " e AS (INSERT INTO strangler.events (kind, user_id, session_id, payload)"
    " SELECT $1::text, $2::text, $3::uuid, $4::jsonb FROM l RETURNING id)"
    " SELECT id FROM e, LATERAL pg_notify('strangler_events', e.id::text)"
)

#: Messages (``$1``-``$8``, one array per column), journal entries for MongoDB (``$9``:
#: message ids) and events (``$10``-``$13``: kinds, users, sessions, payloads, in order).
#: One NOTIFY per statement: listeners only need waking, then read ``id > last``.
_SEND = (
    f"WITH m AS (INSERT INTO messages ({MESSAGE_COLS})"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[],"
    " $5::timestamptz[], $6::text[], $7::text[], $8::text[]) RETURNING id),"
    " j AS (INSERT INTO strangler.pending_writes (target, table_name, record_id)"
    " SELECT 'old', 'messages', p.id FROM unnest($9::uuid[]) AS p(id)),"
    f" l AS (SELECT pg_advisory_xact_lock({EVENTS_LOCK}) FROM (SELECT count(*) FROM m) AS c"
    " WHERE cardinality($10::text[]) > 0),"
    " e AS (INSERT INTO strangler.events (kind, user_id, session_id, payload)"
    " SELECT x.k, x.u, x.s, x.p FROM l,"
    " unnest($10::text[], $11::text[], $12::uuid[], $13::jsonb[]) WITH ORDINALITY"
    " AS x(k, u, s, p, n) ORDER BY x.n RETURNING id)"
    " SELECT pg_notify('strangler_events', max(id)::text) FROM e HAVING count(*) > 0"
)


@dataclass(frozen=True)
class _Send:
    row: tuple[Any, ...]
    park: bool
    event: EventDraft | None
    done: asyncio.Future[None]
    #: ``time.monotonic()`` by which its request must have its answer.
    deadline: float

    def settle(self, error: BaseException | None = None) -> None:
        if self.done.done():  # its request went away meanwhile
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


class MessageOutbox:
    """Coalesces concurrent sends into shared statements (see the module's docstring)."""

    def __init__(
        self,
        store: PostgresStore,
        *,
        max_batch: int = 256,
        in_flight: int = 2,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._waiting: list[_Send] = []
        self._flushers: set[asyncio.Task[None]] = set()
        #: Statements run and messages they carried (their ratio is the batching achieved).
        self.statements = 0
        self.messages = 0

    async def send(self, message: Message, *, park: bool, event: EventDraft | None) -> None:
        """Insert ``message`` with its journal entry (``park``) and ``event``; errors as
        ``PostgresStore.add_message``."""
        row = self._store.message_row(message)  # the limits: this caller's error alone
        loop = asyncio.get_running_loop()
        deadline = budget.deadline(self._store.timeout, "postgres")
        send = _Send(row, park, event, loop.create_future(), deadline)
        self._waiting.append(send)
        if len(self._flushers) < self._in_flight:
            task = loop.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        await send.done

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            now = time.monotonic()
            late: list[_Send] = []
            live: list[_Send] = []
            for send in batch:
                (late if send.deadline <= now or send.done.done() else live).append(send)
            batch = live
            for send in late:
                send.settle(
                    StoreUnavailable(
                        "postgres: the message was not sent: its request's time "
                        f"({self._store.timeout:g} s, STRANGLER_STORE_TIMEOUT) ran out while "
                        "it waited for earlier sends; retry shortly",
                        store="postgres",
                    )
                )
            if not batch:
                continue
            try:
                with budget.request_budget(min(s.deadline for s in batch) - now):
                    await self._insert(batch)
            except StoreUnavailable as exc:
                for send in batch:
                    send.settle(exc)
            except StranglerError as exc:
                if len(batch) == 1:
                    batch[0].settle(exc)
                    continue
                for send in batch:  # one of them is refused: find which, answer each
                    try:
                        with budget.request_budget(send.deadline - time.monotonic()):
                            await self._insert([send])
                    except StranglerError as one:
                        send.settle(one)
                    else:
                        send.settle()
            except BaseException as exc:
                for send in batch:
                    send.settle(exc)
                raise
            else:
                for send in batch:
                    send.settle()

    async def _insert(self, batch: list[_Send]) -> None:
        columns: list[list[Any]] = [[] for _ in range(8)]
        for send in batch:
            for column, value in zip(columns, send.row, strict=True):
                column.append(value)
        parked = [s.row[0] for s in batch if s.park]
        events = [s.event for s in batch if s.event is not None]
        self.statements += 1
        self.messages += len(batch)
        async with self._store.connection("add message") as conn:
            await conn.execute(
                _SEND,
                *columns,
                parked,
                [e.kind for e in events],
                [e.user_id for e in events],
                [e.session_id for e in events],
                [e.payload for e in events],
            )
