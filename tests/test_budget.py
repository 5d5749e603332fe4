"""A request's time budget (``core.budget``): shared by the calls of the task that serves
the request, starting at its first store call, and never binding other tasks."""

from __future__ import annotations

import asyncio

import pytest

from strangler.core import budget
from strangler.core.errors import StoreUnavailable


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: now[0])
    return now


async def test_outside_a_request_a_call_keeps_its_timeout() -> None:
    assert budget.left(5.0, "mongo") == 5.0
    assert budget.remaining(2.0) == 2.0


async def test_the_clock_starts_at_the_first_store_call(clock: list[float]) -> None:
    with budget.request_budget(0.3):
        clock[0] += 0.4  # reading a slow upload: not the stores' time
        assert budget.remaining(2.0) == 2.0  # no store call yet
        assert budget.left(5.0, "mongo") == pytest.approx(0.3)
        clock[0] += 0.2
        assert budget.left(5.0, "postgres") == pytest.approx(0.1)
        assert budget.left(0.05, "postgres") == 0.05  # a shorter timeout still wins
        assert budget.remaining(2.0) == pytest.approx(0.1)
        clock[0] += 0.15
        assert budget.remaining(2.0) == 0.0
        with pytest.raises(StoreUnavailable, match="no time left") as e:
            budget.left(5.0, "postgres")
        assert e.value.store == "postgres"
        assert "STRANGLER_STORE_TIMEOUT" in str(e.value)
    assert budget.left(5.0, "mongo") == 5.0  # the request is over


async def test_tasks_the_request_starts_keep_their_own_timeouts(clock: list[float]) -> None:
    with budget.request_budget(0.01):
        budget.left(1.0, "mongo")
        clock[0] += 0.02
        with pytest.raises(StoreUnavailable):
            budget.left(1.0, "mongo")
        # A task copies the context, budget included, but is not bound by it.
        assert await asyncio.create_task(_left()) == 1.0


async def _left() -> float:
    return budget.left(1.0, "mongo")


async def test_a_journal_entry_is_exempt(clock: list[float]) -> None:
    with budget.request_budget(0.01):
        budget.left(1.0, "mongo")
        clock[0] += 0.02
        with budget.exempt():
            assert budget.left(1.0, "mongo") == 1.0
        with pytest.raises(StoreUnavailable):
            budget.left(1.0, "mongo")
