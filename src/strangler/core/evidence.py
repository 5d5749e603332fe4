"""Evidence for a stage move: what each move needs to be safe, judged from records.

A move that hands reads to Supabase, or lets MongoDB go, needs proof that the data is there,
not an operator's word. ``checks`` lists, for one move, each piece of evidence it needs:
whether the records show it, what they show, and the command that supplies it. The stage
controller refuses a move with a missing piece unless it is forced with a reason; the CLI,
the admin API and the dashboard all show the same list.

No I/O here: ``Facts`` is gathered by the caller (``proxy.gates``) from Postgres.

* Toward MongoDB (a rollback) needs nothing: stepping back must always be possible.
* Before reads are compared or served from Supabase (``shadow``, ``live``): a backfill
  that started after dual writes began (or ran with the forward follower, so writes made
  during it were followed), finished; a full verify that started after both, and found the
  stores equal; nothing pending toward Supabase; no divergence recorded since that verify
  began; the forward follower, where enabled, running with its lag under the threshold.
* Before ``live``, also: if ``shadow`` ran since dual writes began, a consistency rate of at
  least ``consistency`` over at least ``min_comparisons`` comparisons.
* Before ``complete``: MongoDB caught up, shown by the reverse follower running with its
  lag under the threshold, or by a clean full verify that started after Supabase became
  authoritative.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from strangler.core.stages import Stage

#: Kinds of divergence record that do not mean the stores differ: a bypass write is
#: copied by the follower that found it.
HARMLESS_KINDS = frozenset({"bypass_write"})


@dataclass(frozen=True)
class JobFact:
    """The latest finished run of a job, as ``strangler.job_runs`` has it."""

    started_at: dt.datetime
    finished_at: dt.datetime
    #: verify: the stores were equal; backfill: it finished without failures.
    clean: bool
    #: verify: whole tables (not ``--since``); backfill: started with ``--follow``.
    full: bool = True
    follow: bool = False


@dataclass(frozen=True)
class FollowerFact:
    state: str  # running, stale, stopped
    leader: str | None  # the instance holding the lease now, if any
    lag_seconds: float | None
    saved_at: dt.datetime | None


@dataclass(frozen=True)
class Facts:
    now: dt.datetime
    #: When dual writes last began (the last move from ``off`` to ``dualwrite``).
    dualwrite_since: dt.datetime | None = None
    #: When ``shadow`` last began, and when Supabase last became authoritative (``live``).
    shadow_since: dt.datetime | None = None
    live_since: dt.datetime | None = None
    backfill: JobFact | None = None
    verify: JobFact | None = None
    pending_supabase: int = 0
    pending_mongo: int = 0
    #: Divergences recorded since the verify began (``HARMLESS_KINDS`` left out).
    divergences_since_verify: int = 0
    follow: bool = True
    forward: FollowerFact | None = None
    reverse: FollowerFact | None = None
    #: Shadow comparisons since ``shadow_since``: how many, and how many matched.
    compared: int = 0
    matched: int = 0


@dataclass(frozen=True)
class Thresholds:
    follower_lag_seconds: float = 30.0
    consistency: float = 0.999
    min_comparisons: int = 1000
    #: A follower that has not saved its position for this long is not running.
    follower_silent_seconds: float = 60.0


@dataclass(frozen=True)
class Check:
    """One piece of evidence: what is needed, whether the records show it, what they show,
    and the command that supplies it."""

    key: str
    need: str
    ok: bool
    found: str
    fix: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "need": self.need,
            "ok": self.ok,
            "found": self.found,
            "fix": self.fix,
        }


def checks(current: Stage, target: Stage, facts: Facts, limits: Thresholds) -> list[Check]:
    """The evidence the move ``current -> target`` needs, each judged from ``facts``."""
    if target.value == current.value or _order(target) < _order(current):
        return []  # a rollback, or no move: nothing to prove
    out: list[Check] = []
    if target in (Stage.SHADOW, Stage.LIVE) or (
        target in (Stage.RAMPDOWN, Stage.COMPLETE) and _order(current) < _order(Stage.LIVE)
    ):
        out += _supabase_holds_the_data(facts, limits)
        if target != Stage.SHADOW and facts.shadow_since is not None:
            out.append(_consistency(facts, limits))
    if target == Stage.COMPLETE:
        out.append(_mongo_caught_up(facts, limits))
    return out


def missing(found: list[Check]) -> list[Check]:
    return [c for c in found if not c.ok]


def _order(stage: Stage) -> int:
    return list(Stage).index(stage)


def _ago(at: dt.datetime | None, now: dt.datetime) -> str:
    if at is None:
        return "never"
    seconds = (now - at).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago ({at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"


def _supabase_holds_the_data(facts: Facts, limits: Thresholds) -> list[Check]:
    now = facts.now
    since = facts.dualwrite_since
    out: list[Check] = []
    b = facts.backfill
    if since is None:
        backfill_ok, found = False, "dual writes never began (no move from off to dualwrite)"
    elif b is None:
        backfill_ok, found = False, "no backfill has finished"
    elif not b.clean:
        backfill_ok, found = (
            False,
            f"the last backfill (finished {_ago(b.finished_at, now)}) failed",
        )
    elif b.started_at < since and not b.follow:
        backfill_ok = False
        found = (
            f"the last backfill started {_ago(b.started_at, now)}, before dual writes began "
            f"{_ago(since, now)}: writes made in between may be missing"
        )
    else:
        backfill_ok = True
        found = f"finished {_ago(b.finished_at, now)}" + (", with the follower" if b.follow else "")
    out.append(
        Check(
            "backfill",
            "a backfill that started after dual writes began (or with --follow) and finished",
            backfill_ok,
            found,
            'strangler backfill --source "$MONGO_URI"',
        )
    )
    v = facts.verify
    after = max((t for t in (since, b.finished_at if b else None) if t is not None), default=None)
    if v is None:
        verify_ok, found = False, "no full verify has finished"
    elif not v.full:
        verify_ok, found = False, "the last verify compared a window (--since), not everything"
    elif after is not None and v.started_at < after:
        verify_ok = False
        found = (
            f"the last verify started {_ago(v.started_at, now)}, before the backfill finished "
            "or dual writes began: it proves nothing about now"
        )
    elif not v.clean:
        verify_ok, found = False, f"the last verify ({_ago(v.finished_at, now)}) found differences"
    else:
        verify_ok, found = True, f"equal, finished {_ago(v.finished_at, now)}"
    out.append(
        Check(
            "verify",
            "a full verify, started after the backfill, that found the stores equal",
            verify_ok,
            found,
            "strangler verify (after 'strangler repair' if it finds differences)",
        )
    )
    out.append(
        Check(
            "repairs",
            "no writes pending toward Supabase",
            facts.pending_supabase == 0,
            f"{facts.pending_supabase:,} pending",
            "wait for the repair queue to drain, or run 'strangler repair'",
        )
    )
    if v is not None and verify_ok:
        n = facts.divergences_since_verify
        out.append(
            Check(
                "divergences",
                "no divergence recorded since the verify began",
                n == 0,
                f"{n:,} recorded since",
                "look at them (dashboard, /admin/divergences), 'strangler repair', then "
                "'strangler verify' again",
            )
        )
    if facts.follow:
        out.append(_follower("forward", facts.forward, facts, limits))
    return out


def _follower(name: str, f: FollowerFact | None, facts: Facts, limits: Thresholds) -> Check:
    need = f"the {name} follower running, lag under {limits.follower_lag_seconds:g}s"
    fix = "start 'strangler serve' (STRANGLER_FOLLOW=true), and see 'strangler follow status'"
    if f is None:
        return Check(name + "_follower", need, False, "never started", fix)
    if f.state == "stale":
        return Check(
            name + "_follower",
            need,
            False,
            "stale: it lost its position",
            f"strangler follow reset {name}, then strangler verify and strangler repair",
        )
    silent = (
        f.saved_at is None
        or (facts.now - f.saved_at).total_seconds() > limits.follower_silent_seconds
    )
    if f.leader is None or silent:
        return Check(
            name + "_follower",
            need,
            False,
            f"no instance leads it (position saved {_ago(f.saved_at, facts.now)})",
            fix,
        )
    lag = f.lag_seconds or 0.0
    return Check(
        name + "_follower",
        need,
        lag <= limits.follower_lag_seconds,
        f"led by {f.leader}, lag {lag:.1f}s",
        "wait for it to catch up ('strangler follow status')",
    )


def _consistency(facts: Facts, limits: Thresholds) -> Check:
    n, ok_n = facts.compared, facts.matched
    rate = ok_n / n if n else None
    enough = n >= limits.min_comparisons
    ok = enough and rate is not None and rate >= limits.consistency
    found = (
        f"{n:,} comparisons, {rate:.3%} consistent" if rate is not None else "no comparisons yet"
    )
    return Check(
        "consistency",
        f"shadow reads at least {limits.consistency:.1%} consistent over at least "
        f"{limits.min_comparisons:,} comparisons",
        ok,
        found,
        "let shadow reads run under traffic; repair what diverges",
    )


def _mongo_caught_up(facts: Facts, limits: Thresholds) -> Check:
    need = (
        "MongoDB caught up: the reverse follower running with its lag under "
        f"{limits.follower_lag_seconds:g}s, or a clean full verify since Supabase became "
        "authoritative"
    )
    v = facts.verify
    if (
        v is not None
        and v.clean
        and v.full
        and facts.live_since is not None
        and v.started_at >= facts.live_since
        and facts.pending_mongo == 0
    ):
        return Check(
            "mongo_caught_up", need, True, f"verify equal {_ago(v.finished_at, facts.now)}"
        )
    if facts.follow:
        follower = _follower("reverse", facts.reverse, facts, limits)
        ok = follower.ok and facts.pending_mongo == 0
        found = follower.found + (
            f"; {facts.pending_mongo:,} writes pending for MongoDB" if facts.pending_mongo else ""
        )
        return Check("mongo_caught_up", need, ok, found, follower.fix)
    return Check(
        "mongo_caught_up",
        need,
        False,
        "the followers are off and no clean verify since live",
        "strangler verify",
    )
