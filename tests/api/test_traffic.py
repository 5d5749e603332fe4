"""``strangler demo --traffic``: the traffic generator drives the real API without errors,
and its requests show in the facade's windowed metrics (what the dashboard charts)."""

from __future__ import annotations

import asyncio

from strangler.api.keys import FACADE
from strangler.traffic import Traffic
from tests.api.conftest import ApiFactory


async def test_traffic_drives_the_api_and_moves_the_charts(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", auth="disabled")
    traffic = Traffic(str(client.make_url("/")), rate=40, users=3, seed=7)
    task = asyncio.create_task(traffic.run())
    await asyncio.sleep(2)
    traffic.stop()
    stats = await asyncio.wait_for(task, 20)
    assert stats.requests >= 20, stats
    assert stats.errors == 0, stats.by_status
    assert set(stats.by_status) <= {200, 201, 204}
    window = client.server.app[FACADE].metrics.window(10)
    assert {"mongo", "postgres"} <= set(window["stores"])
    assert window["stores"]["mongo"]["ops_per_s"] > 0
    assert window["lag_p99_ms"] is not None
