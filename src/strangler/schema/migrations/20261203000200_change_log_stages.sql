-- The change log captures only where its reader needs it: while the control table says
-- MongoDB leads (off, dualwrite, shadow), the facade writes MongoDB first and Supabase
-- second, the forward follower copies MongoDB's changes into Supabase, and nothing in
-- Postgres is for MongoDB. Skipping those saves one insert per statement on the request
-- path and on every copy the forward follower makes. Without a control row (a stage
-- pinned by STRANGLER_STAGE) everything is captured, and the idle reverse follower prunes
-- what is not for it.

CREATE OR REPLACE FUNCTION strangler.capture_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    current_stage TEXT;
BEGIN
    IF coalesce(current_setting('strangler.capture', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    SELECT s.stage INTO current_stage FROM strangler.stage_control s WHERE s.id = 1;
    IF current_stage IN ('off', 'dualwrite', 'shadow') THEN
        RETURN NULL;
    END IF;
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
