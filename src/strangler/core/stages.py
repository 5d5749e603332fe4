"""The migration stages (LaunchDarkly's six migration-flag stages, plus a finish line) and
what each one routes.

"old" is MongoDB and "new" is Supabase.

| stage     | writes (authoritative first) | reads | shadow compare             |
| --------- | ---------------------------- | ----- | -------------------------- |
| off       | old                          | old   | no                         |
| dualwrite | old, then new                | old   | no                         |
| shadow    | old, then new                | old   | sampled read of new        |
| live      | new, then old                | new   | sampled read of old        |
| rampdown  | new, then old                | new   | no                         |
| complete  | new                          | new   | no                         |
| decommissioned | new (MongoDB is gone)   | new   | no                         |

``complete`` still keeps MongoDB as the rollback path (writes are copied or parked for it).
``decommissioned`` is the finish line: MongoDB is no longer needed, nothing is kept for it,
and every command runs without ``MONGO_URI``. Entering it takes an explicit confirmation;
leaving it (back to ``complete``) takes ``force`` and a reason, since MongoDB missed every
write made while it was decommissioned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from strangler.core.errors import InvalidInput

Role = Literal["old", "new"]


class Stage(StrEnum):
    OFF = "off"
    DUALWRITE = "dualwrite"
    SHADOW = "shadow"
    LIVE = "live"
    RAMPDOWN = "rampdown"
    COMPLETE = "complete"
    DECOMMISSIONED = "decommissioned"

    @classmethod
    def parse(cls, value: str) -> Stage:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InvalidInput(
                f"unknown stage {value!r}: expected one of {', '.join(s.value for s in cls)}",
                errors=[{"loc": ["stage"], "msg": "unknown stage", "type": "enum"}],
            ) from None

    @property
    def order(self) -> int:
        return _ORDER[self]

    @property
    def authoritative(self) -> Role:
        """The store that is written first and serves reads."""
        return "old" if self.order <= Stage.SHADOW.order else "new"

    @property
    def secondary(self) -> Role | None:
        """The store written second, or None when only one store is in use."""
        if self in (Stage.OFF, Stage.COMPLETE, Stage.DECOMMISSIONED):
            return None
        return "new" if self.authoritative == "old" else "old"

    @property
    def shadow_reads(self) -> bool:
        """Whether reads are sampled from the other store and compared."""
        return self in (Stage.SHADOW, Stage.LIVE)

    @property
    def old_retired(self) -> bool:
        """Whether MongoDB is out of the migration: nothing is written, parked or copied
        for it, and it need not be configured."""
        return self == Stage.DECOMMISSIONED

    def writes_to(self, role: Role) -> bool:
        return role in (self.authoritative, self.secondary)


_ORDER = {stage: i for i, stage in enumerate(Stage)}


def other(role: Role) -> Role:
    return "new" if role == "old" else "old"


def check_transition(current: Stage, target: Stage, *, force: bool) -> None:
    """Refuse a move that skips stages, or one back from ``decommissioned``, unless
    ``force``; ``InvalidInput`` explains why."""
    if current.old_retired and not force:
        raise InvalidInput(
            f"MongoDB was decommissioned: it missed every write made since, so moving back to "
            f"{target} needs --force --reason, MONGO_URI set on every instance, and then "
            "'strangler repair' (Supabase is authoritative, so it copies Supabase's data into "
            "MongoDB) before any rollback further",
            errors=[{"loc": ["stage"], "msg": "leaves decommissioned", "type": "transition"}],
        )
    if abs(target.order - current.order) > 1 and not force:
        raise InvalidInput(
            f"moving from {current} to {target} skips "
            f"{abs(target.order - current.order) - 1} stage(s); step one stage at a time "
            "or pass --force",
            errors=[{"loc": ["stage"], "msg": "skips stages", "type": "transition"}],
        )


@dataclass(frozen=True)
class StageRecord:
    """The shared stage as stored: what, when, by whom and why."""

    stage: Stage
    changed_at: dt.datetime
    origin: str
    reason: str | None
