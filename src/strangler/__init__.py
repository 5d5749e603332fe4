"""strangler: a dual-write strangler proxy that moves a live chat app from MongoDB to Supabase."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from strangler.config.settings import Settings
    from strangler.proxy.facade import DualWriteStore


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[DualWriteStore]:
    """``async with strangler.connect(Settings()) as db``: open both stores from
    ``settings`` and yield the running, staged dual-write facade (a ``ChatStore``).

    The runtime is imported on first use, so ``import strangler`` stays light."""
    from strangler.runtime import connect as _connect

    async with _connect(settings) as facade:
        yield facade
