"""A circuit breaker per store: once a store keeps failing as the secondary, stop asking it
on the request path until a probe shows it answers again.

* **closed**: secondary writes are tried, bounded by the secondary timeout. ``failures``
  failures or timeouts in a row open it.
* **open**: secondary writes are journaled at once, with no wait; the replayer leaves that
  store's entries alone. A probe (the store's ``ping``, bounded by the probe timeout) runs
  after ``probe_initial`` seconds, then with the delay doubled after each failed probe, up
  to ``probe_max`` (0.5 s by default: two pings a second cost a hung store nothing, and a
  store that answers again is back within half a second, which the 2 s it has to settle
  after a hang needs).
* **half_open**: a probe is in flight. Success closes the breaker (and the caller wakes
  the replayer, which drains the journal); failure opens it again.

Each transition is logged (``breaker_opened``, ``breaker_half_open``, ``breaker_closed``)
and shown on ``strangler_breaker_state{store}`` (0 closed, 1 half open, 2 open).

The probe runs as a task of its own that is never cancelled (cancelling a PyMongo call
mid-selection corrupts its topology lock); it is bounded by the store's own timeouts, and
the breaker stops waiting for it after ``probe_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)

State = Literal["closed", "half_open", "open"]
STATE_VALUE: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class Breaker:
    def __init__(
        self,
        store: str,
        probe: Callable[[], Awaitable[Any]],
        *,
        failures: int = 5,
        probe_initial: float = 0.25,
        probe_max: float = 0.5,
        probe_timeout: float = 2.0,
        on_change: Callable[[str, State], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._probe = probe
        self.threshold = failures
        self.probe_initial = probe_initial
        self.probe_max = probe_max
        self.probe_timeout = probe_timeout
        self._on_change = on_change
        self._on_close = on_close
        self.state: State = "closed"
        self.failures = 0  # in a row
        self.opened_at: float | None = None
        self.opened_total = 0
        self.skipped = 0  # secondary writes journaled without a try while open
        self._delay = probe_initial
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- the request path --------------------------------------------------------------------
    def allow(self) -> bool:
        """Whether to try the store now (closed); if not, the caller journals at once."""
        if self.state == "closed":
            return True
        self.skipped += 1
        return False

    def success(self) -> None:
        self.failures = 0

    def failure(self, error: str) -> None:
        """A failure or timeout: the ``failures``-th in a row opens the breaker."""
        self.failures += 1
        if self.state == "closed" and self.failures >= self.threshold:
            self._open(error)

    # --- probing ---------------------------------------------------------------------------
    def _set(self, state: State) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(self.store, state)

    def _open(self, error: str) -> None:
        self.opened_at = time.monotonic()
        self.opened_total += 1
        self._delay = self.probe_initial
        self._set("open")
        log.warning(
            "breaker_opened",
            store=self.store,
            failures=self.failures,
            error=error,
            detail="secondary writes to this store are journaled at once until a probe succeeds",
        )
        if self._task is None and not self._stopping:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to probe with
                self._task = asyncio.get_running_loop().create_task(
                    self._probing(), name=f"breaker-{self.store}"
                )

    async def _probing(self) -> None:
        try:
            while self.state != "closed" and not self._stopping:
                await asyncio.sleep(self._delay)
                if self._stopping:
                    return
                self._set("half_open")
                log.info("breaker_half_open", store=self.store, after_s=round(self._delay, 2))
                error = await self._try_probe()
                if error is None:
                    opened = self.opened_at or time.monotonic()
                    self.failures = 0
                    self._set("closed")
                    log.info(
                        "breaker_closed",
                        store=self.store,
                        open_s=round(time.monotonic() - opened, 2),
                    )
                    if self._on_close is not None:
                        self._on_close()
                    return
                self._delay = min(self.probe_max, self._delay * 2)
                self._set("open")
                log.info("breaker_probe_failed", store=self.store, error=error, next_s=self._delay)
        finally:
            self._task = None

    async def _try_probe(self) -> str | None:
        """The probe's error, or None if the store answered within ``probe_timeout``."""
        task = asyncio.get_running_loop().create_task(self._probe_once())
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.probe_timeout)
        except TimeoutError:
            return f"no answer within {self.probe_timeout:g}s"

    async def _probe_once(self) -> str | None:
        try:
            await self._probe()
        except Exception as exc:  # any failure keeps it open
            return f"{type(exc).__name__}: {exc}"
        return None

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            # It sleeps, or waits at most probe_timeout on a shielded probe: wait it out.
            await asyncio.wait({task}, timeout=self.probe_timeout + 1)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "state": self.state,
            "failures_in_a_row": self.failures,
            "opened_total": self.opened_total,
            "open_for_s": None
            if self.state == "closed" or self.opened_at is None
            else round(time.monotonic() - self.opened_at, 1),
            "skipped_writes": self.skipped,
            "next_probe_s": None if self.state == "closed" else self._delay,
        }
