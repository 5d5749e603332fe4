"""The pieces every part of the OpenAPI document is built from: an operation (with the shared
error response and its security), responses, request bodies, refs and common parameters."""

from __future__ import annotations

from typing import Any

#: A fragment of the document (JSON).
Json = dict[str, Any]

#: Where component schemas live; pydantic fills ``{model}`` in the refs it writes.
REF_TEMPLATE = "#/components/schemas/{model}"

UUID: Json = {"type": "string", "format": "uuid"}
TIME: Json = {"type": "string", "format": "date-time"}
TEXT: Json = {"type": "string"}
NULLABLE_TEXT: Json = {"type": ["string", "null"]}
OBJECT: Json = {"type": "object"}

#: Query ``limit``, as ``chat.query_int`` checks it.
LIMIT: Json = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
}


def ref(name: str) -> Json:
    """A reference to the component schema ``name``."""
    return {"$ref": REF_TEMPLATE.format(model=name)}


#: Every operation may fail, always in the same form (``api.problems``).
ERRORS: Json = {
    "default": {
        "description": "An error, as RFC 9457 problem details with a stable `code`",
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
}


def record_id(name: str) -> Json:
    """The path parameter ``name``: a record id, which ``http.path_ids`` takes in any form."""
    return {
        "name": name,
        "description": "a UUID, the legacy 24-hex ObjectId form, or a legacy string or "
        "integer id (a record whose MongoDB _id was one is found by it)",
        "schema": TEXT,
        "required": True,
        "in": "path",
    }


def query(name: str, schema: Json = TEXT, *, required: bool = False) -> Json:
    """An optional (or ``required``) query parameter."""
    param: Json = {"name": name, "in": "query", "schema": schema}
    if required:
        param["required"] = True
    return param


def content(description: str, schema: Json, *media_types: str) -> Json:
    """A response of ``schema`` in each of ``media_types``."""
    return {"description": description, "content": {m: {"schema": schema} for m in media_types}}


def as_json(schema: Json, description: str) -> Json:
    """A JSON response."""
    return content(description, schema, "application/json")


def as_html(description: str) -> Json:
    """An HTML page response."""
    return content(description, TEXT, "text/html")


def as_stream(description: str) -> Json:
    """A Server-Sent Events response (it never ends, so it has no schema beyond text)."""
    return content(description, TEXT, "text/event-stream")


def body(schema: Json, media_type: str = "application/json") -> Json:
    """A required request body of ``schema``."""
    return {"required": True, "content": {media_type: {"schema": schema}}}


def op(
    summary: str,
    responses: Json,
    *,
    tag: str,
    params: list[Json] | None = None,
    request: Json | None = None,
    security: str | None = "user",
) -> Json:
    """An operation: its ``responses`` plus the shared error response, and the bearer scheme
    ``security`` names (``None``: open to anyone)."""
    operation: Json = {"summary": summary, "responses": {**responses, **ERRORS}}
    if params:
        operation["parameters"] = params
    if request:
        operation["requestBody"] = request
    operation["security"] = [] if security is None else [{security: []}]
    operation["tags"] = [tag]
    return operation
