"""The rollout guard on real servers: at ``rampdown``, Postgres (authoritative) paused in
bursts makes Supabase's calls time out; the guard steps the stage back one step, recorded
as its own move with the figures, and does not step back again while the breach lasts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from strangler.config import Settings
from strangler.core.errors import StranglerError
from strangler.core.models import ChatSession
from strangler.core.stages import Stage
from strangler.proxy.guard import GuardLimits, breach
from strangler.runtime import Runtime
from tests import pause


@contextlib.contextmanager
def paused_in_bursts(pg_server: Any) -> Iterator[None]:
    """Postgres' processes stopped 0.8 s of every 1.1 s, until the block ends."""
    stop = False

    def signal_all(sig: int) -> None:
        pause.signal_all(pg_server, sig)

    async def bursts() -> None:
        while not stop:
            signal_all(signal.SIGSTOP)
            await asyncio.sleep(0.8)
            signal_all(signal.SIGCONT)
            await asyncio.sleep(0.3)

    task = asyncio.get_running_loop().create_task(bursts())
    try:
        yield
    finally:
        stop = True
        signal_all(signal.SIGCONT)
        task.cancel()


def test_the_breach_rules() -> None:
    limits = GuardLimits(window=10, min_samples=20)

    def w(err: float, p99_new: float, p99_old: float, rate: float | None = 1.0) -> Any:
        return {
            "window_s": 10,
            "stores": {
                "postgres": {"ops_per_s": 5, "error_rate": err, "p99_ms": p99_new},
                "mongo": {"ops_per_s": 5, "error_rate": 0, "p99_ms": p99_old},
            },
            "consistency_rate": rate,
        }

    assert breach(w(0.0, 40, 30), limits, new="postgres", old="mongo") == {}
    assert breach(w(0.2, 40, 30), limits, new="postgres", old="mongo") == {
        "supabase_error_rate": 0.2
    }
    slow = breach(w(0.0, 900, 100), limits, new="postgres", old="mongo")
    assert slow == {"supabase_p99_ms": 900, "mongodb_p99_ms": 100}
    assert breach(w(0.0, 90, 10), limits, new="postgres", old="mongo") == {}  # under the floor
    assert breach(w(0.0, 40, 30, rate=0.95), limits, new="postgres", old="mongo") == {
        "divergence_rate": 0.05
    }
    few = {"window_s": 10, "stores": {"postgres": {"ops_per_s": 1, "error_rate": 1.0}}}
    assert breach(few, limits, new="postgres", old="mongo") == {}  # 10 calls: too few


async def test_the_guard_steps_back_once_when_supabase_fails(
    mongo_server: Any, mongo_db: str, clean_pg: str, pg_server: Any
) -> None:
    if not hasattr(pg_server, "datadir"):
        pytest.skip("needs the embedded Postgres, to pause it")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        mongo_uri=mongo_server.uri,
        mongo_db=mongo_db,
        supabase_db_url=clean_pg,
        stage_poll_seconds=0.1,
        store_timeout=0.5,
        secondary_timeout=0.5,
        follow=False,
        guard_window_seconds=4,
        guard_sustain_seconds=1.5,
        guard_min_samples=5,
    )
    async with Runtime.open(settings) as runtime:
        facade, controller = runtime.facade, runtime.controller
        for stage in (Stage.DUALWRITE, Stage.SHADOW, Stage.LIVE, Stage.RAMPDOWN):
            await controller.set(stage, reason="test walk", force=True)
        s = await facade.create_session(ChatSession.new(title="t", user_id="u"))
        assert runtime.guard is not None
        for _ in range(30):  # it looks once a second
            if runtime.guard.state["watching"]:
                break
            await asyncio.sleep(0.1)
        assert runtime.guard.state["watching"]

        async def traffic(until: float) -> None:
            while time.monotonic() < until:
                with contextlib.suppress(StranglerError):
                    await facade.get_session(s.id)
                await asyncio.sleep(0.02)

        began = time.monotonic()
        deadline = began + 25
        with paused_in_bursts(pg_server):
            load = asyncio.create_task(traffic(deadline))
            while time.monotonic() < deadline and facade.stage != Stage.LIVE:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            stepped = facade.stage
            # The figure for README (pytest -s): window 4 s, sustain 1.5 s.
            print(f"guard stepped back {time.monotonic() - began:.1f}s after the fault began")
            # The breach goes on: no second step back (live -> shadow) follows.
            await asyncio.sleep(settings.guard_sustain_seconds + 3)
            after = facade.stage
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
        assert stepped == Stage.LIVE, "the guard did not step back"
        assert after == Stage.LIVE, "the guard stepped back twice"
        for _ in range(50):  # Postgres answers again
            with contextlib.suppress(StranglerError):
                latest = (await runtime.stages.transitions(1))[0]
                break
            await asyncio.sleep(0.2)
        assert latest["origin"].startswith("guard:")
        assert (latest["from_stage"], latest["to_stage"]) == ("rampdown", "live")
        assert "supabase_error_rate" in latest["reason"] or "supabase_p99" in latest["reason"]
        metric = runtime.metrics.auto_rollbacks.labels("rampdown", "live")
        assert metric._value.get() == 1
