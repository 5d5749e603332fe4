"""The stage gate: gathers the records a move's evidence is judged from, and judges it
(``strangler.core.evidence``). The stage controller asks it before every move; the CLI's
``stage set --dry-run``, the admin API's ``/admin/stage/preview`` and the dashboard's move
dialog show the same list."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from strangler.core.errors import StranglerError
from strangler.core.evidence import Check, Facts, Thresholds, checks, missing
from strangler.core.stages import Role, Stage
from strangler.proxy.metrics import FacadeMetrics

log = structlog.get_logger(__name__)


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


class ComparisonCounter:
    """Adds this instance's shadow comparisons to Postgres every ``every`` seconds, so the
    consistency rate of a whole shadow phase, across every instance, is evidence."""

    def __init__(
        self,
        metrics: FacadeMetrics,
        sink: Callable[[str, int, int], Awaitable[None]],
        *,
        instance: str,
        every: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._sink = sink
        self._instance = instance
        self._every = every
        self._sent = (0, 0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shadow-count")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        now = (self._metrics.compared_total, self._metrics.matched_total)
        compared, matched = now[0] - self._sent[0], now[1] - self._sent[1]
        if not compared:
            return
        try:
            await self._sink(self._instance, compared, matched)
        except StranglerError as exc:  # kept: the next flush sends them
            log.debug("shadow_counts_not_saved", error=str(exc))
            return
        self._sent = now

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()


def refusal(target: Stage, found: list[Check]) -> str:
    """The message of a refused move: each missing piece, and what supplies it."""
    lacking = missing(found)
    lines = [f"refusing to move to {target}: {len(lacking)} piece(s) of evidence missing"]
    for c in lacking:
        lines.append(f"  - {c.need}: {c.found}" + (f" -> {c.fix}" if c.fix else ""))
    lines.append("(or pass --force with --reason to move without it; the reason is recorded)")
    return "\n".join(lines)
