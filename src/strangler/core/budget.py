"""A request's time budget: the store calls one request makes share one deadline.

Each store bounds one call by its own timeout. A request that makes two calls in a row
to a store that hangs (an ownership check, then the write) would wait out the timeout
twice. The API gives each chat request a budget of ``STRANGLER_STORE_TIMEOUT`` seconds
(``request_budget``), and a store call is bounded by its own timeout or by what is left
of the budget, whichever is less (``left``); when nothing is left it fails at once as
unavailable (the API's 503), so a request is answered within the store timeout however
many calls it makes.

* The clock starts at the request's first store call, so a slow upload does not use it.
* A journal entry for a write that has landed is exempt (``exempt``): cutting it short
  would turn a landed write into one the other store never hears of.
* Only the task that serves the request is bounded. Tasks it starts (a write to the
  secondary store, a shadow read, a writer started on first use) outlive the request on
  purpose and keep the stores' own timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from strangler.core.errors import StoreUnavailable


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
def exempt() -> Iterator[None]:
    """Store calls in this block keep their own timeouts: a write's journal entry, after
    the write itself landed, must not be cut short by the request's budget."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


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
