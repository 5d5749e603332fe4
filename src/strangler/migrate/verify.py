"""Verify: a full diff of two stores, table by table, after normalisation.

Both stores are scanned in ascending id order (the ``scan_*`` contract) and merged like a
sorted-merge join, so memory stays constant however large the tables are. Each table's
result counts the rows missing from the other store, the extra ones, and the different
ones, with samples and field-level diffs.

``since`` compares only rows created (sessions) or sent (messages) at or after a moment,
so it can run every few minutes during a migration. A row that only one store's window
holds is then looked up by id in the other store: its time may differ there, or be a
legacy string the window cannot match, and that is a difference, not a missing row.

Under live traffic the two scans see slightly different moments, so every id they find
different is re-read on both sides half a second later (``settle``) and reported only if it
still differs: a message sent during the verify is not a false alarm.

A long verify can be **resumed**: every 1,000 rows ``checkpoint`` receives each table's
partial result and the last id compared (every id up to it is done on both sides), and
``diff_stores(resume=...)`` starts each table after it, with the counts and samples found
before. ``Throttle`` caps the rows compared per second, to spare a production MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from strangler.core.errors import CorruptRecord
from strangler.core.ports import ChatStore
from strangler.core.records import TABLES, Table
from strangler.migrate.readahead import read_ahead
from strangler.proxy.compare import diff_records
from strangler.proxy.mirror import read_state

SAMPLES = 20
#: ``(table, rows compared so far)``
Progress = Callable[[Table, int], None]
#: ``(the table's partial result, the last id compared)``: what a resume needs.
Checkpoint = Callable[["TableDiff", uuid.UUID], None]
#: Rows between checkpoints and throttle checks.
EVERY = 1000
#: Rows per scan batch: larger batches mean fewer round trips to a busy MongoDB (5,000
#: measured 0.86-0.88x of its bare scan at 200k messages, 1,000 gave 0.67-0.82x).
BATCH = 5000
#: Batches each store's scan is read ahead (``migrate.readahead``): one store's next batch
#: is on its way while the other's is read and the rows compared.
AHEAD = 2
THROTTLE_EVERY = 100


class Throttle:
    """At most ``rate`` rows a second, on average since the first row."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._start: float | None = None
        self._taken = 0

    async def take(self, rows: int) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._taken += rows
        ahead = self._taken / self.rate - (now - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


@dataclass
class TableDiff:
    table: Table
    compared: int = 0
    missing: list[uuid.UUID] = field(default_factory=list)
    extra: list[uuid.UUID] = field(default_factory=list)
    different: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: {"missing": 0, "extra": 0, "different": 0}
    )

    @property
    def equal(self) -> bool:
        return not any(self.counts.values())

    def ids(self) -> list[uuid.UUID]:
        """Every id that needs repair (as far as samples were kept: all, unless capped)."""
        return [*self.missing, *self.extra, *self.different]

    def state(self, after: uuid.UUID | None, *, done: bool = False) -> dict[str, Any]:
        """What a resumed verify starts from (JSON): the last id compared, the counts, and
        the ids kept so far (at most ``SAMPLES`` of each kind)."""
        return {
            "after": None if after is None else str(after),
            "done": done,
            "compared": self.compared,
            "counts": dict(self.counts),
            "missing": [str(i) for i in self.missing[:SAMPLES]],
            "extra": [str(i) for i in self.extra[:SAMPLES]],
            "different": {str(k): v for k, v in list(self.different.items())[:SAMPLES]},
        }

    @classmethod
    def from_state(cls, table: Table, state: dict[str, Any]) -> TableDiff:
        out = cls(table, compared=int(state.get("compared", 0)))
        out.counts.update({k: int(v) for k, v in state.get("counts", {}).items()})
        out.missing = [uuid.UUID(i) for i in state.get("missing", [])]
        out.extra = [uuid.UUID(i) for i in state.get("extra", [])]
        out.different = {uuid.UUID(k): v for k, v in state.get("different", {}).items()}
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "compared": self.compared,
            **self.counts,
            "samples": {
                "missing": [str(i) for i in self.missing[:SAMPLES]],
                "extra": [str(i) for i in self.extra[:SAMPLES]],
                "different": {str(k): v for k, v in list(self.different.items())[:SAMPLES]},
            },
        }


