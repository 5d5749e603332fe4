"""One error policy: the same failure means the same thing on every store.

Each case makes one kind of failure happen on each backend (on the real server where it
can be made there, through the REST contract's documented answers for PostgREST, and from
the driver's own exception where the test server cannot produce it) and checks that every
backend raises the same error, with a message naming the operation and, for a setting to
fix, the setting.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from pymongo.errors import OperationFailure

from strangler.backends.mongo import MongoStore
from strangler.backends.mongo.errors import translate_errors as mongo_errors
from strangler.backends.postgres import PostgresStore
from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.core.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
)
from strangler.core.models import ChatSession, Message
from strangler.embedded import free_port

BACKENDS = ["mongo", "postgres", "supabase_rest"]


def _session() -> ChatSession:
    return ChatSession.new(title="t", user_id="u")


def _orphan() -> Message:
    return Message.new(session_id=uuid.uuid4(), sender="user", content={"type": "conversation"})


async def _rest(status: int, body: Any, call: Callable[[SupabaseRestStore], Awaitable[Any]]) -> Any:
    """Run ``call`` on a REST store whose PostgREST answers ``status`` with ``body``."""

    def answer(req: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else httpx.Response(200, json=body).content
        return httpx.Response(status, content=content)

    store = SupabaseRestStore("https://x.supabase.co", "key", transport=httpx.MockTransport(answer))
    async with store:
        return await call(store)


class Backends:
    """Makes each failure happen on each backend."""

    def __init__(self, mongo_uri: str, mongo_db: str, pg_dsn: str, pg_admin: str) -> None:
        self.mongo_uri, self.mongo_db = mongo_uri, mongo_db
        self.pg_dsn, self.pg_admin = pg_dsn, pg_admin

    def mongo(self, uri: str | None = None) -> MongoStore:
        return MongoStore(uri or self.mongo_uri, database=self.mongo_db, timeout=2.0)

    def pg(self, dsn: str | None = None) -> PostgresStore:
        return PostgresStore(dsn or self.pg_dsn, timeout=2.0)

    # --- a record with this id exists ---------------------------------------------------
    async def conflict(self, backend: str) -> None:
        if backend == "supabase_rest":
            await _rest(409, {"code": "23505", "message": "duplicate"}, _create)
            return
        async with self.mongo() if backend == "mongo" else self.pg() as store:
            s = await store.create_session(_session())
            await store.create_session(s)

    # --- the session a message refers to does not exist ------------------------------------
    async def missing_reference(self, backend: str) -> None:
        if backend == "supabase_rest":
            await _rest(409, {"code": "23503", "message": "foreign key"}, _add_orphan)
            return
        async with self.mongo() if backend == "mongo" else self.pg() as store:
            await store.add_message(_orphan())

    # --- the server refuses a value ---------------------------------------------------------
    async def invalid_value(self, backend: str) -> None:
        if backend == "supabase_rest":
            await _rest(400, {"code": "22003", "message": "out of range"}, _create)
        elif backend == "postgres":
            async with self.pg() as store, store.connection("compute") as conn:
                await conn.fetchval("SELECT 2147483647::int + 1")  # 22003
        else:  # SecantusDB accepts what a real mongod refuses as BadValue: the driver's error
            with mongo_errors("update"):
                raise OperationFailure("$inc of a string", code=2)

    # --- wrong credentials --------------------------------------------------------------------
    async def bad_credentials(self, backend: str) -> None:
        if backend == "supabase_rest":
            await _rest(401, {"code": "PGRST301", "message": "JWT expired"}, _create)
        elif backend == "postgres":
            async with self.pg(self.pg_dsn.replace("postgres@", "nobody@", 1)) as store:
                await store.ping()
        else:
            uri = self.mongo_uri.replace("mongodb://", "mongodb://nobody:wrong@", 1)
            async with self.mongo(uri) as store:
                await store.create_session(_session())

    # --- a role without the needed permission ---------------------------------------------
    async def permission_denied(self, backend: str) -> None:
        if backend == "supabase_rest":
            await _rest(403, {"code": "42501", "message": "permission denied"}, _create)
        elif backend == "postgres":
            conn = await asyncpg.connect(self.pg_admin)
            try:
                await conn.execute(
                    "DO $$ BEGIN CREATE ROLE strangler_weak LOGIN; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                )
            finally:
                await conn.close()
            async with self.pg(self.pg_dsn.replace("postgres@", "strangler_weak@", 1)) as store:
                await store.create_session(_session())
        else:  # SecantusDB has no roles: the driver's error for a user without one
            with mongo_errors("insert"):
                raise OperationFailure("not authorized on chat", code=13)

    # --- nothing answers -------------------------------------------------------------------
    async def unreachable(self, backend: str) -> None:
        port = free_port()
        if backend == "supabase_rest":

            def refuse(req: httpx.Request) -> httpx.Response:
                raise httpx.ConnectError("refused")

            store = SupabaseRestStore(
                f"http://127.0.0.1:{port}", "key", transport=httpx.MockTransport(refuse)
            )
            async with store:
                await store.create_session(_session())
        elif backend == "postgres":
            async with PostgresStore(
                f"postgresql://postgres@127.0.0.1:{port}/x", timeout=0.5
            ) as pg:
                await pg.ping()
        else:
            uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
            async with MongoStore(uri, timeout=0.5) as store:
                await store.ping()


async def _create(store: SupabaseRestStore) -> None:
    await store.create_session(_session())


async def _add_orphan(store: SupabaseRestStore) -> None:
    await store.add_message(_orphan())


#: Each failure, the error every backend raises for it, and what its message must name.
CASES = [
    ("conflict", Conflict, "already exists"),
    ("missing_reference", NotFound, "not found|does not exist"),
    ("invalid_value", InvalidInput, "refused the value"),
    ("bad_credentials", StoreMisconfigured, "check"),
    ("permission_denied", StoreMisconfigured, "check"),
    ("unreachable", StoreUnavailable, "unavailable"),
]
SETTINGS = {"mongo": "MONGO_URI", "postgres": "SUPABASE_DB_URL", "supabase_rest": "SUPABASE_KEY"}


@pytest.fixture
def backends(mongo_server: Any, mongo_db: str, clean_pg: str, pg_server: Any) -> Backends:
    admin = getattr(pg_server, "dsn", clean_pg)
    return Backends(mongo_server.uri, mongo_db, clean_pg, admin)


# PyMongo's async client sometimes leaves the socket of a refused connection for the
# garbage collector; the per-test collection then reports it here. A driver leak, not ours.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("failure", "error", "says"), CASES, ids=[c[0] for c in CASES])
async def test_the_same_failure_is_the_same_error_on_every_backend(
    backends: Backends, backend: str, failure: str, error: type[Exception], says: str
) -> None:
    with pytest.raises(StoreError if error is not InvalidInput else InvalidInput) as caught:
        await getattr(backends, failure)(backend)
    assert type(caught.value) is error, f"{backend} {failure}: {caught.value!r}"
    assert re.search(says, str(caught.value)), str(caught.value)
    if error is not NotFound:  # MongoDB finds a missing session itself, not by an error
        assert caught.value.__cause__ is not None  # the driver's error stays chained
    if error is StoreMisconfigured:
        assert SETTINGS[backend] in str(caught.value)  # the message names what to fix
        assert isinstance(caught.value, ConfigError)  # the CLI exits 2 and says so
