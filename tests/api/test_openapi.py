"""The OpenAPI document matches the app, and schemathesis finds no 5xx and no response
that breaks it."""

from __future__ import annotations

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


@fuzzed.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzing_finds_no_server_error_and_no_undocumented_response(
    case: Any, fuzz_target: str
) -> None:
    headers = ADMIN_H if case.path.startswith("/admin") else USER
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
