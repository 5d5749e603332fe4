"""Tracing (``api.telemetry``): with OpenTelemetry and ``OTEL_*``, a request's spans cover
the HTTP request, the facade's routing decision and each store call; without them nothing
is imported. Spans are caught with the SDK's in-memory exporter."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from strangler.api import telemetry
from tests.api.conftest import ApiFactory, as_user


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_provider(provider)
    try:
        yield exporter
    finally:
        telemetry.use_provider(None)
        provider.shutdown()


async def test_a_write_is_traced_from_the_request_through_the_facade_to_each_store(
    make_api: ApiFactory, spans: InMemorySpanExporter
) -> None:
    client = await make_api("dualwrite", follow=False, guard=False)
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {**as_user("alice"), "traceparent": caller}
    spans.clear()
    resp = await client.post("/sessions", json={"title": "traced"}, headers=headers)
    assert resp.status == 201
    by_name = {s.name: s for s in spans.get_finished_spans()}
    http = by_name["POST /sessions"]
    # The caller's trace goes on: same trace id, its span as the parent.
    assert format(http.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert http.parent is not None and format(http.parent.span_id, "016x") == "b7ad6b7169203331"
    assert http.attributes["http.response.status_code"] == 201
    facade = by_name["facade create_session"]
    assert facade.parent.span_id == http.context.span_id
    assert facade.attributes["strangler.stage"] == "dualwrite"
    assert facade.attributes["strangler.authoritative"] == "mongo"
    assert facade.attributes["strangler.secondary"] == "postgres"
    assert facade.attributes["strangler.secondary_write"] == "ok"
    assert facade.attributes["strangler.journaled"] is False
    store_spans = [s for s in spans.get_finished_spans() if s.name.endswith(" create_session")]
    stores = {s.attributes["db.system.name"] for s in store_spans if s.name != facade.name}
    assert stores == {"mongo", "postgres"}  # the authoritative write and the secondary one
    for s in store_spans:
        assert s.context.trace_id == http.context.trace_id


async def test_a_read_shows_the_stage_and_the_store_that_served_it(
    make_api: ApiFactory, spans: InMemorySpanExporter
) -> None:
    client = await make_api("live", follow=False, guard=False)
    alice = as_user("alice")
    resp = await client.post("/sessions", json={"title": "t"}, headers=alice)
    sid = (await resp.json())["id"]
    spans.clear()
    resp = await client.get(f"/sessions/{sid}", headers=alice)
    assert resp.status == 200
    names = [s.name for s in spans.get_finished_spans()]
    assert "GET /sessions/{session_id}" in names, names
    (facade,) = [s for s in spans.get_finished_spans() if s.name == "facade get_chat_sessions"]
    assert facade.attributes["strangler.authoritative"] == "postgres"
    assert facade.attributes["strangler.shadow_read"] is True


def test_without_otel_variables_nothing_is_imported() -> None:
    code = (
        "import sys\n"
        "from strangler.api import create_app, telemetry\n"
        "from strangler.config import Settings\n"
        "create_app(Settings(auth='disabled'))\n"
        "assert not telemetry.configure()\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_otel_variables_without_opentelemetry_warn_and_trace_nothing(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    assert telemetry.configure({"OTEL_SERVICE_NAME": "x"}) is False
    assert telemetry.configure({"OTEL_SDK_DISABLED": "true", "OTEL_SERVICE_NAME": "x"}) is False
    assert "strangler[tracing]" in capsys.readouterr().out
