-- Legacy ids that map one way: a MongoDB _id that was an arbitrary string or an integer is
-- stored under a UUID (uuid5) that cannot give it back. This keeps each original, so the
-- facade can still find the MongoDB document by its UUID while MongoDB serves reads, and a
-- record written back to MongoDB (a rollback) keeps its old _id. ObjectIds and UUIDs are
-- never here: their UUIDs give them back.

CREATE TABLE IF NOT EXISTS strangler.legacy_ids (
    table_name TEXT NOT NULL CHECK (table_name IN ('chat_sessions', 'messages')),
    id UUID NOT NULL,
    -- The original _id as JSON: a string, or an integer (exact: jsonb keeps 64 bits).
    legacy JSONB NOT NULL CHECK (jsonb_typeof(legacy) IN ('string', 'number')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, id)
);

ALTER TABLE strangler.legacy_ids ENABLE ROW LEVEL SECURITY;
