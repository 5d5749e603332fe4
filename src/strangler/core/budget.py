"""A request's time budget: the store calls one request makes share one deadline.

Each store bounds one call by its own timeout. A request that makes two calls in a row
to a store that hangs (an ownership check, then the write) would wait out the timeout
twice. The API gives each chat request a budget of ``STRANGLER_STORE_TIMEOUT`` seconds
(``request_budget``), and a store call is bounded by its own timeout or by what is left
of the budget, whichever is less (``left``); when nothing is left it fails at once as
unavailable (the API's 503), so a request is answered within the store timeout however
many calls it makes.

* The clock starts at the request's first store call, so a slow upload does not use it.
* A journal entry for a write that has landed gets at least a short grace (``grace``),
  and the facade falls back to the other store's journal, then to a retry in the
  background, so a landed write is not one the other store never hears of.
* Only the task that serves the request is bounded. Tasks it starts (a write to the
  secondary store, a shadow read, a writer started on first use) outlive the request on
  purpose and keep the stores' own timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from strangler.core.errors import StoreUnavailable

T = TypeVar("T")

#: How far past the request's deadline a store call may run before the request stops
#: waiting for it (``bounded``): the store's own bound ends it in time unless the driver
#: overshoots (PyMongo's server selection checks its deadline every 0.5 s).
SLACK = 0.1


class Budget:
    """``seconds`` for the store calls of the task that creates it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.owner = asyncio.current_task()
        self.deadline: float | None = None


_current: ContextVar[Budget | None] = ContextVar("strangler_request_budget", default=None)


@contextlib.contextmanager
def request_budget(seconds: float) -> Iterator[Budget]:
    """Bound the store calls made in this block (by this task) to ``seconds`` in all."""
    budget = Budget(seconds)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextlib.contextmanager
def grace(seconds: float) -> Iterator[None]:
    """Store calls in this block (by the task the request's budget binds) get what is left
    of the budget, but at least ``seconds`` from now. For a write's journal entry after the
    write landed: short enough that the request still answers about in time, long enough
    that a healthy store takes the entry. Outside a request's task, nothing changes."""
    mine = _mine()
    if mine is None:
        yield
        return
    now = time.monotonic()
    rest = mine.seconds if mine.deadline is None else mine.deadline - now
    extended = Budget(max(rest, seconds))
    extended.deadline = now + extended.seconds
    token = _current.set(extended)
    try:
        yield
    finally:
        _current.reset(token)


def deadline(timeout: float, store: str) -> float:
    """The ``time.monotonic()`` by which a call to ``store`` must end (see ``left``), for
    work done on the request's behalf by another task (a shared statement)."""
    return time.monotonic() + left(timeout, store)


async def bounded(call: Callable[[], Awaitable[T]], store: str) -> T:
    """``call()``, a store call made for the request, awaited no longer than what is left
    of the request's budget + ``SLACK``; past that the request fails as unavailable and
    the call finishes on its own in the background, still bounded by the same deadline
    (it is never cancelled: cancelling a PyMongo operation mid-server-selection corrupts
    its topology lock). A full chaos run with MongoDB hung had requests answer 503 after
    5.5 s with a 5 s budget: PyMongo's server selection waits in steps of 0.5 s and checks
    its deadline only between them. Outside a request: ``call()``, as it is."""
    mine = _mine()
    if mine is None:
        return await call()
    wait = left(math.inf, store)  # starts the clock; fails at once if nothing is left
    deadline = mine.deadline
    assert deadline is not None

    async def run() -> T:
        inner = Budget(mine.seconds)  # the same deadline, binding the task that runs it
        inner.deadline = deadline
        token = _current.set(inner)
        try:
            return await call()
        finally:
            _current.reset(token)

    task = asyncio.get_running_loop().create_task(run())
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait + SLACK)
    except TimeoutError:
        task.add_done_callback(_forget)
        raise StoreUnavailable(
            f"{store}: no answer within this request's {mine.seconds:g} s "
            "(STRANGLER_STORE_TIMEOUT); retry shortly",
            store=store,
        ) from None


def _forget(task: asyncio.Task[object]) -> None:
    """The late call's outcome: nobody waits for it any more."""
    if not task.cancelled():
        task.exception()


def _mine() -> Budget | None:
    """The budget that binds this task: the request's, if this task serves the request."""
    budget = _current.get()
    return budget if budget is not None and asyncio.current_task() is budget.owner else None


def remaining(timeout: float) -> float:
    """``timeout``, or what is left of the request's budget if that is less (0 when it is
    used up): for a wait that may end early without failing the request."""
    budget = _mine()
    if budget is None or budget.deadline is None:
        return timeout
    return max(0.0, min(timeout, budget.deadline - time.monotonic()))


def left(timeout: float, store: str) -> float:
    """How long a call to ``store`` may take: ``timeout``, or what is left of the
    request's budget if that is less. Raises ``StoreUnavailable`` when it is used up."""
    budget = _mine()
    if budget is None:
        return timeout
    now = time.monotonic()
    if budget.deadline is None:
        budget.deadline = now + budget.seconds
    remaining = budget.deadline - now
    if remaining <= 0:
        raise StoreUnavailable(
            f"{store}: no time left for it: this request's store calls have used their "
            f"{budget.seconds:g} s (STRANGLER_STORE_TIMEOUT); retry shortly",
            store=store,
        )
    return min(timeout, remaining)
