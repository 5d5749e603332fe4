"""The stage gate: gathers the records a move's evidence is judged from, and judges it
(``strangler.core.evidence``). The stage controller asks it before every move; the CLI's
``stage set --dry-run``, the admin API's ``/admin/stage/check`` and the dashboard's move
dialog show the same list."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from strangler.core.evidence import Check, Facts, Thresholds, checks, missing
from strangler.core.stages import Role, Stage


class EvidenceRecords(Protocol):
    """Where the facts come from (``backends.postgres.evidence.PostgresEvidence``)."""

    async def gather(self, now: dt.datetime) -> Facts: ...


class StageGate:
    def __init__(
        self,
        records: EvidenceRecords,
        pending: Callable[[Role], Awaitable[int]],
        *,
        follow: bool,
        limits: Thresholds | None = None,
    ) -> None:
        self._records = records
        self._pending = pending
        self.follow = follow
        self.limits = limits or Thresholds()

    async def facts(self) -> Facts:
        found = await self._records.gather(dt.datetime.now(dt.UTC))
        return dataclasses.replace(
            found,
            pending_supabase=await self._pending("new"),
            pending_mongo=await self._pending("old"),
            follow=self.follow,
        )

    async def checks(self, current: Stage, target: Stage) -> list[Check]:
        """Every piece of evidence ``current -> target`` needs, each judged."""
        return checks(current, target, await self.facts(), self.limits)


def refusal(target: Stage, found: list[Check]) -> str:
    """The message of a refused move: each missing piece, and what supplies it."""
    lacking = missing(found)
    lines = [f"refusing to move to {target}: {len(lacking)} piece(s) of evidence missing"]
    for c in lacking:
        lines.append(f"  - {c.need}: {c.found}" + (f" -> {c.fix}" if c.fix else ""))
    lines.append("(or pass --force with --reason to move without it; the reason is recorded)")
    return "\n".join(lines)
