"""Attachments: audio, image and PDF, checked for size and kind before they are stored.

They arrive as base64 in JSON (``content.audioFile``, ``content.imageFile``, and ``pdf`` as
a URL or a ``data:application/pdf;base64,`` URL) or as files in ``multipart/form-data``
(parts ``audio``, ``image``, ``pdf``). Each kind has its own size limit, and the bytes
must look like what they claim to be: the declared content type (for files) and the
magic bytes both have to match the kind.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

from strangler.config import Settings
from strangler.core.errors import InvalidInput, PayloadTooLarge

Kind = Literal["audio", "image", "pdf"]

MEDIA_TYPES: dict[Kind, frozenset[str]] = {
    "audio": frozenset(
        {
            "audio/mpeg",
            "audio/mp3",
            "audio/wav",
            "audio/x-wav",
            "audio/wave",
            "audio/ogg",
            "audio/webm",
            "audio/mp4",
            "audio/x-m4a",
            "audio/aac",
        }
    ),
    "image": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"}),
    "pdf": frozenset({"application/pdf"}),
}
PDF_DATA_URL = "data:application/pdf;base64,"


def _looks_like(kind: Kind, data: bytes) -> bool:
    head = data[:16]
    if kind == "image":
        return (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head.startswith(b"\xff\xd8\xff")
            or head[:6] in (b"GIF87a", b"GIF89a")
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        )
    if kind == "audio":
        return (
            head.startswith(b"ID3")
            or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MPEG frame
            or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
            or head.startswith(b"OggS")
            or head.startswith(b"\x1a\x45\xdf\xa3")  # WebM / Matroska
            or head[4:8] == b"ftyp"  # MP4 / M4A
        )
    return head.startswith(b"%PDF-")


@dataclass(frozen=True)
class Limits:
    audio: int
    image: int
    pdf: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_audio_bytes, settings.max_image_bytes, settings.max_pdf_bytes)

    def of(self, kind: Kind) -> int:
        return int(getattr(self, kind))


def check(kind: Kind, data: bytes, limits: Limits, *, media_type: str | None = None) -> bytes:
    """``data`` if it is an acceptable ``kind`` attachment; ``InvalidInput`` or
    ``PayloadTooLarge`` naming the field otherwise."""
    loc = ["body", kind]
    if len(data) > limits.of(kind):
        raise PayloadTooLarge(
            f"the {kind} attachment is {len(data):,} bytes; the limit is {limits.of(kind):,}",
            errors=[{"loc": loc, "msg": "too large", "type": "too_large"}],
        )
    if media_type is not None and media_type.lower() not in MEDIA_TYPES[kind]:
        raise InvalidInput(
            f"the {kind} attachment is declared as {media_type!r}; accepted: "
            + ", ".join(sorted(MEDIA_TYPES[kind])),
            errors=[{"loc": loc, "msg": "unsupported media type", "type": "media_type"}],
        )
    if not data or not _looks_like(kind, data):
        raise InvalidInput(
            f"the {kind} attachment does not look like {kind} data (its first bytes match "
            f"no accepted {kind} format)",
            errors=[{"loc": loc, "msg": "content does not match the type", "type": "sniff"}],
        )
    return data


def from_base64(kind: Kind, text: str, limits: Limits) -> bytes:
    # base64 is 4/3 of the size: refuse before decoding something huge
    if len(text) * 3 // 4 > limits.of(kind) + 3:
        return check(kind, b"\0" * (limits.of(kind) + 1), limits)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"the {kind} attachment is not valid base64",
            errors=[{"loc": ["body", kind], "msg": "invalid base64", "type": "base64"}],
        ) from None
    return check(kind, data, limits)


def pdf_field(value: str | None, limits: Limits) -> str | None:
    """The ``pdf`` column: a URL as given, or a checked PDF data URL."""
    if value is None or not value.startswith("data:"):
        return value
    if not value.startswith(PDF_DATA_URL):
        raise InvalidInput(
            f"pdf must be a URL or a data URL starting with {PDF_DATA_URL}",
            errors=[{"loc": ["body", "pdf"], "msg": "unsupported data URL", "type": "media_type"}],
        )
    from_base64("pdf", value[len(PDF_DATA_URL) :], limits)
    return value
