"""A realistic legacy dataset, in the document shapes the old chat backend wrote.

Sessions have ObjectId ``_id``s, naive UTC ``created_at`` and string ``user_id``s; messages
reference their session by the hex string, carry naive UTC ``timestamp``s, and some carry
attachments (BSON Binary audio and image bytes in ``content``, URLs in ``audio``/``image``/
``pdf``). Deterministic for a given seed, so runs are comparable.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

from bson import Binary, ObjectId

_WORDS = (
    "trip",
    "budget",
    "recipe",
    "python",
    "invoice",
    "meeting",
    "garden",
    "física",
    "東京",
    "résumé",
    "podcast",
    "homework",
    "workout",
    "taxes",
    "novel",
    "plan",
)
_LINES = (
    "Can you summarise this?",
    "Here is the draft you asked for.",
    "What about tomorrow?",
    "Sure, let me check.",
    "Привет! Как дела?",
    "Voici la réponse.",
    "Done ✅",
    "Let's break it into steps:\n1. gather\n2. sort\n3. ship",
)


def _oid_at(when: dt.datetime, rng: random.Random) -> ObjectId:
    return ObjectId(int(when.timestamp()).to_bytes(4, "big") + rng.randbytes(8))


def generate(
    sessions: int,
    messages_per_session: int = 5,
    *,
    users: int = 50,
    seed: int = 7,
    start: dt.datetime | None = None,
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Yield ``(session_doc, message_docs)`` pairs in the legacy shape."""
    rng = random.Random(seed)
    t = (start or dt.datetime(2024, 1, 1)).replace(tzinfo=None)
    for i in range(sessions):
        t += dt.timedelta(seconds=rng.randint(30, 3600))
        sid = _oid_at(t, rng)
        session = {
            "_id": sid,
            "title": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS)} #{i}",
            "created_at": t.replace(microsecond=rng.randrange(1000) * 1000),
            "user_id": f"user-{rng.randrange(users)}",
        }
        msgs = []
        mt = t
        for j in range(messages_per_session):
            mt += dt.timedelta(seconds=rng.randint(1, 120))
            kind = rng.choices(["conversation", "audio", "image", "pdf"], [85, 5, 5, 5])[0]
            content: dict[str, Any] = {"type": kind, "text": rng.choice(_LINES)}
            doc: dict[str, Any] = {
                "_id": _oid_at(mt, rng),
                "session_id": str(sid),
                "sender": "user" if j % 2 == 0 else "assistant",
                "content": content,
                "timestamp": mt.replace(microsecond=rng.randrange(1000) * 1000),
                "audio": None,
                "image": None,
                "pdf": None,
            }
            if kind == "audio":
                content["audioFile"] = Binary(b"RIFF" + rng.randbytes(rng.randint(200, 2000)))
                doc["audio"] = f"https://cdn.example.com/audio/{doc['_id']}.wav"
            elif kind == "image":
                content["imageFile"] = Binary(b"\x89PNG" + rng.randbytes(rng.randint(200, 2000)))
                doc["image"] = f"https://cdn.example.com/img/{doc['_id']}.png"
            elif kind == "pdf":
                content["pdfUrl"] = f"https://cdn.example.com/pdf/{doc['_id']}.pdf"
                doc["pdf"] = content["pdfUrl"]
            msgs.append(doc)
        yield session, msgs
