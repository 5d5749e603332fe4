"""The circuit breaker's states on their own: closed, open after a run of failures, half
open while a probe is out, back to open (with the wait doubled) when it fails, closed
when one succeeds. The hung-server cases run on real servers in ``test_hangs.py``."""

from __future__ import annotations

import asyncio

from strangler.proxy.breaker import Breaker


async def test_the_breakers_states() -> None:
    answers: list[bool] = [False, False, True]  # what each probe finds
    seen: list[str] = []
    closed = asyncio.Event()

    async def probe() -> None:
        if not answers.pop(0):
            raise ConnectionError("still down")

    breaker = Breaker(
        "postgres",
        probe,
        failures=3,
        probe_initial=0.05,
        probe_max=0.15,
        on_change=lambda _, state: seen.append(state),
        on_close=closed.set,
    )
    assert breaker.allow()
    breaker.failure("timeout")
    breaker.failure("timeout")
    breaker.success()  # a success in between: the run starts over
    breaker.failure("timeout")
    breaker.failure("timeout")
    assert breaker.state == "closed"
    breaker.failure("timeout")
    assert breaker.state == "open"
    assert not breaker.allow() and breaker.skipped == 1
    await asyncio.wait_for(closed.wait(), 2)
    assert seen == ["open", "half_open", "open", "half_open", "open", "half_open", "closed"]
    assert breaker.json()["opened_total"] == 1 and breaker.allow()
    await breaker.stop()


async def test_a_probe_that_hangs_counts_as_a_failure() -> None:
    async def probe() -> None:
        await asyncio.sleep(10)

    breaker = Breaker("mongo", probe, failures=1, probe_initial=0.01, probe_timeout=0.05)
    breaker.failure("timeout")
    await asyncio.sleep(0.2)
    assert breaker.state in ("open", "half_open")
    assert breaker.json()["next_probe_s"] > 0.01  # it backed off
    await breaker.stop()
