"""The chaos harness's short variant (``bench/chaos.py``): two API instances, a ledger of
every acknowledged write, two walks ``off → complete → off`` with PostgreSQL and MongoDB
stopped and restarted, an instance SIGKILLed, and a slow store. Slow: about 3 minutes."""

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
        ["--dwell", "3", "--fault-seconds", "2", "--clients", "6", "--rate", "60"]
    )
    report = await chaos.main(args)
    assert report["rounds"] == 2
    assert report["checks"] == dict.fromkeys(report["checks"], True), report["checks"]
    assert report["ledger"]["messages"] > 500  # the load really ran
    # Failures happened only while an authoritative store was down, or to requests in
    # flight on the instance that was killed.
    assert set(report["failures_by_phase"]) <= {
        "pg down (authoritative)",
        "mongo down (authoritative)",
        "sigkill api instance",
    }
    killed = report["failures_by_phase"].get("sigkill api instance", {})
    assert sum(killed.values()) <= 12, killed  # at most the requests in flight
    assert all(s["flat"] in (True, None) for s in report["soak"].values()), report["soak"]
