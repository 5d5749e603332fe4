"""MongoDB's change stream as a ``ChangeFeed``: every insert, update, replace and delete
in ``chat_sessions`` and ``messages``, whoever made it (the facade, an old backend instance
still running, a cron job, a script in the shell).

The position is the stream's resume token with the change's operation time. A stream that
can no longer resume from a saved token (the oplog rolled past it, or the token comes from
another deployment) raises ``PositionLost``: the follower must not skip ahead silently.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from bson import ObjectId, json_util
from bson.binary import Binary
from pymongo.errors import OperationFailure, PyMongoError

from strangler.backends.mongo import codec
from strangler.backends.mongo.errors import translate_errors
from strangler.backends.mongo.store import MongoStore
from strangler.core import ids
from strangler.core.errors import CorruptRecord, InvalidInput, PositionLost
from strangler.core.records import Change, ChangeBatch, FeedPosition, Table

TABLES: dict[str, Table] = {"chat_sessions": "chat_sessions", "messages": "messages"}
PIPELINE = [{"$match": {"ns.coll": {"$in": list(TABLES)}}}]

#: Server codes for a stream that cannot resume: FailedToParse (a token it cannot read),
#: InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost.
LOST_CODES = frozenset({9, 260, 280, 286})

#: The most changes in one batch, and how long a read waits for the next change.
BATCH = 500
WAIT_MS = 250
FILL_SECONDS = 0.05


def reversible(legacy_id: Any) -> bool:
    """Whether a record with this ``_id`` can be found again by its UUID."""
    if isinstance(legacy_id, ObjectId | uuid.UUID):
        return True
    if isinstance(legacy_id, Binary):
        return legacy_id.subtype == 4
    if isinstance(legacy_id, str):
        return ids.is_objectid_hex(legacy_id) or _is_uuid(legacy_id)
    return False


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _change(event: dict[str, Any]) -> Change:
    table = TABLES[event["ns"]["coll"]]
    legacy = event.get("documentKey", {}).get("_id")
    record_id: uuid.UUID | None = None
    if reversible(legacy):
        try:
            record_id = ids.legacy_to_uuid(legacy)
        except InvalidInput:
            record_id = None
    document = event.get("fullDocument")
    op = str(event.get("operationType"))
    state: Any = ...
    if op == "delete":
        state = None
    elif document is not None and op in ("insert", "replace"):
        decode = codec.decode_session if table == "chat_sessions" else codec.decode_message
        try:
            state = decode(document)
        except CorruptRecord as exc:
            state = exc
    return Change(
        table=table,
        record_id=record_id,
        op=op,
        at=_wall_time(event),
        legacy_id=legacy,
        original=None if document is None else (lambda: _relaxed(document)),
        state=state,
    )


def _relaxed(document: Any) -> Any:
    """The document as relaxed Extended JSON (what the backfill's report holds)."""
    return json.loads(json_util.dumps(document, json_options=json_util.RELAXED_JSON_OPTIONS))


def _wall_time(event: dict[str, Any]) -> dt.datetime | None:
    wall = event.get("wallTime")
    if isinstance(wall, dt.datetime):
        return wall if wall.tzinfo else wall.replace(tzinfo=dt.UTC)
    cluster = event.get("clusterTime")
    if cluster is not None and hasattr(cluster, "time"):
        return dt.datetime.fromtimestamp(cluster.time, dt.UTC)
    return None


def _position(token: Any, at: dt.datetime | None) -> FeedPosition:
    return {"token": json_util.dumps(token), "at": None if at is None else at.isoformat()}


class MongoChangeFeed:
    """``ChangeFeed`` over a ``MongoStore``'s database."""

    name = "mongo"

    def __init__(self, store: MongoStore, *, batch: int = BATCH, wait_ms: int = WAIT_MS) -> None:
        self._store = store
        self._batch = batch
        self._wait_ms = wait_ms

    async def position_now(self) -> FeedPosition:
        with translate_errors("open change stream"):
            async with await self._store.db().watch(
                PIPELINE, max_await_time_ms=self._wait_ms
            ) as stream:
                await stream.try_next()
                return _position(stream.resume_token, dt.datetime.now(dt.UTC))

    async def applied(self, position: FeedPosition) -> None:
        """Nothing to do: the stream keeps its history, the position is saved."""

    async def prune_idle(self) -> int:
        return 0

    async def backlog(self) -> int | None:
        """A change stream cannot be counted without reading it: the follower counts what
        it has read ahead instead (a lower bound), and the lag in seconds is exact."""
        return None

    async def batches(self, after: FeedPosition | None) -> AsyncIterator[ChangeBatch]:
        token = None if after is None else json_util.loads(after["token"])
        with _feed_errors("follow the change stream", after):
            async with await self._store.db().watch(
                PIPELINE, resume_after=token, max_await_time_ms=self._wait_ms
            ) as stream:
                while True:
                    changes: list[Change] = []
                    at: dt.datetime | None = None
                    # A batch ends at BATCH changes, at a pause, or FILL_SECONDS after its
                    # first change: under a steady trickle it would otherwise wait to fill.
                    ends = float("inf")
                    while len(changes) < self._batch and time.monotonic() < ends:
                        event = await stream.try_next()
                        if event is None:
                            break
                        if not changes:
                            ends = time.monotonic() + FILL_SECONDS
                        change = _change(event)
                        changes.append(change)
                        at = change.at or at
                    yield ChangeBatch(
                        await self._one_way(changes), _position(stream.resume_token, at), at
                    )

    async def _one_way(self, changes: list[Change]) -> list[Change]:
        """Changes of records whose ``_id`` maps one way get their UUID once the store keeps
        the original (``strangler.legacy_ids``): it can then find them by it, and they are
        copied like any other. Where it cannot keep it, they stay without one, reported."""
        mapped = {
            i: ids.legacy_to_uuid(c.legacy_id)
            for i, c in enumerate(changes)
            if c.record_id is None and ids.one_way(c.legacy_id)
        }
        if not mapped:
            return changes
        odd: dict[Table, list[tuple[uuid.UUID, str | int]]] = {}
        for i, record_id in mapped.items():
            odd.setdefault(changes[i].table, []).append((record_id, changes[i].legacy_id))
        kept = {t: await self._store.remember_originals(t, pairs) for t, pairs in odd.items()}
        return [
            dataclasses.replace(c, record_id=mapped[i])
            if i in mapped and mapped[i] in kept[c.table]
            else c
            for i, c in enumerate(changes)
        ]


@contextmanager
def _feed_errors(op: str, after: FeedPosition | None) -> Iterator[None]:
    """``translate_errors``, except that a stream that cannot resume is ``PositionLost``."""
    try:
        yield
    except OperationFailure as exc:
        errmsg = str(exc.details.get("errmsg", "")) if exc.details else str(exc)
        # SecantusDB refuses a token from another database with code 13 and says why.
        if exc.code in LOST_CODES or "resume token" in errmsg.lower():
            raise PositionLost(
                "mongo: the change stream cannot resume from the saved position (saved at "
                f"{None if after is None else after.get('at')}; server code {exc.code}: "
                f"{errmsg})",
                store="mongo",
            ) from exc
        with translate_errors(op):
            raise
    except PyMongoError:
        with translate_errors(op):
            raise
