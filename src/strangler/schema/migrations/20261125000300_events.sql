-- The realtime event log: every change the API makes, in order, for SSE and WebSocket
-- subscribers on every instance (NOTIFY strangler_events carries the new id), and for
-- clients that reconnect with Last-Event-ID. Old events are pruned by the API.

CREATE TABLE IF NOT EXISTS strangler.events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    session_id UUID NOT NULL,
    payload JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON strangler.events (session_id, id);
CREATE INDEX IF NOT EXISTS events_by_user ON strangler.events (user_id, id);
CREATE INDEX IF NOT EXISTS events_by_time ON strangler.events (at);

ALTER TABLE strangler.events ENABLE ROW LEVEL SECURITY;
