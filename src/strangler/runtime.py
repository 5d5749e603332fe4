"""The composition root: the one place that names concrete classes, and decides what the
configuration allows.

* ``Runtime.open(settings)``: the running facade with every control-plane part, for
  ``strangler serve``, ``strangler.connect`` and the stage commands. Without ``MONGO_URI``
  (the finish line, ``decommissioned``) it runs on Supabase alone: over the database URL
  with everything, or over the REST API with realtime and the control plane off.
* ``Jobs.open(settings)``: the stores and records a bulk job (backfill, verify, repair)
  needs, over the direct Postgres store or Supabase's REST API.
* ``assemble(old, new, options)``: the facade over two stores the caller opened (tests and
  benchmarks).

Nothing else above ``backends/`` constructs a store or a control-plane class.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import structlog

from strangler.backends.absent import (
    NEEDS_DB_URL,
    AbsentJournal,
    AbsentStore,
    NoDivergences,
    NoEvents,
    NoFollowers,
    NoJobRuns,
    NoQuotas,
    NoStages,
    NoTombstones,
)
from strangler.backends.mongo import MongoJournal, MongoStore
from strangler.backends.mongo.changes import MongoChangeFeed
from strangler.backends.postgres import (
    MessageOutbox,
    PostgresChangeFeed,
    PostgresDivergenceLog,
    PostgresEventLog,
    PostgresFollowerState,
    PostgresIdSampler,
    PostgresJobRuns,
    PostgresJournal,
    PostgresLegacyIds,
    PostgresPages,
    PostgresPartitionPlans,
    PostgresQuotas,
    PostgresStageStore,
    PostgresStore,
    PostgresTombstones,
    QuotaPlan,
)
from strangler.backends.postgres.evidence import PostgresEvidence
from strangler.config.settings import Settings
from strangler.core import origin
from strangler.core.errors import ConfigError, StranglerError
from strangler.core.evidence import Thresholds
from strangler.core.ports import (
    ChangeFeed,
    DivergenceLog,
    EventLog,
    FollowerState,
    IdSampler,
    JobRuns,
    LegacyIds,
    PartitionPlans,
    Quotas,
    StageStore,
    Tombstones,
    WriteJournal,
)
from strangler.core.records import StoreLimits
from strangler.core.stages import Role, Stage
from strangler.proxy.assembly import ControlPorts, FacadeOptions, build_facade
from strangler.proxy.control import StageController
from strangler.proxy.facade import DualWriteStore
from strangler.proxy.follower import FORWARD, REVERSE, Direction, Follower
from strangler.proxy.gates import ComparisonCounter, StageGate
from strangler.proxy.guard import Guard, GuardLimits
from strangler.proxy.metrics import FacadeMetrics

if TYPE_CHECKING:
    from strangler.backends.supabase_rest import SupabaseRestStore

log = structlog.get_logger(__name__)

#: Seconds a bulk job (backfill, verify, repair) allows one store call: a batch of
#: thousands of rows, or a scan's first query, takes far longer than a request.
BULK_TIMEOUT = 120.0


# --- stores from settings (built, not opened) ---------------------------------------------
def limits(settings: Settings) -> StoreLimits:
    return StoreLimits(max_content_bytes=settings.max_content_bytes)


def old_store(settings: Settings, *, bulk: bool = False) -> MongoStore:
    """The legacy MongoDB store, from ``MONGO_URI``; ``bulk`` for long-running jobs."""
    if not settings.mongo_uri:
        raise ConfigError(
            "MONGO_URI is not set: point it at the app's MongoDB (backfill, verify and repair "
            "compare it with Supabase; once the migration is decommissioned, MongoDB is out "
            "of it and they have nothing left to do)"
        )
    return mongo_store(settings, settings.mongo_uri, bulk=bulk)


def mongo_store(settings: Settings, uri: str, *, bulk: bool = False) -> MongoStore:
    """A MongoDB store on ``uri`` (``MONGO_URI``, or a backfill's ``--source``)."""
    return MongoStore(
        uri,
        database=settings.mongo_db,
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        limits=limits(settings),
        in_chunk=settings.mongo_in_chunk,
    )


def new_store(settings: Settings, *, bulk: bool = False) -> PostgresStore:
    """The Supabase store, from ``SUPABASE_DB_URL``; ``bulk`` for long-running jobs."""
    if settings.supabase_db_url is None:
        raise ConfigError(
            "SUPABASE_DB_URL is not set: use the database URL from Supabase's "
            "'Connect' dialog (session pooler, port 5432, or direct). The facade and the "
            "API need it (the stage control, journal and realtime log live in Postgres); "
            "backfill, verify and repair also work with SUPABASE_URL and SUPABASE_KEY alone"
        )
    return PostgresStore(
        settings.supabase_db_url.get_secret_value(),
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        max_size=settings.pg_pool_size,
        statement_cache_size=settings.pg_statement_cache_size,
        limits=limits(settings),
        session=_session(settings, bulk=bulk),
    )


def _session(settings: Settings, *, bulk: bool) -> dict[str, str]:
    """What the store's connections tell the change log's triggers about their writes."""
    # A bulk job's writes are not for the reverse follower: the backfill loads what
    # MongoDB already holds, and repair writes Supabase only while MongoDB leads. Without
    # the followers, nothing would copy (or prune) the facade's writes: they are parked
    # for MongoDB at complete instead, and not captured.
    if bulk or not settings.follow:
        return {"strangler.capture": "off"}
    return {"strangler.origin": origin.FACADE}


def new_backend(settings: Settings) -> Literal["postgres", "rest"]:
    """Which Supabase store the settings choose (``STRANGLER_NEW_BACKEND``):

    * ``SUPABASE_DB_URL`` set: the direct Postgres store (unless ``rest`` is asked for);
    * only ``SUPABASE_URL`` and ``SUPABASE_KEY``: the REST store;
    * neither: ``ConfigError`` saying what to set.
    """
    has_db = settings.supabase_db_url is not None
    has_rest = bool(settings.supabase_url) and settings.supabase_key is not None
    choice = settings.new_backend
    if choice == "postgres" or (choice == "auto" and has_db):
        if not has_db:
            raise ConfigError("STRANGLER_NEW_BACKEND=postgres needs SUPABASE_DB_URL")
        return "postgres"
    if has_rest:
        return "rest"
    raise ConfigError(
        "no Supabase store: set SUPABASE_DB_URL (the database URL, fastest) or SUPABASE_URL "
        "and SUPABASE_KEY (the service-role key; REST, no database password needed)"
        if choice == "auto"
        else "STRANGLER_NEW_BACKEND=rest needs SUPABASE_URL and SUPABASE_KEY"
    )


def new_chat_store(settings: Settings, *, bulk: bool = False) -> PostgresStore | SupabaseRestStore:
    """The Supabase store for backfill, verify and repair: direct or REST, as chosen by
    :func:`new_backend`. The facade itself needs the direct store (:func:`new_store`)."""
    if new_backend(settings) == "postgres":
        return new_store(settings, bulk=bulk)
    # Imported here: supabase-py takes about 0.4 s to import, which every command over
    # the database URL (a backfill, a verify) would otherwise pay at start.
    from strangler.backends.supabase_rest import SupabaseRestStore

    assert settings.supabase_url is not None and settings.supabase_key is not None
    return SupabaseRestStore(
        settings.supabase_url,
        settings.supabase_key.get_secret_value(),
        timeout=max(settings.store_timeout, BULK_TIMEOUT) if bulk else settings.store_timeout,
        limits=limits(settings),
    )


def facade_options(settings: Settings) -> FacadeOptions:
    return FacadeOptions(
        stage=settings.stage,
        shadow_sample_rate=settings.shadow_sample_rate,
        shadow_max_inflight=settings.shadow_max_inflight,
        read_repair=settings.read_repair,
        secondary_timeout=settings.secondary_timeout,
        stage_poll_seconds=settings.stage_poll_seconds,
        breaker_failures=settings.breaker_failures,
        breaker_probe_max=settings.breaker_probe_max_seconds,
    )


@dataclass(frozen=True)
class FollowOptions:
    """The change followers' tunables."""

    settle: float = 0.5
    lease_seconds: float = 6.0
    poll: float = 0.5
    instance: str = field(default_factory=lambda: instance_name())


def instance_name() -> str:
    """This process, as followers' leases name it: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class GateOptions:
    """The stage gates: whether the followers are on (so their health is evidence), and
    the thresholds."""

    follow: bool = True
    limits: Thresholds = field(default_factory=Thresholds)


def gate_options(settings: Settings) -> GateOptions:
    return GateOptions(
        follow=settings.follow,
        limits=Thresholds(
            follower_lag_seconds=settings.gate_follower_lag_seconds,
            consistency=settings.gate_consistency,
            min_comparisons=settings.gate_min_comparisons,
        ),
    )


def guard_limits(settings: Settings) -> GuardLimits:
    return GuardLimits(
        window=settings.guard_window_seconds,
        sustain=settings.guard_sustain_seconds,
        max_error_rate=settings.guard_max_error_rate,
        max_p99_ratio=settings.guard_max_p99_ratio,
        max_divergence_rate=settings.guard_max_divergence_rate,
        min_samples=settings.guard_min_samples,
    )


def follow_options(settings: Settings) -> FollowOptions:
    return FollowOptions(
        settle=settings.follow_settle_seconds, lease_seconds=settings.follow_lease_seconds
    )


#: The reverse follower's settle delay (seconds), at most the forward one's.
REVERSE_SETTLE = 0.1


def _follower(
    direction: Direction,
    facade: DualWriteStore,
    feed: ChangeFeed,
    state: FollowerState,
    reports: DivergenceLog,
    options: FollowOptions,
    *,
    always: bool = False,
) -> Follower:
    """``direction``'s follower over the facade's stores (``always``: whatever the stage,
    for ``strangler backfill --follow``). The facade journals a failed second write in the
    authoritative store's journal, so that is where the follower asks."""
    old, new = facade.old, facade.new
    assert isinstance(old, MongoStore) and isinstance(new, PostgresStore)
    return Follower(
        direction,
        feed,
        state,
        {"old": old, "new": new},
        lambda: facade.stage,
        facade.metrics,
        stage_since=lambda: facade.controller.changed_at,
        instance=options.instance,
        readers={"old": old, "new": new},
        deleters={"old": old, "new": new},
        journal=facade.journals[direction.source],
        tombstones=facade.tombstones,
        reports=reports,
        lease_seconds=options.lease_seconds,
        # Reverse, the change log says who made each change: the delay only lets the
        # facade's own second write to MongoDB (at live and rampdown) land first, so the
        # follower finds it there instead of copying it again.
        settle=options.settle if direction is FORWARD else min(options.settle, REVERSE_SETTLE),
        # Forward, the settle delay stretches with the facade's late second writes (one is
        # journaled after the secondary timeout, its entry lands a little later still).
        # The change log records who made each change, so reverse needs no stretch.
        settle_max=facade.secondary_timeout + 1.0 if direction is FORWARD else None,
        poll=options.poll,
        always=always,
    )


def quota_plan(settings: Settings) -> QuotaPlan:
    return QuotaPlan(settings.plan_db_bytes, settings.plan_max_rows, settings.quota_warn_ratio)


# --- the running facade ---------------------------------------------------------------------
@dataclass(frozen=True)
class Runtime:
    """The facade and the control-plane parts beside it. Handlers and commands take the
    part they need from here instead of reaching through the facade."""

    facade: DualWriteStore
    stages: StageStore
    divergences: DivergenceLog
    tombstones: Tombstones
    events: EventLog
    runs: JobRuns
    quotas: Quotas
    followers: FollowerState
    #: Each follower's change feed, by follower name.
    feeds: dict[str, ChangeFeed]
    #: This instance's change followers (each leads or stands by).
    following: tuple[Follower, ...] = ()
    #: Counts this instance's shadow comparisons in Postgres (the stage gates read them).
    counter: ComparisonCounter | None = None
    #: Steps the stage back when Supabase is clearly worse (``proxy.guard``), if enabled.
    guard: Guard | None = None
    #: Why realtime is unavailable (over Supabase's REST API alone); None: it works.
    realtime_off: str | None = None

    @property
    def controller(self) -> StageController:
        return self.facade.controller

    @property
    def metrics(self) -> FacadeMetrics:
        return self.facade.metrics

    @classmethod
    def over(
        cls,
        old: MongoStore | AbsentStore,
        new: PostgresStore,
        options: FacadeOptions,
        *,
        plan: QuotaPlan | None = None,
        follow: FollowOptions | None = None,
        gate: GateOptions | None = None,
        guard: GuardLimits | None = None,
    ) -> Runtime:
        """Every part over two stores the caller has opened; connects nothing. With
        ``follow``, the change followers too (they run while the facade does); with
        ``gate``, forward stage moves need evidence (``proxy.gates``). ``old`` is an
        ``AbsentStore`` once MongoDB is decommissioned: no follower runs then."""
        stages = PostgresStageStore(new)
        divergences = PostgresDivergenceLog(new)
        tombstones = PostgresTombstones(new)
        if isinstance(old, MongoStore):
            old.use_legacy_ids(PostgresLegacyIds(new))
        journals: dict[Role, WriteJournal] = {
            "old": MongoJournal(old) if isinstance(old, MongoStore) else AbsentJournal("mongo"),
            "new": PostgresJournal(new),
        }
        ports = ControlPorts(
            stages=stages,
            journals=journals,
            divergences=divergences,
            tombstones=tombstones,
            sender=MessageOutbox(new),
            pages=PostgresPages(new),
            readers={"new": new, **({"old": old} if isinstance(old, MongoStore) else {})},
            deleters={"new": new, **({"old": old} if isinstance(old, MongoStore) else {})},
        )
        facade = build_facade(old, new, ports, options)
        counter = None
        watch = None
        if gate is not None:
            evidence = PostgresEvidence(new)
            facade.controller.gate = StageGate(
                evidence, facade.pending, follow=gate.follow, limits=gate.limits
            )
            counter = ComparisonCounter(
                facade.metrics, evidence.add_comparisons, instance=instance_name()
            )
        if guard is not None:
            watch = Guard(
                facade.controller,
                stages,
                facade.metrics,
                instance=instance_name(),
                new=new.name,
                old=old.name,
                limits=guard,
            )
        followers = PostgresFollowerState(new)
        feeds: dict[str, ChangeFeed] = {REVERSE.name: PostgresChangeFeed(new)}
        if isinstance(old, MongoStore):
            feeds[FORWARD.name] = MongoChangeFeed(old)
        following: tuple[Follower, ...] = ()
        if follow is not None and isinstance(old, MongoStore):
            reverse_feed = feeds[REVERSE.name]
            assert isinstance(reverse_feed, PostgresChangeFeed)

            # What the change log holds is still to reach MongoDB: no stage move may
            # outrun it. And the reverse follower copies every write at complete from it,
            # so the facade no longer parks them on the request path.
            async def change_log_backlog() -> int:
                # Only where Supabase leads: elsewhere the log holds the facade's second
                # writes, which are not for MongoDB (the idle follower prunes them). At
                # live and rampdown the facade's writes reach MongoDB inline.
                stage = facade.stage
                if stage not in REVERSE.stages:
                    return 0
                return await reverse_feed.depth(facade_writes=stage == Stage.COMPLETE)

            facade.backlogs["old"] = change_log_backlog
            facade.park_at_complete = False
            following = tuple(
                _follower(d, facade, feeds[d.name], followers, divergences, follow)
                for d in (FORWARD, REVERSE)
            )
        return cls(
            facade=facade,
            stages=stages,
            divergences=divergences,
            tombstones=tombstones,
            events=PostgresEventLog(new),
            runs=PostgresJobRuns(new),
            quotas=PostgresQuotas(new, plan or QuotaPlan(8 << 30, None, 0.8)),
            followers=followers,
            feeds=feeds,
            following=following,
            counter=counter,
            guard=watch,
        )

    @classmethod
    def rest(cls, new: SupabaseRestStore, options: FacadeOptions) -> Runtime:
        """Supabase alone over its REST API (``SUPABASE_URL`` and ``SUPABASE_KEY``), at
        ``decommissioned``: the chat API works; realtime, stage history, divergences and job
        runs need strangler's own tables, which PostgREST does not expose."""
        stages = NoStages()
        ports = ControlPorts(
            stages=stages,
            journals={
                "old": AbsentJournal("mongo"),
                "new": AbsentJournal("supabase_rest", NEEDS_DB_URL),
            },
        )
        facade = build_facade(AbsentStore(), new, ports, options)
        return cls(
            facade=facade,
            stages=stages,
            divergences=NoDivergences(),
            tombstones=NoTombstones(),
            events=NoEvents(),
            runs=NoJobRuns(),
            quotas=NoQuotas(),
            followers=NoFollowers(),
            feeds={},
            realtime_off=(
                "realtime needs strangler's event log, which lives in Postgres: set "
                "SUPABASE_DB_URL (the database URL from Supabase's 'Connect' dialog) to serve "
                "/sessions/{id}/events and /events here; or subscribe clients to Supabase "
                "Realtime directly (the chat tables are in the supabase_realtime publication, "
                "with row-level security by user_id)"
            ),
        )

    @property
    def background(self) -> tuple[Follower | ComparisonCounter | Guard, ...]:
        """What runs beside the facade on this instance: followers, the comparison
        counter, the guard (each with ``start()`` and ``await stop()``)."""
        extra = tuple(p for p in (self.counter, self.guard) if p is not None)
        return (*self.following, *extra)

    def backfill_follower(self, options: FollowOptions) -> Follower:
        """A forward follower that runs whatever the stage, for the length of a backfill
        (``strangler backfill --follow``); it leads unless an instance already does."""
        if FORWARD.name not in self.feeds:
            raise ConfigError("backfill --follow needs MONGO_URI: it follows MongoDB's changes")
        return _follower(
            FORWARD,
            self.facade,
            self.feeds[FORWARD.name],
            self.followers,
            self.divergences,
            options,
            always=True,
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, *, start: bool = True, ensure_indexes: bool = False
    ) -> AsyncIterator[Runtime]:
        """Open both stores from ``settings`` and yield the runtime; with ``start`` the
        facade runs (stage poller, replayer, shadow reads) until the block ends. Without
        it (the stage commands) nothing runs in the background. ``ensure_indexes`` (the
        API, when ``STRANGLER_ENSURE_INDEXES`` allows) creates MongoDB's indexes first.

        Without ``MONGO_URI`` the runtime runs on Supabase alone (:meth:`supabase_alone`)."""
        if not settings.mongo_uri:
            async with cls.supabase_alone(settings, start=start) as runtime:
                yield runtime
            return
        async with old_store(settings) as old, new_store(settings) as new:
            if ensure_indexes and settings.ensure_indexes:
                try:
                    await old.ensure_indexes()
                except StranglerError as exc:  # MongoDB down: serve anyway, say what is missing
                    log.warning("mongo_indexes_not_ensured", error=str(exc))
            runtime = cls.over(
                old,
                new,
                facade_options(settings),
                plan=quota_plan(settings),
                follow=follow_options(settings) if start and settings.follow else None,
                gate=gate_options(settings),
                guard=guard_limits(settings) if start and settings.guard else None,
            )
            async with runtime.running(start):
                yield runtime

    @classmethod
    @contextlib.asynccontextmanager
    async def supabase_alone(cls, settings: Settings, *, start: bool) -> AsyncIterator[Runtime]:
        """The runtime without MongoDB: the finish line. Serving (``start``) needs the stage
        to be ``decommissioned``; the stage commands (not ``start``) work at any stage, so
        the move there can be made without ``MONGO_URI`` too.

        * With ``SUPABASE_DB_URL``: everything, realtime included.
        * With only ``SUPABASE_URL`` and ``SUPABASE_KEY``: the REST store (:meth:`rest`);
          the stage cannot be read there, so it is taken as ``decommissioned`` unless
          ``STRANGLER_STAGE`` says otherwise (then ``ConfigError``)."""
        if new_backend(settings) == "rest":
            if settings.stage is not None and not settings.stage.old_retired:
                raise ConfigError(_mongo_needed(settings.stage))
            async with new_chat_store(settings) as rest:
                assert not isinstance(rest, PostgresStore)
                if start:
                    log.info("supabase_alone", backend="rest", realtime=False)
                runtime = cls.rest(rest, facade_options(settings))
                async with runtime.running(start):
                    yield runtime
            return
        async with new_store(settings) as new:
            stage = settings.stage
            if stage is None:
                record = await PostgresStageStore(new).read_stage()
                stage = record.stage if record else Stage.OFF
            if start and not stage.old_retired:
                raise ConfigError(_mongo_needed(stage))
            if start:
                log.info("supabase_alone", backend="postgres", realtime=True)
            runtime = cls.over(
                AbsentStore(),
                new,
                facade_options(settings),
                plan=quota_plan(settings),
                gate=gate_options(settings),
            )
            async with runtime.running(start):
                yield runtime

    @contextlib.asynccontextmanager
    async def running(self, start: bool) -> AsyncIterator[None]:
        """With ``start``: the facade and the background parts run until the block ends."""
        if not start:
            yield
            return
        async with self.facade:
            for part in self.background:
                part.start()
            try:
                yield
            finally:
                for part in self.background:
                    await part.stop()


def _mongo_needed(stage: Stage) -> str:
    return (
        f"MONGO_URI is not set, but the migration is at {stage}, where MongoDB is still in "
        "use (written, or kept as the rollback path). Set MONGO_URI; or, once the stage is "
        "complete, finish with 'strangler stage set decommissioned --confirm' and then "
        "remove MONGO_URI (README, 'Runbook', last step)"
    )


def assemble(old: MongoStore, new: PostgresStore, options: FacadeOptions) -> DualWriteStore:
    """The facade over two stores the caller has opened (use it with ``async with``)."""
    return Runtime.over(old, new, options).facade


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[DualWriteStore]:
    """Open both stores from ``settings`` and yield the running, staged facade."""
    async with Runtime.open(settings) as runtime:
        yield runtime.facade


@contextlib.asynccontextmanager
async def open_tombstones(settings: Settings) -> AsyncIterator[Tombstones]:
    """The tombstones in the direct Postgres store, alone (``strangler tombstones``)."""
    async with new_store(settings) as new:
        yield PostgresTombstones(new)


# --- bulk jobs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Jobs:
    """What a bulk job needs: the new store (direct or REST) and, over the direct store,
    the job-run records, tombstones and the shared stage."""

    new: PostgresStore | SupabaseRestStore
    runs: JobRuns | None
    tombstones: Tombstones | None
    stages: StageStore | None
    #: Partition plans (``--partition``), and a sampler of the new store's ids for them.
    plans: PartitionPlans | None = None
    sampler: IdSampler | None = None
    #: The originals of one-way legacy ids (``strangler.legacy_ids``).
    legacy_ids: LegacyIds | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Jobs]:
        async with new_chat_store(settings, bulk=True) as new:
            if isinstance(new, PostgresStore):
                yield cls(
                    new,
                    PostgresJobRuns(new),
                    PostgresTombstones(new),
                    PostgresStageStore(new),
                    PostgresPartitionPlans(new),
                    PostgresIdSampler(new),
                    PostgresLegacyIds(new),
                )
            else:
                yield cls(new, None, None, None)

    async def stage(self, settings: Settings) -> Stage:
        """The stage: ``STRANGLER_STAGE``, else the control table over the direct store;
        over REST, where the control table is out of reach, it must be given."""
        if settings.stage is not None:
            return settings.stage
        if self.stages is None:
            raise ConfigError(
                "over the REST API the shared stage cannot be read: set STRANGLER_STAGE to the "
                "current stage (or SUPABASE_DB_URL to use the direct store)"
            )
        record = await self.stages.read_stage()
        return record.stage if record else Stage.OFF
