"""The chaos harness's short variant (``bench/chaos.py``): two API instances, a ledger of
every acknowledged write, two walks ``off → complete → off`` with PostgreSQL and MongoDB
stopped and restarted, a follower's leader SIGKILLed, a slow store, a rejected resume
token, writers that go around the facade into both stores, and each store hung (SIGSTOP)
for 8 s, once while authoritative and once while not, in each walk. Slow: about 6 minutes.

The hangs' latency targets (p99 under a hung secondary, p50 once its breaker opens, the
503 within the store timeout + 0.5 s, the settling after the resume) are timings: they are
printed here and measured by ``bench/chaos.py`` (README, "Reliability", gives the
figures), not asserted, because a loaded 2-core CI machine misses them by milliseconds now
and then (and one run had a rename answered after 12 s during an 8 s hang of MongoDB as
the authoritative store: README, "Reliability"). What is asserted holds on any machine: a
hung secondary fails no request, nothing is lost.
``tests/proxy/test_hangs.py`` and ``tests/api/test_hung_store.py`` cover the bounded calls,
the request budget, a blackhole and the breaker on real servers too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_no_acknowledged_write_is_lost_and_no_request_fails_without_cause() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import chaos
    finally:
        sys.path.remove(str(BENCH))
    args = chaos.parser().parse_args(
        [
            "--dwell",
            "3",
            "--fault-seconds",
            "2",
            "--hang-seconds",
            "8",
            "--clients",
            "6",
            "--rate",
            "60",
        ]
    )
    report = await chaos.main(args)
    assert report["rounds"] == 2
    checks = dict(report["checks"])
    print(f"latency targets (measured, not asserted): {report['targets']}")
    assert len(report["targets"]) == 5, report["targets"]  # every hang figure was taken
    assert "a hung secondary: no failed request" in checks, checks
    assert checks == dict.fromkeys(checks, True), checks
    # Every hang fault ran: each store, authoritative and not, in both walks.
    assert len(report["hangs"]) == 8, [h["fault"] for h in report["hangs"]]
    assert report["ledger"]["messages"] > 500  # the load really ran
    # Failures happened only while an authoritative store was down, or to requests in
    # flight on the instance that was killed.
    phases = report["failures_by_phase"]
    allowed = {"pg down (authoritative)", "mongo down (authoritative)"}
    hung = {p for p in phases if p.startswith("hang") and "(authoritative" in p}
    assert {p for p in phases if not p.startswith("sigkill")} <= allowed | hung, phases
    for phase, kinds in phases.items():
        if phase.startswith("sigkill"):
            assert sum(kinds.values()) <= 12, kinds  # at most the requests in flight
    # The writers around the facade really wrote, both ways, and each of their writes was
    # carried over (the check above); a follower's leader was killed in each walk.
    bypass = report["bypass"]
    assert bypass["forward (MongoDB -> Supabase)"]["writes"] > 50, bypass
    assert bypass["reverse (Supabase -> MongoDB)"]["writes"] > 50, bypass
    assert len(report["takeovers"]) == 2, report["takeovers"]
    assert all(s["flat"] in (True, None) for s in report["soak"].values()), report["soak"]
