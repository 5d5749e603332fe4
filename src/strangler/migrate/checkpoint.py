"""A durable checkpoint for ``strangler backfill --resume``.

Written atomically (temporary file, then rename) after each batch is committed, it holds
the source, the collection in progress, how many of its documents are done, and the
counts so far. Inserts never overwrite, so re-running a batch after a crash is harmless.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strangler.core.errors import ConfigError


@dataclass
class Checkpoint:
    source: str
    collection: str = "chat_sessions"
    offset: int = 0
    done: bool = False
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, source: str) -> Checkpoint:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            checkpoint = cls(**data)
        except FileNotFoundError:
            raise ConfigError(
                f"--resume: no checkpoint at {path}; run without --resume "
                "to start from the beginning"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--resume: {path} is not a backfill checkpoint ({exc})") from None
        if checkpoint.source != source:
            raise ConfigError(
                f"--resume: {path} belongs to a backfill of {checkpoint.source}, not {source}"
            )
        return checkpoint
