"""Shared bench plumbing: embedded servers, timing, and printing ratios."""

from __future__ import annotations

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
def servers(fsync: bool = False) -> Iterator[tuple[EmbeddedMongo, EmbeddedPostgres]]:
    """SecantusDB and embedded PostgreSQL on loopback, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "mongo")
        pg = EmbeddedPostgres(Path(tmp) / "pg", fsync=fsync)
        mongo.start()
        pg.start()
        try:
            yield mongo, pg
        finally:
            mongo.stop()
            pg.stop()


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
