"""``MongoJournal``: the write journal in MongoDB, next to the app's collections."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING

from strangler.backends.mongo.errors import translate_errors
from strangler.backends.mongo.store import MongoStore, find_in, in_chunks
from strangler.core.records import PendingWrite, Table
from strangler.core.stages import Role

COLLECTION = "strangler_pending_writes"
#: How long a replayer holds the journal entries it took (``MongoJournal.due``), as in
#: Postgres's journal.
LEASE_SECONDS = 30.0


class MongoJournal:
    """Pending secondary writes, in the ``strangler_pending_writes`` collection."""

    name = "mongo"

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self._indexed = False
        #: claim token -> keys of the entries it holds still unsettled (``done``).
        self._claims: dict[ObjectId, set[Any]] = {}

    def _coll(self) -> Any:
        return self._store.collection(COLLECTION)

    async def _ensure_index(self) -> None:
        if not self._indexed:
            with translate_errors("journal index"):
                await self._coll().create_index([("target", ASCENDING), ("next_at", ASCENDING)])
                await self._coll().create_index([("claim", ASCENDING)], sparse=True)
            self._indexed = True

    async def add(self, entries: Sequence[PendingWrite]) -> None:
        if not entries:
            return
        await self._ensure_index()
        now = dt.datetime.now(dt.UTC)
        docs = [
            {
                "target": e.target,
                "table": e.table,
                "record_id": e.record_id,
                "created_at": e.created_at,
                "next_at": now,
                "attempts": 0,
                "last_error": None,
            }
            for e in entries
        ]
        with translate_errors("journal add"):
            await self._coll().insert_many(docs, ordered=False)

    async def due(self, targets: Sequence[Role], limit: int) -> list[PendingWrite]:
        """Up to ``limit`` due entries, claimed for ``LEASE_SECONDS``: another instance's
        replayer skips them, and if this one dies they are due again when the lease ends.
        MongoDB has no "update ... limit ... returning", so the claim takes three steps:
        find the first due ids, claim what is still due up to the last of them under a
        token of this call's own, and read back what the token holds (an entry two
        replayers raced for goes to one). The claim names a range of ids, not a list
        (``$in`` of 200 ids costs SecantusDB ten times a range over a small journal)."""
        await self._ensure_index()
        now = dt.datetime.now(dt.UTC)
        token = ObjectId()
        due = {"target": {"$in": list(targets)}, "next_at": {"$lte": now}}
        with translate_errors("journal due"):
            found = await (
                self._coll().find(due, {"_id": 1}).sort("_id", ASCENDING).limit(limit).to_list(None)
            )
            if not found:
                return []
            until = now + dt.timedelta(seconds=LEASE_SECONDS)
            await self._coll().update_many(
                {**due, "_id": {"$lte": found[-1]["_id"]}},
                {"$set": {"next_at": until, "claim": token}},
            )
            docs = await self._coll().find({"claim": token}).sort("_id", ASCENDING).to_list(None)
        self._forget_stale_claims()
        if docs:
            self._claims[token] = {d["_id"] for d in docs}
        return [
            PendingWrite(
                target=d["target"],
                table=d["table"],
                record_id=d["record_id"],
                key=d["_id"],
                attempts=d.get("attempts", 0),
                last_error=d.get("last_error"),
                created_at=d["created_at"],
                claim=token,
            )
            for d in docs
        ]

    def _forget_stale_claims(self) -> None:
        """Claims older than their lease are void (another replayer may hold them now)."""
        cutoff = ObjectId.from_datetime(
            dt.datetime.now(dt.UTC) - dt.timedelta(seconds=LEASE_SECONDS)
        )
        for token in [t for t in self._claims if t < cutoff]:
            del self._claims[token]

    async def done(self, entries: Sequence[PendingWrite]) -> None:
        """Forget ``entries``. When they are every entry a claim still holds (the usual
        end of a replay batch), one delete by the claim's token; else by their ids."""
        if not entries:
            return
        tokens = {e.claim for e in entries}
        token = next(iter(tokens))
        held = self._claims.get(token) if len(tokens) == 1 and token is not None else None
        with translate_errors("journal done"):
            if held is not None and held == {e.key for e in entries}:
                # The token still names exactly these (a lease taken over by another
                # replayer carries that replayer's token, and is left to it).
                await self._coll().delete_many({"claim": token})
                del self._claims[token]
                return
            for chunk in in_chunks([e.key for e in entries]):
                await self._coll().delete_many({"_id": {"$in": chunk}})
            for e in entries:
                if e.claim in self._claims:
                    self._claims[e.claim].discard(e.key)

    async def retry_later(self, entry: PendingWrite, error: str, delay: float) -> None:
        """Hide the entry for ``delay`` seconds; it leaves its claim."""
        next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        with translate_errors("journal retry"):
            await self._coll().update_one(
                {"_id": entry.key},
                {
                    "$set": {"next_at": next_at, "last_error": error[:500]},
                    "$inc": {"attempts": 1},
                    "$unset": {"claim": ""},
                },
            )
        if entry.claim in self._claims:
            self._claims[entry.claim].discard(entry.key)

    async def depth(self, target: Role | None = None) -> int:
        query = {} if target is None else {"target": target}
        with translate_errors("journal depth"):
            n: int = await self._coll().count_documents(query)
        return n

    async def hurry(self, target: Role) -> None:
        now = dt.datetime.now(dt.UTC)
        with translate_errors("journal hurry"):
            await self._coll().update_many(
                {"target": target, "next_at": {"$gt": now}}, {"$set": {"next_at": now}}
            )

    async def discard(self, target: Role) -> int:
        with translate_errors("journal discard"):
            result = await self._coll().delete_many({"target": target})
        return int(result.deleted_count)

    async def pending_ids(
        self, target: Role, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not record_ids:
            return set()
        query = {"target": target, "table": table}
        with translate_errors("journal lookup"):
            docs = await find_in(self._coll(), "record_id", record_ids, {"record_id": 1}, query)
        return {d["record_id"] for d in docs}
