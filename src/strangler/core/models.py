"""Domain models: ``ChatSession``, ``Message`` and ``MessageContent`` (pydantic v2).

JSON compatibility with the legacy backend:

* Input accepts ``_id`` or ``id``, and snake_case or camelCase keys (``session_id`` or
  ``sessionId``, ``created_at`` or ``createdAt``, ``audioFile`` or ``audio_file``).
* Output has one documented form: the Supabase column names (``id``, ``session_id``,
  ``created_at``, ``user_id``, ``timestamp``), UUID strings, timestamps as ISO-8601 UTC
  with milliseconds and ``Z``. Inside ``content`` the keys keep the legacy camelCase
  (``audioFile``, ``imageFile``, ``pdfUrl``), because content is stored verbatim as jsonb.
* New message content is validated strictly against ``MessageContent``. Stored legacy
  ``content`` may be any JSON value (a plain string, extra keys) and round-trips unchanged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import VERSION as PYDANTIC_VERSION
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)
from pydantic import JsonValue as PydanticJsonValue

from strangler.core import ids
from strangler.core.errors import InvalidInput
from strangler.core.normalize import b64, iso_z, utc_ms

Sender = Literal["user", "assistant"]
ContentType = Literal["conversation", "audio", "image", "pdf"]
SENDERS: tuple[str, ...] = ("user", "assistant")


def _id_before(value: Any) -> Any:
    try:
        return ids.parse_id(value)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


def _b64_before(value: Any) -> Any:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid standard base64 text") from None
    raise ValueError("expected base64 text")


#: A UUID that also accepts the legacy 24-hex ObjectId form.
RecordId = Annotated[uuid.UUID, BeforeValidator(_id_before)]
#: A timezone-aware UTC datetime truncated to milliseconds, emitted as ``...T..:..:..mmmZ``.
UtcMillis = Annotated[
    dt.datetime,
    AfterValidator(utc_ms),
    PlainSerializer(iso_z, return_type=str, when_used="json"),
]
#: Bytes carried as standard base64 text in JSON.
Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64_before),
    PlainSerializer(b64, return_type=str, when_used="json"),
]


def _now() -> dt.datetime:
    return utc_ms(dt.datetime.now(dt.UTC))


class ChatSession(BaseModel):
    """One chat session (a row of ``chat_sessions``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: RecordId = Field(validation_alias=AliasChoices("id", "_id"))
    title: str
    created_at: UtcMillis = Field(validation_alias=AliasChoices("created_at", "createdAt"))
    user_id: str = Field(validation_alias=AliasChoices("user_id", "userId"))

    @classmethod
    def new(cls, *, title: str, user_id: str, created_at: dt.datetime | None = None) -> ChatSession:
        """A new session with a fresh ObjectId-derived id. Raises ``InvalidInput``."""
        return parse(
            cls,
            {
                "id": ids.new_id(),
                "title": title,
                "user_id": user_id,
                "created_at": created_at or _now(),
            },
        )


class MessageContent(BaseModel):
    """The strict shape of new message content. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: ContentType
    text: str | None = None
    audioFile: Base64Bytes | None = Field(
        default=None, validation_alias=AliasChoices("audioFile", "audio_file")
    )
    imageFile: Base64Bytes | None = Field(
        default=None, validation_alias=AliasChoices("imageFile", "image_file")
    )
    pdfUrl: str | None = Field(default=None, validation_alias=AliasChoices("pdfUrl", "pdf_url"))

    def to_json(self) -> dict[str, Any]:
        """The stored JSON form: camelCase keys, base64 bytes, absent fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class Message(BaseModel):
    """One message (a row of ``messages``). ``content`` is JSON in its normalised form."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    id: RecordId = Field(validation_alias=AliasChoices("id", "_id"))
    session_id: RecordId = Field(validation_alias=AliasChoices("session_id", "sessionId"))
    sender: Sender
    content: PydanticJsonValue
    timestamp: UtcMillis
    audio: str | None = None
    image: str | None = None
    pdf: str | None = None

    @classmethod
    def new(
        cls,
        *,
        session_id: Any,
        sender: str,
        content: MessageContent | dict[str, Any],
        audio: str | None = None,
        image: str | None = None,
        pdf: str | None = None,
        timestamp: dt.datetime | None = None,
    ) -> Message:
        """A new message with a fresh id; strict ``content`` validation. Raises ``InvalidInput``."""
        if not isinstance(content, MessageContent):
            content = parse(MessageContent, content, loc_prefix=("content",))
        return parse(
            cls,
            {
                "id": ids.new_id(),
                "session_id": session_id,
                "sender": sender,
                "content": content.to_json(),
                "timestamp": timestamp or _now(),
                "audio": audio,
                "image": image,
                "pdf": pdf,
            },
        )


M = TypeVar("M", bound=BaseModel)


#: The pydantic releases whose ``BaseModel`` layout ``trusted`` is known to work with;
#: pyproject.toml pins the same range, and tests/test_dependencies.py checks both agree.
PYDANTIC_KNOWN_GOOD = ">=2.7,<2.15"
#: Every piece of per-instance state a ``BaseModel`` has; ``trusted`` sets each one.
_STATE = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
if sorted(getattr(BaseModel, "__slots__", ())) != sorted(_STATE):
    # A new slot would be left unset by trusted(), and fail far from here on first use.
    raise ImportError(
        f"pydantic {PYDANTIC_VERSION} changed BaseModel.__slots__ (now "
        f"{getattr(BaseModel, '__slots__', None)!r}); "
        "strangler.core.models.trusted needs updating. "
        f"Known to work: pydantic{PYDANTIC_KNOWN_GOOD}: install a release in that range, or "
        "see 'Dependencies' in the README to lift the bound."
    )
_SLOTS = BaseModel.__dict__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__


def trusted(model: type[M], values: dict[str, Any]) -> M:
    """Build ``model`` from values a store read and already holds in normalised form.

    Skips validation, like ``model_construct``, but about five times faster, which matters
    on the history hot path (50 rows a page). ``values`` must name every field with a value
    of the field's type; the result compares equal to a validated instance. It writes
    pydantic's private per-instance state itself (``_STATE``), hence the pin on pydantic
    and the canaries in tests/test_dependencies.py.
    """
    instance = object.__new__(model)
    object.__setattr__(instance, "__dict__", values)
    _set_fields_set(instance, set(values))
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def parse(model: type[M], data: Any, *, loc_prefix: tuple[str, ...] = ()) -> M:
    """Validate ``data`` as ``model``; a failure raises ``InvalidInput`` with field errors."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [*loc_prefix, *(str(p) for p in e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else model.__name__
        raise InvalidInput(
            f"invalid {model.__name__}: {where}: {errors[0]['msg'] if errors else exc}",
            errors=errors,
        ) from None