async def _records(
    store: ChatStore,
    table: Table,
    batch: int,
    since: dt.datetime | None,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
) -> AsyncIterator[Any]:
    """The table's records in id order, after ``after`` and before ``before`` (a
    partition's end: the scan stops at the first id past it)."""
    chunks: AsyncIterator[list[Any]] = (
        store.scan_sessions(batch_size=batch, since=since, after=after)
        if table == "chat_sessions"
        else store.scan_messages(batch_size=batch, since=since, after=after)
    )
    async with contextlib.aclosing(read_ahead(chunks, AHEAD)) as ahead:
        async for chunk in ahead:
            for record in chunk:
                if before is not None and record.id >= before:
                    return
                yield record


def start_after(lo: uuid.UUID | None, resumed: uuid.UUID | None) -> uuid.UUID | None:
    """Where a scan of ``[lo, …)`` starts (``after`` is exclusive), or a resumed one."""
    first = None if lo is None or lo.int == 0 else uuid.UUID(int=lo.int - 1)
    if resumed is None or (first is not None and resumed < first):
        return first
    return resumed


async def _next(it: AsyncIterator[Any]) -> Any:
    return await anext(it, None)


async def _lookup(store: ChatStore, table: Table, record_id: uuid.UUID) -> Any:
    try:
        return await read_state(store, table, record_id)
    except CorruptRecord:
        return None  # unreadable legacy document: scans skip it too (the backfill reports it)


async def diff_table(
    authoritative: ChatStore,
    other: ChatStore,
    table: Table,
    *,
    batch: int = BATCH,
    keep: int | None = None,
    since: dt.datetime | None = None,
    progress: Progress | None = None,
    start: TableDiff | None = None,
    after: uuid.UUID | None = None,
    checkpoint: Checkpoint | None = None,
    throttle: Throttle | None = None,
    before: uuid.UUID | None = None,
) -> TableDiff:
    """Merge both scans by id. ``keep`` caps how many ids are kept per kind (None: all);
    ``progress`` is called every 1,000 rows (and may raise to stop the diff), and
    ``checkpoint`` too. ``after`` and ``start``: resume past that id with that result so
    far. ``throttle`` paces the rows compared. ``before``: stop there (a partition)."""
    result = start or TableDiff(table)
    a_it = _records(authoritative, table, batch, since, after, before)
    b_it = _records(other, table, batch, since, after, before)
    a, b = await _next(a_it), await _next(b_it)

    def note(kind: str, record_id: uuid.UUID, diff: dict[str, Any] | None = None) -> None:
        result.counts[kind] += 1
        if keep is not None and result.counts[kind] > keep:
            return
        if kind == "missing":
            result.missing.append(record_id)
        elif kind == "extra":
            result.extra.append(record_id)
        else:
            result.different[record_id] = diff or {}

    def compare(x: Any, y: Any) -> None:
        d = diff_records(x, y)
        if d:
            note("different", x.id, d)

    last = after
    while a is not None or b is not None:
        # Every row compared so far has an id up to ``last``: a resume starts after it.
        if checkpoint is not None and last is not None and result.compared % EVERY == 0:
            checkpoint(result, last)
        result.compared += 1
        if progress is not None and result.compared % EVERY == 0:
            progress(table, result.compared)
        if throttle is not None and result.compared % THROTTLE_EVERY == 0:
            await throttle.take(THROTTLE_EVERY)
        if b is None or (a is not None and a.id < b.id):
            last = a.id
            twin = None if since is None else await _lookup(other, table, a.id)
            if twin is None:
                note("missing", a.id)
            else:
                compare(a, twin)
            a = await _next(a_it)
        elif a is None or b.id < a.id:
            last = b.id
            twin = None if since is None else await _lookup(authoritative, table, b.id)
            if twin is None:
                note("extra", b.id)
            else:
                compare(twin, b)
            b = await _next(b_it)
        else:
            last = a.id
            compare(a, b)
            a, b = await _next(a_it), await _next(b_it)
    return result


