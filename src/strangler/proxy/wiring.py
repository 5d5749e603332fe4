"""Wiring: the facade with its journals, stage control, shadow reader and divergence recorder.

``assemble`` connects nothing; ``connect`` opens both stores from ``Settings`` and yields
the running facade, the one call an existing backend needs::

    async with strangler.connect(Settings()) as store:
        await store.add_message(...)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from strangler.backends.mongo import MongoStore
from strangler.backends.mongo_journal import MongoJournal
from strangler.backends.postgres import PostgresStore
from strangler.backends.postgres_control import PostgresControl, PostgresJournal
from strangler.config import Settings
from strangler.config.selection import new_store, old_store
from strangler.proxy.control import StageController
from strangler.proxy.divergence import DivergenceRecorder
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.journal import WriteJournal
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.shadow import ShadowReader
from strangler.proxy.stages import Role, Stage


@dataclass(frozen=True)
class FacadeOptions:
    stage: Stage | None = None
    shadow_sample_rate: float = 1.0
    shadow_max_inflight: int = 32
    shadow_recheck_delay: float = 0.25
    read_repair: bool = False
    secondary_timeout: float = 2.0
    stage_poll_seconds: float = 1.0
    replay_interval: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> FacadeOptions:
        return cls(
            stage=settings.stage,
            shadow_sample_rate=settings.shadow_sample_rate,
            shadow_max_inflight=settings.shadow_max_inflight,
            read_repair=settings.read_repair,
            secondary_timeout=settings.secondary_timeout,
            stage_poll_seconds=settings.stage_poll_seconds,
        )


def assemble(old: MongoStore, new: PostgresStore, options: FacadeOptions) -> DualWriteStore:
    """Build the facade over two stores the caller has opened."""
    control = PostgresControl(new)
    journals: dict[Role, WriteJournal] = {"old": MongoJournal(old), "new": PostgresJournal(new)}
    metrics = FacadeMetrics()
    shadow = ShadowReader(
        metrics,
        sample_rate=options.shadow_sample_rate,
        max_inflight=options.shadow_max_inflight,
        recheck_delay=options.shadow_recheck_delay,
    )

    async def pending(role: Role) -> int:
        return await facade.pending(role)

    controller = StageController(
        control,
        override=options.stage,
        pending=pending,
        poll_interval=options.stage_poll_seconds,
        on_change=lambda s: _show_stage(metrics, s),
    )
    facade = DualWriteStore(
        old,
        new,
        controller=controller,
        journals=journals,
        metrics=metrics,
        shadow=shadow,
        secondary_timeout=options.secondary_timeout,
        replay_interval=options.replay_interval,
        control=control,
    )
    shadow.on_divergence = DivergenceRecorder(
        metrics,
        lambda: facade.stage,
        control=control,
        journals=journals,
        read_repair=options.read_repair,
        wake=facade.replayer.wake,
    )
    return facade


def _show_stage(metrics: FacadeMetrics, stage: Stage) -> None:
    for s in Stage:
        metrics.stage.labels(s.value).set(1 if s == stage else 0)


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[DualWriteStore]:
    """Open both stores from ``settings`` and yield the running, staged facade."""
    async with (
        old_store(settings) as old,
        new_store(settings) as new,
        assemble(old, new, FacadeOptions.from_settings(settings)) as facade,
    ):
        yield facade
