"""Change capture, both ways, side by side in one run.

* **lag**: a writer inserts legacy sessions straight into MongoDB at ``--rate`` (200/s) for
  ``--seconds``; each one's time until it is in Supabase (polled every 10 ms). Target: p99
  < 1 s.
* **reverse lag**: at ``live``, rows inserted straight into Postgres at the same rate; each
  one's time until MongoDB holds it. Target: p99 < 1 s.
* **backlog**: ``--backlog`` legacy messages (100k) written while no follower runs, then
  the same change stream read bare (only counting the changes) and drained by the
  follower, from the same position. Target: follower rate >= 0.8x the bare read; the
  process's RSS is sampled during the drain (flat memory).
* **facade write cost**: ``add_message`` p50 at ``dualwrite`` with the follower leading in
  the same process against without it, in alternating rounds. Target: <= 1.1x. A third
  arm only tails the same change stream, to tell what serving a change stream costs the
  store from what the follower itself costs.

    python bench/follow.py [--rate 200] [--seconds 10] [--backlog 100000] [--writes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import resource
import sys
import time
import uuid
from typing import Any

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

from _common import Stat, conditions, print_table, save, servers, timed
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core import ids
from strangler.core.models import ChatSession, Message
from strangler.proxy import FacadeOptions, Stage
from strangler.runtime import FollowOptions, Runtime

DB = "bench"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _leading(runtime: Runtime) -> None:
    for _ in range(200):
        record = await runtime.followers.load("forward")
        if runtime.following[0].status.state == "leading" and record and record.position:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the follower did not start leading")


async def lag(runtime: Runtime, db: Any, rate: float, seconds: float) -> Stat:
    """Bypass writes at ``rate``/s; each one's time until Supabase holds it."""
    stat = Stat(f"forward lag at {rate:g} bypass writes/s")
    new = runtime.facade.new
    assert isinstance(new, PostgresStore)
    waiting: dict[Any, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        while not (done.is_set() and not waiting):
            if waiting:
                found = await new.read_many("chat_sessions", list(waiting))
                now = time.perf_counter()
                for record_id in found:
                    stat.samples.append(now - waiting.pop(record_id))
            await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll())
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        oid = ObjectId()
        doc = {"_id": oid, "title": f"lag {i}", "created_at": _now(), "user_id": "bench"}
        t = time.perf_counter()
        await db.chat_sessions.insert_one(doc)
        waiting[ids.uuid_from_objectid(oid)] = t
    done.set()
    await asyncio.wait_for(poller, 60)
    stat.wall = loop.time() - start
    return stat


async def reverse_lag(mongo_uri: str, dsn: str, rate: float, seconds: float, settle: float) -> Stat:
    """At ``live``: rows inserted straight into Postgres (the SQL editor, an Edge Function)
    at ``rate``/s; each one's time until MongoDB holds it, in the legacy shape."""
    stat = Stat(f"reverse lag at {rate:g} direct Postgres writes/s")
    async with (
        MongoStore(mongo_uri, database=DB) as old,
        PostgresStore(dsn, max_size=8, session={"strangler.origin": "facade"}) as new,
    ):
        runtime = Runtime.over(
            old,
            new,
            FacadeOptions(stage=Stage.LIVE),
            follow=FollowOptions(settle=settle, lease_seconds=3.0, poll=0.1),
        )
        async with runtime.facade:
            # What the forward follower wrote into Supabase before is in the change log
            # too (captured at dualwrite); the idle reverse follower of a running instance
            # prunes it, as here.
            await runtime.feeds["reverse"].prune_idle()
            follower = runtime.following[1]
            follower.start()
            for _ in range(200):
                if follower.status.state == "leading":
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the reverse follower did not start leading")
            waiting: dict[uuid.UUID, float] = {}
            done = asyncio.Event()

            async def poll() -> None:
                while not (done.is_set() and not waiting):
                    if waiting:
                        found = await old.read_many("chat_sessions", list(waiting))
                        now = time.perf_counter()
                        for record_id in found:
                            stat.samples.append(now - waiting.pop(record_id))
                    await asyncio.sleep(0.01)

            poller = asyncio.create_task(poll())
            conn = await asyncpg.connect(dsn)
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                for i in range(int(rate * seconds)):
                    await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
                    rid = uuid.uuid4()
                    t = time.perf_counter()
                    await conn.execute(
                        "INSERT INTO chat_sessions (id, title, created_at, user_id)"
                        " VALUES ($1, $2, now(), 'bench')",
                        rid,
                        f"reverse {i}",
                    )
                    waiting[rid] = t
            finally:
                await conn.close()
            done.set()
            await asyncio.wait_for(poller, 60)
            stat.wall = loop.time() - start
            await follower.stop()
    return stat


