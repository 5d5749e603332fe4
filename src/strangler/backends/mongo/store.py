"""``MongoStore``: the ``ChatStore`` contract on MongoDB, via PyMongo's ``AsyncMongoClient``.

It reads legacy documents (ObjectId ids, ``session_id`` as a hex string, naive datetimes)
and presents them through the id mapping; it writes new documents in the legacy shape
(``codec``), so the old backend can still read them after a rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self

import pymongo
import structlog
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, ReturnDocument
from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.uri_parser import parse_uri

from strangler.backends.mongo import codec
from strangler.backends.mongo.errors import translate_errors
from strangler.backends.validation import (
    check_limit,
    check_message,
    check_session,
    check_title,
)
from strangler.core import budget, ids
from strangler.core.errors import (
    CorruptRecord,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    StranglerError,
)
from strangler.core.ids import IdLike
from strangler.core.models import ChatSession, Message
from strangler.core.ports import LegacyIds
from strangler.core.records import Keyset, Page, StoreLimits, Table

log = structlog.get_logger(__name__)
#: Scans in ``_id`` order name the ``_id`` index: SecantusDB otherwise sorts the whole
#: result before the first batch (8.2 s against 4.0 s for 200k messages), and MongoDB
#: would choose it anyway.
BY_ID = [("_id", ASCENDING)]


#: MongoDB's error code for a duplicate key.
DUPLICATE_KEY = 11000

SESSIONS: Table = "chat_sessions"
MESSAGES: Table = "messages"
_OBJECTID_TYPE = {"$type": "objectId"}
#: Client closes still running after their store gave up waiting (kept referenced).
_CLOSING: set[asyncio.Task[None]] = set()


#: Values per ``$in`` (``MongoStore(in_chunk=...)``, ``STRANGLER_MONGO_IN_CHUNK``).
#: SecantusDB's time for an ``$in`` grows with the square of its length (here: 100 values
#: 29 ms, 600 values 0.62 s, 1,000 values 1.7 s; 500 records read in chunks of 100 took 97
#: ms, of 25 50 ms); MongoDB's grows linearly, and fewer round trips are better there.
IN_CHUNK = 100


def in_chunks(values: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size``."""
    for i in range(0, len(values), size):
        yield list(values[i : i + size])


async def find_in(
    coll: Any,
    field: str,
    values: Sequence[Any],
    projection: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    *,
    chunk: int,
) -> list[dict[str, Any]]:
    """The documents of ``coll`` whose ``field`` is one of ``values`` (and that match
    ``query``), asked ``chunk`` values at a time."""
    out: list[dict[str, Any]] = []
    for part in in_chunks(values, chunk):
        out += await coll.find({**(query or {}), field: {"$in": part}}, projection).to_list(None)
    return out


#: How long a lookup of one-way ids' originals may take before the store goes on without
#: them (it then finds such a record only if MongoDB holds it under its UUID).
LEGACY_LOOKUP_SECONDS = 1.0
#: Originals kept in memory (they never change): a few hundred bytes each.
LEGACY_CACHE = 4096


def may_be_one_way(value: uuid.UUID) -> bool:
    """Whether ``value`` may stand for a one-way legacy id: those map with uuid5, so only a
    version-5 UUID (never an ObjectId's, whose lookups stay free of the extra query)."""
    return value.version == 5


def _forms(
    kept: dict[uuid.UUID, str | int], values: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Any]]:
    """Every ``_id`` each record may have, most likely first: its original (``kept``) when
    it was a one-way legacy id, then the forms its UUID gives."""
    return {v: ([kept[v]] if v in kept else []) + ids.legacy_candidates(v) for v in values}


def _one_way_ref(session_id: Any) -> Any:
    """A message's ``session_id`` for a session whose ``_id`` is a one-way legacy id: that
    ``_id`` itself, as the legacy app wrote it; None (the usual form) otherwise."""
    return session_id if ids.one_way(session_id) else None


