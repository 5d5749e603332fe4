"""Tracing with OpenTelemetry, when it is installed (``pip install 'strangler[tracing]'``)
and the standard ``OTEL_*`` variables are set: a span for each HTTP request (continuing the
caller's trace from a ``traceparent`` header), one for the facade's routing decision (the
stage, the authoritative and secondary store, whether the secondary write was journaled)
and one for each store call. Without OpenTelemetry, or with no ``OTEL_*`` variable set,
nothing is imported and every span is a no-op (``core.tracing``).

Exporters follow ``OTEL_TRACES_EXPORTER``: ``otlp`` (the default; OTLP over HTTP, to
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), ``console``, or
``none``. ``OTEL_SERVICE_NAME`` names the service (default ``strangler``);
``OTEL_SDK_DISABLED=true`` turns it all off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from strangler.core import tracing

log = structlog.get_logger(__name__)

#: Reads the caller's trace context from request headers (set with the tracer).
_extract: Any = None
_server_span: Any = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for tracing (any ``OTEL_*`` variable, not disabled)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(k.startswith("OTEL_") for k in environ)


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Trace if the environment asks and OpenTelemetry is installed; True if tracing."""
    if tracing.enabled():
        return True
    env = os.environ if environ is None else environ
    if not wanted(env):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "tracing_unavailable",
            reason="OTEL_* variables are set but OpenTelemetry is not installed",
            action="pip install 'strangler[tracing]', or unset the OTEL_* variables",
        )
        return False
    name = env.get("OTEL_SERVICE_NAME", "strangler")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    kind = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    exporter: Any
    if kind == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    log.info("tracing_on", service=name, exporter=kind)
    return True


def use_provider(provider: Any) -> None:
    """Trace into ``provider`` (an OpenTelemetry SDK ``TracerProvider``); tests pass one
    with an in-memory exporter. None stops tracing."""
    global _extract, _server_span
    if provider is None:
        tracing.install(None)
        _extract = _server_span = None
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    tracer = provider.get_tracer("strangler")

    def start(name: str, attributes: Mapping[str, Any]) -> Any:
        return tracer.start_as_current_span(name, attributes=dict(attributes))

    def server_span(name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]) -> Any:
        return tracer.start_as_current_span(
            name, context=extract(headers), kind=SpanKind.SERVER, attributes=dict(attributes)
        )

    _extract, _server_span = extract, server_span
    tracing.install(start)


@web.middleware
async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span per request, named by its route (``POST /sessions/{session_id}/...``)."""
    if _server_span is None:
        return await handler(request)
    info = request.match_info.route.resource
    route = info.canonical if info is not None else request.path
    attributes = {
        "http.request.method": request.method,
        "http.route": route,
        "url.path": request.path,
    }
    with _server_span(f"{request.method} {route}", request.headers, attributes) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            span.set_attribute("http.response.status_code", exc.status)
            raise
        span.set_attribute("http.response.status_code", response.status)
        return response