async def backlog(runtime: Runtime, db: Any, n: int) -> dict[str, Any]:
    """``n`` bypass messages written while nothing follows; then the stream read bare and
    drained by the follower, from the same saved position."""
    follower = runtime.following[0]
    await follower.stop()
    record = await runtime.followers.load("forward")
    assert record is not None and record.position is not None
    start_position = record.position
    session = {"_id": ObjectId(), "title": "backlog", "created_at": _now(), "user_id": "bench"}
    await db.chat_sessions.insert_one(session)
    batch = []
    for i in range(n):
        batch.append(
            {
                "_id": ObjectId(),
                "session_id": str(session["_id"]),
                "sender": "user",
                "content": {"type": "conversation", "text": f"backlog {i} " + "lorem " * 8},
                "timestamp": _now(),
            }
        )
        if len(batch) == 5000:
            await db.messages.insert_many(batch)
            batch = []
    if batch:
        await db.messages.insert_many(batch)
    total = n + 1
    # Bare: read the same changes off the stream, nothing else.
    feed = runtime.feeds["forward"]
    seen = 0
    t = time.perf_counter()
    async for b in feed.batches(start_position):
        seen += len(b.changes)
        if seen >= total:
            break
    bare = time.perf_counter() - t
    # The follower: from the same position until Supabase holds every message.
    before = await runtime.followers.load("forward")
    base = 0 if before is None else before.applied
    await runtime.followers.reset("forward", start_position)
    rss = [_rss_mb()]
    t = time.perf_counter()
    follower.start()
    new = runtime.facade.new
    while True:
        await asyncio.sleep(0.25)
        rss.append(_rss_mb())
        if await new.count("messages") >= n:
            record = await runtime.followers.load("forward")
            if record is not None and record.applied - base >= total:
                break
        if time.perf_counter() - t > 1200:
            raise RuntimeError("the backlog did not drain in 20 minutes")
    follow = time.perf_counter() - t
    return {
        "changes": total,
        "bare_s": bare,
        "bare_rate": total / bare,
        "follow_s": follow,
        "follow_rate": total / follow,
        "ratio": bare / follow,
        "rss_mb_start": rss[0],
        "rss_mb_max": max(rss),
        "rss_mb_end": rss[-1],
    }


async def write_cost(mongo_uri: str, dsn: str, rounds: int, writes: int) -> tuple[Stat, Stat, Stat]:
    """``add_message`` at dualwrite in three arms, alternating rounds of ``writes``: the
    follower leading in this process; only a bare reader of the same change stream (what
    serving a change stream costs MongoDB, here SecantusDB on the same cores); nothing."""
    on = Stat("add_message dualwrite, follower on")
    bare = Stat("add_message dualwrite, bare stream reader")
    off = Stat("add_message dualwrite, off")
    async with (
        MongoStore(mongo_uri, database=DB) as old,
        PostgresStore(dsn, max_size=32) as new,
    ):
        for r in range(rounds * 3):
            arm = ("on", "bare", "off")[r % 3]
            runtime = Runtime.over(
                old,
                new,
                FacadeOptions(stage=Stage.DUALWRITE),
                follow=FollowOptions(settle=0.5, lease_seconds=3.0, poll=0.1)
                if arm == "on"
                else None,
            )
            reader: asyncio.Task[None] | None = None
            async with runtime.facade as facade:
                for f in runtime.following:
                    f.start()
                if arm == "on":
                    await _leading(runtime)
                if arm == "bare":
                    reader = asyncio.create_task(_read_bare(runtime))
                s = await facade.create_session(ChatSession.new(title="w", user_id="bench"))
                stat = {"on": on, "bare": bare, "off": off}[arm]
                t = time.perf_counter()
                for i in range(writes):
                    m = Message.new(
                        session_id=s.id,
                        sender="user",
                        content={"type": "conversation", "text": f"w {i} " + "lorem " * 10},
                    )
                    await timed(stat, lambda m=m: facade.add_message(m))
                stat.wall += time.perf_counter() - t
                for f in runtime.following:
                    await f.stop()
                if reader is not None:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
    return on, bare, off


