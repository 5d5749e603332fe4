"""Shadow reads: a sampled read of the other store, compared off the request path.

Concurrency is bounded: when ``max_inflight`` comparisons are running, new ones are
dropped and counted instead of queueing, so shadow work never slows requests. A mismatch
is checked again after ``recheck_delay`` (the secondary may simply not have caught up) and
only then recorded as a divergence.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from strangler.core.errors import NotFound, StranglerError
from strangler.proxy.metrics import FacadeMetrics

log = structlog.get_logger(__name__)

Fetch = Callable[[], Awaitable[Any]]
Differ = Callable[[Any, Any], dict[str, Any]]
OnDivergence = Callable[[str, str, dict[str, Any]], Awaitable[None]]


async def _outcome(fetch: Fetch) -> Any:
    """The read's result, or None when the record is not found."""
    try:
        return await fetch()
    except NotFound:
        return None


class ShadowReader:
    """Schedules and runs shadow comparisons as tracked background tasks."""

    def __init__(
        self,
        metrics: FacadeMetrics,
        *,
        sample_rate: float = 1.0,
        max_inflight: int = 32,
        recheck_delay: float = 0.25,
    ) -> None:
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.max_inflight = max_inflight
        self.recheck_delay = recheck_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_divergence: OnDivergence | None = None

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    def submit(
        self,
        table: str,
        key: str,
        authoritative: Any,
        auth_fetch: Fetch,
        other_fetch: Fetch,
        differ: Differ,
    ) -> None:
        """Maybe compare ``authoritative`` (already served) with the other store's answer."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        if len(self._tasks) >= self.max_inflight:
            self.metrics.shadow_dropped.inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._compare(table, key, authoritative, auth_fetch, other_fetch, differ)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(
        self,
        table: str,
        key: str,
        authoritative: Any,
        auth_fetch: Fetch,
        other_fetch: Fetch,
        differ: Differ,
    ) -> None:
        try:
            diff = differ(authoritative, await _outcome(other_fetch))
            if diff:
                await asyncio.sleep(self.recheck_delay)
                auth_now, other_now = await asyncio.gather(
                    _outcome(auth_fetch), _outcome(other_fetch)
                )
                diff = differ(auth_now, other_now)
            self.metrics.compared(table, diverged=bool(diff))
            if diff and self.on_divergence is not None:
                await self.on_divergence(table, key, diff)
        except StranglerError as exc:
            # The other store being down is not a divergence; its errors show in metrics.
            log.debug("shadow_read_failed", table=table, id=key, error=str(exc))

    async def drain(self, wait: float = 5.0) -> None:
        """Wait for running comparisons (then cancel what is left), for shutdown and tests."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=wait)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
