"""Shared bench plumbing: embedded servers, timing, and printing ratios."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="strangler-xdg-"))

from strangler.embedded import EmbeddedMongo, EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"


@dataclass
class Stat:
    name: str
    samples: list[float] = field(default_factory=list)
    wall: float = 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p99(self) -> float:
        if not self.samples:
            return float("nan")
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * 0.99))]

    @property
    def ops(self) -> float:
        return len(self.samples) / self.wall if self.wall else float("nan")

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": len(self.samples),
            "p50_ms": self.p50 * 1000,
            "p99_ms": self.p99 * 1000,
            "ops_per_s": self.ops,
        }


async def timed(stat: Stat, fn: Callable[[], Awaitable[Any]]) -> Any:
    t = time.perf_counter()
    result = await fn()
    stat.samples.append(time.perf_counter() - t)
    return result


@contextmanager
def servers(
    fsync: bool = False, oplog_max_entries: int | None = None
) -> Iterator[tuple[EmbeddedMongo, EmbeddedPostgres]]:
    """SecantusDB and embedded PostgreSQL on loopback, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "mongo", oplog_max_entries=oplog_max_entries)
        pg = EmbeddedPostgres(Path(tmp) / "pg", fsync=fsync)
        mongo.start()
        pg.start()
        try:
            yield mongo, pg
        finally:
            mongo.stop()
            pg.stop()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu(pid: int, reaped: bool = False) -> float:
    """CPU seconds (user + system) a process has used; 0 if it is gone. With ``reaped``,
    also what its children used that have ended (Postgres' closed connections)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


def server_pids(target: EmbeddedMongo | EmbeddedPostgres) -> list[int]:
    """An embedded server's process and its children (Postgres' backends), from its pid
    file."""
    if isinstance(target, EmbeddedPostgres):
        pid = int((target.datadir / "postmaster.pid").read_text().split()[0])
    else:
        pid = int((target.storage_path / "secantus.pid").read_text())
    return [pid, *children(pid)]


class CpuSplit:
    """CPU used by each part of a benchmark, read from /proc. ``roles`` maps a name to a
    pid (that one process) or to an embedded server (its process and children, looked up
    at each reading). ``per_request`` gives microseconds per request. On a machine without
    /proc every figure is 0."""

    def __init__(self, roles: dict[str, int | EmbeddedMongo | EmbeddedPostgres]) -> None:
        self.roles = roles

    def _now(self) -> dict[str, float]:
        if not Path("/proc/self/stat").exists():
            return dict.fromkeys(self.roles, 0.0)
        return {role: self._role(what) for role, what in self.roles.items()}

    @staticmethod
    def _role(what: int | EmbeddedMongo | EmbeddedPostgres) -> float:
        if isinstance(what, int):
            return _cpu(what)
        top, *rest = server_pids(what)
        return _cpu(top, reaped=True) + sum(map(_cpu, rest))

    def __enter__(self) -> CpuSplit:
        self._start = self._now()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.wall = time.monotonic() - self._wall
        self.seconds = {role: end[role] - self._start[role] for role in self.roles}

    def per_request(self, requests: int) -> dict[str, float]:
        return {role: s / max(1, requests) * 1e6 for role, s in self.seconds.items()}

    def line(self, requests: int) -> str:
        return "  ".join(
            f"{role} {us:,.0f} us ({self.seconds[role] / self.wall:.0%} of a core)"
            for role, us in self.per_request(requests).items()
        )


def conditions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'measurement':<44} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'ops/s':>9}")
    for r in rows:
        print(
            f"{r['name']:<44} {r['n']:>6} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} "
            f"{r['ops_per_s']:>9.0f}"
        )


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)))
    return path
