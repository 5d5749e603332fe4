"""The Docker files: Docker cannot run here, so the compose file and the Dockerfile are
parsed and checked against what strangler reads (``strangler.config``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
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


# --- deploy/: Prometheus rules, the Grafana dashboard, Kubernetes manifests --------------

DEPLOY = ROOT / "deploy"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("STRANGLER_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here: `make promtool` installs it")
        pytest.skip("promtool is not installed (`make promtool`)")
    return found


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = _promtool()
    rules = DEPLOY / "prometheus"
    for argv in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [promtool, *argv], cwd=rules, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    names = {r["alert"] for g in _rules()["groups"] for r in g["rules"]}
    # The states an operator must act on (issue 20's list, with 16-18's).
    assert {
        "StranglerRepairQueueGrowing",
        "StranglerDivergence",
        "StranglerShadowConsistencyLow",
        "StranglerSecondaryWritesFailing",
        "StranglerInstanceUnready",
        "StranglerFollowerLagging",
        "StranglerFollowerStale",
        "StranglerBypassWrites",
        "StranglerBreakerOpen",
        "StranglerAutomaticStepBack",
    } <= names


def _rules() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())  # type: ignore[no-any-return]


def metric_names_used() -> dict[str, set[str]]:
    """The strangler metrics each file under deploy/ names in its expressions."""
    used: dict[str, set[str]] = {}
    exprs = [r["expr"] for g in _rules()["groups"] for r in g["rules"]]
    used["alerts.yml"] = {n for e in exprs for n in re.findall(r"\bstrangler_\w+", e)}
    board = json.loads((DEPLOY / "grafana" / "strangler.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used["strangler.json"] = {n for e in exprs for n in re.findall(r"\bstrangler_\w+", e)}
    return used


def test_the_dashboard_is_its_builders_output() -> None:
    sys.path.insert(0, str(DEPLOY / "grafana"))
    try:
        import build_dashboard
    finally:
        sys.path.remove(str(DEPLOY / "grafana"))
    assert (DEPLOY / "grafana" / "strangler.json").read_text() == build_dashboard.render(), (
        "deploy/grafana/strangler.json is stale: run python deploy/grafana/build_dashboard.py"
    )


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_the_kubernetes_manifests_validate_against_the_schemas() -> None:
    import kubernetes_validate

    docs = _manifests()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    # A broken manifest does fail (the check is not vacuous).
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**deployment, "spec": {"replicas": "three"}}, "1.37.0", True)
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        template = "secret.example.yaml" if name == "secret.yaml" else name
        assert (DEPLOY / "k8s" / template).exists(), name


def test_the_backfill_job_runs_one_partition_per_index() -> None:
    """The Indexed Job maps JOB_COMPLETION_INDEX (from 0) to --partition K/N (from 1), with
    N the number of completions, and resumes a retried index from its checkpoint."""
    job = next(d for d in _manifests() if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["PARTITIONS"]) == spec["completions"]
    script = container["args"][0]
    assert "K=$((JOB_COMPLETION_INDEX + 1))" in script
    assert '--partition "$K/$PARTITIONS"' in script and "--resume" in script
    for k in (0, 7):
        out = subprocess.run(
            ["sh", "-c", "K=$((JOB_COMPLETION_INDEX + 1)); echo $K/$PARTITIONS"],
            env={"JOB_COMPLETION_INDEX": str(k), "PARTITIONS": env["PARTITIONS"]},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == f"{k + 1}/{spec['completions']}"


def test_the_deployment_probes_drains_and_runs_unprivileged() -> None:
    by_kind = {d["kind"]: d for d in _manifests()}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The grace period covers the preStop sleep and the server's own drain.
    from strangler.api.server import SHUTDOWN_TIMEOUT

    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= sleep + SHUTDOWN_TIMEOUT
    # Every variable the ConfigMap, the Secret and the container set is one strangler reads.
    names = set(by_kind["ConfigMap"]["data"]) | set(by_kind["Secret"]["stringData"])
    names |= {e["name"] for e in container["env"]}
    unknown = names - _env_names()
    assert not unknown, f"strangler does not read {unknown}"


def test_the_image_and_the_makefile_install_from_the_lock() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    make = (ROOT / "Makefile").read_text()
    version = re.search(r"^UV_VERSION := (\S+)", make, re.M)
    assert version, "Makefile pins uv as UV_VERSION"
    assert f"'uv=={version.group(1)}'" in docker, "the image's uv differs from the Makefile's"
    assert "uv sync --frozen --no-dev" in docker and "uv.lock" in docker
    assert "sync --frozen" in make
    assert (ROOT / "uv.lock").exists()
