-- strangler: the chat schema from the migration ticket, with RLS and Realtime.
--
-- Applies cleanly (and repeatedly) to Supabase and to a plain Postgres: every statement is
-- idempotent, and the parts that need Supabase's roles, auth.uid() or the
-- supabase_realtime publication only run where those exist.

-- The ticket's tables, constraints and indexes, exactly.
CREATE TABLE IF NOT EXISTS chat_sessions (
    id UUID PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    user_id TEXT NOT NULL
);

-- Add index for user_id queries
CREATE INDEX IF NOT EXISTS idx_chat_sessions_user_id ON chat_sessions(user_id);
-- Add index for created_at for sorting
CREATE INDEX IF NOT EXISTS idx_chat_sessions_created_at ON chat_sessions(created_at DESC);

CREATE TABLE IF NOT EXISTS messages (
    id UUID PRIMARY KEY,
    session_id UUID REFERENCES chat_sessions(id) ON DELETE CASCADE,
    sender TEXT NOT NULL CHECK (sender IN ('user', 'assistant')),
    content JSONB NOT NULL,
    timestamp TIMESTAMP WITH TIME ZONE NOT NULL,
    audio TEXT,
    image TEXT,
    pdf TEXT
);

-- Add index for session_id and timestamp queries
CREATE INDEX IF NOT EXISTS idx_messages_session_timestamp ON messages(session_id, timestamp);

-- Row level security: no policy for anon, so the anon key reads and writes nothing.
-- strangler itself connects as the table owner / service role, which bypasses RLS.
ALTER TABLE chat_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;

DO $strangler$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON TABLE chat_sessions, messages FROM anon';
    END IF;

    -- Signed-in users may SELECT their own sessions and messages, so Supabase Realtime
    -- can stream them to the frontend. Writes go through the backend only.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated')
       AND to_regprocedure('auth.uid()') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT ON TABLE chat_sessions, messages TO authenticated';
        EXECUTE 'DROP POLICY IF EXISTS chat_sessions_select_own ON chat_sessions';
        EXECUTE $p$
            CREATE POLICY chat_sessions_select_own ON chat_sessions
                FOR SELECT TO authenticated
                USING (user_id = (SELECT auth.uid())::text)
        $p$;
        EXECUTE 'DROP POLICY IF EXISTS messages_select_own ON messages';
        EXECUTE $p$
            CREATE POLICY messages_select_own ON messages
                FOR SELECT TO authenticated
                USING (EXISTS (
                    SELECT 1 FROM chat_sessions s
                    WHERE s.id = messages.session_id
                      AND s.user_id = (SELECT auth.uid())::text
                ))
        $p$;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        IF NOT EXISTS (
            SELECT 1 FROM pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = current_schema()
              AND tablename = 'chat_sessions'
        ) THEN
            EXECUTE 'ALTER PUBLICATION supabase_realtime ADD TABLE chat_sessions';
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = current_schema()
              AND tablename = 'messages'
        ) THEN
            EXECUTE 'ALTER PUBLICATION supabase_realtime ADD TABLE messages';
        END IF;
    END IF;
END
$strangler$;
