-- strangler's own tables, in their own schema (PostgREST does not expose it).
-- The migration stage shared by every instance, its history, the journal of secondary
-- writes still to land, and the divergences shadow reads found.

CREATE SCHEMA IF NOT EXISTS strangler;

CREATE TABLE IF NOT EXISTS strangler.stage_control (
    id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    stage TEXT NOT NULL CHECK (stage IN ('off', 'dualwrite', 'shadow', 'live', 'rampdown', 'complete')),
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    origin TEXT NOT NULL,
    reason TEXT
);

CREATE TABLE IF NOT EXISTS strangler.stage_transitions (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    from_stage TEXT NOT NULL,
    to_stage TEXT NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT,
    forced BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS strangler.pending_writes (
    id BIGSERIAL PRIMARY KEY,
    target TEXT NOT NULL CHECK (target IN ('old', 'new')),
    table_name TEXT NOT NULL CHECK (table_name IN ('chat_sessions', 'messages')),
    record_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS pending_writes_due ON strangler.pending_writes (target, next_at);

CREATE TABLE IF NOT EXISTS strangler.divergences (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    stage TEXT NOT NULL,
    table_name TEXT NOT NULL,
    record_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    diff JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS divergences_at ON strangler.divergences (at DESC);

ALTER TABLE strangler.stage_control ENABLE ROW LEVEL SECURITY;
ALTER TABLE strangler.stage_transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE strangler.pending_writes ENABLE ROW LEVEL SECURITY;
ALTER TABLE strangler.divergences ENABLE ROW LEVEL SECURITY;
