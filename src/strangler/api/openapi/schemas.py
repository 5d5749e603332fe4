"""The document's components: record schemas generated from the pydantic models, hand-written
schemas for the shapes no model describes, and the two bearer security schemes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue

from strangler.api.openapi.fragments import NULLABLE_TEXT, OBJECT, REF_TEMPLATE, TEXT, Json, ref
from strangler.core.models import ChatSession, Message, MessageContent
from strangler.core.normalize import b64, iso_z

#: Component name → (model, mode). Responses are what the model serialises; request bodies
#: are what it validates. The API calls a ``ChatSession`` a ``Session``.
FROM_MODELS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {
    "Session": (ChatSession, "serialization"),
    "Message": (Message, "serialization"),
    "MessageContent": (MessageContent, "validation"),
}

#: The text the models' JSON serialisers write. pydantic sees only ``return_type=str``.
_TEXT_OF: dict[Callable[..., Any], Json] = {
    iso_z: {"type": "string", "format": "date-time"},
    b64: {"type": "string", "contentEncoding": "base64"},
}


class ApiJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, plus two facts about the API's JSON it cannot see.

    * A value with one of our text serialisers (``UtcMillis``, ``Base64Bytes``) is that text
      in both directions: handlers take base64 and ISO 8601 text, not raw bytes.
    * A record the API answers with has every field, ``None`` ones too (``chat.record_json``
      writes them all, like ``model_dump``), so in serialisation mode every field is required.
    """

    def generate_inner(self, schema: Any) -> JsonSchemaValue:
        serializer = schema.get("serialization")
        function = serializer.get("function") if isinstance(serializer, dict) else None
        text = _TEXT_OF.get(function) if callable(function) else None
        if text is not None:
            return dict(text)
        return super().generate_inner(schema)

    def field_is_required(self, field: Any, total: bool) -> bool:
        return self.mode == "serialization" or super().field_is_required(field, total)


def model_schemas() -> dict[str, Json]:
    """The ``FROM_MODELS`` components, with the definitions they refer to (``$defs``) as
    components of their own. Raises ``ValueError`` if two different schemas share a name."""
    schemas: dict[str, Json] = {}
    for name, (model, mode) in FROM_MODELS.items():
        schema = model.model_json_schema(
            mode=mode, ref_template=REF_TEMPLATE, schema_generator=ApiJsonSchema
        )
        for def_name, definition in schema.pop("$defs", {}).items():
            _add(schemas, def_name, definition)
        _add(schemas, name, schema)
    return schemas


def _add(schemas: dict[str, Json], name: str, schema: Json) -> None:
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two different component schemas are named {name}")


def components() -> Json:
    """The document's ``components``: security schemes and every schema the paths refer to."""
    return {
        "securitySchemes": {
            "user": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A Supabase Auth access token; the user is its sub",
            },
            "admin": {"type": "http", "scheme": "bearer", "description": "STRANGLER_ADMIN_TOKEN"},
        },
        "schemas": {**model_schemas(), **_hand_written()},
    }


def _hand_written() -> dict[str, Json]:
    """The shapes that no pydantic model describes, written out; each says where it is built."""
    media = ["conversation", "audio", "image", "pdf"]
    senders = {"enum": ["user", "assistant"]}
    binary = {"type": "string", "format": "binary"}
    return {
        # ``chat._json_message`` reads this body key by key (sender defaults to user, the
        # attachments are size-checked first); only ``content`` goes through a model.
        "NewMessage": {
            "type": "object",
            "required": ["content"],
            "properties": {
                "sender": senders,
                "content": ref("MessageContent"),
                "audio": TEXT,
                "image": TEXT,
                "pdf": {
                    "type": "string",
                    "description": "a URL, or data:application/pdf;base64,...",
                },
            },
        },
        # ``chat._multipart_message`` reads these form fields and files.
        "NewMessageForm": {
            "type": "object",
            "properties": {
                "sender": senders,
                "type": {"enum": media},
                "text": TEXT,
                "audio": binary,
                "image": binary,
                "pdf": binary,
            },
        },
        # ``jobs.VerifyJob.json()``: a dataclass, whose JSON is not its fields.
        "VerifyJob": {
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": TEXT,
                "status": {"enum": ["running", "done", "failed"]},
                "progress": OBJECT,
                "result": {"type": ["object", "null"]},
                "error": NULLABLE_TEXT,
            },
        },
        # ``problems.response`` builds it from a ``Problem`` exception.
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": TEXT,
                "title": TEXT,
                "status": {"type": "integer"},
                "detail": TEXT,
                "code": TEXT,
                "instance": TEXT,
                "errors": {"type": "array", "items": OBJECT},
            },
        },
    }
