"""The rollout guard: at ``live`` and ``rampdown`` every instance watches sliding windows of
what its facade sees, and when Supabase is clearly worse than MongoDB for long enough it
steps the stage back one step, once.

* **What it watches** (``FacadeMetrics.window``, the last ``window`` seconds): Supabase's
  error rate; Supabase's p99 against MongoDB's p99 in the same window (MongoDB's second
  writes and shadow reads are timed too); the divergence rate of shadow comparisons.
* **Breach:** any limit crossed, with at least ``min_samples`` calls to judge by. It must
  hold for ``sustain`` seconds before the guard acts: a blip is not a breach.
* **Once, without flapping:** the move is recorded as made by the guard (origin
  ``guard:<instance>``), with the figures that tripped it. After that no guard on any
  instance acts again until an operator moves the stage (the latest transition is not the
  guard's), so ``rampdown → live`` is never followed by ``live → shadow`` on its own.
* **A pinned stage** (``STRANGLER_STAGE``) disables it: the environment wins.
* A step back that the stage controller refuses (pending repairs for MongoDB) is logged and
  tried again while the breach lasts; the guard never forces.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from strangler.core.errors import StranglerError
from strangler.core.ports import StageStore
from strangler.core.stages import Stage
from strangler.proxy.control import StageController
from strangler.proxy.metrics import FacadeMetrics

log = structlog.get_logger(__name__)

GUARDED = (Stage.LIVE, Stage.RAMPDOWN)
ORIGIN = "guard"


@dataclass(frozen=True)
class GuardLimits:
    #: Each look covers the last ``window`` seconds; a breach must be seen in every look
    #: for ``sustain`` seconds. A fault shorter than ``sustain - window`` never trips it.
    window: float = 10.0
    sustain: float = 20.0
    max_error_rate: float = 0.05
    #: Supabase's p99 may be this many times MongoDB's (both in the window) ...
    max_p99_ratio: float = 3.0
    #: ... unless it is under this anyway (milliseconds): fast is fast.
    p99_floor_ms: float = 100.0
    max_divergence_rate: float = 0.01
    min_samples: int = 20
    every: float = 1.0


def breach(window: dict[str, Any], limits: GuardLimits, *, new: str, old: str) -> dict[str, Any]:
    """The limits ``window`` crosses, with their figures (empty: none)."""
    out: dict[str, Any] = {}
    stores = window.get("stores", {})
    sup, mon = stores.get(new), stores.get(old)
    seconds = window.get("window_s") or limits.window
    if sup and sup["ops_per_s"] * seconds >= limits.min_samples:
        if sup["error_rate"] > limits.max_error_rate:
            out["supabase_error_rate"] = round(sup["error_rate"], 4)
        if (
            mon
            and mon["ops_per_s"] * seconds >= limits.min_samples
            and sup["p99_ms"] > limits.p99_floor_ms
            and sup["p99_ms"] > limits.max_p99_ratio * mon["p99_ms"]
        ):
            out["supabase_p99_ms"] = round(sup["p99_ms"], 1)
            out["mongodb_p99_ms"] = round(mon["p99_ms"], 1)
    rate = window.get("consistency_rate")
    if rate is not None and 1 - rate > limits.max_divergence_rate:
        out["divergence_rate"] = round(1 - rate, 4)
    return out


class Guard:
    def __init__(
        self,
        controller: StageController,
        stages: StageStore,
        metrics: FacadeMetrics,
        *,
        instance: str,
        new: str = "postgres",
        old: str = "mongo",
        limits: GuardLimits | None = None,
    ) -> None:
        self._controller = controller
        self._stages = stages
        self._metrics = metrics
        self._instance = instance
        self._new, self._old = new, old
        self.limits = limits or GuardLimits()
        self._task: asyncio.Task[None] | None = None
        self._since: float | None = None
        #: What this instance's guard sees now, for ``/admin/status`` and the dashboard.
        self.state: dict[str, Any] = {"watching": False, "breach": {}, "acted": None}

    def start(self) -> None:
        if self._task is None and self._controller.override is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.limits.every)
            with contextlib.suppress(StranglerError):  # the control table is out of reach
                await self.tick()

    async def tick(self) -> None:
        stage = self._controller.stage
        watching = stage in GUARDED and self._controller.override is None
        self.state["watching"] = watching
        if not watching:
            self._since = None
            self.state["breach"] = {}
            return
        figures = breach(
            self._metrics.window(self.limits.window), self.limits, new=self._new, old=self._old
        )
        self.state["breach"] = figures
        if not figures:
            self._since = None
            return
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.warning("guard_breach", stage=stage.value, **figures)
        if now - self._since < self.limits.sustain:
            return
        latest = await self._stages.transitions(1)
        if latest and str(latest[0].get("origin", "")).startswith(ORIGIN):
            return  # the guard acted already: an operator moves next
        back = list(Stage)[list(Stage).index(stage) - 1]
        sustained = round(now - self._since, 1)
        reason = (
            f"guard: {', '.join(f'{k}={v}' for k, v in figures.items())} for {sustained}s "
            f"over a {self.limits.window:g}s window"
        )
        try:
            await self._controller.set(back, reason=reason, origin=f"{ORIGIN}:{self._instance}")
        except StranglerError as exc:  # pending repairs for MongoDB, a race: next tick
            log.warning(
                "stage_auto_rollback_refused", stage=stage.value, to=back.value, error=str(exc)
            )
            return
        self._since = None
        self.state["acted"] = {"from": stage.value, "to": back.value, "figures": figures}
        self._metrics.auto_rollbacks.labels(stage.value, back.value).inc()
        log.error(
            "stage_auto_rolled_back",
            stage=back.value,
            previous=stage.value,
            reason=reason,
            **figures,
        )
