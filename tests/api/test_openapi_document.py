"""The OpenAPI document is built once, and its record schemas follow the pydantic models and
the JSON the API really sends."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel

from strangler.api import dashboard, openapi
from strangler.api.openapi import dashboard as dashboard_doc
from strangler.api.openapi import ops as ops_doc
from strangler.api.openapi.schemas import FROM_MODELS
from strangler.api.serialize import record_json
from strangler.core.models import ChatSession, Message, MessageContent
from strangler.core.stages import Stage
from tests.api.conftest import ApiFactory


def test_the_cached_document_is_unchanged_by_its_users() -> None:
    """Other tests hand ``build()`` to schemathesis; the shared dict must still be as built."""
    assert openapi.build() == openapi.build.__wrapped__()


async def test_the_document_is_built_once_and_served_as_built(make_api: ApiFactory) -> None:
    openapi.build.cache_clear()
    client = await make_api("dualwrite")
    first = await (await client.get("/openapi.json")).json()
    second = await (await client.get("/openapi.json")).json()
    calls = openapi.build.cache_info()
    assert (calls.misses, calls.hits) == (1, 1)  # built for the first request only
    assert first == second == openapi.build()
    assert openapi.build() is openapi.build()


@pytest.mark.parametrize("name", list(FROM_MODELS))
def test_a_model_component_has_the_models_fields_and_required_fields(name: str) -> None:
    """The component has the model's fields and requires what the model always has, so a
    change to the model that the document does not follow fails here."""
    model, mode = FROM_MODELS[name]
    schema = openapi.build()["components"]["schemas"][name]
    fields = model.model_fields
    # What the API answers with has every field (``record_json`` writes None ones too).
    required = set(fields) if mode == "serialization" else _required(model)
    assert set(schema["properties"]) == set(fields)
    assert set(schema.get("required", [])) == required


def test_the_hand_written_enums_list_what_the_code_accepts() -> None:
    assert [stage.value for stage in Stage] == ops_doc.STAGES
    assert list(dashboard.ASSETS) == dashboard_doc.ASSETS


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if field.is_required()}


def _drop(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


SESSION = ChatSession.new(title="t", user_id="alice")
MESSAGE = Message.new(session_id=SESSION.id, sender="user", content={"type": "conversation"})
#: A message as the legacy backend stored it: an ObjectId, any JSON as content, a link.
LEGACY = Message.model_validate(
    {
        "_id": "65a1b2c3d4e5f6a7b8c9d0e1",
        "sessionId": str(SESSION.id),
        "sender": "assistant",
        "content": "a plain-text message",
        "timestamp": "2024-01-01T09:00:00Z",
        "audio": "https://example.com/a.wav",
    }
)
AUDIO = base64.b64encode(b"RIFF....WAVE").decode()
CONTENT = MessageContent.model_validate({"type": "audio", "text": "hear", "audioFile": AUDIO})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Session", record_json(SESSION), id="session"),
        pytest.param("Message", record_json(MESSAGE), id="message"),
        pytest.param("Message", record_json(LEGACY), id="legacy-message"),
        pytest.param("MessageContent", CONTENT.to_json(), id="content-with-audio"),
    ],
)
def test_the_json_the_api_sends_matches_its_component(name: str, value: dict[str, Any]) -> None:
    """Records as ``record_json`` writes them, and content as it is stored."""
    assert _validator(name).is_valid(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Session", _drop(record_json(SESSION), "user_id"), id="session-without-user"),
        pytest.param(
            "Session", {**record_json(SESSION), "created_at": "yesterday"}, id="session-bad-time"
        ),
        pytest.param("MessageContent", {"type": "video"}, id="content-unknown-type"),
        pytest.param("Message", _drop(record_json(MESSAGE), "pdf"), id="message-without-pdf"),
    ],
)
def test_json_unlike_the_model_breaks_its_component(name: str, value: dict[str, Any]) -> None:
    assert not _validator(name).is_valid(value)


def _validator(name: str) -> Any:
    """A JSON Schema validator (formats checked) for one component of the document."""
    components = copy.deepcopy(openapi.build()["components"])
    root = {"$ref": f"#/components/schemas/{name}", "components": components}
    return jsonschema_rs.validator_for(root, validate_formats=True)
