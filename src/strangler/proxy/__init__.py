"""The dual-write facade: a ``ChatStore`` over MongoDB and Supabase, routed by stage.

The names below load lazily, so ``strangler.config`` can import ``proxy.stages`` without
pulling in the whole facade (which itself needs ``strangler.config``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strangler.proxy.facade import DualWriteStore
    from strangler.proxy.stages import Stage
    from strangler.proxy.wiring import FacadeOptions, assemble, connect

__all__ = ["DualWriteStore", "FacadeOptions", "Stage", "assemble", "connect"]

_HOMES = {
    "DualWriteStore": "strangler.proxy.facade",
    "FacadeOptions": "strangler.proxy.wiring",
    "assemble": "strangler.proxy.wiring",
    "connect": "strangler.proxy.wiring",
    "Stage": "strangler.proxy.stages",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'strangler.proxy' has no attribute {name!r}")
