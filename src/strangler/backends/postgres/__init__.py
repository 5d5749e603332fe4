"""The Postgres backend (asyncpg, against Supabase's database URL): the ``ChatStore`` and
strangler's own control plane, one module per table or concern."""

from strangler.backends.postgres.changes import PostgresChangeFeed
from strangler.backends.postgres.divergences import PostgresDivergenceLog
from strangler.backends.postgres.events import PostgresEventLog
from strangler.backends.postgres.followers import PostgresFollowerState
from strangler.backends.postgres.journal import PostgresJournal
from strangler.backends.postgres.legacy_ids import PostgresLegacyIds
from strangler.backends.postgres.outbox import MessageOutbox
from strangler.backends.postgres.pages import PostgresPages
from strangler.backends.postgres.plans import PostgresIdSampler, PostgresPartitionPlans
from strangler.backends.postgres.quotas import PostgresQuotas, QuotaPlan
from strangler.backends.postgres.runs import PostgresJobRuns
from strangler.backends.postgres.stage import PostgresStageStore
from strangler.backends.postgres.store import PostgresStore
from strangler.backends.postgres.tombstones import PostgresTombstones

__all__ = [
    "MessageOutbox",
    "PostgresChangeFeed",
    "PostgresDivergenceLog",
    "PostgresEventLog",
    "PostgresFollowerState",
    "PostgresIdSampler",
    "PostgresJobRuns",
    "PostgresJournal",
    "PostgresLegacyIds",
    "PostgresPages",
    "PostgresPartitionPlans",
    "PostgresQuotas",
    "PostgresStageStore",
    "PostgresStore",
    "PostgresTombstones",
    "QuotaPlan",
]
