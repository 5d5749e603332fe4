"""Compare two stores' answers after normalisation (DESIGN.md): field-level diffs.

Records are compared in their JSON form (UTC millisecond timestamps, UUID strings, base64
bytes). U+0000 counts as equal to U+FFFD, because the backfill stores the replacement
where Postgres cannot hold the original.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from strangler.core.normalize import replace_nul
from strangler.core.records import Page

ABSENT = "<absent>"


def normalise(record: BaseModel | None) -> dict[str, Any] | None:
    """A record's comparable form, or None when it is absent."""
    if record is None:
        return None
    dumped: dict[str, Any] = replace_nul(record.model_dump(mode="json"))
    return dumped


def diff_records(a: BaseModel | None, b: BaseModel | None) -> dict[str, Any]:
    """``{field: {"authoritative": x, "other": y}}`` for every field that differs."""
    if a is None or b is None:
        if a is None and b is None:
            return {}
        return {
            "record": {
                "authoritative": ABSENT if a is None else "present",
                "other": ABSENT if b is None else "present",
            }
        }
    if a == b:
        # Equal as Python values is equal as dumped (verify's hot path: two ``model_dump``s
        # cost several times this comparison).
        return {}
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    if da == db:
        # Equal as dumped is equal once normalised (the same function of both): skips
        # walking every string for U+0000 in the usual case (verify's hot path).
        return {}
    na, nb = replace_nul(da), replace_nul(db)
    return {
        k: {"authoritative": na.get(k, ABSENT), "other": nb.get(k, ABSENT)}
        for k in sorted(set(na) | set(nb))
        if na.get(k, ABSENT) != nb.get(k, ABSENT)
    }


def diff_pages(a: Page[Any], b: Page[Any]) -> dict[str, dict[str, Any]]:
    """Per-id diffs between two pages of records (ids only in one page count as absent)."""
    by_a = {str(r.id): r for r in a.items}
    by_b = {str(r.id): r for r in b.items}
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(set(by_a) | set(by_b)):
        d = diff_records(by_a.get(key), by_b.get(key))
        if d:
            out[key] = d
    return out
