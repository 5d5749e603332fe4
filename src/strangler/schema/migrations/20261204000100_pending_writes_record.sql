-- A follower asks, for each batch of changes, which of its records the write journal still
-- holds for the store it copies to (the replayer lands those). By record id: without this
-- index, every batch scanned the whole journal, which is longest just after an outage.

CREATE INDEX IF NOT EXISTS pending_writes_record ON strangler.pending_writes (record_id);
