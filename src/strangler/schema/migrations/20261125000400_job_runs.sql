-- Long-running jobs (backfill, verify, repair) record their progress and result here, so
-- the dashboard of any instance can show a backfill started from a laptop's CLI, and the
-- stage-change confirmation can name the last verify result.

CREATE TABLE IF NOT EXISTS strangler.job_runs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('backfill', 'verify', 'repair')),
    origin TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),
    params JSONB NOT NULL DEFAULT '{}'::jsonb,
    progress JSONB NOT NULL DEFAULT '{}'::jsonb,
    result JSONB
);
CREATE INDEX IF NOT EXISTS job_runs_by_kind ON strangler.job_runs (kind, id DESC);

ALTER TABLE strangler.job_runs ENABLE ROW LEVEL SECURITY;