async def _read_bare(runtime: Runtime) -> None:
    """Tail the change stream and count, nothing else."""
    feed = runtime.feeds["forward"]
    seen = 0
    async for batch in feed.batches(await feed.position_now()):
        seen += len(batch.changes)


async def control_stage(dsn: str, stage: Stage) -> None:
    """The shared stage in the control table, as ``strangler stage set`` leaves it (the
    facades here are pinned; the change log's triggers read the table)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO strangler.stage_control (id, stage, changed_at, origin)"
            " VALUES (1, $1, now(), 'bench') ON CONFLICT (id) DO UPDATE SET stage = $1",
            stage.value,
        )
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> int:
    # SecantusDB keeps 100,000 changes by default: a longer backlog needs a longer history.
    with servers(oplog_max_entries=max(200_000, args.backlog * 3)) as (mongo_server, pg_server):
        await schema.apply(pg_server.dsn)
        await control_stage(pg_server.dsn, Stage.DUALWRITE)
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri)
        db = client[DB]
        async with (
            MongoStore(mongo_server.uri, database=DB) as old,
            PostgresStore(pg_server.dsn, max_size=32) as new,
        ):
            await old.ensure_indexes()
            runtime = Runtime.over(
                old,
                new,
                FacadeOptions(stage=Stage.DUALWRITE),
                follow=FollowOptions(settle=args.settle, lease_seconds=3.0, poll=0.1),
            )
            async with runtime.facade:
                runtime.following[0].start()
                await _leading(runtime)
                lag_stat = await lag(runtime, db, args.rate, args.seconds)
                drained = await backlog(runtime, db, args.backlog)
                await runtime.following[0].stop()
        await client.close()
        await control_stage(pg_server.dsn, Stage.LIVE)
        rev = await reverse_lag(
            mongo_server.uri, pg_server.dsn, args.rate, args.seconds, args.settle
        )
        await control_stage(pg_server.dsn, Stage.DUALWRITE)
        on, bare, off = await write_cost(mongo_server.uri, pg_server.dsn, args.rounds, args.writes)
    print_table([lag_stat.row(), rev.row(), on.row(), bare.row(), off.row()])
    ratio = on.p50 / off.p50
    print("\nratios (side by side in this run):")
    print(
        f"  forward lag at {args.rate:g}/s        p50 {lag_stat.p50 * 1000:.0f} ms, "
        f"p99 {lag_stat.p99 * 1000:.0f} ms  target p99 < 1 s "
        f"{'MET' if lag_stat.p99 < 1 else 'MISSED'}  (settle {args.settle:g} s included)"
    )
    print(
        f"  reverse lag at {args.rate:g}/s        p50 {rev.p50 * 1000:.0f} ms, "
        f"p99 {rev.p99 * 1000:.0f} ms  target p99 < 1 s "
        f"{'MET' if rev.p99 < 1 else 'MISSED'}  (reverse settle 0.1 s included)"
    )
    print(
        f"  backlog of {drained['changes']:,}: bare read {drained['bare_rate']:,.0f}/s, "
        f"follower {drained['follow_rate']:,.0f}/s = {drained['ratio']:.2f}x  target >= 0.8x "
        f"{'MET' if drained['ratio'] >= 0.8 else 'MISSED'}; RSS {drained['rss_mb_start']:.0f} -> "
        f"max {drained['rss_mb_max']:.0f} -> {drained['rss_mb_end']:.0f} MB"
    )
    print(
        f"  facade write p50, follower on / off   {ratio:.2f}x  target <= 1.1x "
        f"{'MET' if ratio <= 1.1 else 'MISSED'}; a bare stream reader alone "
        f"{bare.p50 / off.p50:.2f}x, the follower against it {on.p50 / bare.p50:.2f}x"
    )
    path = save(
        "follow",
        {
            "conditions": conditions(),
            "args": vars(args),
            "lag": lag_stat.row(),
            "reverse_lag": rev.row(),
            "backlog": drained,
            "write_on": on.row(),
            "write_bare_stream": bare.row(),
            "write_off": off.row(),
            "write_ratio": ratio,
        },
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=500, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
