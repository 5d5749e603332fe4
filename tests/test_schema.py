"""The Supabase schema: the seed's tables exactly, RLS, realtime, and an idempotent apply."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import pytest

from strangler import schema
from tests.conftest import ExternalServer

_n = itertools.count()

SUPABASE_STANDINS = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN; END IF;
END $$;
CREATE SCHEMA auth;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
  AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated;
GRANT USAGE ON SCHEMA public TO anon, authenticated;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO anon;
CREATE PUBLICATION supabase_realtime;
"""


@pytest.fixture
def fresh_db(pg_server: Any) -> str:
    if isinstance(pg_server, ExternalServer):
        pytest.skip("needs a server where the test can create databases")
    return pg_server.create_database(f"schema_{os.getpid()}_{next(_n)}")


async def _fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_apply_is_idempotent_and_recorded(fresh_db: str) -> None:
    first = await schema.apply(fresh_db)
    assert first == [m.name for m in schema.migrations()]
    assert await schema.apply(fresh_db) == []
    rows = await _fetch(fresh_db, "SELECT name FROM strangler.schema_migrations")
    assert {r[0] for r in rows} == set(first)
    # The SQL itself is idempotent too, for users who paste it into the SQL editor.
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute(schema.render())
    finally:
        await conn.close()


async def test_tables_and_indexes_are_exactly_the_seeds(fresh_db: str) -> None:
    await schema.apply(fresh_db)
    cols = await _fetch(
        fresh_db,
        """
        SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
        WHERE table_schema = 'public' ORDER BY table_name, ordinal_position""",
    )
    assert [tuple(r) for r in cols] == [
        ("chat_sessions", "id", "uuid", "NO"),
        ("chat_sessions", "title", "text", "NO"),
        ("chat_sessions", "created_at", "timestamp with time zone", "NO"),
        ("chat_sessions", "user_id", "text", "NO"),
        ("messages", "id", "uuid", "NO"),
        ("messages", "session_id", "uuid", "YES"),
        ("messages", "sender", "text", "NO"),
        ("messages", "content", "jsonb", "NO"),
        ("messages", "timestamp", "timestamp with time zone", "NO"),
        ("messages", "audio", "text", "YES"),
        ("messages", "image", "text", "YES"),
        ("messages", "pdf", "text", "YES"),
    ]
    idx = {
        r[0]: r[1]
        for r in await _fetch(
            fresh_db, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        )
    }
    assert "(user_id)" in idx["idx_chat_sessions_user_id"]
    assert "(created_at DESC)" in idx["idx_chat_sessions_created_at"]
    assert '(session_id, "timestamp")' in idx["idx_messages_session_timestamp"]
    fks = await _fetch(
        fresh_db,
        """
        SELECT pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = 'messages'::regclass""",
    )
    defs = " ".join(r[0] for r in fks)
    assert "REFERENCES chat_sessions(id) ON DELETE CASCADE" in defs
    assert "'user'::text" in defs and "'assistant'::text" in defs


async def test_plain_postgres_gets_rls_without_supabase_parts(fresh_db: str) -> None:
    await schema.apply(fresh_db)
    rls = await _fetch(
        fresh_db,
        """SELECT relname, relrowsecurity FROM pg_class
                                    WHERE relname IN ('chat_sessions', 'messages')""",
    )
    assert all(r[1] for r in rls) and len(rls) == 2
    assert await _fetch(fresh_db, "SELECT 1 FROM pg_policies") == []


async def test_on_supabase_users_read_only_their_own_rows(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute(SUPABASE_STANDINS)
        await conn.execute(schema.render())
        alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
        s1, s2 = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            """INSERT INTO chat_sessions VALUES ($1, 'a', now(), $2),
                              ($3, 'b', now(), $4)""",
            s1,
            alice,
            s2,
            bob,
        )
        await conn.execute(
            """INSERT INTO messages (id, session_id, sender, content, timestamp)
               VALUES ($1, $2, 'user', '"x"', now()),
                      ($3, $4, 'user', '"y"', now())""",
            uuid.uuid4(),
            s1,
            uuid.uuid4(),
            s2,
        )
        async with conn.transaction():
            await conn.execute("SELECT set_config('request.jwt.claim.sub', $1, true)", alice)
            await conn.execute("SET LOCAL ROLE authenticated")
            assert [r[0] for r in await conn.fetch("SELECT user_id FROM chat_sessions")] == [alice]
            assert [r[0] for r in await conn.fetch("SELECT session_id FROM messages")] == [s1]
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    "INSERT INTO chat_sessions VALUES ($1, 'z', now(), $2)", uuid.uuid4(), alice
                )
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE anon")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM chat_sessions")
        published = await conn.fetch("""SELECT tablename FROM pg_publication_tables
                                        WHERE pubname = 'supabase_realtime' ORDER BY 1""")
        assert [r[0] for r in published] == ["chat_sessions", "messages"]
        await conn.execute(schema.render())  # still idempotent with the Supabase parts
    finally:
        await conn.close()


def test_cli_applies_then_reports_up_to_date(fresh_db: str) -> None:
    env = {**os.environ, "SUPABASE_DB_URL": fresh_db}
    run = [sys.executable, "-m", "strangler.cli", "schema", "apply"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert f"applied {len(schema.migrations())} migration" in first.stdout
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_cli_reports_an_unreachable_database_without_a_traceback() -> None:
    env = {**os.environ, "SUPABASE_DB_URL": "postgresql://postgres@127.0.0.1:9/none"}
    out = subprocess.run(
        [sys.executable, "-m", "strangler.cli", "schema", "apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 3
    assert "cannot connect" in out.stderr
    assert "Traceback" not in out.stderr
