"""The backfill report: one JSON line per repaired or quarantined document.

``{"collection", "source_id", "target_id", "action", "reasons", "original"}``, where
``source_id`` and ``original`` are relaxed Extended JSON, so nothing about the source
document is lost, and ``target_id`` is the UUID it was stored under (or null).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from bson import json_util

from strangler.migrate.sources import BadInput

_RELAXED = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, uuid_representation=4)


def relaxed(value: Any) -> Any:
    """A BSON value as relaxed Extended JSON (parsed, ready to embed in a JSON line)."""
    return json.loads(json_util.dumps(value, json_options=_RELAXED))


class Report:
    """Writes report lines to ``path``; a context manager. ``path=None`` writes nothing."""

    def __init__(self, path: Path | None, *, append: bool = False) -> None:
        self.path = path
        self.append = append
        self.lines = 0
        self._fh: IO[str] | None = None

    def __enter__(self) -> Self:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a" if self.append else "w", encoding="utf-8")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()

    def write(
        self,
        *,
        collection: str,
        target_id: Any,
        action: str,
        reasons: list[str],
        original: Any = None,
        described: tuple[Any, Any] | None = None,
    ) -> None:
        """One line. ``original`` is the source document (or a ``BadInput``); a worker that
        already ran :func:`describe` on it passes ``described`` instead."""
        source_id, body = described if described is not None else describe(original)
        line = {
            "collection": collection,
            "source_id": source_id,
            "target_id": None if target_id is None else str(target_id),
            "action": action,
            "reasons": reasons,
            "original": body,
        }
        self.lines += 1
        if self._fh is not None:
            text = json.dumps(line, ensure_ascii=False)
            try:
                text.encode()
            except UnicodeEncodeError:  # a lone surrogate from an export file: keep it escaped
                text = json.dumps(line)
            self._fh.write(text + "\n")


def describe(original: Any) -> tuple[Any, Any]:
    """``(source_id, original)`` of a report line, as relaxed Extended JSON."""
    if isinstance(original, BadInput):
        return None, {"where": original.where, "text": original.text, "error": original.error}
    return relaxed(original.get("_id")), relaxed(original)
