"""Hanging a server the way a GC pause or a saturated disk does: its processes stopped
(SIGSTOP), so connections stay open and nothing answers, instead of refusing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
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


def _state(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@contextlib.contextmanager
def paused(server: Any) -> Iterator[None]:
    """The server hangs until the block ends. Returns only once the server's main process
    is stopped (a signal is delivered asynchronously); fails, saying so, if it never is."""
    signal_all(server, signal.SIGSTOP)
    try:
        main = server_pids(server)[0]
        deadline = time.monotonic() + 2
        while _state(main) != "T" and time.monotonic() < deadline:
            time.sleep(0.005)
        if _state(main) != "T":
            pytest.fail(f"pausing the server did not stop its process {main} ({_state(main)})")
        yield
    finally:
        signal_all(server, signal.SIGCONT)
