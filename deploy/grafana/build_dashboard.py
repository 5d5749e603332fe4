"""Writes ``strangler.json``, the Grafana dashboard, from the panel list below: the same
views as ``/admin``. Edit here and run ``python deploy/grafana/build_dashboard.py``;
tests/test_deploy.py checks the JSON is this script's output and every metric it names
exists on ``/metrics``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("strangler.json")

#: (title, kind, unit, [(expression, legend)]), in rows of up to four.
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("Stage", "stat", "none", [("max by (stage) (strangler_stage) == 1", "{{stage}}")]),
    ("Ready instances", "stat", "none", [("sum(strangler_ready)", "ready")]),
    (
        "Repair journal (writes still to land)",
        "timeseries",
        "none",
        [("max by (target) (strangler_repair_queue_depth)", "for {{target}}")],
    ),
    (
        "Circuit breakers (0 closed, 1 half open, 2 open)",
        "timeseries",
        "none",
        [("max by (instance, store) (strangler_breaker_state)", "{{instance}} {{store}}")],
    ),
    (
        "Secondary writes",
        "timeseries",
        "ops",
        [("sum by (result) (rate(strangler_secondary_writes_total[1m]))", "{{result}}")],
    ),
    (
        "Shadow consistency (target 99.9%)",
        "timeseries",
        "percentunit",
        [
            (
                'sum(rate(strangler_shadow_comparisons_total{result="match"}[5m]))'
                " / sum(rate(strangler_shadow_comparisons_total[5m]))",
                "consistent",
            )
        ],
    ),
    (
        "Divergences recorded",
        "timeseries",
        "none",
        [("sum by (table) (increase(strangler_divergences_total[5m]))", "{{table}}")],
    ),
    (
        "Store latency p50 / p99",
        "timeseries",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (store, le) "
                "(rate(strangler_store_op_seconds_bucket[1m])))",
                "{{store}} p50",
            ),
            (
                "histogram_quantile(0.99, sum by (store, le) "
                "(rate(strangler_store_op_seconds_bucket[1m])))",
                "{{store}} p99",
            ),
        ],
    ),
    (
        "Store errors",
        "timeseries",
        "ops",
        [
            (
                "sum by (store, error) (rate(strangler_store_errors_total[1m]))",
                "{{store}} {{error}}",
            )
        ],
    ),
    (
        "Secondary lag p99",
        "timeseries",
        "s",
        [
            (
                "histogram_quantile(0.99, sum by (le) "
                "(rate(strangler_secondary_lag_seconds_bucket[5m])))",
                "p99",
            )
        ],
    ),
    (
        "Followers: lag",
        "timeseries",
        "s",
        [("max by (follower) (strangler_follower_lag_seconds)", "{{follower}}")],
    ),
    (
        "Followers: state (1 = in this state)",
        "timeseries",
        "none",
        [("max by (follower, state) (strangler_follower_state)", "{{follower}} {{state}}")],
    ),
    (
        "Writes around the facade (bypass)",
        "timeseries",
        "ops",
        [
            (
                "sum by (store, table) (rate(strangler_bypass_writes_total[5m]))",
                "{{store}} {{table}}",
            )
        ],
    ),
    (
        "Replayed journal entries",
        "timeseries",
        "ops",
        [("sum by (result) (rate(strangler_repairs_total[1m]))", "{{result}}")],
    ),
    (
        "Automatic step-backs",
        "stat",
        "none",
        [("sum(increase(strangler_stage_auto_rollbacks_total[1h]))", "last hour")],
    ),
    (
        "Realtime",
        "timeseries",
        "none",
        [
            ("sum(strangler_realtime_subscribers)", "open streams"),
            ("sum(strangler_realtime_outbox_depth)", "events waiting for Postgres"),
        ],
    ),
]


def panel(i: int, title: str, kind: str, unit: str, targets: list[tuple[str, str]]) -> Any:
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 6, "x": (i % 4) * 6, "y": (i // 4) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "title": "strangler: MongoDB to Supabase",
        "uid": "strangler",
        "description": "The migration's state, as /admin shows it (deploy/grafana/).",
        "tags": ["strangler"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
