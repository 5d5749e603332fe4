-- Deletes the facade made while the new store may still be backfilled. The facade writes a
-- tombstone before deleting from Supabase; the backfill checks tombstones after each insert,
-- so a delete made during the backfill is never resurrected from an older copy of the data.

CREATE TABLE IF NOT EXISTS strangler.tombstones (
    table_name TEXT NOT NULL CHECK (table_name IN ('chat_sessions', 'messages')),
    record_id UUID NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, record_id)
);

ALTER TABLE strangler.tombstones ENABLE ROW LEVEL SECURITY;