def default_database(uri: str, fallback: str = "chat") -> str:
    """The database named in a MongoDB URI, else ``fallback``."""
    try:
        name = parse_uri(uri).get("database")
    except (PyMongoError, ValueError):
        return fallback
    return name or fallback


class MongoStore:
    """The chat store on MongoDB. Owns its ``AsyncMongoClient``; use it as ``async with``."""

    name = "mongo"

    def __init__(
        self,
        uri: str,
        *,
        database: str | None = None,
        timeout: float = 5.0,
        max_pool_size: int = 50,
        limits: StoreLimits | None = None,
        in_chunk: int = IN_CHUNK,
    ) -> None:
        self._uri = uri
        #: Values per ``$in`` query (``IN_CHUNK``).
        self.in_chunk = in_chunk
        self._database = database or default_database(uri)
        self._timeout = timeout
        self._max_pool_size = max_pool_size
        self.limits = limits or StoreLimits()
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._legacy_ids: LegacyIds | None = None
        self._originals_seen: dict[tuple[Table, uuid.UUID], str | int] = {}

    def use_legacy_ids(self, legacy_ids: LegacyIds | None) -> None:
        """Where the originals of one-way legacy ids are kept (``strangler.legacy_ids``; the
        composition root sets it). With it, a record whose ``_id`` was an arbitrary string
        or an integer is found by its UUID, and written back under that ``_id``."""
        self._legacy_ids = legacy_ids

    # --- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        ms = int(self._timeout * 1000)
        # No CSOT timeoutMS: it would bound a whole cursor's lifetime and break long scans.
        # Server selection, connect and each socket read are bounded instead.
        self._client = AsyncMongoClient(
            self._uri,
            tz_aware=True,
            uuidRepresentation="standard",
            # A legacy date beyond year 9999 arrives as DatetimeMS instead of failing the batch.
            datetime_conversion="DATETIME_AUTO",
            serverSelectionTimeoutMS=ms,
            connectTimeoutMS=ms,
            socketTimeoutMS=ms,
            maxPoolSize=self._max_pool_size,
            # Polling heartbeats: the streaming monitor can leave a socket unclosed when the
            # client closes mid-heartbeat (a ResourceWarning), and a few more round trips do
            # not matter here.
            serverMonitoringMode="poll",
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            # close() ends server sessions, which selects a server; after an outage that can
            # wait on PyMongo's topology lock indefinitely. Shutdown waits at most the store
            # timeout, and never cancels close() (cancelling PyMongo mid-selection breaks it).
            closing = asyncio.get_running_loop().create_task(client.close())
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)
            try:
                await asyncio.wait_for(asyncio.shield(closing), self._timeout)
            except (TimeoutError, PyMongoError) as exc:
                log.warning("mongo_close_incomplete", error=f"{type(exc).__name__}: {exc}")

    @property
    def database(self) -> str:
        return self._database

    def collection(self, name: str) -> Any:
        """A collection in the store's database, for this backend's own modules (the
        journal). Nothing above ``backends/`` uses it: they get ``RawDocuments``."""
        return self._coll(name)

    # --- RawDocuments: the backfill's live source ------------------------------------------
    async def raw_batches(
        self, collection: str, batch: int, skip: int = 0, where: dict[str, Any] | None = None
    ) -> AsyncIterator[bytes]:
        """BSON batches straight off the wire, in ``_id`` order (the workers decode them);
        with ``where``, only the documents it selects."""
        with translate_errors(f"read {collection}"):
            cursor = (
                self._coll(collection)
                .find_raw_batches(where or {})
                .sort("_id", ASCENDING)
                .hint(BY_ID)
                .skip(skip)
                .batch_size(batch)
            )
            async for data in cursor:
                yield data

    async def sample_ids(self, collection: str, size: int) -> list[Any]:
        """``$sample`` of ``_id``s: a random cursor on a large collection, a scan on a small
        one (the server chooses)."""
        with translate_errors(f"sample {collection}"):
            cursor = await self._coll(collection).aggregate(
                [{"$sample": {"size": size}}, {"$project": {"_id": 1}}]
            )
            return [doc["_id"] async for doc in cursor]

    async def sample_uuids(self, table: Table, size: int) -> list[uuid.UUID]:
        """A sample of the table's ids as UUIDs (ids with no UUID are left out)."""
        out = []
        for value in await self.sample_ids(table, size):
            with contextlib.suppress(InvalidInput):
                out.append(ids.legacy_to_uuid(value))
        return out

    async def estimated_count(self, collection: str, patience: float = 2.0) -> int | None:
        """From collection metadata; None if the server takes longer than ``patience``
        seconds (MongoDB answers from metadata at once; SecantusDB counts by scanning)."""
        try:
            with translate_errors(f"count {collection}"):
                n: int = await self._coll(collection).estimated_document_count(
                    maxTimeMS=max(1, int(patience * 1000))
                )
        except StranglerError:
            return None
        return n

    async def oplog_window(self) -> float | None:
        """Seconds of changes the oplog holds, i.e. how far back a change stream can
        resume, where the server tells; None where it does not (no replica set, no right
        to read ``local``). The span from its oldest entry to its newest, and while the
        oplog is not yet full (its data size under 90% of its cap), that span scaled to
        the cap at the same write rate: a young oplog's span is only its age."""
        if self._client is None:
            return None
        try:
            with pymongo.timeout(5):
                local = self._client["local"]
                oplog = local["oplog.rs"]
                first = await oplog.find_one({}, {"ts": 1}, sort=[("$natural", 1)])
                last = await oplog.find_one({}, {"ts": 1}, sort=[("$natural", -1)])
                try:
                    stats = await local.command("collStats", "oplog.rs")
                except PyMongoError:
                    stats = {}
        except PyMongoError:
            return None
        if not first or not last or "ts" not in first or "ts" not in last:
            return None
        span = float(last["ts"].time - first["ts"].time)
        size, cap = stats.get("size"), stats.get("maxSize")
        if isinstance(size, int | float) and isinstance(cap, int | float) and 0 < size < 0.9 * cap:
            return span * cap / size
        return span

    async def present_ids(self, collection: str, legacy_ids: list[Any]) -> set[Any]:
        """Which of ``legacy_ids`` the collection still holds.

        A backfill batch arrives in ``_id`` order, so its ObjectIds are fetched as one
        ``_id`` range (a superset, which is fine for a presence test): far faster than a
        long ``$in`` on some servers (2.6 s against 0.3 s for 2,000 ids on SecantusDB).
        Other id types use ``$in``."""
        coll = self._coll(collection)
        oids = [i for i in legacy_ids if isinstance(i, ObjectId)]
        others = [i for i in legacy_ids if not isinstance(i, ObjectId)]
        present: set[Any] = set()
        with self._op("recheck deletes"):
            if oids:
                query = {"_id": {"$gte": min(oids), "$lte": max(oids)}}
                present |= {d["_id"] async for d in coll.find(query, {"_id": 1})}
            if others:
                present |= {d["_id"] async for d in coll.find({"_id": {"$in": others}}, {"_id": 1})}
        return present

    def db(self) -> Any:
        """The store's database, for this backend's own modules (the change feed)."""
        if self._client is None:
            raise StoreUnavailable(
                "mongo: store is not open; use `async with MongoStore(...)`", store="mongo"
            )
        return self._client[self._database]

    def _coll(self, name: str) -> Any:
        return self.db()[name]

    def op(self, op: str) -> contextlib.AbstractContextManager[None]:
        """``_op``, for the modules beside the store that use its database (the journal):
        a journal entry written for a request is bounded like the request's other calls."""
        return self._op(op)

    @contextlib.contextmanager
    def _op(self, op: str) -> Iterator[None]:
        """One operation, with its errors translated and its whole duration bounded by
        the store's timeout: PyMongo's client-side operation timeout (``pymongo.timeout``)
        covers server selection, the pool's queue and every round trip, so a server that
        hangs mid-connection (not only one that refuses) fails it in time. Scans are not
        bounded as a whole (a long scan is not a hang); each of their reads is, by the
        client's socket timeout. Within a request, a call gets at most what is left of the
        request's budget (``core.budget``)."""
        with translate_errors(op), pymongo.timeout(budget.left(self._timeout, "mongo")):
            yield

    # --- one-way legacy ids -------------------------------------------------------------
    async def originals(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str | int]:
        """The original ``_id`` of each of ``record_ids`` that was a one-way legacy id, as
        far as ``strangler.legacy_ids`` knows. Bounded by ``LEGACY_LOOKUP_SECONDS``: if the
        index does not answer, the store goes on without it (logged), never fails for it."""
        odd = [v for v in record_ids if may_be_one_way(v)]
        if not odd or self._legacy_ids is None:
            return {}
        found = {
            v: self._originals_seen[(table, v)] for v in odd if (table, v) in self._originals_seen
        }
        ask = [v for v in odd if v not in found]
        if ask:
            try:
                async with asyncio.timeout(min(self._timeout, LEGACY_LOOKUP_SECONDS)):
                    got = await self._legacy_ids.originals(table, ask)
            except (StranglerError, TimeoutError) as exc:
                log.warning(
                    "legacy_ids_unavailable",
                    table=table,
                    error=str(exc) or type(exc).__name__,
                    detail="records with a one-way legacy _id are looked up by their UUID alone",
                )
                got = {}
            self._cache(table, got.items())
            found.update(got)
        return found

    def _cache(self, table: Table, pairs: Iterable[tuple[uuid.UUID, str | int]]) -> None:
        """Keep originals in memory (bounded: cleared when full; they never change)."""
        pairs = list(pairs)
        if len(self._originals_seen) + len(pairs) > LEGACY_CACHE:
            self._originals_seen.clear()
        self._originals_seen.update(((table, v), legacy) for v, legacy in pairs)

    async def remember_originals(
        self, table: Table, pairs: Sequence[tuple[uuid.UUID, str | int]]
    ) -> set[uuid.UUID]:
        """Keep the originals of one-way legacy ids in ``strangler.legacy_ids`` (those not
        known yet); returns the ids whose original is now kept. A failure is logged, never
        raised: the caller's work goes on (without those ids)."""
        known = {v for v, _ in pairs if (table, v) in self._originals_seen}
        new = [(v, legacy) for v, legacy in pairs if v not in known]
        if not new or self._legacy_ids is None:
            return known
        try:
            async with asyncio.timeout(max(self._timeout, LEGACY_LOOKUP_SECONDS)):
                await self._legacy_ids.remember(table, new)
        except (StranglerError, TimeoutError) as exc:
            log.warning(
                "legacy_ids_not_kept",
                table=table,
                count=len(new),
                error=str(exc) or type(exc).__name__,
                detail="records with these one-way ids are found by scans only until kept",
            )
            return known
        self._cache(table, new)
        return known | {v for v, _ in new}

    async def _candidates(
        self, table: Table, values: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Any]]:
        """``_forms`` of ``values``, with the originals ``strangler.legacy_ids`` keeps."""
        return _forms(await self.originals(table, values), values)

    async def _id_filter(self, table: Table, value: uuid.UUID) -> dict[str, Any]:
        oid = ids.objectid_from_uuid(value)
        if oid is not None:
            return {"_id": oid}
        forms = await self._candidates(table, [value])
        return {"_id": {"$in": forms[value]}}

    async def _id_bound(self, table: Table, value: uuid.UUID) -> Any:
        """The ``_id`` value to compare against for keyset pagination on ``(time, _id)``."""
        kept = await self.originals(table, [value])
        return kept.get(value, codec.legacy_id(value))

    async def _session_refs(self, sid: uuid.UUID) -> list[Any]:
        """Every form a message's ``session_id`` may take for this session."""
        kept = await self.originals(SESSIONS, [sid])
        return ([kept[sid]] if sid in kept else []) + codec.session_ref_candidates(sid)

    async def ensure_indexes(self) -> None:
        """Create the indexes the chat queries need (idempotent)."""
        with translate_errors("create indexes"):
            await self._coll(MESSAGES).create_index(
                [("session_id", ASCENDING), ("timestamp", ASCENDING)]
            )
            await self._coll(SESSIONS).create_index(
                [("user_id", ASCENDING), ("created_at", DESCENDING)]
            )

    async def ping(self) -> float:
        start = time.perf_counter()
        with self._op("ping"):
            if self._client is None:
                raise StoreUnavailable("mongo: store is not open", store="mongo")
            await self._client.admin.command("ping")
        return time.perf_counter() - start

    # --- sessions ----------------------------------------------------------------------
    async def create_session(self, session: ChatSession) -> ChatSession:
        check_session(session, self.limits)
        with self._op("create session"):
            await self._coll(SESSIONS).insert_one(codec.encode_session(session))
        return session

    async def _find_session_doc(self, sid: uuid.UUID) -> dict[str, Any]:
        query = await self._id_filter(SESSIONS, sid)
        with self._op("get session"):
            doc: dict[str, Any] | None = await self._coll(SESSIONS).find_one(query)
        if doc is None:
            raise NotFound(f"session {sid} not found", store="mongo")
        return doc

    async def get_session(self, session_id: IdLike) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        return codec.decode_session(await self._find_session_doc(sid))

    async def read_many(
        self, table: Table, record_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ChatSession | Message | CorruptRecord]:
        """``BulkReader``: an ``$in`` over each id's most likely ``_id`` form, then one over
        the other forms of the ids not found (a deleted record, a legacy string ``_id``):
        half the values of asking for every form at once, when most records are there."""
        wanted = set(record_ids)
        collection = SESSIONS if table == "chat_sessions" else MESSAGES
        coll = self._coll(collection)
        forms = await self._candidates(table, list(wanted))
        with self._op(f"read {table}"):
            docs = await find_in(coll, "_id", [f[0] for f in forms.values()], chunk=self.in_chunk)
            seen = set()
            for doc in docs:
                with contextlib.suppress(InvalidInput):
                    seen.add(ids.legacy_to_uuid(doc["_id"]))
            others = [c for i in wanted - seen for c in forms[i][1:]]
            if others:
                docs += await find_in(coll, "_id", others, chunk=self.in_chunk)
        decode = codec.decode_session if table == "chat_sessions" else codec.decode_message
        out: dict[uuid.UUID, ChatSession | Message | CorruptRecord] = {}
        for doc in docs:
            try:
                record_id = ids.legacy_to_uuid(doc["_id"])
            except InvalidInput:
                continue
            if record_id not in wanted:
                continue
            try:
                out[record_id] = decode(doc)
            except CorruptRecord as exc:
                out[record_id] = exc
        return out

    async def rename_session(self, session_id: IdLike, title: str) -> ChatSession:
        sid = ids.parse_id(session_id, field="session_id")
        check_title(title, self.limits)
        query = await self._id_filter(SESSIONS, sid)
        with self._op("rename session"):
            doc = await self._coll(SESSIONS).find_one_and_update(
                query, {"$set": {"title": title}}, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise NotFound(f"session {sid} not found", store="mongo")
        return codec.decode_session(doc)

    async def delete_many(self, table: Table, record_ids: Sequence[uuid.UUID]) -> None:
        """``BulkDeleter``: delete what this store holds among ``record_ids`` (a session
        with its messages, as ``delete_session`` does), a few queries whatever their
        number; an id it does not hold is no error."""
        if not record_ids:
            return
        kept = await self.originals(table, record_ids)
        values = [form for each in _forms(kept, record_ids).values() for form in each]
        if table == "messages":
            with self._op("delete messages"):
                for chunk in in_chunks(values, self.in_chunk):
                    await self._coll(MESSAGES).delete_many({"_id": {"$in": chunk}})
            return
        refs = [kept[s] for s in record_ids if s in kept]
        refs += [ref for s in record_ids for ref in codec.session_ref_candidates(s)]
        # In delete_session's order: messages, sessions, messages again.
        with self._op("delete sessions"):
            for chunk in in_chunks(refs, self.in_chunk):
                await self._coll(MESSAGES).delete_many({"session_id": {"$in": chunk}})
            for chunk in in_chunks(values, self.in_chunk):
                await self._coll(SESSIONS).delete_many({"_id": {"$in": chunk}})
            for chunk in in_chunks(refs, self.in_chunk):
                await self._coll(MESSAGES).delete_many({"session_id": {"$in": chunk}})

    async def delete_session(self, session_id: IdLike) -> None:
        sid = ids.parse_id(session_id, field="session_id")
        doc = await self._find_session_doc(sid)
        # Messages first: if we die in between, the session is still there and a retried
        # delete finishes the job. Messages again last: one added concurrently, between
        # the first sweep and the session's delete, goes too (add_message covers the rest).
        refs = {"session_id": {"$in": await self._session_refs(sid)}}
        with self._op("delete session"):
            await self._coll(MESSAGES).delete_many(refs)
            await self._coll(SESSIONS).delete_one({"_id": doc["_id"]})
            await self._coll(MESSAGES).delete_many(refs)

    async def list_sessions(
        self,
        user_id: str,
        *,
        search: str | None = None,
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        limit: int = 50,
        after: Keyset | None = None,
    ) -> Page[ChatSession]:
        limit = check_limit(limit)
        users: list[Any] = [user_id]
        if user_id.isdigit() and len(user_id) < 19:
            users.append(int(user_id))  # legacy rows stored numeric user ids as numbers
        query: dict[str, Any] = {"user_id": {"$in": users}}
        if search:
            query["title"] = {"$regex": re.escape(search), "$options": "i"}
        created: dict[str, Any] = {}
        if created_from is not None:
            created["$gte"] = created_from
        if created_to is not None:
            created["$lt"] = created_to
        if created:
            query["created_at"] = created
        if after is not None:
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"created_at": {"$lt": after.at}},
                            {
                                "created_at": after.at,
                                "_id": {"$lt": await self._id_bound(SESSIONS, after.id)},
                            },
                        ]
                    },
                ]
            }
        with self._op("list sessions"):
            cursor = (
                self._coll(SESSIONS)
                .find(query)
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .limit(limit + 1)
            )
            docs = await cursor.to_list(None)
        items = [codec.decode_session(d) for d in docs[:limit]]
        return Page(items=items, has_more=len(docs) > limit)

    # --- messages ----------------------------------------------------------------------
    async def add_message(self, message: Message) -> Message:
        check_message(message, self.limits)
        session = await self._find_session_doc(message.session_id)
        doc = codec.encode_message(message, ref=_one_way_ref(session["_id"]))
        with self._op("add message"):
            await self._coll(MESSAGES).insert_one(doc)
        # Without a transaction the session may have been deleted since the check: take the
        # message back rather than leave an orphan that Postgres could never hold.
        try:
            await self._find_session_doc(message.session_id)
        except NotFound:
            with self._op("add message"):
                await self._coll(MESSAGES).delete_one({"_id": doc["_id"]})
            raise
        return message

    async def get_message(self, message_id: IdLike) -> Message:
        mid = ids.parse_id(message_id, field="message_id")
        query = await self._id_filter(MESSAGES, mid)
        with self._op("get message"):
            doc = await self._coll(MESSAGES).find_one(query)
        if doc is None:
            raise NotFound(f"message {mid} not found", store="mongo")
        return codec.decode_message(doc)

    async def delete_message(self, message_id: IdLike) -> None:
        mid = ids.parse_id(message_id, field="message_id")
        query = await self._id_filter(MESSAGES, mid)
        with self._op("delete message"):
            result = await self._coll(MESSAGES).delete_one(query)
        if result.deleted_count == 0:
            raise NotFound(f"message {mid} not found", store="mongo")

    async def history(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> Page[Message]:
        sid = ids.parse_id(session_id, field="session_id")
        limit = check_limit(limit)
        if after is not None and before is not None:
            raise InvalidInput("give either after or before, not both")
        query: dict[str, Any] = {"session_id": {"$in": await self._session_refs(sid)}}
        direction = ASCENDING
        if after is not None:
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"timestamp": {"$gt": after.at}},
                            {
                                "timestamp": after.at,
                                "_id": {"$gt": await self._id_bound(MESSAGES, after.id)},
                            },
                        ]
                    },
                ]
            }
        elif before is not None:
            direction = DESCENDING
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"timestamp": {"$lt": before.at}},
                            {
                                "timestamp": before.at,
                                "_id": {"$lt": await self._id_bound(MESSAGES, before.id)},
                            },
                        ]
                    },
                ]
            }
        with self._op("history"):
            cursor = (
                self._coll(MESSAGES)
                .find(query)
                .sort([("timestamp", direction), ("_id", direction)])
                .limit(limit + 1)
            )
            docs = await cursor.to_list(None)
        items = [codec.decode_message(d) for d in docs[:limit]]
        if direction == DESCENDING:
            items.reverse()
        return Page(items=items, has_more=len(docs) > limit)

    # --- bulk and scans ----------------------------------------------------------------
    async def _existing_ids(self, coll: Table, values: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """For ids not born from an ObjectId, the ``_id`` each has in MongoDB, or, for one
        it lacks, the original it had as a one-way legacy id (a record written back after
        a rollback keeps its old ``_id``)."""
        odd = [v for v in values if ids.objectid_from_uuid(v) is None]
        if not odd:
            return {}
        kept = await self.originals(coll, odd)
        wanted = [c for forms in _forms(kept, odd).values() for c in forms]
        with self._op("look up ids"):
            docs = await find_in(self._coll(coll), "_id", wanted, {"_id": 1}, chunk=self.in_chunk)
        return {**kept, **{ids.legacy_to_uuid(d["_id"]): d["_id"] for d in docs}}

    async def upsert_sessions(
        self, sessions: Sequence[ChatSession], *, overwrite: bool = True
    ) -> int:
        if not sessions:
            return 0
        for s in sessions:
            check_session(s, None)
        existing = await self._existing_ids(SESSIONS, [s.id for s in sessions])
        docs = [codec.encode_session(s, existing.get(s.id)) for s in sessions]
        return await self._bulk_upsert(SESSIONS, docs, overwrite, "upsert sessions")

    async def upsert_messages(self, messages: Sequence[Message], *, overwrite: bool = True) -> int:
        if not messages:
            return 0
        for m in messages:
            check_message(m, None)
        wanted = {m.session_id for m in messages}
        forms = await self._candidates(SESSIONS, list(wanted))
        refs = [c for sid in wanted for c in forms[sid]]
        with self._op("check sessions"):
            found = await find_in(
                self._coll(SESSIONS), "_id", refs, {"_id": 1}, chunk=self.in_chunk
            )
        held = {ids.legacy_to_uuid(d["_id"]): d["_id"] for d in found}
        missing = wanted - set(held)
        if missing:
            raise NotFound(f"sessions not found: {sorted(map(str, missing))[:5]}", store="mongo")
        existing = await self._existing_ids(MESSAGES, [m.id for m in messages])
        docs = [
            codec.encode_message(m, existing.get(m.id), ref=_one_way_ref(held[m.session_id]))
            for m in messages
        ]
        return await self._bulk_upsert(MESSAGES, docs, overwrite, "upsert messages")

    async def _bulk_upsert(
        self, coll: str, docs: list[dict[str, Any]], overwrite: bool, op: str
    ) -> int:
        """Insert the documents; those whose ``_id`` is taken are replaced (``overwrite``)
        or left as they are. Inserting first is the common case's fast path (a replay or a
        backfill brings records the store lacks): on SecantusDB an insert of 200 documents
        took 13-19 ms where 200 upserts took 133-177 ms."""
        with self._op(op):
            try:
                await self._coll(coll).insert_many(docs, ordered=False)
                return len(docs)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                taken = [docs[e["index"]] for e in errors]
            inserted = len(docs) - len(taken)
            if not overwrite:  # leave existing documents exactly as they are
                return inserted
            ops = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in taken]
            await self._coll(coll).bulk_write(ops, ordered=False)
        return len(docs)

    def scan_sessions(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[ChatSession]]:
        window = None if since is None else {"created_at": {"$gte": since}}
        return self._scan(SESSIONS, codec.decode_session, batch_size, after, window)

    def scan_messages(
        self,
        *,
        batch_size: int = 1000,
        after: uuid.UUID | None = None,
        since: dt.datetime | None = None,
    ) -> AsyncIterator[list[Message]]:
        window = None if since is None else {"timestamp": {"$gte": since}}
        return self._scan(MESSAGES, codec.decode_message, batch_size, after, window)

    async def _scan(
        self,
        coll: Table,
        decode: Any,
        batch_size: int,
        after: uuid.UUID | None,
        window: dict[str, Any] | None,
    ) -> AsyncIterator[list[Any]]:
        """Ascending UUID order. ObjectId ids sort the same way as their UUIDs, so they stream
        from the ``_id`` index; the rare ids of other types are read first and merged in.

        ``window`` filters on the time field. Legacy documents whose time is a string or a
        number do not match it; ``verify --since`` finds their rows by id instead."""

        def where(query: dict[str, Any]) -> dict[str, Any]:
            return query if window is None else {"$and": [query, window]}

        others: list[Any] = []
        one_way: list[tuple[uuid.UUID, str | int]] = []
        with translate_errors(f"scan {coll}"):
            async for doc in self._coll(coll).find(where({"_id": {"$not": _OBJECTID_TYPE}})):
                record = _decode_or_skip(decode, coll, doc)
                if record is not None and (after is None or record.id > after):
                    others.append(record)
                    if ids.one_way(doc["_id"]):
                        one_way.append((record.id, doc["_id"]))
        others.sort(key=lambda r: r.id)
        # Kept, so these records can be found by their UUID later (verify, repair, a job).
        await self.remember_originals(coll, one_way)
        query: dict[str, Any] = {"_id": _OBJECTID_TYPE}
        if after is not None:
            # The smallest ObjectId whose UUID can be greater than `after`.
            query = {"_id": {"$type": "objectId", "$gte": ObjectId(after.bytes[:6] + bytes(6))}}
        batch: list[Any] = []
        i = 0
        with translate_errors(f"scan {coll}"):
            cursor = (
                self._coll(coll)
                .find(where(query))
                .sort("_id", ASCENDING)
                .hint(BY_ID)
                .batch_size(batch_size)
            )
            async for doc in cursor:
                record = _decode_or_skip(decode, coll, doc)
                if record is None or (after is not None and record.id <= after):
                    continue
                while i < len(others) and others[i].id < record.id:
                    batch.append(others[i])
                    i += 1
                    if len(batch) >= batch_size:
                        yield batch
                        batch = []
                batch.append(record)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        batch.extend(others[i:])
        while batch:
            yield batch[:batch_size]
            batch = batch[batch_size:]

    async def count(self, table: Table) -> int:
        with self._op(f"count {table}"):
            n: int = await self._coll(table).count_documents({})
        return n


def _decode_or_skip(decode: Any, coll: str, doc: dict[str, Any]) -> Any:
    try:
        return decode(doc)
    except CorruptRecord as exc:
        # Scans feed verify and repair; the backfill reads raw documents and reports these.
        log.warning(
            "legacy_document_skipped",
            collection=coll,
            id=str(doc.get("_id")),
            reasons=exc.reasons,
        )
        return None
