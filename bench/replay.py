"""How fast the replayer drains a journal: the time to settle after a hung secondary.

While the secondary store hangs, its breaker opens and each write becomes a journal entry;
once the store answers, the replayer has to land them all (issue 18's target: breakers
closed and journals empty within 2 s of the resume). This measures the drain alone, in
entries per second, for both directions on the same servers in one run:

* ``dualwrite``: MongoDB leads; entries in MongoDB's journal, records read from MongoDB
  in bulk and upserted into Postgres;
* ``live``: Postgres leads; entries in Postgres's journal, records read from Postgres and
  upserted into MongoDB.

Each direction gets ``--entries`` new messages written to the authoritative store only,
journaled 20 to an entry write (as requests journal them), then replayed batch by batch.

``--load RATE`` runs requests through the facade meanwhile (a third of them messages
written, the rest histories read), as the instance that drains after a hang keeps
serving: on two cores the stores are then busy, and each of the drain's calls waits.

    python bench/replay.py [--entries 1500] [--rounds 3] [--load 60]
                           [--batch 500 --batch 2000] [--in-chunk 25 --in-chunk 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from _common import conditions, save, servers
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core.models import ChatSession, Message
from strangler.core.records import PendingWrite
from strangler.embedded.mongo import IN_CHUNK as EMBEDDED_IN_CHUNK
from strangler.proxy import FacadeOptions, Stage
from strangler.proxy.replay import BATCH
from strangler.runtime import assemble


async def drain(facade: Any, stage: Stage, entries: int) -> float:
    """Journal ``entries`` messages written to the authoritative store only, then replay
    them; returns entries per second."""
    assert stage.secondary is not None
    auth = facade.store(stage.authoritative)
    session = ChatSession.new(title="replay", user_id="bench")
    await facade.create_session(session)
    messages = [
        Message.new(
            session_id=session.id,
            sender="user",
            content={"type": "conversation", "text": f"message {i}"},
        )
        for i in range(entries)
    ]
    await auth.upsert_messages(messages)
    journal = facade.journals[stage.authoritative]
    for i in range(0, entries, 20):
        await journal.add(
            [
                PendingWrite(target=stage.secondary, table="messages", record_id=m.id)
                for m in messages[i : i + 20]
            ]
        )
    start = time.perf_counter()
    landed = 0
    while (n := await facade.replayer.drain()) > 0:
        landed += n
    took = time.perf_counter() - start
    if landed != entries or await journal.depth(stage.secondary):
        raise SystemExit(f"{stage.value}: {landed} of {entries} entries landed")
    return entries / took


async def load(facade: Any, rate: float, stop: asyncio.Event) -> int:
    """Requests through ``facade`` at ``rate`` a second until ``stop``: a third write a
    message, the rest read a history. Returns how many were made."""
    session = ChatSession.new(title="load", user_id="bench")
    await facade.create_session(session)
    made = 0
    tasks: set[asyncio.Task[Any]] = set()
    while not stop.is_set():
        if made % 3 == 0:
            message = Message.new(
                session_id=session.id,
                sender="user",
                content={"type": "conversation", "text": f"load {made}"},
            )
            call = facade.add_message(message)
        else:
            call = facade.history(session.id, limit=20)
        task = asyncio.ensure_future(call)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        made += 1
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks, return_exceptions=True)
    return made


async def main(args: argparse.Namespace) -> dict[str, Any]:
    batches = args.batch or [BATCH]
    chunks = args.in_chunk or [EMBEDDED_IN_CHUNK]
    # Every combination, interleaved round by round on the same servers.
    grid = [
        (stage, b, c) for stage in (Stage.DUALWRITE, Stage.LIVE) for b in batches for c in chunks
    ]
    rates: dict[str, list[float]] = {_key(s, b, c, args): [] for s, b, c in grid}
    with servers() as (mongo_server, pg_server):
        await schema.apply(pg_server.dsn)
        async with (
            MongoStore(mongo_server.uri, database="bench") as old,
            PostgresStore(pg_server.dsn, max_size=16) as new,
            assemble(old, new, FacadeOptions(stage=Stage.DUALWRITE)) as dual,
            assemble(old, new, FacadeOptions(stage=Stage.LIVE)) as live,
        ):
            await old.ensure_indexes()
            await dual.replayer.stop()  # this bench drives the replayers itself
            await live.replayer.stop()
            facades = {Stage.DUALWRITE: dual, Stage.LIVE: live}
            for _ in range(args.rounds):
                for stage, batch, chunk in grid:
                    facade = facades[stage]
                    facade.replayer.batch = batch
                    old.in_chunk = chunk
                    stop = asyncio.Event()
                    loader = (
                        asyncio.ensure_future(load(facade, args.load, stop)) if args.load else None
                    )
                    try:
                        rate = await drain(facade, stage, args.entries)
                        rates[_key(stage, batch, chunk, args)].append(rate)
                    finally:
                        stop.set()
                        if loader is not None:
                            await loader
    result = {
        "entries": args.entries,
        "batches": batches,
        "in_chunks": chunks,
        "rounds": args.rounds,
        "load_per_s": args.load,
        "entries_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
        "all": {k: [round(x) for x in v] for k, v in rates.items()},
        "conditions": conditions(),
    }
    print(f"load: {args.load or 'none'} requests/s through the facade meanwhile")
    for key, rate in result["entries_per_s"].items():
        print(
            f"{key:<28} {rate:>6} entries/s  ({args.entries} entries: "
            f"{args.entries / rate:.2f} s to drain)"
        )
    print(f"saved {save('replay', result)}")
    return result


def _key(stage: Stage, batch: int, chunk: int, args: argparse.Namespace) -> str:
    """``dualwrite``, with the batch size and ``$in`` size when several are compared."""
    key = stage.value
    if args.batch and len(args.batch) > 1:
        key += f" batch {batch}"
    if args.in_chunk and len(args.in_chunk) > 1:
        key += f" in {chunk}"
    return key


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--entries", type=int, default=1500, help="journal entries per drain")
    p.add_argument("--rounds", type=int, default=3, help="drains per direction (median)")
    p.add_argument(
        "--load",
        type=float,
        default=0,
        help="requests a second through the facade during each drain (0: none)",
    )
    p.add_argument(
        "--batch",
        type=int,
        action="append",
        help=f"entries the replayer asks for at a time ({BATCH}); repeat it to compare "
        "sizes side by side, interleaved in one run",
    )
    p.add_argument(
        "--in-chunk",
        type=int,
        action="append",
        help=f"ids per $in query to MongoDB ({EMBEDDED_IN_CHUNK}, as for SecantusDB; "
        "MongoDB's default is 100); repeatable, like --batch",
    )
    return p


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
    sys.exit(0)
