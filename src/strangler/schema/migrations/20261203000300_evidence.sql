-- Evidence for stage moves (strangler.core.evidence): what the gates read that was not
-- recorded before.
--
-- * followers.lag_seconds: each follower's lag when it last saved its position, so a gate
--   on any host can tell a follower that keeps up from one that fell behind.
-- * stage_transitions.missing: a forced move records the evidence it went without.
-- * shadow_counts: shadow comparisons per instance and minute, so the consistency rate of
--   a whole shadow phase is known to every instance and the CLI, not only to the instance
--   that made them.

ALTER TABLE strangler.followers ADD COLUMN IF NOT EXISTS lag_seconds DOUBLE PRECISION;

ALTER TABLE strangler.stage_transitions ADD COLUMN IF NOT EXISTS missing JSONB;

CREATE TABLE IF NOT EXISTS strangler.shadow_counts (
    instance TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    compared BIGINT NOT NULL DEFAULT 0,
    matched BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (instance, minute)
);
CREATE INDEX IF NOT EXISTS shadow_counts_by_minute ON strangler.shadow_counts (minute);

ALTER TABLE strangler.shadow_counts ENABLE ROW LEVEL SECURITY;
