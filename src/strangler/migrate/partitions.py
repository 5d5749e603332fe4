"""Partition plans for ``--partition K/N``: sample the data once, store the split points
(``strangler.partition_plans``), and give each process its slice (``core.partition``).

* The backfill splits each collection by legacy ``_id`` in MongoDB's order. A live
  source selects its slice on the server (:func:`core.partition.mongo_slice`); a file or
  dump source reads every document and keeps those in its slice (:class:`InSlice`, in the
  workers). Every partition first loads *all* sessions, unaccounted (they are few, and
  inserts never overwrite), so its messages find their session whichever partition owns
  it; then it loads and counts its own slice of both collections.
* Verify and repair split by UUID, the order both stores scan in, with one plan per table
  that both use: ``repair --partition 3/8`` mends what ``verify --partition 3/8`` checks.

The first process to need a plan makes it from a sample and proposes it; if another
process stored one first, that one is used, so every process splits alike.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from strangler.core.errors import ConfigError, InvalidInput
from strangler.core.partition import Part, holds, split_points, uuid_points
from strangler.core.ports import IdSampler, PartitionPlans
from strangler.core.records import Table
from strangler.migrate.sources import MongoSource, Source, decode_chunk

log = structlog.get_logger(__name__)

#: Ids sampled to make a plan: quantiles of 10,000 ids put each slice within a few percent
#: of its share.
SAMPLE = 10_000
NO_PLANS = (
    "--partition needs the direct database (SUPABASE_DB_URL): the partitions' shared split "
    "points are kept in strangler.partition_plans, which the REST API cannot reach"
)


def to_json(value: Any) -> Any:
    """A BSON value as JSON (MongoDB's canonical extended JSON): exactly reversible."""
    return orjson.loads(json_util.dumps({"v": value}, json_options=CANONICAL_JSON_OPTIONS))["v"]


def from_json(points: list[Any]) -> list[Any]:
    """Split points stored by :func:`to_json`, as BSON values again."""
    return [json_util.loads(orjson.dumps({"v": p}).decode())["v"] for p in points]


@dataclass(frozen=True)
class Slice:
    """One partition's ``[lo, hi)``; ``lo``/``hi`` None are unbounded."""

    part: Part
    lo: Any | None
    hi: Any | None

    def describe(self) -> str:
        lo = "start" if self.lo is None else repr(self.lo)
        hi = "end" if self.hi is None else repr(self.hi)
        return f"partition {self.part}: [{lo}, {hi})"


class InSlice:
    """Whether a legacy document's ``_id`` is in a slice (picklable: workers run it).
    Documents with no readable ``_id`` belong to partition 1, so exactly one partition
    reports them."""

    def __init__(self, part: Part, lo: Any | None, hi: Any | None) -> None:
        self.first = part.k == 1
        self.lo, self.hi = lo, hi

    def __call__(self, doc: Any) -> bool:
        if not isinstance(doc, dict) or "_id" not in doc:
            return self.first
        try:
            return holds(doc["_id"], self.lo, self.hi)
        except InvalidInput:  # an _id of no BSON type: unreadable, reported once
            return self.first

    def has_id(self, value: Any) -> bool:
        return holds(value, self.lo, self.hi)


async def _agreed(
    plans: PartitionPlans | None,
    scope: str,
    part: Part,
    sample: Callable[[], Awaitable[list[Any]]],
    make: Callable[[list[Any]], list[Any]],
) -> list[Any]:
    if plans is None:
        raise ConfigError(NO_PLANS)
    stored = await plans.plan(scope, part.n)
    if stored is not None:
        return stored
    ids = await sample()
    points = make(ids)
    stored = await plans.propose(scope, part.n, points, len(ids))
    log.info("partition_plan_made", scope=scope, partitions=part.n, sampled=len(ids))
    return stored


async def legacy_slice(
    plans: PartitionPlans | None,
    scope: str,
    part: Part,
    sample: Callable[[int], Awaitable[list[Any]]],
) -> Slice:
    """Partition ``part`` of the legacy ids of ``scope`` (``backfill:messages``)."""
    if part.n == 1:
        return Slice(part, None, None)
    stored = await _agreed(
        plans,
        scope,
        part,
        lambda: sample(SAMPLE),
        lambda ids: [to_json(p) for p in split_points(ids, part.n)],
    )
    lo, hi = part.bounds(from_json(stored))
    return Slice(part, lo, hi)


async def uuid_slice(
    plans: PartitionPlans | None, table: Table, part: Part, sampler: IdSampler
) -> Slice:
    """Partition ``part`` of ``table``'s UUIDs (verify and repair share the plan)."""
    if part.n == 1:
        return Slice(part, None, None)
    stored = await _agreed(
        plans,
        f"uuid:{table}",
        part,
        lambda: sampler.sample_uuids(table, SAMPLE),
        lambda ids: [str(p) for p in uuid_points(ids, part.n)],
    )
    lo, hi = part.bounds([uuid.UUID(p) for p in stored])
    return Slice(part, lo, hi)


def reservoir(size: int, seed: int = 0) -> tuple[list[Any], Callable[[Any], None]]:
    """A uniform sample of up to ``size`` values from a stream (Algorithm R)."""
    out: list[Any] = []
    rng = random.Random(seed)
    seen = 0

    def add(value: Any) -> None:
        nonlocal seen
        seen += 1
        if len(out) < size:
            out.append(value)
            return
        j = rng.randrange(seen)
        if j < size:
            out[j] = value

    return out, add


async def sample_source(source: Source, collection: str, size: int = SAMPLE) -> list[Any]:
    """``size`` ``_id``s of ``collection`` at random: from the server for a live source;
    a file or dump is read through once (only the process that makes the plan does)."""
    if isinstance(source, MongoSource):
        return await source.documents.sample_ids(collection, size)
    log.info("partition_plan_sampling", collection=collection, detail="reads the file once")
    out, add = reservoir(size)
    async for chunk in source.chunks(collection, 5000):
        for doc in decode_chunk(chunk):
            if isinstance(doc, dict) and "_id" in doc:
                add(doc["_id"])
    return out
