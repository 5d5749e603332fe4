"""Chaos and soak: zero downtime and zero data loss through a full migration and rollback.

Two ``strangler serve`` instances run on SecantusDB and embedded PostgreSQL behind a small
client-side balancer (round robin; a refused connection goes to the other instance, as a
load balancer's passive health check does). A load generator keeps a **ledger of every
acknowledged write**: session creates, renames and deletes, messages (some with an image
attachment) and message deletes. Meanwhile the stage walks ``off → … → complete → … → off``
twice, and faults are injected at set points:

* PostgreSQL stopped and restarted, MongoDB stopped and restarted (while each is the
  non-authoritative store, and in round 2 also while authoritative);
* SIGKILL of the API instance that leads a change follower, then a restart on its port;
* a slow store: its processes paused (SIGSTOP) for 200 ms of every 250 ms;
* a hung store: its processes paused for ``--hang-seconds`` (30; longer than every
  timeout), each store once while authoritative and once while not, in both halves of the
  first walk. For each: failures, p50, p99 and max latency while it hangs, how long the
  breaker and journal took to settle after the resume, and how long until latency was
  back to normal;
* a rejected resume token: the idle forward follower's position replaced by one from
  another deployment; back in MongoDB's stages it must go stale, and the harness does what
  the runbook says (``strangler follow reset forward``, then ``strangler repair``).

All along, two writers go around the facade: legacy-shaped documents straight into
MongoDB while it is authoritative, rows straight into Postgres while it is. Every one of
their writes must reach the other store (checked before the final repair), and each one's
arrival there is timed.

At the end (stage ``off``): every acknowledged write must be in MongoDB (the authoritative
store) with its last acknowledged value, every acknowledged delete absent; after
``strangler repair``, ``strangler verify`` must exit 0; the fault-free stage changes and the
outages of a non-authoritative store must have failed zero requests. Failures while the
authoritative store is down are expected (503) and reported by fault.

``--soak-seconds N`` repeats the walk until N seconds have passed and samples each
instance's RSS and open file descriptors (sockets included) every few seconds: both must
stay flat. Only the first two walks kill an instance, so each instance's last process runs
for the rest of the soak; ``--tracemalloc-dir`` has the instances write tracemalloc
snapshots (compare them with ``bench/memdiff.py``).

    python bench/chaos.py [--dwell 6] [--clients 8] [--bypass-rate 10] [--soak-seconds 0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

from _common import CpuSplit, conditions, save, server_pids
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core import ids
from strangler.core.errors import NotFound
from strangler.embedded import EmbeddedMongo, EmbeddedPostgres, free_port
from strangler.embedded.mongo import IN_CHUNK as EMBEDDED_IN_CHUNK

ADMIN = "chaos-admin-token"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
PNG = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
    + b"\x1f\x15\xc4\x89"
    + bytes(16)
).decode()
SERVE = [sys.executable, "-m", "strangler.cli", "serve", "--host", "127.0.0.1"]
STAGES = ["off", "dualwrite", "shadow", "live", "rampdown", "complete"]
WALK = STAGES + STAGES[-2::-1]  # off → complete → off
#: The instances' timeouts (the settings' defaults): the bounds a hang is judged against.
SECONDARY_TIMEOUT = 2.0
STORE_TIMEOUT = 5.0


# --- the pieces ---------------------------------------------------------------------------


class Instance:
    """``strangler serve`` in a process of its own, restartable on the same port."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [*SERVE, "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise SystemExit(f"{self.name} did not start; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.terminate()
        return await asyncio.to_thread(self.proc.wait, 30)

    def sample(self) -> dict[str, int]:
        """RSS (kB) and open file descriptors of the running process."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
        except OSError:  # it exited meanwhile
            return {}
        rss = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS"))
        sockets = 0
        for fd in fds:
            with contextlib.suppress(OSError):  # closed between listing and reading
                sockets += os.readlink(f"/proc/{self.proc.pid}/fd/{fd}").startswith("socket:")
        return {"pid": self.proc.pid, "rss_kb": rss, "fds": len(fds), "sockets": sockets}


@dataclass
class Failure:
    at: float
    phase: str
    kind: str


@dataclass
class Ledger:
    """What the API acknowledged. ``titles`` holds every title a session may have: the last
    acknowledged one, plus any whose request failed without an answer (it may have landed)."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_sessions: set[str] = field(default_factory=set)
    deleted_messages: set[str] = field(default_factory=set)
    maybe_deleted: set[str] = field(default_factory=set)
    #: Deletes answered 404: not an acknowledged delete, and not judged.
    deletes_not_found: int = 0

    def deleted(self, rid: str, status: int, live: dict[str, Any], gone: set[str]) -> None:
        """Record the answer to a delete: acknowledged (204), not found (404: not judged),
        or unanswered (it may have landed: not judged either)."""
        if status == 204:
            gone.add(rid)
            live.pop(rid, None)
            return
        if status == 404:
            self.deletes_not_found += 1
        if status in (0, 404) or status >= 500:
            self.maybe_deleted.add(rid)


class Load:
    """Closed-loop clients; each owns its sessions, so the ledger's order is exact."""

    def __init__(self, instances: list[Instance], clients: int, rate: float, seed: int = 1) -> None:
        self.instances = instances
        self.clients = clients
        #: Requests a second in all: steady traffic, not saturation, so a rollback's replay
        #: into MongoDB (SecantusDB: a few hundred writes a second) can catch up.
        self.pause = clients / rate
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.phase = "steady"
        self.requests = 0
        self.failures: list[Failure] = []
        self.latencies: list[float] = []
        #: (when it ended, monotonic; latency; whether it failed), for per-fault figures.
        self.timeline: list[tuple[float, float, bool]] = []
        #: Requests slower than the store timeout + 0.5 s: which, where, when.
        self.slow: list[dict[str, Any]] = []
        self._stop = False
        self._rr = 0

    def stop(self) -> None:
        self._stop = True

    def fail(self, kind: str) -> None:
        """A failed request, under the phase at the moment it failed: a request in flight
        on an instance when it is killed fails with the kill, whenever it started."""
        self.failures.append(Failure(time.time(), self.phase, kind))

    async def _send(
        self, http: aiohttp.ClientSession, user: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        """One request through the balancer: (status, JSON) or (0, None) with no answer."""
        headers = {"X-User-Id": user}
        last: Exception | None = None
        start = time.perf_counter()
        first, self._rr = self._rr, self._rr + 1  # fixed now: other requests move it on
        for attempt in range(len(self.instances)):
            inst = self.instances[(first + attempt) % len(self.instances)]
            try:
                async with http.request(
                    method, inst.url + path, json=body, headers=headers
                ) as resp:
                    data = await resp.json() if resp.content_type.endswith("json") else None
                    self.requests += 1
                    took = time.perf_counter() - start
                    self.latencies.append(took)
                    self.timeline.append((time.monotonic(), took, resp.status >= 500))
                    if took > STORE_TIMEOUT + 0.5:
                        self.slow.append(
                            {
                                "phase": self.phase,
                                "request": f"{method} {path}",
                                "instance": inst.name,
                                "status": resp.status,
                                "seconds": round(took, 2),
                            }
                        )
                    if resp.status >= 500:
                        self.fail(f"HTTP {resp.status}")
                    return resp.status, data
            except aiohttp.ClientConnectorError as exc:
                last = exc
                continue  # refused: the request never left; the balancer tries the next one
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.requests += 1
                self.timeline.append((time.monotonic(), time.perf_counter() - start, True))
                self.fail(type(exc).__name__)
                return 0, None
        self.requests += 1
        self.fail(f"no instance reachable: {last}")
        return 0, None

    async def _client(self, http: aiohttp.ClientSession, n: int) -> None:
        user = f"chaos-{n}"
        mine: list[str] = []
        #: This client's messages, some in sessions deleted since (dropped when picked):
        #: a scan of the whole ledger for each delete grew with the soak.
        my_messages: list[str] = []
        led = self.ledger
        while not self._stop:
            await asyncio.sleep(self.rng.expovariate(1 / self.pause))
            roll = self.rng.random()
            if not mine or roll < 0.10:
                status, data = await self._send(http, user, "POST", "/sessions", {"title": "t0"})
                if status == 201:
                    led.sessions[data["id"]] = {"user": user, "titles": {"t0"}, "last": "t0"}
                    mine.append(data["id"])
            elif roll < 0.55:
                sid = self.rng.choice(mine)
                body: dict[str, Any] = {"content": {"type": "conversation", "text": f"m{roll}"}}
                if self.rng.random() < 0.2:
                    body["image"] = PNG
                status, data = await self._send(
                    http, user, "POST", f"/sessions/{sid}/messages", body
                )
                if status == 201:
                    led.messages[data["id"]] = {"session": sid, "text": body["content"]["text"]}
                    my_messages.append(data["id"])
            elif roll < 0.70:
                sid = self.rng.choice(mine)
                title = f"t{self.rng.randrange(10**6)}"
                status, _ = await self._send(
                    http, user, "PATCH", f"/sessions/{sid}", {"title": title}
                )
                entry = led.sessions[sid]
                if status == 200:
                    entry["titles"] = {title}
                    entry["last"] = title
                elif status == 0 or status >= 500:
                    entry["titles"].add(title)  # no answer: it may have landed
            elif roll < 0.75:
                mid = None
                while my_messages and mid is None:
                    i = self.rng.randrange(len(my_messages))
                    mid = my_messages[i]
                    my_messages[i] = my_messages[-1]
                    my_messages.pop()
                    if mid not in led.messages or led.messages[mid]["session"] not in mine:
                        mid = None  # deleted already, or with its session
                if mid is not None:
                    status, _ = await self._send(http, user, "DELETE", f"/messages/{mid}")
                    led.deleted(mid, status, led.messages, led.deleted_messages)
            elif roll < 0.78 and len(mine) > 1:
                sid = mine.pop(self.rng.randrange(len(mine)))
                status, _ = await self._send(http, user, "DELETE", f"/sessions/{sid}")
                led.deleted(sid, status, led.sessions, led.deleted_sessions)
            else:
                sid = self.rng.choice(mine)
                await self._send(http, user, "GET", f"/sessions/{sid}/messages?limit=50")

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        # A new connection per request, as a balancer in front of restarting instances
        # does: no pooled connection to a killed process is ever reused.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await asyncio.gather(*(self._client(http, n) for n in range(self.clients)))


# --- writers around the facade ---------------------------------------------------------------

#: Where each store is authoritative: bypass writers write it only there (an old backend
#: instance writes MongoDB until the rollout ends; the SQL editor edits Supabase once it
#: leads).
MONGO_LEADS = {"off", "dualwrite", "shadow"}
PG_LEADS = {"live", "rampdown", "complete"}


@dataclass
class BypassWrite:
    """One record written around the facade, and what it must look like in both stores."""

    table: str
    rid: uuid.UUID
    source: str  # "mongo" or "postgres": where it was written
    stage: str
    made: float  # when its last write was acknowledged
    titles: set[str] = field(default_factory=set)  # sessions: every title it may have
    deleted: bool = False
    #: Seconds from acknowledgement to the other store holding it (None: not yet).
    arrived: float | None = None
    followed: bool = True  # made where a follower runs (not before the first backfill)


def samples(metrics: str, name: str) -> list[tuple[str, float]]:
    """The samples of metric ``name`` (with labels) in a ``/metrics`` page: each line
    and its value."""
    return [
        (line, float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith(name + "{")
    ]


@dataclass
class Mine:
    """One bypass writer's live records: sessions (never deleted by it) and messages."""

    sessions: list[BypassWrite] = field(default_factory=list)
    messages: list[BypassWrite] = field(default_factory=list)


class Bypass:
    """Two writers that never touch the facade: one writes legacy-shaped documents straight
    into MongoDB (an old backend instance, a cron job) while MongoDB is authoritative, the
    other rows straight into Postgres (the SQL editor, an Edge Function) while it is. Each
    keeps a ledger of what it wrote; a checker times each write's arrival in the other
    store. Writers pause while the stage moves, so every write has one definite stage."""

    def __init__(self, mongo_uri: str, dsn: str, rate: float, seed: int = 2) -> None:
        self.mongo_uri = mongo_uri
        self.dsn = dsn
        self.rate = rate
        self.rng = random.Random(seed)
        self.stage = "off"
        self.round = 0
        self.writes: dict[uuid.UUID, BypassWrite] = {}
        #: The writes not yet seen in the other store (the checker asks only for these).
        self.unarrived: dict[uuid.UUID, BypassWrite] = {}
        #: Writes whose outcome is unknown (the store failed mid-write): not judged.
        self.ambiguous: set[uuid.UUID] = set()
        self.failed = 0
        self._open = asyncio.Event()
        self._open.set()
        self._inflight = 0
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    async def hold(self) -> None:
        """Pause both writers and wait for their writes in flight."""
        self._open.clear()
        while self._inflight:  # noqa: ASYNC110 (a counter, polled while the stage moves)
            await asyncio.sleep(0.01)

    def release(self, stage: str) -> None:
        self.stage = stage
        self._open.set()

    def _followed(self, source: str) -> bool:
        if source == "postgres":
            return True
        return self.stage != "off" or self.round > 0  # round 1's off: the backfill copies it

    async def run(self) -> None:
        await asyncio.gather(self._writer("mongo"), self._writer("postgres"), self._checker())

    async def _writer(self, source: str) -> None:
        leads = MONGO_LEADS if source == "mongo" else PG_LEADS
        mine = Mine()
        mongo: AsyncMongoClient[Any] | None = None
        pg: asyncpg.Connection | None = None
        try:
            while not self._stop:
                await asyncio.sleep(self.rng.expovariate(self.rate))
                await self._open.wait()
                if self.stage not in leads:
                    continue
                self._inflight += 1
                try:
                    if source == "mongo":
                        if mongo is None:
                            mongo = AsyncMongoClient(
                                self.mongo_uri, serverSelectionTimeoutMS=2000, timeoutMS=3000
                            )
                        await self._write(mine, source, self._mongo_ops(mongo["chat"]))
                    else:
                        if pg is None or pg.is_closed():
                            pg = await asyncpg.connect(self.dsn, timeout=3, command_timeout=3)
                        await self._write(mine, source, self._pg_ops(pg))
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    self.failed += 1  # the store is down: nothing acknowledged
                    if pg is not None and not pg.is_closed():
                        pg.terminate()
                    pg = None
                except Exception as exc:  # PyMongo's errors: the same
                    if type(exc).__module__.startswith("pymongo"):
                        self.failed += 1
                    else:
                        raise
                finally:
                    self._inflight -= 1
        finally:
            if mongo is not None:
                await mongo.close()
            if pg is not None and not pg.is_closed():
                await pg.close()

    async def _write(self, mine: Mine, source: str, ops: Any) -> None:
        """One write: a new session, a message in one of this writer's sessions, a rename,
        or a message deleted. An exception mid-write makes the record ambiguous."""
        roll = self.rng.random()
        # This writer's live sessions and messages, kept apart as they are made: a scan of
        # everything it ever wrote, for each write, grew with the soak.
        sessions = mine.sessions
        messages = mine.messages  # a message leaves the list when it is picked for deletion
        if not sessions or roll < 0.25:
            kind, target = "session", None
        elif roll < 0.80:
            kind, target = "message", self.rng.choice(sessions)
        elif roll < 0.95 or not messages:
            kind, target = "rename", self.rng.choice(sessions)
        else:
            i = self.rng.randrange(len(messages))
            kind, target = "delete", messages[i]
            messages[i] = messages[-1]  # gone once deleted: swapped out now
            messages.pop()
        title = f"b{self.rng.randrange(10**6)}"
        try:
            rid = await ops(kind, title, target)
        except BaseException:
            if kind == "rename" and target is not None:
                target.titles.add(title)  # it may have landed
            elif kind == "delete" and target is not None:
                self.ambiguous.add(target.rid)
            raise
        now = time.time()
        if kind in ("session", "message"):
            table = "chat_sessions" if kind == "session" else "messages"
            w = BypassWrite(table, rid, source, self.stage, now, followed=self._followed(source))
            if kind == "session":
                w.titles = {title}
            self.writes[rid] = w
            self.unarrived[rid] = w
            (mine.sessions if kind == "session" else mine.messages).append(w)
        else:
            assert target is not None
            if kind == "rename":
                target.titles = {title}
            else:
                target.deleted = True
            target.made, target.arrived, target.stage = now, None, self.stage
            target.followed = self._followed(source)
            self.unarrived[target.rid] = target

    def _mongo_ops(self, db: Any) -> Any:
        async def mongo(kind: str, title: str, target: BypassWrite | None) -> uuid.UUID:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
            if kind == "session":
                oid = ObjectId()
                self.ambiguous.add(ids.uuid_from_objectid(oid))  # until acknowledged
                await db.chat_sessions.insert_one(
                    {"_id": oid, "title": title, "created_at": now, "user_id": "u-cron"}
                )
            elif kind == "message":
                assert target is not None
                oid = ObjectId()
                self.ambiguous.add(ids.uuid_from_objectid(oid))
                await db.messages.insert_one(
                    {
                        "_id": oid,
                        "session_id": str(_oid(target.rid)),
                        "sender": "assistant",
                        "content": {"type": "conversation", "text": f"cron {title}"},
                        "timestamp": now,
                    }
                )
            elif kind == "rename":
                assert target is not None
                await db.chat_sessions.update_one(
                    {"_id": _oid(target.rid)}, {"$set": {"title": title}}
                )
                return target.rid
            else:
                assert target is not None
                await db.messages.delete_one({"_id": _oid(target.rid)})
                return target.rid
            made = ids.uuid_from_objectid(oid)
            self.ambiguous.discard(made)
            return made

        return mongo

    def _pg_ops(self, conn: asyncpg.Connection) -> Any:
        async def postgres(kind: str, title: str, target: BypassWrite | None) -> uuid.UUID:
            if kind == "session":
                made = uuid.uuid4()
                self.ambiguous.add(made)
                await conn.execute(
                    "INSERT INTO chat_sessions (id, title, created_at, user_id)"
                    " VALUES ($1, $2, now(), 'u-sql-editor')",
                    made,
                    title,
                )
            elif kind == "message":
                assert target is not None
                made = uuid.uuid4()
                self.ambiguous.add(made)
                await conn.execute(
                    "INSERT INTO messages (id, session_id, sender, content, timestamp)"
                    " VALUES ($1, $2, 'assistant', $3::jsonb, now())",
                    made,
                    target.rid,
                    f'{{"type": "conversation", "text": "edge {title}"}}',
                )
            elif kind == "rename":
                assert target is not None
                await conn.execute(
                    "UPDATE chat_sessions SET title = $2 WHERE id = $1", target.rid, title
                )
                return target.rid
            else:
                assert target is not None
                await conn.execute("DELETE FROM messages WHERE id = $1", target.rid)
                return target.rid
            self.ambiguous.discard(made)
            return made

        return postgres

    async def _checker(self) -> None:
        """Twice a second: which writes the other store holds now, and since when."""
        async with (
            MongoStore(self.mongo_uri, database="chat", timeout=3) as mongo,
            PostgresStore(self.dsn, timeout=3) as pg,
        ):
            while not self._stop:
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):  # a store down: look again later
                    await self.check({"mongo": mongo, "postgres": pg}, final=False)

    async def check(self, stores: dict[str, Any], *, final: bool) -> list[str]:
        """Mark arrivals; with ``final``, also each write's state in its own store, and
        return what is wrong."""
        wrong: list[str] = []
        pool = list((self.writes if final else self.unarrived).values())
        for table in ("chat_sessions", "messages"):
            for source, other in (("mongo", "postgres"), ("postgres", "mongo")):
                todo = [
                    w
                    for w in pool
                    if w.table == table
                    and w.source == source
                    and w.rid not in self.ambiguous
                    and (final or w.arrived is None)
                ]
                if not todo:
                    continue
                rids = [w.rid for w in todo]
                there = await stores[other].read_many(table, rids)
                here = await stores[source].read_many(table, rids) if final else {}
                for w in todo:
                    ok_there = _holds(w, there.get(w.rid))
                    if ok_there and w.arrived is None:
                        w.arrived = time.time() - w.made
                    if w.arrived is not None:
                        self.unarrived.pop(w.rid, None)
                    if final and not ok_there:
                        wrong.append(
                            f"{w.table} {w.rid} written in {w.source} at {w.stage}: "
                            f"{_state(w)} in {w.source}, not in {other}"
                        )
                    if final and not _holds(w, here.get(w.rid)):
                        wrong.append(f"{w.table} {w.rid}: {_state(w)} lost in {w.source} itself")
        return wrong

    def summary(self) -> dict[str, Any]:
        def figures(ws: list[BypassWrite]) -> dict[str, Any]:
            lat = sorted(w.arrived for w in ws if w.arrived is not None)
            return {
                "writes": len(ws),
                "arrived": len(lat),
                "p50_ms": round(statistics.median(lat) * 1000) if lat else None,
                "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000) if lat else None,
                "max_ms": round(lat[-1] * 1000) if lat else None,
                "over_2s": sum(1 for x in lat if x > 2),
            }

        judged = [w for w in self.writes.values() if w.rid not in self.ambiguous]
        return {
            "forward (MongoDB -> Supabase)": figures(
                [w for w in judged if w.source == "mongo" and w.followed]
            ),
            "reverse (Supabase -> MongoDB)": figures([w for w in judged if w.source == "postgres"]),
            "copied by the first backfill": len(
                [w for w in judged if w.source == "mongo" and not w.followed]
            ),
            "ambiguous": len(self.ambiguous),
            "failed (store down)": self.failed,
        }


def _oid(rid: uuid.UUID) -> ObjectId:
    oid = ids.objectid_from_uuid(rid)
    assert oid is not None
    return oid


def _holds(w: BypassWrite, record: Any) -> bool:
    if w.deleted:
        return record is None
    if record is None:
        return False
    return w.table != "chat_sessions" or record.title in w.titles


def _state(w: BypassWrite) -> str:
    if w.deleted:
        return "deleted"
    return f"title {sorted(w.titles)}" if w.table == "chat_sessions" else "present"


# --- the walk -------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    stage: str  # injected while at this stage (by position in the walk)
    #: True when requests may fail: the authoritative store is down, or an instance is
    #: killed with requests in flight (they fail with it; new ones go to the other).
    expect_failures: bool


class Harness:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.mongo = EmbeddedMongo(tmp / "mongo")
        self.pg = EmbeddedPostgres(tmp / "pg")
        self.events: list[dict[str, Any]] = []
        self.backfills: list[dict[str, Any]] = []
        self.repairs: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.takeovers: list[dict[str, Any]] = []
        #: Forward moves the stage gate refused for missing evidence (then forced).
        self.evidence_forced: list[dict[str, Any]] = []
        #: The rejected-token fault: what happened to it.
        self.stale: dict[str, Any] | None = None
        #: Each hang fault: when it began and ended, and how the instances settled.
        self.hangs: list[dict[str, Any]] = []
        #: The faults injected so far, by name (``--faults`` may leave some out).
        self.injected: list[str] = []

    def note(self, what: str, **extra: Any) -> None:
        self.events.append({"at": time.time(), "what": what, **extra})
        print(f"  {time.strftime('%H:%M:%S')} {what} {extra if extra else ''}", flush=True)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http:
            for inst in self.instances:
                with contextlib.suppress(aiohttp.ClientConnectorError):
                    async with http.request(
                        method, inst.url + path, json=body, headers=ADMIN_H
                    ) as r:
                        return r.status, await r.json()
        raise RuntimeError("no instance answers the admin API")

    async def drain(self, within: float = 180) -> None:
        """Wait until neither repair queue holds anything."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status, body = await self.admin("GET", "/admin/status")
                depths = [b["repair_queue_depth"] for b in body["backends"].values()]
                if status == 200 and all(d == 0 for d in depths):
                    return
            await asyncio.sleep(0.5)
        self.note("repair queue did not drain", within=within)

    async def set_stage(self, stage: str) -> None:
        """As an operator does: if the move is refused while repairs are pending, wait for
        the queue to drain and try again."""
        body = {"stage": stage, "reason": "chaos"}
        await self.bypass.hold()
        try:
            await self._set_stage(stage, body)
        finally:
            self.bypass.release(stage)

    async def _set_stage(self, stage: str, body: dict[str, Any]) -> None:
        status, answer = await self.admin("PUT", "/admin/stage", body)
        if status == 409 and answer.get("code") == "evidence_missing":
            # The walk is minutes long: no verify, too few shadow comparisons for the gate
            # (tests/proxy/test_gates.py tests it). It moves forced, with a reason, once
            # both repair queues are empty, so pending repairs still hold it back.
            missing = [c["key"] for c in answer.get("evidence", []) if not c["ok"]]
            self.evidence_forced.append({"stage": stage, "missing": missing})
            await self.drain()
            forced = {**body, "force": True, "reason": "chaos harness: walks without evidence"}
            status, answer = await self.admin("PUT", "/admin/stage", forced)
        elif status == 409:
            self.note("stage change waits for the repair queue", stage=stage)
            await self.drain()
            status, answer = await self.admin("PUT", "/admin/stage", body)
        if status != 200:
            raise RuntimeError(f"stage {stage}: {status} {answer}")
        await asyncio.sleep(0.5)  # every instance polls the control table every 0.2 s

    async def inject(self, fault: Fault) -> None:
        self.injected.append(fault.name)
        self.load.phase = fault.name
        self.note(f"fault: {fault.name}")
        hold = self.args.fault_seconds
        if fault.name.startswith("pg down"):
            await asyncio.to_thread(self.pg.stop, immediate=True)
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.pg.start)
        elif fault.name.startswith("mongo down"):
            await asyncio.to_thread(self.mongo.stop, kill=True)
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.mongo.start)
        elif fault.name.startswith("sigkill"):
            follower = "forward" if "forward" in fault.name else "reverse"
            victim = await self.leader(follower) or self.instances[1]
            victim.kill()
            killed = time.monotonic()
            self.note(f"killed {victim.name}, the {follower} follower's leader")
            # Whoever claims the lease first once it ends: the other instance, or the killed
            # one restarted (a new process, so it waits for the lease like any other).
            takeover = asyncio.create_task(self.wait_leading(follower, 30))
            await asyncio.sleep(hold)
            await victim.start()
            took = await takeover
            self.takeovers.append(
                {"follower": follower, "seconds": None if took is None else round(took - killed, 2)}
            )
            self.note("takeover", follower=follower, takeovers=self.takeovers[-1])
        elif fault.name.startswith("rejected resume token"):
            await self.reject_token()
        elif fault.name.startswith("hang"):
            await self.hang(fault)
        elif fault.name.startswith("slow"):
            target = self.pg if "pg" in fault.name else self.mongo
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                pids = server_pids(target)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                await asyncio.sleep(0.2)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # let clients see the recovery under the fault's label
        self.load.phase = "steady"

    async def hang(self, fault: Fault) -> None:
        """The store's processes stopped for ``--hang-seconds``: connections stay open and
        nothing answers. After the resume: how long until every instance's breakers are
        closed and both repair queues are empty."""
        target = self.pg if "pg" in fault.name else self.mongo
        pids = server_pids(target)
        began = time.monotonic()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.args.hang_seconds)
            breakers = await self.breaker_states()
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        settled = None
        # How busy each server is while the instances catch up: on two cores, a drain
        # that waits on a saturated SecantusDB is bounded by it, not by the replayer.
        roles: dict[str, Any] = {"SecantusDB": self.mongo, "Postgres": self.pg}
        roles.update({i.name: i.proc.pid for i in self.instances if i.proc is not None})
        roles["harness"] = os.getpid()  # the load, the bypass writers, these polls
        busy = CpuSplit(roles).__enter__()
        while time.monotonic() - resumed < 60:
            # Four polls a second. The journals live in the stores, so one instance's
            # status page gives their depths; the others' breakers come from /metrics,
            # which counts nothing. Each status page counts the journals, which on
            # SecantusDB decodes every entry (20 ms at 1,500): one page per instance per
            # poll was a third of SecantusDB's time while the drain being timed ran.
            if await self.settled():
                settled = time.monotonic() - resumed
                break
            await asyncio.sleep(0.25)
        self.hangs.append(
            {
                "fault": fault.name,
                "began": began,
                "resumed": resumed,
                "breakers_at_end_of_hang": breakers,
                "settled_s": None if settled is None else round(settled, 2),
                "cpu_while_settling": self._shares(busy),
            }
        )
        self.note("resumed", fault=fault.name, settled_s=self.hangs[-1]["settled_s"])
        # Stay at this stage until latency is normal again (30 s at most): the next stage
        # has latencies of its own, and the recovery is judged against this one's.
        timeline = self.load.timeline
        before = [t for at, t, _ in timeline if began - 10 <= at < began]
        normal = statistics.median(before) if before else None
        while normal is not None and time.monotonic() < resumed + 30:
            now = time.monotonic()
            last = []
            for at, t, _ in reversed(timeline):
                if at < now - 1:
                    break
                last.append(t)
            if last and statistics.median(last) <= normal * 1.2:
                break
            await asyncio.sleep(0.5)

    @staticmethod
    def _shares(busy: CpuSplit) -> dict[str, str]:
        """Each process's CPU from the resume until settled, as a share of one core."""
        busy.__exit__()
        return {k: f"{v / max(busy.wall, 0.01):.0%}" for k, v in busy.seconds.items()}

    async def statuses(self) -> dict[str, dict[str, Any]]:
        """Each answering instance's ``/admin/status``, by instance name, asked together."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:

            async def one(inst: Instance) -> dict[str, Any] | None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(f"{inst.url}/admin/status", headers=ADMIN_H) as r:
                        if r.status == 200:
                            body: dict[str, Any] = await r.json()
                            return body
                return None

            bodies = await asyncio.gather(*(one(inst) for inst in self.instances))
        return {i.name: b for i, b in zip(self.instances, bodies, strict=True) if b is not None}

    async def settled(self) -> bool:
        """Whether both repair queues are empty (one instance's status page) and every
        instance's breakers are closed (the others' ``/metrics``)."""
        first, *others = self.instances
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:

            async def status() -> bool:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(f"{first.url}/admin/status", headers=ADMIN_H) as r:
                        if r.status == 200:
                            backends = (await r.json())["backends"].values()
                            return all(
                                b["repair_queue_depth"] == 0 and b["breaker"]["state"] == "closed"
                                for b in backends
                            )
                return False

            async def closed(inst: Instance) -> bool:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(f"{inst.url}/metrics") as r:
                        if r.status == 200:
                            text = await r.text()
                            states = [v for _, v in samples(text, "strangler_breaker_state")]
                            return bool(states) and all(x == 0 for x in states)
                return False

            answers = await asyncio.gather(status(), *(closed(i) for i in others))
        return all(answers)

    async def breaker_states(self) -> dict[str, str]:
        """Every instance's breakers, ``instance/store -> state``."""
        return {
            f"{name}/{b['store']}": b["breaker"]["state"]
            for name, body in (await self.statuses()).items()
            for b in body["backends"].values()
        }

    def hang_figures(self) -> list[dict[str, Any]]:
        """Per hang: the requests that met it, against the 10 s before."""
        out = []
        timeline = self.load.timeline
        for h in self.hangs:
            before = sorted(t for at, t, _ in timeline if h["began"] - 10 <= at < h["began"])
            # Every request that met the hang: it ended after the hang began and started
            # before the resume (one that waited across the resume counts too).
            during = [
                (at, t, bad)
                for at, t, bad in timeline
                if at >= h["began"] and at - t < h["resumed"]
            ]
            lat = sorted(t for _, t, _ in during)
            # Once the breaker had a few seconds to open: the steady state of the hang.
            later = sorted(t for at, t, _ in during if at >= h["began"] + 5)
            normal = statistics.median(before) if before else None
            back = None  # first 1 s window after the resume whose p50 is within 1.2x normal
            if normal is not None:
                at = h["resumed"]
                while at < h["resumed"] + 60:
                    window = sorted(t for end, t, _ in timeline if at <= end < at + 1)
                    if window and statistics.median(window) <= normal * 1.2:
                        back = round(at - h["resumed"], 1)
                        break
                    at += 0.5

            def ms(x: float | None) -> float | None:
                return None if x is None else round(x * 1000, 1)

            out.append(
                {
                    "fault": h["fault"],
                    "requests": len(during),
                    "failures": sum(1 for _, _, bad in during if bad),
                    "p50_ms": ms(statistics.median(lat)) if lat else None,
                    "p99_ms": ms(lat[int(len(lat) * 0.99)]) if lat else None,
                    "max_ms": ms(lat[-1]) if lat else None,
                    "p50_before_ms": ms(normal),
                    "p50_after_5s_ms": ms(statistics.median(later)) if later else None,
                    "breakers_at_end_of_hang": h["breakers_at_end_of_hang"],
                    "breakers_closed_and_queues_empty_s": h["settled_s"],
                    "cpu_while_settling": h["cpu_while_settling"],
                    "p50_normal_again_s": back,
                }
            )
        return out

    async def leader(self, follower: str) -> Instance | None:
        """The instance whose ``follower`` leads now (from each one's /admin/status)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            for inst in self.instances:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError):
                    async with http.get(f"{inst.url}/admin/status", headers=ADMIN_H) as r:
                        for f in (await r.json())["followers"]:
                            if f["name"] == follower and f["state"] == "leading":
                                return inst
        return None

    async def wait_leading(self, follower: str, within: float) -> float | None:
        """When an instance leads ``follower`` again (monotonic), or None."""
        await asyncio.sleep(0.2)  # the killed leader's status is gone by now
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.leader(follower) is not None:
                return time.monotonic()
            await asyncio.sleep(0.1)
        return None

    async def reject_token(self) -> None:
        """Give the idle forward follower a resume token MongoDB cannot resume from (one
        from another deployment), as a restore or a rolled oplog would. When the walk
        comes back to MongoDB's stages it must go stale, not skip; ``recover`` then does
        what it says."""
        conn = await asyncpg.connect(self.pg.dsn)
        try:
            done = await conn.execute(
                "UPDATE strangler.followers SET position = $1::jsonb WHERE name = 'forward'",
                json.dumps({"token": json.dumps({"_data": "826500"}), "at": None}),
            )
        finally:
            await conn.close()
        self.stale = {"token_replaced": done == "UPDATE 1"}

    async def recover(self) -> None:
        """As the runbook says for a stale follower: see it stale, reset it (it follows
        from now), then repair what was missed before."""
        assert self.stale is not None
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline:
            code, lines = await self.cli("follow", "status", "--json", ok=(0, 1))
            if code == 1 and '"stale"' in "".join(lines):
                seen = time.monotonic()
                break
            await asyncio.sleep(0.5)
        self.stale["flagged_stale"] = seen is not None
        self.note("forward follower stale", flagged=seen is not None)
        code, _ = await self.cli("follow", "reset", "forward")
        self.stale["reset_exit"] = code
        code, lines = await self.cli("repair")
        self.stale["repair_exit"] = code
        self.stale["repair"] = lines[1:]
        self.note("reset and repaired", repair=" | ".join(lines[1:]))

    def faults(self, round_no: int, *, kills: bool = True) -> dict[int, list[Fault]]:
        """Which faults at which position of the walk, per round. The hangs come in round
        1 (unless ``--hang-seconds 0``): each store hung while authoritative and while not,
        going up and coming back."""
        plan = self._faults(round_no)
        if not kills:
            # A soak's later walks kill no instance: each instance's process then runs for
            # the rest of the soak, and its RSS is judged over that long life.
            plan = {
                pos: [f for f in fs if not f.name.startswith("sigkill")] for pos, fs in plan.items()
            }
        if self.args.hang_seconds <= 0:
            plan = {
                pos: [f for f in fs if not f.name.startswith("hang")] for pos, fs in plan.items()
            }
        if self.args.faults:
            # Only the faults named (a part of the name is enough), to reproduce one.
            plan = {
                pos: [f for f in fs if any(x in f.name for x in self.args.faults)]
                for pos, fs in plan.items()
            }
        return {pos: fs for pos, fs in plan.items() if fs}

    def _faults(self, round_no: int) -> dict[int, list[Fault]]:
        if round_no == 0:
            return {
                1: [
                    Fault("pg down (non-authoritative)", "dualwrite", False),
                    Fault("hang pg (non-authoritative, up)", "dualwrite", False),
                ],
                2: [
                    Fault("slow mongo (authoritative)", "shadow", False),
                    Fault("hang mongo (authoritative, up)", "shadow", True),
                ],
                3: [
                    Fault("mongo down (non-authoritative)", "live", False),
                    Fault("hang mongo (non-authoritative, up)", "live", False),
                ],
                4: [Fault("hang pg (authoritative, up)", "rampdown", True)],
                5: [Fault("sigkill api instance (reverse follower's leader)", "complete", True)],
                6: [
                    Fault("slow pg (authoritative)", "rampdown", False),
                    Fault("hang mongo (non-authoritative, back)", "rampdown", False),
                ],
                7: [
                    Fault("rejected resume token (forward, idle)", "live", False),
                    Fault("hang pg (authoritative, back)", "live", True),
                ],
                8: [Fault("hang mongo (authoritative, back)", "shadow", True)],
                9: [
                    Fault("slow pg (non-authoritative)", "dualwrite", False),
                    Fault("hang pg (non-authoritative, back)", "dualwrite", False),
                ],
            }
        return {
            1: [Fault("sigkill api instance (forward follower's leader)", "dualwrite", True)],
            2: [Fault("pg down (non-authoritative)", "shadow", False)],
            4: [Fault("mongo down (non-authoritative)", "rampdown", False)],
            7: [Fault("pg down (authoritative)", "live", True)],
            9: [Fault("mongo down (authoritative)", "dualwrite", True)],
        }

    async def walk(self, round_no: int, *, kills: bool = True) -> None:
        plan = self.faults(round_no, kills=kills)
        for pos, stage in enumerate(WALK):
            if pos:
                self.load.phase = f"stage change to {stage}"
                self.note(f"stage → {stage}", round=round_no + 1)
                await self.set_stage(stage)
                await asyncio.sleep(1.0)
                self.load.phase = "steady"
            if stage == "shadow" and self.stale is not None and "flagged_stale" not in self.stale:
                await self.recover()
            if stage == "dualwrite" and pos == 1:
                await self.backfill(round_no)
                await self.repair(round_no)
            await asyncio.sleep(self.args.dwell / 2)
            for fault in plan.get(pos, []):
                await self.inject(fault)
            await asyncio.sleep(self.args.dwell / 2)

    async def backfill(self, round_no: int) -> None:
        """The runbook's step 3, under the load: copy what only MongoDB holds."""
        self.note("backfill", round=round_no + 1)
        code, summary = await self.cli(
            *("backfill", "--source", self.mongo.uri, "--workers", "1"),
            *("--report", str(self.tmp / f"backfill-{round_no}.jsonl")),
            *("--checkpoint", str(self.tmp / f"backfill-{round_no}.checkpoint.json")),
        )
        self.backfills.append({"round": round_no + 1, "exit": code, "summary": summary})

    async def repair(self, round_no: int) -> None:
        """The runbook's step 4: a backfill never overwrites or deletes, so what changed in
        MongoDB alone while the stage was ``off`` (renames, deletes) is repaired here, under
        the load, before shadow reads compare the stores."""
        code, lines = await self.cli("repair")
        self.repairs.append({"round": round_no + 1, "exit": code, "output": lines})
        self.note("repair", round=round_no + 1, output=" | ".join(lines[1:]))

    async def cli(self, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[int, list[str]]:
        """``strangler <args>`` with the instances' environment: exit code and stdout lines
        (stderr is noted when it fails)."""
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "strangler.cli", *args),
            env={**os.environ, **self.instances[0].env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        code = proc.returncode if proc.returncode is not None else -1
        if code not in ok:
            self.note(f"strangler {args[0]} exited {code}", stderr=err.decode()[-500:])
        return code, out.decode().strip().splitlines()

    async def sampler(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while not self.load._stop:
                for inst in self.instances:
                    s: dict[str, Any] = inst.sample()
                    if not s:
                        continue
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError):
                        async with http.get(f"{inst.url}/admin/status", headers=ADMIN_H) as r:
                            s["tasks"] = (await r.json())["process"]["asyncio_tasks"]
                    self.samples.append({"t": time.time(), "instance": inst.name, **s})
                await asyncio.sleep(self.args.sample_seconds)

    async def run(self) -> dict[str, Any]:
        self.mongo.start()
        self.pg.start()
        self.instances: list[Instance] = []
        try:
            return await self._run()
        finally:
            for inst in self.instances:  # a run that failed halfway leaves none behind
                if inst.proc is not None and inst.proc.poll() is None:
                    inst.kill()
            await asyncio.to_thread(self.mongo.stop)
            await asyncio.to_thread(self.pg.stop)

    async def _run(self) -> dict[str, Any]:
        await schema.apply(self.pg.dsn)
        env = {
            **os.environ,
            "MONGO_URI": self.mongo.uri,
            "MONGO_DB": "chat",
            "SUPABASE_DB_URL": self.pg.dsn,
            "STRANGLER_AUTH": "disabled",
            "STRANGLER_ADMIN_TOKEN": ADMIN,
            "STRANGLER_STAGE_POLL_SECONDS": "0.2",
            # The walk is the operator's: the rollout guard (tests/proxy/test_guard.py)
            # would step back on the authoritative store's outages.
            "STRANGLER_GUARD": "false",
            "STRANGLER_LOG_FORMAT": "json",
            "STRANGLER_LOG_LEVEL": os.environ.get("STRANGLER_CHAOS_LOG_LEVEL", "warning"),
            # $in queries sized for SecantusDB (strangler.embedded.mongo.IN_CHUNK)
            "STRANGLER_MONGO_IN_CHUNK": os.environ.get(
                "STRANGLER_MONGO_IN_CHUNK", str(EMBEDDED_IN_CHUNK)
            ),
        }
        env.pop("STRANGLER_STAGE", None)
        if self.args.tracemalloc_dir is not None:
            env["STRANGLER_TRACEMALLOC_DIR"] = str(self.args.tracemalloc_dir.resolve())
            env["STRANGLER_TRACEMALLOC_SECONDS"] = str(self.args.tracemalloc_seconds)
        self.instances = [Instance(n, env, self.tmp) for n in ("api-a", "api-b")]
        for inst in self.instances:
            await inst.start()
        self.load = Load(self.instances, self.args.clients, self.args.rate)
        self.bypass = Bypass(self.mongo.uri, self.pg.dsn, self.args.bypass_rate)
        load_task = asyncio.create_task(self.load.run())
        bypass_task = asyncio.create_task(self.bypass.run())
        sampler = asyncio.create_task(self.sampler())
        started = time.monotonic()
        rounds = 0
        try:
            await asyncio.sleep(self.args.dwell / 2)
            while True:
                self.bypass.round = rounds
                await self.walk(rounds % 2, kills=rounds < 2)
                rounds += 1
                if rounds >= 2 and time.monotonic() - started >= self.args.soak_seconds:
                    break
        finally:
            self.load.stop()
            self.bypass.stop()
            await load_task
            await bypass_task
            await sampler
        await self.drain()
        return await self.judge(rounds, time.monotonic() - started)

    async def bypass_judged(self, within: float = 20) -> list[str]:
        """Every write made around the facade, in both stores: wait (up to ``within``) for
        the followers to bring the last ones over, then report what is still wrong."""
        async with (
            MongoStore(self.mongo.uri, database="chat", timeout=30) as mongo,
            PostgresStore(self.pg.dsn, timeout=30) as pg,
        ):
            stores = {"mongo": mongo, "postgres": pg}
            deadline = time.monotonic() + within
            while True:
                wrong = await self.bypass.check(stores, final=True)
                if not wrong or time.monotonic() > deadline:
                    return wrong
                await asyncio.sleep(0.5)

    async def bypass_detected(self) -> dict[str, float]:
        """``strangler_bypass_writes_total`` summed over the instances, by store."""
        out: dict[str, float] = {}
        async with aiohttp.ClientSession() as http:
            for inst in self.instances:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{inst.url}/metrics") as r:
                        text = await r.text()
                        for line, value in samples(text, "strangler_bypass_writes_total"):
                            store = line.split('store="')[1].split('"')[0]
                            out[store] = out.get(store, 0) + value
        return out

    async def judge(self, rounds: int, seconds: float) -> dict[str, Any]:
        led = self.load.ledger
        lost: list[str] = []
        resurrected: list[str] = []
        async with MongoStore(self.mongo.uri, database="chat", timeout=30) as mongo:
            import uuid

            for sid, entry in led.sessions.items():
                if sid in led.maybe_deleted:
                    continue
                try:
                    s = await mongo.get_session(uuid.UUID(sid))
                except NotFound:
                    lost.append(f"session {sid} missing")
                    continue
                if s.title not in entry["titles"]:
                    lost.append(f"session {sid} title {s.title!r}, acknowledged {entry['last']!r}")
            for mid, m in led.messages.items():
                if mid in led.maybe_deleted or m["session"] in led.maybe_deleted:
                    continue
                cascaded = m["session"] in led.deleted_sessions
                try:
                    await mongo.get_message(uuid.UUID(mid))
                except NotFound:
                    if not cascaded:
                        lost.append(f"message {mid} missing")
                else:
                    if cascaded:
                        resurrected.append(f"message {mid} of a deleted session present")
            for rid in led.deleted_sessions:
                with contextlib.suppress(NotFound):
                    await mongo.get_session(uuid.UUID(rid))
                    resurrected.append(f"session {rid} deleted but present")
            for rid in led.deleted_messages:
                with contextlib.suppress(NotFound):
                    await mongo.get_message(uuid.UUID(rid))
                    resurrected.append(f"message {rid} deleted but present")
        bypass_wrong = await self.bypass_judged()
        _, repair_output = await self.cli("repair")
        verify_exit, _ = await self.cli("verify", "--json")
        status, divergences = await self.admin("GET", "/admin/divergences?limit=1000")
        detected = await self.bypass_detected()
        for inst in self.instances:
            await inst.stop()
        by_phase: dict[str, dict[str, int]] = {}
        for f in self.load.failures:
            by_phase.setdefault(f.phase, {}).setdefault(f.kind, 0)
            by_phase[f.phase][f.kind] += 1
        expected = {
            f.name
            for r in (0, 1)
            for fs in self.faults(r).values()
            for f in fs
            if f.expect_failures
        }
        unexpected = {phase: kinds for phase, kinds in by_phase.items() if phase not in expected}
        lat = sorted(self.load.latencies)
        checks = {
            "every acknowledged write present": not lost,
            "every acknowledged delete absent": not resurrected,
            "every backfill and repair succeeded": all(
                b["exit"] == 0 for b in self.backfills + self.repairs
            ),
            "verify exits 0 after repair": verify_exit == 0,
            "zero failures at fault-free stage changes and non-authoritative outages": (
                not unexpected
            ),
            "every bypass write reached the other store (before the final repair)": (
                not bypass_wrong
            ),
            "a follower's leader killed: another took over": bool(self.takeovers)
            and all(t["seconds"] is not None for t in self.takeovers),
            "a rejected resume token: flagged stale, reset, repaired": self.stale is not None
            and self.stale.get("flagged_stale") is True
            and self.stale.get("reset_exit") == 0
            and self.stale.get("repair_exit") == 0,
        }
        if self.args.faults:  # a check whose fault was left out is not judged
            for check, fault in (
                ("a follower's leader killed: another took over", "sigkill"),
                ("a rejected resume token: flagged stale, reset, repaired", "rejected"),
            ):
                if not any(name.startswith(fault) for name in self.injected):
                    del checks[check]
        hangs = self.hang_figures()
        # Latency targets (issue 18) are kept apart from the checks above: those are about
        # correctness and hold on any machine; these are timings, which a loaded 2-core
        # machine can miss by a few milliseconds, so the test prints them and the bench
        # reports them.
        targets: dict[str, bool] = {}
        if hangs:
            secondary = [h for h in hangs if "non-authoritative" in h["fault"]]
            primary = [h for h in hangs if "non-authoritative" not in h["fault"]]
            checks["a hung secondary: no failed request"] = all(
                h["failures"] == 0 for h in secondary
            )
            targets["a hung secondary: p99 within the secondary timeout + 100 ms"] = all(
                (h["p99_ms"] or 0) <= SECONDARY_TIMEOUT * 1000 + 100 for h in secondary
            )
            targets["a hung secondary: once its breaker is open, p50 within 1.5x of before"] = all(
                h["p50_after_5s_ms"] is not None
                and h["p50_before_ms"] is not None
                and h["p50_after_5s_ms"] <= 1.5 * max(h["p50_before_ms"], 5.0)
                for h in secondary
            )
            targets[
                "a hung authoritative store: every request answered within its timeout + 0.5 s"
            ] = all((h["max_ms"] or 0) <= STORE_TIMEOUT * 1000 + 500 for h in primary)
            settled = [h["breakers_closed_and_queues_empty_s"] for h in hangs]
            targets["after a hang: breakers closed and repair queues empty within 2 s"] = all(
                x is not None and x <= 2.0 for x in settled
            )
            targets["after a hang: p50 within 1.2x of before within 2 s"] = all(
                h["p50_normal_again_s"] is not None and h["p50_normal_again_s"] <= 2.0
                for h in hangs
            )
        soak = soak_summary(self.samples)
        if self.args.soak_seconds > 0:
            targets["soak: each instance's RSS within 10% from the second quarter to the last"] = (
                all(x["flat"] is not False for x in soak.values())
                and any(x["flat"] for x in soak.values())
            )
        return {
            "hangs": hangs,
            "slow_requests": self.load.slow[:50],
            "rounds": rounds,
            "seconds": round(seconds, 1),
            "requests": self.load.requests,
            "failures": len(self.load.failures),
            "failures_by_phase": by_phase,
            "latency_ms": {
                "p50": statistics.median(lat) * 1000 if lat else None,
                "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            },
            "ledger": {
                "sessions": len(led.sessions),
                "messages": len(led.messages),
                "deleted_sessions": len(led.deleted_sessions),
                "deleted_messages": len(led.deleted_messages),
                "ambiguous": len(led.maybe_deleted),
                "deletes_answered_404": led.deletes_not_found,
            },
            "bypass": self.bypass.summary(),
            "bypass_wrong": bypass_wrong[:20],
            "bypass_detected": detected,
            "takeovers": self.takeovers,
            "evidence_forced": self.evidence_forced,
            "rejected_token": self.stale,
            "lost": lost[:20],
            "resurrected": resurrected[:20],
            "backfills": self.backfills,
            "repairs_after_backfill": self.repairs,
            "repair_output": repair_output,
            "verify_exit": verify_exit,
            "divergences_recorded": (
                by_kind(divergences.get("items", [])) if status == 200 else None
            ),
            "checks": checks,
            "targets": targets,
            "result": "pass" if all(checks.values()) and all(targets.values()) else "fail",
            "soak": soak,
            "samples": self.samples,
            "events": self.events,
        }


def by_kind(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many records of each kind (shadow mismatches, bypass writes, stream reports)
    among the latest 1,000."""
    out: dict[str, int] = {}
    for row in rows:
        out[row["kind"]] = out.get(row["kind"], 0) + 1
    return out


#: The shortest process life whose RSS the soak judges.
SOAK_MINUTES = 10


def soak_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per instance, over its longest-lived process (a killed instance restarts with a new
    one): RSS, fds, sockets and asyncio tasks by quarter and at their peak. ``flat`` (the
    issue's target) when the last quarter's median RSS is within 10% of the second
    quarter's (the first is warm-up: pools, caches and code objects fill up; a process
    younger than ``SOAK_MINUTES`` is not judged), the socket
    count's peak grew by at most 12 (the pools' headroom), and the asyncio task count's
    floor by at most 20 (the floor: a leak raises it, while an outage only piles up
    requests for a while)."""
    out: dict[str, Any] = {}
    for name in sorted({s["instance"] for s in samples}):
        by_pid: dict[int, list[dict[str, Any]]] = {}
        for s in samples:
            if s["instance"] == name:
                by_pid.setdefault(s.get("pid", 0), []).append(s)
        mine = max(by_pid.values(), key=len)
        if len(mine) < 8:
            out[name] = {"samples": len(mine), "flat": None}
            continue
        minutes = (mine[-1]["t"] - mine[0]["t"]) / 60
        q = len(mine) // 4
        quarters = [mine[:q], mine[q : 2 * q], mine[2 * q : 3 * q], mine[-q:]]
        rss = [statistics.median(s["rss_kb"] for s in part) / 1024 for part in quarters]
        sock0 = max(s["sockets"] for s in quarters[0])
        sock1 = max(s["sockets"] for s in quarters[3])
        # The floor, not the peak: during an outage requests pile up waiting (80 req/s for
        # 3 s); a leak raises the floor.
        tasks0 = min((s["tasks"] for s in quarters[0] if "tasks" in s), default=0)
        tasks1 = min((s["tasks"] for s in quarters[3] if "tasks" in s), default=0)
        out[name] = {
            "samples": len(mine),
            "processes": len(by_pid),
            "minutes": round(minutes, 1),
            "rss_mb_median_by_quarter": [round(r, 1) for r in rss],
            "rss_mb_peak": round(max(s["rss_kb"] for s in mine) / 1024, 1),
            "rss_growth_second_to_last_quarter": round(rss[3] / rss[1] - 1, 3),
            "sockets_first_quarter_max": sock0,
            "sockets_last_quarter_max": sock1,
            "fds_max": max(s["fds"] for s in mine),
            "asyncio_tasks_first_quarter_min": tasks0,
            "asyncio_tasks_last_quarter_min": tasks1,
            "asyncio_tasks_peak": max((s.get("tasks", 0) for s in mine), default=0),
            # A process younger than SOAK_MINUTES is still warming up: not judged.
            "flat": None
            if minutes < SOAK_MINUTES
            else abs(rss[3] / rss[1] - 1) <= 0.10 and sock1 <= sock0 + 12 and tasks1 <= tasks0 + 20,
        }
    return out


def print_report(r: dict[str, Any]) -> None:
    print(f"\n{r['rounds']} walks off→complete→off in {r['seconds']} s")
    print(
        f"requests {r['requests']:,}  failures {r['failures']:,}  "
        f"p50 {r['latency_ms']['p50']:.1f} ms  p99 {r['latency_ms']['p99']:.1f} ms"
    )
    for phase, kinds in sorted(r["failures_by_phase"].items()):
        print(f"  failures during {phase}: {kinds}")
    led = r["ledger"]
    print(
        f"ledger: {led['sessions']} sessions, {led['messages']} messages acknowledged; "
        f"{led['deleted_sessions']} session and {led['deleted_messages']} message deletes; "
        f"{led['ambiguous']} ambiguous"
    )
    print(f"divergence log (latest 1,000, by kind): {r['divergences_recorded']}")
    for b in r["backfills"]:
        print(f"backfill in round {b['round']}: exit {b['exit']}")
        for line in b["summary"][-5:]:
            print(f"    {line}")
    for b in r["repairs_after_backfill"]:
        print(f"repair after the backfill, round {b['round']}: " + " | ".join(b["output"][1:]))
    print("final repair: " + " | ".join(r["repair_output"]))
    for direction, figures in r["bypass"].items():
        print(f"bypass writes, {direction}: {figures}")
    print(
        f"bypass writes detected by the followers (per instance since its start): "
        f"{r['bypass_detected']}"
    )
    print(f"follower takeovers after a leader was killed: {r['takeovers']}")
    print(f"rejected resume token: {r['rejected_token']}")
    for line in r["bypass_wrong"]:
        print(f"  BYPASS WRITE NOT CARRIED OVER: {line}")
    for line in r["lost"] + r["resurrected"]:
        print(f"  LOST/RESURRECTED: {line}")
    for h in r.get("hangs", []):
        print(
            f"{h['fault']}: {h['requests']} requests, {h['failures']} failed; p50 "
            f"{h['p50_ms']} ms (before {h['p50_before_ms']}, after 5 s {h['p50_after_5s_ms']}), "
            f"p99 {h['p99_ms']} ms, max {h['max_ms']} ms; settled "
            f"{h['breakers_closed_and_queues_empty_s']} s after the resume (CPU meanwhile, of "
            f"one core: {h['cpu_while_settling']}), p50 normal again after "
            f"{h['p50_normal_again_s']} s"
        )
    for slow in r.get("slow_requests", []):
        print(f"  slow request: {slow}")
    for name, s in r["soak"].items():
        print(f"soak {name}: {s}")
    for check, ok in r["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {check}")
    for target, met in r.get("targets", {}).items():
        print(f"  [{'met' if met else 'MISSED'}] target: {target}")
    print(f"result: {r['result'].upper()}")


def keep_logs(tmp: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for log_file in tmp.glob("*.log"):
        shutil.copy(log_file, to / log_file.name)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="strangler-chaos-") as tmp:
        try:
            report = await Harness(args, Path(tmp)).run()
        finally:
            if args.keep_logs:  # the instances' JSON logs, for a run to be read afterwards
                keep_logs(Path(tmp), args.keep_logs)
    print_report(report)
    report["conditions"] = conditions()
    report["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(f"saved {save('chaos', report)}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dwell", type=float, default=6, help="seconds at each stage")
    p.add_argument("--fault-seconds", type=float, default=3, help="how long a fault lasts")
    p.add_argument("--clients", type=int, default=8, help="concurrent load clients")
    p.add_argument("--rate", type=float, default=80, help="requests per second in all")
    p.add_argument(
        "--bypass-rate", type=float, default=10, help="writes a second by each bypass writer"
    )
    p.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the instances' logs to this directory"
    )
    p.add_argument(
        "--hang-seconds",
        type=float,
        default=30,
        help="how long a hung store hangs (longer than every timeout: store 5 s, secondary 2 s)",
    )
    p.add_argument("--soak-seconds", type=float, default=0, help="keep walking this long")
    p.add_argument(
        "--faults",
        action="append",
        metavar="NAME",
        help="only the faults whose name contains NAME (repeatable), e.g. 'hang pg "
        "(non-authoritative, up)', to reproduce one; the other checks still run, and "
        "those that need the missing faults do not pass",
    )
    p.add_argument("--sample-seconds", type=float, default=2, help="RSS/fd sampling period")
    p.add_argument(
        "--tracemalloc-dir",
        type=Path,
        default=None,
        help="the instances trace allocations and write snapshots here (see bench/memdiff.py)",
    )
    p.add_argument(
        "--tracemalloc-seconds", type=float, default=300, help="seconds between snapshots"
    )
    return p


if __name__ == "__main__":
    result = asyncio.run(main(parser().parse_args()))
    sys.exit(0 if result["result"] == "pass" else 1)
