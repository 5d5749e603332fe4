"""Backfill: copy every legacy document into the new store, or report why not.

* Sessions load before the messages that reference them.
* Rows are inserted, never overwritten (``overwrite=False``): a value the facade wrote
  during ``dualwrite`` is newer than the legacy one, so it wins.
* With a live source, each batch is re-checked against MongoDB after it is written, and
  any session or message deleted meanwhile is deleted again, so no delete is resurrected.
* Every source document ends up stored (equal after normalisation), or in the report, or
  both when it was repaired: ``read == written + quarantined`` for each collection.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from bson import ObjectId

from strangler.backends.base import ChatStore
from strangler.backends.mongo import translate_errors
from strangler.errors import NotFound
from strangler.migrate.checkpoint import Checkpoint
from strangler.migrate.report import Report
from strangler.migrate.sources import BadInput, Item, MongoSource, Source
from strangler.migrate.transform import Collection, Outcome, transform_message, transform_session
from strangler.models import ChatSession, Message

log = structlog.get_logger(__name__)
Orphans = Literal["quarantine", "adopt"]


@dataclass
class Counts:
    """``read == written + quarantined + vanished``; ``repaired`` is part of ``written``."""

    read: int = 0
    written: int = 0
    repaired: int = 0
    quarantined: int = 0
    #: Deleted from the live source while the backfill ran; the delete is respected.
    vanished: int = 0


@dataclass
class BackfillResult:
    counts: dict[Collection, Counts] = field(
        default_factory=lambda: {"chat_sessions": Counts(), "messages": Counts()}
    )
    seconds: float = 0.0


Progress = Callable[[str, Counts], None]
#: Which of these ids were deleted through the facade (``PostgresControl.tombstoned``).
Tombstones = Callable[[str, list[uuid.UUID]], Awaitable[set[uuid.UUID]]]


class Backfill:
    def __init__(
        self,
        source: Source,
        target: ChatStore,
        report: Report,
        *,
        orphans: Orphans = "quarantine",
        dry_run: bool = False,
        batch_size: int = 2000,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
        checkpoint_path: Path | None = None,
        tombstones: Tombstones | None = None,
    ) -> None:
        self.source = source
        self.tombstones = tombstones
        self.target = target
        self.report = report
        self.orphans = orphans
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.progress = progress
        self.result = BackfillResult()
        self._seen: dict[Collection, set[uuid.UUID]] = {"chat_sessions": set(), "messages": set()}
        self._sessions: set[uuid.UUID] = set()
        self.checkpoint = checkpoint or Checkpoint(source=source.name)
        self.checkpoint_path = checkpoint_path
        for name, saved in self.checkpoint.counts.items():
            self.result.counts[name] = Counts(**saved)  # type: ignore[index]

    async def run(self) -> BackfillResult:
        start = time.monotonic()
        collections: tuple[Collection, Collection] = ("chat_sessions", "messages")
        cp = self.checkpoint
        if cp.done:
            return self.result
        for collection in collections[collections.index(cp.collection) :]:
            skip = cp.offset if collection == cp.collection else 0
            cp.collection, cp.offset = collection, skip
            async for batch in self.source.documents(collection, self.batch_size, skip):
                await self._batch(collection, batch)
                cp.offset += len(batch)
                self._save_checkpoint()
                if self.progress is not None:
                    self.progress(collection, self.result.counts[collection])
        cp.done = True
        self._save_checkpoint()
        self.result.seconds = time.monotonic() - start
        return self.result

    def _save_checkpoint(self) -> None:
        if self.checkpoint_path is None or self.dry_run:
            return
        self.checkpoint.counts = {k: asdict(v) for k, v in self.result.counts.items()}
        self.checkpoint.save(self.checkpoint_path)

    def _account(self, out: Outcome, counts: Counts) -> None:
        target_id = out.record.id if out.record is not None else None
        action = out.action
        if action == "vanished":
            counts.vanished += 1
            return  # gone from the source: nothing to store, nothing to report
        if action == "quarantined":
            counts.quarantined += 1
        else:
            counts.written += 1
            counts.repaired += action == "repaired"
        if action != "ok":
            self.report.write(
                collection=out.collection,
                original=out.original,
                target_id=target_id,
                action=out.action,
                reasons=out.reasons,
            )

    async def _batch(self, collection: Collection, items: list[Item]) -> None:
        counts = self.result.counts[collection]
        outcomes: list[Outcome] = []
        for item in items:
            counts.read += 1
            if isinstance(item, BadInput):
                outcomes.append(Outcome(collection, item, None, ["unparseable"]))
                continue
            out = (
                transform_session(item)
                if collection == "chat_sessions"
                else transform_message(item)
            )
            if out.record is not None:
                if out.record.id in self._seen[collection]:
                    out.quarantine("duplicate_id")
                else:
                    self._seen[collection].add(out.record.id)
            outcomes.append(out)
        if collection == "messages":
            await self._orphans(outcomes)
        records = [o.record for o in outcomes if o.record is not None]
        if records and not self.dry_run:
            sessions = [r for r in records if isinstance(r, ChatSession)]
            messages = [r for r in records if isinstance(r, Message)]
            if sessions:
                await self.target.upsert_sessions(sessions, overwrite=False)
            if messages:
                try:
                    await self.target.upsert_messages(messages, overwrite=False)
                except NotFound:
                    # A session was deleted while we held its messages.
                    await self._messages_without_session(messages, outcomes)
            await self._undo_deleted(collection, outcomes)
        if collection == "chat_sessions":
            self._sessions.update(
                o.record.id for o in outcomes if o.record is not None and not o.vanished
            )
        for out in outcomes:
            self._account(out, counts)

    async def _orphans(self, outcomes: list[Outcome]) -> None:
        """Messages whose session is neither in the source nor in the target."""
        unknown = {
            o.record.session_id
            for o in outcomes
            if isinstance(o.record, Message) and o.record.session_id not in self._sessions
        }
        for sid in unknown:
            with contextlib.suppress(NotFound):
                await self.target.get_session(sid)
                self._sessions.add(sid)  # created in the new store (by the facade)
        adopted: list[ChatSession] = []
        for out in outcomes:
            msg = out.record
            if not isinstance(msg, Message) or msg.session_id in self._sessions:
                continue
            if self.orphans == "quarantine":
                out.quarantine("orphan_session")
                continue
            adopted.append(
                ChatSession(
                    id=msg.session_id,
                    title="(recovered session)",
                    created_at=msg.timestamp,
                    user_id="",
                )
            )
            self._sessions.add(msg.session_id)
            out.reasons.append("orphan_adopted")
        if adopted and not self.dry_run:
            await self.target.upsert_sessions(adopted, overwrite=False)

    async def _messages_without_session(
        self, messages: list[Message], outcomes: list[Outcome]
    ) -> None:
        """Store the messages whose session still exists. The others had a session when
        the batch was read (orphans are caught before), so it was deleted meanwhile: they
        vanished with it."""
        present: set[uuid.UUID] = set()
        for sid in {m.session_id for m in messages}:
            with contextlib.suppress(NotFound):
                await self.target.get_session(sid)
                present.add(sid)
        keep = [m for m in messages if m.session_id in present]
        if keep:
            await self.target.upsert_messages(keep, overwrite=False)
        for out in outcomes:
            if isinstance(out.record, Message) and out.record.session_id not in present:
                out.vanished = True

    async def _gone(self, collection: Collection, outcomes: list[Outcome]) -> list[uuid.UUID]:
        """Records of this batch deleted (through the facade, or in the live source) since
        they were read."""
        stored = {
            o.original["_id"]: o.record.id
            for o in outcomes
            if o.record is not None and not o.vanished and isinstance(o.original, dict)
        }
        if not stored:
            return []
        if self.tombstones is not None:
            dead = await self.tombstones(collection, list(stored.values()))
            return [i for i in stored.values() if i in dead]
        if isinstance(self.source, MongoSource):
            present = await _present(self.source.store.collection(collection), list(stored))
            return [
                record_id for legacy_id, record_id in stored.items() if legacy_id not in present
            ]
        return []

    async def _undo_deleted(self, collection: Collection, outcomes: list[Outcome]) -> None:
        """Delete again what was deleted while we copied it, and mark it vanished."""
        gone = set(await self._gone(collection, outcomes))
        for out in outcomes:
            if out.record is None or out.record.id not in gone:
                continue
            out.vanished = True
            log.info("backfill_delete_replayed", collection=collection, id=str(out.record.id))
            with contextlib.suppress(NotFound):
                if collection == "chat_sessions":
                    await self.target.delete_session(out.record.id)
                else:
                    await self.target.delete_message(out.record.id)


async def _present(coll: Any, legacy_ids: list[Any]) -> set[Any]:
    """Which of ``legacy_ids`` the collection still holds.

    A batch arrives in ``_id`` order, so its ObjectIds are fetched as one ``_id`` range (a
    superset, which is fine for a presence test): far faster than a long ``$in`` on some
    servers (2.6 s against 0.3 s for 2,000 ids on SecantusDB). Other id types use ``$in``.
    """
    oids = [i for i in legacy_ids if isinstance(i, ObjectId)]
    others = [i for i in legacy_ids if not isinstance(i, ObjectId)]
    present: set[Any] = set()
    with translate_errors("recheck deletes"):
        if oids:
            query = {"_id": {"$gte": min(oids), "$lte": max(oids)}}
            present |= {d["_id"] async for d in coll.find(query, {"_id": 1})}
        if others:
            present |= {d["_id"] async for d in coll.find({"_id": {"$in": others}}, {"_id": 1})}
    return present


def summary_table(result: BackfillResult, *, dry_run: bool) -> str:
    head = (
        f"{'collection':<14} {'read':>10} {'written':>10} {'repaired':>10} "
        f"{'quarantined':>12} {'vanished':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, c in result.counts.items():
        lines.append(
            f"{name:<14} {c.read:>10} {c.written:>10} {c.repaired:>10} {c.quarantined:>12}"
        )
    lines.append("vanished: deleted from MongoDB while the backfill ran (the delete is kept)")
    if dry_run:
        lines.append("(dry run: nothing was written; 'written' counts what would be)")
    return "\n".join(lines)
