-- Partition plans: the split points every process of a partitioned backfill, verify or
-- repair (--partition K/N) shares, so the N slices cover every id once. The first process
-- to need a plan samples the data and inserts it; the others read that one.

CREATE TABLE IF NOT EXISTS strangler.partition_plans (
    id BIGSERIAL PRIMARY KEY,
    -- What is split: 'backfill:messages' (legacy _id), 'uuid:chat_sessions' (verify, repair).
    scope TEXT NOT NULL,
    partitions INT NOT NULL CHECK (partitions >= 1),
    -- N - 1 split points, sorted (UUID text, or MongoDB extended JSON for legacy ids).
    points JSONB NOT NULL,
    sampled INT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (scope, partitions)
);

ALTER TABLE strangler.partition_plans ENABLE ROW LEVEL SECURITY;
