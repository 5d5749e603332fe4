"""Repair: make the non-authoritative store match the authoritative one.

Takes the diff from ``verify.diff_stores`` and mirrors every differing record from the
authoritative store (``proxy.mirror``): what is missing is inserted, what is extra is
deleted, what differs is overwritten. Sessions go first, so messages find their session.
"""

from __future__ import annotations

from dataclasses import dataclass

from strangler.backends.base import TABLES, ChatStore, Table
from strangler.migrate.verify import TableDiff
from strangler.proxy.mirror import mirror


@dataclass(frozen=True)
class RepairResult:
    table: Table
    repaired: int


async def repair(
    authoritative: ChatStore,
    other: ChatStore,
    diffs: dict[Table, TableDiff],
    *,
    dry_run: bool = False,
) -> list[RepairResult]:
    """Mirror every id in ``diffs`` from ``authoritative`` into ``other``."""
    results = []
    for table in TABLES:
        diff = diffs.get(table)
        if diff is None:
            continue
        ids = diff.ids()
        if not dry_run:
            for record_id in ids:
                await mirror(authoritative, other, table, record_id)
        results.append(RepairResult(table, len(ids)))
    return results
