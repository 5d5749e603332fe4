"""The OpenAPI paths of ``api.ops`` and of this document: probes, metrics, and the admin API
(stage, status, divergences, verify jobs)."""

from __future__ import annotations

from functools import partial

from strangler.api.openapi.fragments import (
    LIMIT,
    OBJECT,
    TEXT,
    Json,
    as_json,
    body,
    content,
    op,
    ref,
)

OPS, ADMIN = "operations", "admin"
#: The values ``core.stages.Stage`` takes, in ladder order.
STAGES = ["off", "dualwrite", "shadow", "live", "rampdown", "complete", "decommissioned"]


def paths() -> Json:
    """The path items of ``api.ops``'s routes and ``/openapi.json``."""
    return {**_probes(), **_admin()}


def _probes() -> Json:
    def open_get(summary: str, response: Json) -> Json:
        return {"get": op(summary, {"200": response}, security=None, tag=OPS)}

    return {
        "/healthz": open_get("The process is up", as_json(OBJECT, "Up")),
        "/readyz": open_get("The authoritative store answers (else 503)", as_json(OBJECT, "Ready")),
        "/metrics": open_get(
            "Prometheus metrics", content("Prometheus text format", TEXT, "text/plain")
        ),
        "/openapi.json": open_get("This document", as_json(OBJECT, "OpenAPI 3.1")),
    }


def _admin() -> Json:
    admin = partial(op, security="admin", tag=ADMIN)
    move = {
        "type": "object",
        "required": ["stage"],
        "properties": {
            "stage": {"enum": STAGES},
            "reason": TEXT,
            "force": {"type": "boolean"},
            "confirm": {
                "type": "boolean",
                "description": "true: the explicit yes the move to decommissioned needs",
            },
        },
    }
    return {
        "/admin/stage": {
            "get": admin(
                "The migration stage", {"200": as_json(OBJECT, "The stage and who set it")}
            ),
            "put": admin(
                "Move the stage: one step forward with the evidence it needs (else 409 "
                "evidence_missing, whose 'evidence' lists every piece, met or not, and the "
                "command that supplies it), back at any time, or any move with force and a "
                "reason (recorded with what was missing). The move to decommissioned also "
                "needs confirm: true (else 409 confirmation_required)",
                {"200": as_json(OBJECT, "The new stage")},
                request=body(move),
            ),
        },
        "/admin/status": {
            "get": admin(
                "Each backend's health, latency, error rate, repair queue; consistency "
                "rate and lag",
                {"200": as_json(OBJECT, "Status")},
            )
        },
        "/admin/divergences": {
            "get": admin(
                "Recent divergences found by shadow reads",
                {"200": as_json(OBJECT, "Divergences")},
                params=[LIMIT],
            )
        },
        "/admin/verify": {
            "post": admin(
                "Start a verify of both stores in the background",
                {"202": as_json(ref("VerifyJob"), "The job, running")},
            )
        },
        "/admin/verify/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": TEXT}],
            "get": admin(
                "A verify job's progress and result", {"200": as_json(ref("VerifyJob"), "The job")}
            ),
        },
    }
