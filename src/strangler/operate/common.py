"""What several commands share: argument types, who runs them, Ctrl-C handling, and how a
diff is shown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import json
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog

from strangler.core.errors import InvalidInput
from strangler.core.partition import Part

log = structlog.get_logger(__name__)

#: Samples of each kind a text report shows (``--json`` has them all).
SAMPLES_SHOWN = 5

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def origin() -> str:
    """Who made a change from the CLI: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


# --- argument types: each says what was wrong and what to type instead -----------------------
def moment(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2026-11-25T09:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC (e.g. {text}Z)")
    return value.astimezone(dt.UTC)


def days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be zero or more days")
    return value


def partition(text: str) -> Part:
    """``--partition K/N``."""
    try:
        return Part.parse(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(text: str) -> int:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


# --- running ------------------------------------------------------------------------------------
@contextlib.contextmanager
def stop_on_ctrl_c(job: str) -> Iterator[asyncio.Event]:
    """An event that the first Ctrl-C (or SIGTERM) sets, for a job to stop at its next
    checkpoint; a second one interrupts at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.warning(
            f"{job}_stopping", detail="stopping after the batch in hand; Ctrl-C again stops now"
        )

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, first)
            handled.append(sig)
    try:
        yield stop
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


# --- showing a diff -------------------------------------------------------------------------------
def pairs(fields: dict[str, Any]) -> list[tuple[str, tuple[Any, Any]]]:
    """``(field, (authoritative, other))`` from a field-level diff, values shortened."""
    return [
        (name, (short(v.get("authoritative")), short(v.get("other")))) for name, v in fields.items()
    ]


def short(value: Any, limit: int = 60) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
