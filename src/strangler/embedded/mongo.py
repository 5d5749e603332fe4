"""SecantusDB, a single-node server speaking MongoDB's wire protocol, run as a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from strangler.core.errors import ConfigError

#: Ids per ``$in`` query that suit SecantusDB (``STRANGLER_MONGO_IN_CHUNK``): its ``$in``
#: checks each candidate against the whole list, so its cost grows with the square of the
#: list's length. Draining 1,500 journal entries, chunks of 25 instead of MongoDB's 100
#: were 1.3x as fast (``bench/replay.py --in-chunk``).
IN_CHUNK = 25


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Running, not exited (an exited child stays in /proc as a zombie until reaped; its
    files and locks are already released)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class EmbeddedMongo:
    """A SecantusDB server on ``127.0.0.1:port`` with its data in ``storage_path``.

    ``stop(kill=True)`` sends SIGKILL (a crash); ``start()`` brings it back on the same
    port with the same data. SecantusDB keeps a write it acknowledged through a SIGKILL only
    with ``sync_on_commit`` (on by default: about 20% slower inserts here), which gives it the
    same guarantee as ``EmbeddedPostgres``: a killed server keeps every acknowledged write.
    """

    def __init__(
        self,
        storage_path: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        sync_on_commit: bool = True,
        oplog_max_entries: int | None = None,
    ) -> None:
        """``oplog_max_entries``: how many changes the server keeps for change streams to
        resume from (SecantusDB's default is 100,000, or an hour)."""
        from strangler.embedded import free_port

        self.storage_path = Path(storage_path)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path or self.storage_path.parent / f"secantus-{self.port}.log"
        self.sync_on_commit = sync_on_commit
        self.oplog_max_entries = oplog_max_entries
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.running:
            return
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secantus",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.storage_path),
                    "--log-level",
                    "WARNING",
                    *(["--sync-on-commit"] if self.sync_on_commit else []),
                    *(
                        ["--oplog-max-entries", str(self.oplog_max_entries)]
                        if self.oplog_max_entries
                        else []
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise ConfigError("cannot start SecantusDB: install the 'embedded' extra") from exc
        finally:
            log.close()
        self._pidfile.write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(
                    f"SecantusDB exited with code {self._proc.returncode} while starting; "
                    f"see {self.log_path}"
                )
            if _port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise ConfigError(f"SecantusDB did not start within {timeout:.0f}s; see {self.log_path}")

    @property
    def _pidfile(self) -> Path:
        return self.storage_path / "secantus.pid"

    def _stop_stale(self) -> None:
        """Stop a server left running on this data directory by a process that died."""
        try:
            pid = int(self._pidfile.read_text())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"secantus" in cmdline and str(self.storage_path).encode() in cmdline:
            for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + wait
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(pid):
                    return

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> None:
        """Stop the server: SIGTERM and wait (or SIGKILL at once when ``kill``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
        # A restart must be able to bind the same port again.
        deadline = time.monotonic() + timeout
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