#: Seconds to wait before re-reading the ids a scan found different: under live traffic a
#: row written between the two scans, or whose secondary write is in flight, settles.
SETTLE_SECONDS = 0.5


async def settle(
    authoritative: ChatStore, other: ChatStore, result: TableDiff, *, delay: float
) -> TableDiff:
    """Re-read every kept id on both sides after ``delay`` and keep only what still differs.

    The two scans run one after the other, so under live traffic a message sent meanwhile
    shows as "extra" or "missing" although both stores hold it a moment later. Ids past
    ``keep`` were not kept and cannot be re-read: their counts stay as scanned (an upper
    bound)."""
    ids = result.ids()
    if not ids:
        return result
    await asyncio.sleep(delay)
    settled = TableDiff(result.table, compared=result.compared)
    for kind in ("missing", "extra", "different"):
        kept = len(result.different if kind == "different" else getattr(result, kind))
        settled.counts[kind] = result.counts[kind] - kept  # the unkept remain counted
    for start in range(0, len(ids), 16):
        chunk = ids[start : start + 16]
        pairs = await asyncio.gather(
            *(
                asyncio.gather(
                    _lookup(authoritative, result.table, i), _lookup(other, result.table, i)
                )
                for i in chunk
            )
        )
        for record_id, (a, b) in zip(chunk, pairs, strict=True):
            if a is None and b is None:
                continue  # deleted on both sides meanwhile
            if b is None:
                settled.counts["missing"] += 1
                settled.missing.append(record_id)
            elif a is None:
                settled.counts["extra"] += 1
                settled.extra.append(record_id)
            else:
                d = diff_records(a, b)
                if d:
                    settled.counts["different"] += 1
                    settled.different[record_id] = d
    return settled


async def diff_stores(
    authoritative: ChatStore,
    other: ChatStore,
    *,
    batch: int = BATCH,
    keep: int | None = None,
    since: dt.datetime | None = None,
    progress: Progress | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    resume: dict[str, dict[str, Any]] | None = None,
    checkpoint: Callable[[Table, dict[str, Any]], None] | None = None,
    throttle: Throttle | None = None,
    bounds: dict[Table, tuple[uuid.UUID | None, uuid.UUID | None]] | None = None,
) -> dict[Table, TableDiff]:
    """Every table's diff; the stores are equal when every ``TableDiff.equal``. What the
    scans find different is re-read after ``settle_seconds`` (:func:`settle`).

    ``checkpoint(table, state)`` receives each table's ``TableDiff.state`` every 1,000 rows
    and when the table is done; ``resume`` (the last states, by table) skips the tables
    that were done and starts the others after their last id. ``bounds``: compare only
    ``[lo, hi)`` of each table's ids (a partition)."""
    out = {}
    for t in TABLES:
        state = (resume or {}).get(t)
        if state is not None and state.get("done"):
            out[t] = TableDiff.from_state(t, state)
            continue
        start = None if state is None else TableDiff.from_state(t, state)
        resumed = None if state is None or state.get("after") is None else uuid.UUID(state["after"])
        lo, hi = (bounds or {}).get(t, (None, None))
        after = start_after(lo, resumed)

        def note(part: TableDiff, last: uuid.UUID, t: Table = t) -> None:
            if checkpoint is not None:
                checkpoint(t, part.state(last))

        scanned = await diff_table(
            authoritative,
            other,
            t,
            batch=batch,
            keep=keep,
            since=since,
            progress=progress,
            start=start,
            after=after,
            checkpoint=note,
            throttle=throttle,
            before=hi,
        )
        out[t] = await settle(authoritative, other, scanned, delay=settle_seconds)
        if checkpoint is not None:
            checkpoint(t, out[t].state(None, done=True))
    return out
