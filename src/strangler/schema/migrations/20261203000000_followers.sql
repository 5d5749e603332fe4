-- Change capture: each follower's durable position, its lease (one active follower across
-- every instance) and its state. A follower advances its position only after the changes
-- before it are applied, so a restart or a takeover resumes with nothing lost.

CREATE TABLE IF NOT EXISTS strangler.followers (
    name TEXT PRIMARY KEY,
    position JSONB,
    position_at TIMESTAMPTZ,
    state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stale', 'stopped')),
    state_reason TEXT,
    leader TEXT,
    lease_until TIMESTAMPTZ,
    applied BIGINT NOT NULL DEFAULT 0,
    bypass BIGINT NOT NULL DEFAULT 0,
    reported BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE strangler.followers ENABLE ROW LEVEL SECURITY;
