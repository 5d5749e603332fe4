"""The OpenAPI document matches the app, and schemathesis finds no 5xx and no response
that breaks it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from strangler.api import create_app, openapi
from tests.api.conftest import ADMIN, ApiFactory, as_user, serve

schema = schemathesis.openapi.from_dict(openapi.build())
# Streams never end, so a request/response fuzzer cannot call them; test_realtime does.
fuzzed = schema.exclude(path_regex=r"(/events|/ws|/admin/stream)$")
USER = as_user("fuzzer")
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


async def test_every_route_is_documented_and_every_documented_route_exists(
    api_settings: Any,
) -> None:
    app = create_app(api_settings("dualwrite"))
    served = {
        (r.method.lower(), r.resource.canonical)  # type: ignore[union-attr]
        for r in app.router.routes()
        if r.method != "HEAD"
    }
    documented = {
        (method, path)
        for path, item in openapi.build()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == documented


async def test_the_document_is_served(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0" and "/sessions" in doc["paths"]


@pytest.fixture(scope="module")
def fuzz_target(
    mongo_server: Any, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": f"fuzz_{uuid.uuid4().hex[:8]}",
        "SUPABASE_DB_URL": pg_dsn,
        "STRANGLER_STAGE": "dualwrite",
    }
    with serve(env, tmp_path_factory.mktemp("fuzz") / "serve.log") as served:
        yield served.url


#: Examples per operation: 40 in the quick suite; the slow run asks for more.
EXAMPLES = int(os.environ.get("STRANGLER_FUZZ_EXAMPLES", "40"))
#: When set, every generated request appends a line here (the slow run counts them).
COUNT_FILE = os.environ.get("STRANGLER_FUZZ_COUNT_FILE")


@fuzzed.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzing_finds_no_server_error_and_no_undocumented_response(
    case: Any, fuzz_target: str
) -> None:
    headers = ADMIN_H if case.path.startswith("/admin") else USER
    if COUNT_FILE:
        with open(COUNT_FILE, "a", encoding="utf-8") as fh:
            fh.write(f"{case.method} {case.path}\n")
    case.call_and_validate(
        base_url=fuzz_target,
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_long_fuzzing_run_sends_over_2000_requests_and_finds_no_5xx(tmp_path: Any) -> None:
    """The reliability issue's run: the fuzz test above with more examples per operation,
    in a fresh pytest process, counting the requests it really sent."""
    count = tmp_path / "requests.txt"
    env = {**os.environ, "STRANGLER_FUZZ_EXAMPLES": "250", "STRANGLER_FUZZ_COUNT_FILE": str(count)}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"),
            f"{__file__}::test_fuzzing_finds_no_server_error_and_no_undocumented_response",
            f"--basetemp={tmp_path / 'inner'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    sent = count.read_text().splitlines()
    assert len(sent) >= 2000, f"only {len(sent)} requests generated"
    assert len({line.split(" ", 1)[1] for line in sent}) >= 15  # spread over the whole API
