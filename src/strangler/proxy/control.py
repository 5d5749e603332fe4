"""Stage control: which stage this instance runs in, and how operators change it.

* ``STRANGLER_STAGE``, when set, wins: the stage is fixed for the life of the process, so a
  restart with an older value is always a rollback path.
* Otherwise the stage lives in ``strangler.stage_control`` in Postgres. Every instance polls
  it (every ``poll_interval`` seconds, 1 by default), so all converge within seconds of a
  change, without a restart. If Postgres cannot be reached the last known stage is kept.
* A forward move needs evidence (``gate``, ``proxy.gates``): a move with a missing piece
  is refused (``EvidenceMissing``, naming each piece and the command that supplies it)
  unless forced, and a forced move needs a reason, recorded with what it went without.
* The move to ``decommissioned`` (MongoDB leaves the migration) needs ``confirm``: the
  refusal says how many writes still queued for MongoDB it drops (``ConfirmationRequired``).
* A change skips stages only with ``force``; it is refused while journal entries are
  pending for the store that the new stage makes authoritative (or, for ``complete``,
  for any store), and every transition is recorded with its time, origin and reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

import structlog

from strangler.core.errors import (
    ConfirmationRequired,
    Conflict,
    EvidenceMissing,
    InvalidInput,
    StranglerError,
)
from strangler.core.evidence import missing
from strangler.core.ports import StageStore
from strangler.core.stages import Role, Stage, StageRecord, check_transition
from strangler.proxy.gates import StageGate, refusal

log = structlog.get_logger(__name__)

PendingCount = Callable[[Role], Awaitable[int]]


class StageController:
    def __init__(
        self,
        control: StageStore | None,
        *,
        override: Stage | None = None,
        pending: PendingCount | None = None,
        poll_interval: float = 1.0,
        on_change: Callable[[Stage], None] | None = None,
    ) -> None:
        if control is None and override is None:
            raise InvalidInput("no stage: set STRANGLER_STAGE or give a stage store")
        self._control = control
        self.override = override
        self._pending = pending
        self._poll_interval = poll_interval
        self._on_change = on_change
        self._stage = override or Stage.OFF
        self._loaded = override is not None
        #: When the current stage began: the control table's record of the move, or when
        #: this instance made or first saw it. None until known.
        self.changed_at: dt.datetime | None = None
        #: What a forward move must show first (``proxy.gates``); None: nothing.
        self.gate: StageGate | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def stage(self) -> Stage:
        return self._stage

    def _set_local(self, stage: Stage, at: dt.datetime | None = None) -> None:
        if at is not None:  # the control table's record of the move
            self.changed_at = at
        elif stage != self._stage or self.changed_at is None:
            self.changed_at = dt.datetime.now(dt.UTC)
        if not self._loaded:  # the first read is where we start, not a change
            self._loaded = True
            self._stage = stage
            if self._on_change is not None:
                self._on_change(stage)
            return
        if stage != self._stage:
            log.info("stage_changed", stage=stage.value, previous=self._stage.value)
            self._stage = stage
            if self._on_change is not None:
                self._on_change(stage)

    async def refresh(self) -> Stage:
        """Read the shared stage now (no-op under an override)."""
        if self.override is None and self._control is not None:
            record = await self._control.read_stage()
            self._set_local(
                record.stage if record else Stage.OFF, record.changed_at if record else None
            )
        return self._stage

    async def start(self) -> None:
        try:
            await self.refresh()
        except StranglerError as exc:
            log.warning("stage_unreadable", error=str(exc), using=self._stage.value)
        if self.override is None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="stage-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.refresh()
            except StranglerError as exc:
                log.debug("stage_unreadable", error=str(exc), using=self._stage.value)

    async def set(
        self,
        target: Stage,
        *,
        reason: str | None = None,
        origin: str = "cli",
        force: bool = False,
        confirm: bool = False,
    ) -> StageRecord:
        """Move the shared stage to ``target``. ``InvalidInput`` or ``Conflict`` says why not;
        ``confirm`` is the operator's yes to ``decommissioned``."""
        if self.override is not None:
            raise Conflict(
                f"STRANGLER_STAGE={self.override} is set and wins over the control table; "
                "change or unset the environment variable and restart instead"
            )
        assert self._control is not None
        current = await self.refresh()
        if target == current:
            raise InvalidInput(f"the stage is already {current}")
        if force and not (reason and reason.strip()):
            raise InvalidInput(
                "a forced move needs a reason (--reason, or 'reason' in the request): it is "
                "recorded in the stage history with the evidence the move went without"
            )
        check_transition(current, target, force=force)
        found = [] if self.gate is None else await self.gate.checks(current, target)
        lacking = missing(found)
        if lacking and not force:
            raise EvidenceMissing(refusal(target, found), checks=[c.json() for c in found])
        if not force and self._pending is not None:
            await self._check_pending(current, target)
        if target.old_retired and not confirm:
            queued = 0 if self._pending is None else await self._pending("old")
            raise ConfirmationRequired(
                f"moving to {target} is final for MongoDB: it gets no more writes, no follower "
                f"copies to it, and the {queued} write(s) still queued for it are dropped; "
                "afterwards every instance and command runs without MONGO_URI. Confirm with "
                '--confirm (admin API: "confirm": true)'
            )
        record = await self._control.write_stage(
            target,
            origin=origin,
            reason=reason,
            forced=force,
            expected=current,
            missing=[c.json() for c in lacking] or None,
        )
        log.info(
            "stage_set",
            stage=target.value,
            previous=current.value,
            origin=origin,
            reason=reason,
            forced=force,
            missing=[c.key for c in lacking] or None,
        )
        self._set_local(target, record.changed_at)
        return record

    async def _check_pending(self, current: Stage, target: Stage) -> None:
        assert self._pending is not None
        if target == Stage.COMPLETE:
            roles: list[Role] = ["old", "new"]
        elif target.authoritative != current.authoritative:
            roles = [target.authoritative]
        else:
            return
        for role in roles:
            n = await self._pending(role)
            if n:
                store = "MongoDB" if role == "old" else "Supabase"
                raise Conflict(
                    f"refusing to move to {target}: {n} write(s) have not reached {store} yet; "
                    "wait for the repair queue to drain (or pass --force)"
                )
