-- The finish line: after complete, 'decommissioned' means MongoDB is no longer part of
-- the migration. Nothing is captured for the reverse follower there (nothing reads it),
-- and the stage control accepts the new stage.

ALTER TABLE strangler.stage_control DROP CONSTRAINT IF EXISTS stage_control_stage_check;
ALTER TABLE strangler.stage_control ADD CONSTRAINT stage_control_stage_check
    CHECK (stage IN ('off', 'dualwrite', 'shadow', 'live', 'rampdown', 'complete', 'decommissioned'));

CREATE OR REPLACE FUNCTION strangler.capture_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    current_stage TEXT;
BEGIN
    IF coalesce(current_setting('strangler.capture', true), '') = 'off' THEN
        RETURN NULL;
    END IF;
    SELECT s.stage INTO current_stage FROM strangler.stage_control s WHERE s.id = 1;
    IF current_stage IN ('off', 'dualwrite', 'shadow', 'decommissioned') THEN
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
