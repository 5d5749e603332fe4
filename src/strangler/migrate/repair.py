"""Repair: make the non-authoritative store match the authoritative one.

Takes the diff from ``verify.diff_stores`` and mirrors every differing record from the
authoritative store (``proxy.mirror``): what is missing is inserted, what is extra is
deleted, what differs is overwritten. Mirroring is state-based (read the source, write the
target, read again), so it is safe while the facade keeps writing. Sessions go first, so
messages find their session; within a table, ``concurrency`` records are mirrored at once.

A record that cannot be mirrored (an orphan message whose session neither store holds, a
store error) does not stop the run: it is counted as failed and named in the result.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import structlog

from strangler.core.errors import StoreUnavailable, StranglerError
from strangler.core.ports import ChatStore
from strangler.core.records import TABLES, Table
from strangler.migrate.verify import TableDiff
from strangler.proxy.mirror import mirror

log = structlog.get_logger(__name__)


@dataclass
class RepairResult:
    table: Table
    inserted: int = 0
    deleted: int = 0
    overwritten: int = 0
    failed: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def repaired(self) -> int:
        return self.inserted + self.deleted + self.overwritten


async def repair(
    authoritative: ChatStore,
    other: ChatStore,
    diffs: dict[Table, TableDiff],
    *,
    dry_run: bool = False,
    concurrency: int = 16,
) -> list[RepairResult]:
    """Mirror every id in ``diffs`` from ``authoritative`` into ``other``."""
    results = []
    for table in TABLES:
        diff = diffs.get(table)
        if diff is None:
            continue
        result = RepairResult(table)
        results.append(result)
        work = [
            *((i, "inserted") for i in diff.missing),
            *((i, "deleted") for i in diff.extra),
            *((i, "overwritten") for i in diff.different),
        ]
        if dry_run:
            result.inserted, result.deleted = len(diff.missing), len(diff.extra)
            result.overwritten = len(diff.different)
            continue

        async def one(record_id: uuid.UUID, kind: str, result: RepairResult = result) -> None:
            try:
                await mirror(authoritative, other, result.table, record_id)
            except StoreUnavailable:
                raise  # a store is down: stop, rather than fail every record
            except StranglerError as exc:
                result.failed[record_id] = str(exc)
                log.warning("repair_failed", table=result.table, id=str(record_id), error=str(exc))
                return
            setattr(result, kind, getattr(result, kind) + 1)

        for start in range(0, len(work), concurrency):
            # Every started mirror runs to its end (never cancelled mid-write), then the
            # first store outage, if any, stops the run.
            outcomes = await asyncio.gather(
                *(one(i, kind) for i, kind in work[start : start + concurrency]),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
    return results
