"""What happens when a shadow read disagrees: a log event, a persisted record, a metric,
and (with read-repair on) a journal entry that brings the other store in line."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import structlog

from strangler.core.errors import StranglerError
from strangler.core.ports import DivergenceLog, WriteJournal
from strangler.core.records import PendingWrite, Table
from strangler.core.stages import Role, Stage, other
from strangler.proxy.metrics import FacadeMetrics

log = structlog.get_logger(__name__)


class DivergenceRecorder:
    def __init__(
        self,
        metrics: FacadeMetrics,
        stage: Callable[[], Stage],
        *,
        log: DivergenceLog | None = None,
        journals: dict[Role, WriteJournal] | None = None,
        read_repair: bool = False,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._stage = stage
        self._log = log
        self._journals = journals or {}
        self.read_repair = read_repair
        self._wake = wake

    async def __call__(self, table: str, key: str, diff: dict[str, Any]) -> None:
        stage = self._stage()
        # A page diff is keyed by record id; a record diff by field.
        per_record = (
            diff
            if all(isinstance(v, dict) and _looks_like_id(k) for k, v in diff.items())
            else {key: diff}
        )
        for record_id, fields in per_record.items():
            self._metrics.divergences.labels(table).inc()
            log.bind(stage=stage.value, table=table, id=record_id).warning(
                "divergence_recorded", diff=fields
            )
            if self._log is not None:
                try:
                    await self._log.record_divergence(
                        stage=stage,
                        table=table,
                        record_id=record_id,
                        kind="shadow_read",
                        diff=fields,
                    )
                except StranglerError as exc:
                    log.warning("divergence_not_persisted", error=str(exc))
            if self.read_repair and table in ("chat_sessions", "messages"):
                await self._enqueue_repair(stage, table, record_id)  # type: ignore[arg-type]

    async def _enqueue_repair(self, stage: Stage, table: Table, record_id: str) -> None:
        auth: Role = stage.authoritative
        journal = self._journals.get(auth)
        if journal is None:
            return
        try:
            await journal.add(
                [PendingWrite(target=other(auth), table=table, record_id=uuid.UUID(record_id))]
            )
        except (StranglerError, ValueError) as exc:
            log.warning("read_repair_not_enqueued", id=record_id, error=str(exc))
            return
        if self._wake is not None:
            self._wake()


def _looks_like_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
