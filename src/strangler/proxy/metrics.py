"""Prometheus metrics of the facade, on a registry of its own (one per facade).

* ``strangler_store_op_seconds{store,op}``: latency of each backend operation
* ``strangler_store_errors_total{store,op,error}``: errors by backend, operation and class
* ``strangler_shadow_comparisons_total{table,result}``: ``match`` / ``diverged`` (the
  consistency rate is match / total)
* ``strangler_shadow_dropped_total``: shadow reads skipped because too many were in flight
* ``strangler_secondary_lag_seconds``: from the authoritative write to the secondary one
* ``strangler_secondary_writes_total{result}``: ``ok`` / ``journaled``
* ``strangler_repair_queue_depth{target}``: journal entries still to land
* ``strangler_repairs_total{result}``: replayed entries, ``landed`` / ``retry``
* ``strangler_divergences_total{table}``: recorded divergences
* ``strangler_stage{stage}``: 1 for the current stage
* ``strangler_bypass_writes_total{store,table}``: changes a follower found that the facade
  did not make (an old instance, a script, SQL)
* ``strangler_follower_applied_total{follower}``, ``strangler_follower_reported_total
  {follower}``: changes copied, and changes reported instead (bad documents)
* ``strangler_follower_lag_seconds{follower}``: from the latest change seen to now, while
  changes wait (0 when caught up)
* ``strangler_stage_auto_rollbacks_total{from_stage,to_stage}``: steps back the rollout
  guard made
* ``strangler_follower_lag_changes{follower}``: changes not yet applied (the change log's
  depth; for a change stream, what was read ahead of the applier: a lower bound)
* ``strangler_follower_state{follower,state}``: 1 for the follower's state on this
  instance (``leading``, ``standby``, ``stale``, ``idle``)
* ``strangler_breaker_state{store}``: each store's circuit breaker on this instance, 0
  closed, 1 half open, 2 open (``proxy.breaker``)
* ``strangler_breaker_skipped_total{store}``: secondary writes journaled at once, untried,
  because the store's breaker was open
* ``strangler_ready``: 1 while the authoritative store answers this instance (its latest
  call, or ``/readyz`` probe, did not find it unavailable), else 0
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from strangler.core.errors import StranglerError

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class FacadeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.op_seconds = Histogram(
            "strangler_store_op_seconds",
            "Backend operation latency",
            ["store", "op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "strangler_store_errors_total",
            "Backend operation errors",
            ["store", "op", "error"],
            registry=r,
        )
        self.comparisons = Counter(
            "strangler_shadow_comparisons_total",
            "Shadow comparisons by result",
            ["table", "result"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "strangler_shadow_dropped_total", "Shadow reads dropped under overload", registry=r
        )
        self.lag = Histogram(
            "strangler_secondary_lag_seconds",
            "Time from the authoritative write to the secondary write",
            buckets=(*LATENCY_BUCKETS, 30, 60, 300),
            registry=r,
        )
        self.secondary_writes = Counter(
            "strangler_secondary_writes_total",
            "Secondary writes by outcome",
            ["result"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "strangler_repair_queue_depth", "Journal entries still to land", ["target"], registry=r
        )
        self.repairs = Counter(
            "strangler_repairs_total", "Replayed journal entries", ["result"], registry=r
        )
        self.divergences = Counter(
            "strangler_divergences_total", "Recorded divergences", ["table"], registry=r
        )
        self.stage = Gauge("strangler_stage", "1 for the current stage", ["stage"], registry=r)
        self.breaker_state = Gauge(
            "strangler_breaker_state",
            "Circuit breaker per store: 0 closed, 1 half open, 2 open",
            ["store"],
            registry=r,
        )
        self.ready = Gauge(
            "strangler_ready",
            "1 while the authoritative store answers this instance, else 0",
            registry=r,
        )
        self.ready.set(1)
        self.breaker_skipped = Counter(
            "strangler_breaker_skipped_total",
            "Secondary writes journaled untried because the store's breaker was open",
            ["store"],
            registry=r,
        )
        self.bypass_writes = Counter(
            "strangler_bypass_writes_total",
            "Changes a follower found that the facade did not make",
            ["store", "table"],
            registry=r,
        )
        self.follower_applied = Counter(
            "strangler_follower_applied_total",
            "Changes a follower copied to the other store",
            ["follower"],
            registry=r,
        )
        self.follower_reported = Counter(
            "strangler_follower_reported_total",
            "Changes a follower reported instead of copying (bad documents)",
            ["follower"],
            registry=r,
        )
        self.follower_lag = Gauge(
            "strangler_follower_lag_seconds",
            "Seconds from the oldest change not yet applied to now (0 when caught up)",
            ["follower"],
            registry=r,
        )
        self.auto_rollbacks = Counter(
            "strangler_stage_auto_rollbacks_total",
            "Stage steps back made by the rollout guard (Supabase worse than MongoDB)",
            ["from_stage", "to_stage"],
            registry=r,
        )
        self.follower_lag_changes = Gauge(
            "strangler_follower_lag_changes",
            "Changes not yet applied: the change log's depth (reverse), or the changes read "
            "ahead of the applier, a lower bound (forward: a change stream cannot be counted)",
            ["follower"],
            registry=r,
        )
        self.follower_state = Gauge(
            "strangler_follower_state",
            "1 for the follower's state on this instance",
            ["follower", "state"],
            registry=r,
        )
        #: The most recent lag samples, for exact percentiles (benchmarks, dashboard).
        self.recent_lag: deque[float] = deque(maxlen=10_000)
        #: Time-stamped recent samples for the dashboard's windowed charts:
        #: (monotonic time, store, seconds, failed), (time, matched), (time, lag seconds).
        self.recent_ops: deque[tuple[float, str, float, bool]] = deque(maxlen=20_000)
        self.recent_comparisons: deque[tuple[float, bool]] = deque(maxlen=10_000)
        self.recent_lag_at: deque[tuple[float, float]] = deque(maxlen=10_000)
        #: How far each second write trailed its first: from sending the authoritative
        #: write to the second one landing (what a follower's settle delay must cover).
        self.recent_trail_at: deque[tuple[float, float]] = deque(maxlen=10_000)
        #: When a second write was journaled instead (late or failed), and how long after
        #: its first write was sent: it reached the journal no sooner.
        self.recent_late_at: deque[tuple[float, float]] = deque(maxlen=1_000)
        self._op_children: dict[tuple[str, str], Any] = {}
        #: Shadow comparisons since the start (the stage gates count them in Postgres).
        self.compared_total = 0
        self.matched_total = 0

    def observe_lag(self, seconds: float) -> None:
        self.lag.observe(seconds)
        self.recent_lag.append(seconds)
        self.recent_lag_at.append((time.monotonic(), seconds))

    def observe_trail(self, seconds: float) -> None:
        """A second write landed ``seconds`` after its first write was sent."""
        self.recent_trail_at.append((time.monotonic(), seconds))

    def observe_late(self, waited: float) -> None:
        """A second write journaled ``waited`` seconds after its first write was sent."""
        self.recent_late_at.append((time.monotonic(), waited))

    def slowest_secondary(self, seconds: float = 60.0) -> float | None:
        """How far the slowest second write of the last ``seconds`` trailed its first
        (a journaled one: until it was journaled), or None without any."""
        since = time.monotonic() - seconds
        slowest: float | None = None
        for recent in (self.recent_trail_at, self.recent_late_at):
            for t, value in reversed(recent):
                if t < since:
                    break
                slowest = value if slowest is None else max(slowest, value)
        return slowest

    def compared(self, table: str, *, diverged: bool) -> None:
        self.comparisons.labels(table, "diverged" if diverged else "match").inc()
        self.recent_comparisons.append((time.monotonic(), not diverged))
        self.compared_total += 1
        self.matched_total += not diverged

    def timed(self, store: str, op: str) -> _Timed:
        """``async with metrics.timed(store, op):`` times one store call: its latency, and
        its error type when it raises a ``StranglerError``."""
        child = self._op_children.get((store, op))
        if child is None:  # labels() takes a lock and builds a key: once per (store, op)
            child = self._op_children[store, op] = self.op_seconds.labels(store, op)
        return _Timed(self, store, op, child)

    def window(self, seconds: float = 10.0) -> dict[str, Any]:
        """The last ``seconds``: each store's p50/p99 latency (ms), error rate and ops/s;
        the consistency rate of shadow comparisons; the secondary lag p99 (ms). A value
        with no samples in the window is ``None``."""
        since = time.monotonic() - seconds
        per_store: dict[str, list[tuple[float, bool]]] = {}
        for t, store, elapsed, failed in reversed(self.recent_ops):
            if t < since:
                break
            per_store.setdefault(store, []).append((elapsed, failed))
        stores = {}
        for store, samples in per_store.items():
            lat = sorted(e for e, _ in samples)
            stores[store] = {
                "p50_ms": _pct(lat, 0.5) * 1000,
                "p99_ms": _pct(lat, 0.99) * 1000,
                "error_rate": sum(1 for _, f in samples if f) / len(samples),
                "ops_per_s": len(samples) / seconds,
            }
        matched = [m for t, m in self.recent_comparisons if t >= since]
        lag = sorted(v for t, v in self.recent_lag_at if t >= since)
        return {
            "window_s": seconds,
            "stores": stores,
            "consistency_rate": sum(matched) / len(matched) if matched else None,
            "comparisons": len(matched),
            "lag_p99_ms": _pct(lag, 0.99) * 1000 if lag else None,
        }

    def consistency_rate(self) -> float | None:
        match = diverged = 0.0
        for metric in self.comparisons.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    if s.labels.get("result") == "match":
                        match += s.value
                    else:
                        diverged += s.value
        total = match + diverged
        return None if total == 0 else match / total

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class _Timed:
    """The context manager ``FacadeMetrics.timed`` returns (a class, not a generator: it
    wraps every store call, and a generator-based one costs twice as much)."""

    __slots__ = ("_child", "_metrics", "_op", "_start", "_store")

    def __init__(self, metrics: FacadeMetrics, store: str, op: str, child: Any) -> None:
        self._metrics, self._store, self._op, self._child = metrics, store, op, child
        self._start = 0.0

    async def __aenter__(self) -> None:
        self._start = time.perf_counter()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        failed = isinstance(exc, StranglerError)
        if failed:
            self._metrics.errors.labels(self._store, self._op, type(exc).__name__).inc()
        self._child.observe(elapsed)
        self._metrics.recent_ops.append((time.monotonic(), self._store, elapsed, failed))
