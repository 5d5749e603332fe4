"""Hanging a server the way a GC pause or a saturated disk does: its processes stopped
(SIGSTOP), so connections stay open and nothing answers, instead of refusing."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def server_pids(server: Any) -> list[int]:
    """An embedded server's process and its children (Postgres' backends)."""
    if hasattr(server, "datadir"):
        pid = int((Path(server.datadir) / "postmaster.pid").read_text().split()[0])
    elif hasattr(server, "storage_path"):
        pid = int((Path(server.storage_path) / "secantus.pid").read_text())
    else:
        pytest.skip("needs an embedded server, to pause it")
    return [pid, *children(pid)]


def signal_all(server: Any, sig: int) -> None:
    for pid in server_pids(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextlib.contextmanager
def paused(server: Any) -> Iterator[None]:
    """The server hangs until the block ends."""
    signal_all(server, signal.SIGSTOP)
    try:
        yield
    finally:
        signal_all(server, signal.SIGCONT)
