"""Spans where tracing is on, and nothing (not even an import) where it is off.

The facade and the API mark what they do with ``span(name, attributes)``. By default that
is a shared no-op object; ``strangler.api.telemetry`` installs OpenTelemetry's tracer when
it is installed and the standard ``OTEL_*`` variables ask for it (``install``). This module
imports nothing from OpenTelemetry itself, so the core stays free of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol


class SpanLike(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...


class _NoSpan:
    """What ``span`` gives while tracing is off: enters, records nothing, leaves."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None


NO_SPAN = _NoSpan()

Starter = Callable[[str, Mapping[str, Any]], AbstractContextManager[SpanLike]]
_start: Starter | None = None


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span named ``name``, current inside the block (children nest under it)."""
    if _start is None:
        return NO_SPAN
    return _start(name, attributes or {})


def enabled() -> bool:
    return _start is not None


def install(start: Starter | None) -> None:
    """Trace with ``start`` from now on (None: stop tracing)."""
    global _start
    _start = start
