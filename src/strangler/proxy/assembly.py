"""How the proxy's own parts fit together: the facade with its stage controller, metrics,
shadow reader, replayer and divergence recorder, over ports it is given.

Nothing here picks a concrete store: ``strangler.runtime`` does, and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

from strangler.core.ports import (
    BulkDeleter,
    BulkReader,
    ChatStore,
    DivergenceLog,
    HistoryRenderer,
    MessageSender,
    StageStore,
    Tombstones,
    WriteJournal,
)
from strangler.core.stages import Role, Stage
from strangler.proxy.control import StageController
from strangler.proxy.divergence import DivergenceRecorder
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.metrics import FacadeMetrics
from strangler.proxy.shadow import ShadowReader


@dataclass(frozen=True)
class FacadeOptions:
    """The facade's tunables (``runtime.facade_options`` reads them from ``Settings``)."""

    stage: Stage | None = None
    shadow_sample_rate: float = 1.0
    shadow_max_inflight: int = 32
    shadow_recheck_delay: float = 0.25
    read_repair: bool = False
    secondary_timeout: float = 2.0
    stage_poll_seconds: float = 1.0
    replay_interval: float = 0.5
    #: Secondary failures in a row that open a store's circuit breaker, and the longest
    #: wait between its probes (``proxy.breaker``).
    breaker_failures: int = 5
    breaker_probe_max: float = 0.5


@dataclass(frozen=True)
class ControlPorts:
    """What the facade needs besides its two stores. ``stages`` may be None only when the
    stage is pinned (``FacadeOptions.stage``); the fast paths are optional."""

    stages: StageStore | None
    journals: dict[Role, WriteJournal]
    divergences: DivergenceLog | None = None
    tombstones: Tombstones | None = None
    sender: MessageSender | None = None
    pages: HistoryRenderer | None = None
    #: The stores that read many records in one query: the replayer mirrors in bulk from
    #: them.
    readers: dict[Role, BulkReader] | None = None
    #: The stores that delete many records in one go: the replayer's deletes go in bulk.
    deleters: dict[Role, BulkDeleter] | None = None


def build_facade(
    old: ChatStore, new: ChatStore, ports: ControlPorts, options: FacadeOptions
) -> DualWriteStore:
    """The facade over two stores the caller has opened; connects nothing."""
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
        ports.stages,
        override=options.stage,
        pending=pending,
        poll_interval=options.stage_poll_seconds,
        on_change=lambda s: _show_stage(metrics, s),
    )
    facade = DualWriteStore(
        old,
        new,
        controller=controller,
        journals=ports.journals,
        metrics=metrics,
        shadow=shadow,
        secondary_timeout=options.secondary_timeout,
        replay_interval=options.replay_interval,
        breaker_failures=options.breaker_failures,
        breaker_probe_max=options.breaker_probe_max,
        tombstones=ports.tombstones,
        sender=ports.sender,
        pages=ports.pages,
        readers=ports.readers,
        deleters=ports.deleters,
    )
    shadow.on_divergence = DivergenceRecorder(
        metrics,
        lambda: facade.stage,
        log=ports.divergences,
        journals=ports.journals,
        read_repair=options.read_repair,
        wake=facade.replayer.wake,
    )
    return facade


def _show_stage(metrics: FacadeMetrics, stage: Stage) -> None:
    for s in Stage:
        metrics.stage.labels(s.value).set(1 if s == stage else 0)
