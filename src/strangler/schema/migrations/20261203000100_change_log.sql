-- The change log the reverse follower reads: every insert, update and delete of a chat
-- session or message in Postgres, whatever made it (the facade, the SQL editor, an Edge
-- Function), so it can be mirrored into MongoDB while Supabase is authoritative.
--
-- Statement-level triggers with transition tables: one INSERT ... SELECT per statement,
-- however many rows it touched. Applied changes are deleted by the follower, so the log
-- holds only what is still to be copied. A session that sets strangler.capture = 'off'
-- (the backfill's bulk load) is not logged.

CREATE TABLE IF NOT EXISTS strangler.changes (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    table_name TEXT NOT NULL,
    record_id UUID NOT NULL,
    op TEXT NOT NULL,
    stage TEXT,
    origin TEXT
);

ALTER TABLE strangler.changes ENABLE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION strangler.capture_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    current_stage TEXT;
BEGIN
    IF coalesce(current_setting('strangler.capture', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    SELECT s.stage INTO current_stage FROM strangler.stage_control s WHERE s.id = 1;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO strangler.changes (table_name, record_id, op, stage, origin)
        SELECT TG_TABLE_NAME, o.id, 'delete', current_stage,
               nullif(current_setting('strangler.origin', true), '')
        FROM old_rows o;
    ELSE
        INSERT INTO strangler.changes (table_name, record_id, op, stage, origin)
        SELECT TG_TABLE_NAME, n.id, lower(TG_OP), current_stage,
               nullif(current_setting('strangler.origin', true), '')
        FROM new_rows n;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS strangler_capture_insert ON public.chat_sessions;
CREATE TRIGGER strangler_capture_insert AFTER INSERT ON public.chat_sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();
DROP TRIGGER IF EXISTS strangler_capture_update ON public.chat_sessions;
CREATE TRIGGER strangler_capture_update AFTER UPDATE ON public.chat_sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();
DROP TRIGGER IF EXISTS strangler_capture_delete ON public.chat_sessions;
CREATE TRIGGER strangler_capture_delete AFTER DELETE ON public.chat_sessions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();

DROP TRIGGER IF EXISTS strangler_capture_insert ON public.messages;
CREATE TRIGGER strangler_capture_insert AFTER INSERT ON public.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();
DROP TRIGGER IF EXISTS strangler_capture_update ON public.messages;
CREATE TRIGGER strangler_capture_update AFTER UPDATE ON public.messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();
DROP TRIGGER IF EXISTS strangler_capture_delete ON public.messages;
CREATE TRIGGER strangler_capture_delete AFTER DELETE ON public.messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION strangler.capture_changes();
