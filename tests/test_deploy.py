"""The Docker files: Docker cannot run here, so the compose file and the Dockerfile are
parsed and checked against what strangler reads (``strangler.config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from strangler.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _env_names() -> set[str]:
    """Every environment variable ``Settings`` reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names.update(str(c) for c in choices)
        else:
            names.add(f"STRANGLER_{name.upper()}")
    return names


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_wires_every_service_by_environment() -> None:
    services = _compose()["services"]
    assert {"mongo", "postgres", "postgrest", "gateway", "strangler"} <= set(services)
    assert services["mongo"]["image"].startswith("mongo:7")
    assert "--replSet" in services["mongo"]["command"]
    assert services["postgres"]["image"].startswith("supabase/postgres")
    env = services["strangler"]["environment"]
    unknown = set(env) - _env_names()
    assert not unknown, f"strangler does not read {unknown}"
    mongo = urlparse(env["MONGO_URI"])
    assert mongo.hostname == "mongo" and "replicaSet=rs0" in mongo.query
    assert urlparse(env["SUPABASE_DB_URL"]).hostname == "postgres"
    gateway = urlparse(env["SUPABASE_URL"])
    assert gateway.hostname == "gateway"
    assert f"{gateway.port}:{gateway.port}" in services["gateway"]["ports"]
    assert f"{env['STRANGLER_PORT']}:8080" in services["strangler"]["ports"]
    assert set(services["strangler"]["depends_on"]) == {"mongo", "postgres"}
    postgrest = services["postgrest"]["environment"]
    assert urlparse(postgrest["PGRST_DB_URI"]).hostname == "postgres"
    assert postgrest["PGRST_DB_MAX_ROWS"] == "1000"  # the cap the REST store pages past
    assert "proxy_pass http://postgrest:3000/" in _compose()["configs"]["gateway"]["content"]


def test_the_image_is_multi_stage_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert sum(ln.startswith("FROM ") for ln in lines) >= 2
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(ln.startswith("HEALTHCHECK") for ln in lines)
    assert "/healthz" in text and "EXPOSE 8080" in text
    # The GPL-2.0 SecantusDB (the "embedded" extra) stays out of the production image.
    assert not any("embedded" in ln or "SecantusDB" in ln for ln in lines)
