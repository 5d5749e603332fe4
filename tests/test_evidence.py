"""What each stage move needs, judged from facts (``strangler.core.evidence``): the rules
alone, with no store. ``tests/proxy/test_gates.py`` gathers the same facts from Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt

from strangler.core.evidence import Facts, FollowerFact, JobFact, Thresholds, checks, missing
from strangler.core.stages import Stage

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def ago(minutes: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes)


RUNNING = FollowerFact(state="running", leader="host:1:abc", lag_seconds=0.4, saved_at=ago(0.1))

#: Everything a move to live needs: dual writes from 60 min ago, a backfill from 50 to 40,
#: a clean full verify from 30 to 20, shadow since 15 with 2,000 comparisons, 1 mismatch.
GOOD = Facts(
    now=NOW,
    dualwrite_since=ago(60),
    shadow_since=ago(15),
    backfill=JobFact(started_at=ago(50), finished_at=ago(40), clean=True),
    verify=JobFact(started_at=ago(30), finished_at=ago(20), clean=True),
    forward=RUNNING,
    reverse=None,
    compared=2000,
    matched=1999,
)


def keys(facts: Facts, current: Stage, target: Stage) -> list[str]:
    return [c.key for c in missing(checks(current, target, facts, Thresholds()))]


def test_all_evidence_present_lets_reads_move() -> None:
    assert keys(GOOD, Stage.DUALWRITE, Stage.SHADOW) == []
    assert keys(GOOD, Stage.SHADOW, Stage.LIVE) == []


def test_nothing_done_names_every_missing_piece() -> None:
    """The issue's scenario: messages written at off, then straight to shadow."""
    bare = Facts(now=NOW, dualwrite_since=ago(5), forward=RUNNING)
    found = checks(Stage.DUALWRITE, Stage.SHADOW, bare, Thresholds())
    assert [c.key for c in missing(found)] == ["backfill", "verify"]
    by_key = {c.key: c for c in found}
    assert "strangler backfill" in by_key["backfill"].fix
    assert "strangler verify" in by_key["verify"].fix


def test_a_backfill_from_before_dual_writes_proves_nothing_unless_it_followed() -> None:
    early = dataclasses.replace(
        GOOD, backfill=JobFact(started_at=ago(70), finished_at=ago(40), clean=True)
    )
    assert keys(early, Stage.DUALWRITE, Stage.SHADOW) == ["backfill"]
    followed = dataclasses.replace(
        GOOD, backfill=JobFact(started_at=ago(70), finished_at=ago(40), clean=True, follow=True)
    )
    assert keys(followed, Stage.DUALWRITE, Stage.SHADOW) == []


def test_evidence_goes_stale() -> None:
    # A verify that started before the backfill finished (or before dual writes began).
    old_verify = dataclasses.replace(
        GOOD, verify=JobFact(started_at=ago(45), finished_at=ago(35), clean=True)
    )
    assert keys(old_verify, Stage.DUALWRITE, Stage.SHADOW) == ["verify"]
    # A verify of a window, a verify that found differences.
    window = dataclasses.replace(
        GOOD, verify=JobFact(started_at=ago(30), finished_at=ago(20), clean=True, full=False)
    )
    assert keys(window, Stage.DUALWRITE, Stage.SHADOW) == ["verify"]
    unequal = dataclasses.replace(
        GOOD, verify=JobFact(started_at=ago(30), finished_at=ago(20), clean=False)
    )
    assert keys(unequal, Stage.DUALWRITE, Stage.SHADOW) == ["verify"]
    # A divergence since the verify began, pending repairs, a stale or lagging follower.
    assert keys(
        dataclasses.replace(GOOD, divergences_since_verify=3), Stage.DUALWRITE, Stage.SHADOW
    ) == ["divergences"]
    assert keys(dataclasses.replace(GOOD, pending_supabase=7), Stage.DUALWRITE, Stage.SHADOW) == [
        "repairs"
    ]
    stale = dataclasses.replace(RUNNING, state="stale")
    assert keys(dataclasses.replace(GOOD, forward=stale), Stage.DUALWRITE, Stage.SHADOW) == [
        "forward_follower"
    ]
    behind = dataclasses.replace(RUNNING, lag_seconds=95.0)
    assert keys(dataclasses.replace(GOOD, forward=behind), Stage.DUALWRITE, Stage.SHADOW) == [
        "forward_follower"
    ]
    leaderless = dataclasses.replace(RUNNING, leader=None)
    assert keys(dataclasses.replace(GOOD, forward=leaderless), Stage.DUALWRITE, Stage.SHADOW) == [
        "forward_follower"
    ]
    # With the followers off, none is asked for.
    off = dataclasses.replace(GOOD, forward=None, follow=False)
    assert keys(off, Stage.DUALWRITE, Stage.SHADOW) == []


def test_live_needs_a_consistent_shadow_phase_when_shadow_ran() -> None:
    few = dataclasses.replace(GOOD, compared=400, matched=400)
    assert keys(few, Stage.SHADOW, Stage.LIVE) == ["consistency"]
    poor = dataclasses.replace(GOOD, compared=2000, matched=1990)  # 99.5%
    assert keys(poor, Stage.SHADOW, Stage.LIVE) == ["consistency"]
    lenient = Thresholds(consistency=0.99, min_comparisons=100)
    assert [c.key for c in missing(checks(Stage.SHADOW, Stage.LIVE, poor, lenient))] == []
    # No shadow since dual writes began (a forced skip): no consistency to ask for.
    skipped = dataclasses.replace(GOOD, shadow_since=None)
    assert keys(skipped, Stage.DUALWRITE, Stage.LIVE) == []


def test_complete_needs_mongodb_caught_up() -> None:
    at_rampdown = dataclasses.replace(GOOD, live_since=ago(10), reverse=RUNNING)
    assert keys(at_rampdown, Stage.RAMPDOWN, Stage.COMPLETE) == []
    behind = dataclasses.replace(at_rampdown, reverse=dataclasses.replace(RUNNING, lag_seconds=99))
    assert keys(behind, Stage.RAMPDOWN, Stage.COMPLETE) == ["mongo_caught_up"]
    pending = dataclasses.replace(at_rampdown, pending_mongo=3)
    assert keys(pending, Stage.RAMPDOWN, Stage.COMPLETE) == ["mongo_caught_up"]
    # Without followers: a clean full verify since Supabase became authoritative.
    no_follow = dataclasses.replace(at_rampdown, follow=False, reverse=None)
    assert keys(no_follow, Stage.RAMPDOWN, Stage.COMPLETE) == ["mongo_caught_up"]
    verified = dataclasses.replace(
        no_follow, verify=JobFact(started_at=ago(5), finished_at=ago(4), clean=True)
    )
    assert keys(verified, Stage.RAMPDOWN, Stage.COMPLETE) == []


def test_rollbacks_and_the_first_step_need_nothing() -> None:
    nothing = Facts(now=NOW)
    for current, target in [
        (Stage.OFF, Stage.DUALWRITE),
        (Stage.LIVE, Stage.SHADOW),
        (Stage.COMPLETE, Stage.RAMPDOWN),
        (Stage.SHADOW, Stage.DUALWRITE),
        (Stage.DUALWRITE, Stage.OFF),
        (Stage.LIVE, Stage.RAMPDOWN),
    ]:
        assert checks(current, target, nothing, Thresholds()) == [], (current, target)
