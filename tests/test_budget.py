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


async def test_a_journal_entry_gets_what_is_left_or_at_least_its_grace(
    clock: list[float],
) -> None:
    with budget.request_budget(1.0):
        budget.left(5.0, "mongo")
        clock[0] += 0.5
        with budget.grace(0.25):  # more than the grace is left: what is left
            assert budget.left(5.0, "mongo") == pytest.approx(0.5)
        clock[0] += 0.6
        with budget.grace(0.25):  # the budget is used up: the grace, from now
            assert budget.left(5.0, "mongo") == pytest.approx(0.25)
            clock[0] += 0.3
            with pytest.raises(StoreUnavailable):
                budget.left(5.0, "mongo")
        with pytest.raises(StoreUnavailable):  # and the request's budget is still spent
            budget.left(1.0, "mongo")
    with budget.grace(0.25):  # outside a request: the store's own timeout
        assert budget.left(5.0, "mongo") == 5.0


async def test_a_send_run_by_another_task_keeps_its_requests_deadline(
    clock: list[float],
) -> None:
    with budget.request_budget(1.0):
        assert budget.deadline(5.0, "postgres") == pytest.approx(1001.0)
        clock[0] += 2
        with pytest.raises(StoreUnavailable):
            budget.deadline(5.0, "postgres")
    assert budget.deadline(5.0, "postgres") == pytest.approx(1007.0)


async def test_a_call_that_overshoots_the_deadline_is_left_to_finish_alone() -> None:
    """``bounded``: the request stops waiting ``SLACK`` past its deadline; the call is not
    cancelled, and runs under the same deadline."""
    seen: list[float] = []
    finished = asyncio.Event()

    async def overshoots() -> str:
        seen.append(budget.left(5.0, "mongo"))  # the request's deadline binds it too
        await asyncio.sleep(0.5)  # like PyMongo's server selection, past its deadline
        finished.set()
        return "late"

    with budget.request_budget(0.2):
        start = asyncio.get_running_loop().time()
        with pytest.raises(StoreUnavailable, match="no answer within") as e:
            await budget.bounded(overshoots, "mongo")
        took = asyncio.get_running_loop().time() - start
    assert e.value.store == "mongo"
    assert 0.2 <= took < 0.2 + budget.SLACK + 0.1, took
    assert seen and seen[0] <= 0.2
    await asyncio.wait_for(finished.wait(), 2)  # it ran on: never cancelled
    assert await budget.bounded(overshoots, "mongo") == "late"  # outside a request: as is
