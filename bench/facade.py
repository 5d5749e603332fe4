"""The facade's overhead, side by side in one run.

* a write's p50 in ``dualwrite`` against ``off`` (target <= 1.3x): ``add_message`` through
  two facades over the same stores, one pinned to each stage, calls interleaved one by one;
* a read's p50 in ``shadow`` with sample rate 1.0 against ``off`` (target <= 1.05x): the
  50-message history page, interleaved the same way; the shadow reads run in the background;
* the secondary lag's p99 under 200 writes/s in ``dualwrite`` (target < 1 s).

    python bench/facade.py [--samples N] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
from typing import Any

from _common import Stat, conditions, print_table, save, servers, timed
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.backends.postgres import PostgresStore
from strangler.core.models import ChatSession, Message
from strangler.proxy import FacadeOptions, Stage
from strangler.runtime import assemble

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _msg(session: ChatSession, i: int) -> Message:
    return Message.new(
        session_id=session.id,
        sender="user",
        content={"type": "conversation", "text": f"bench {i} " + "lorem " * 10},
    )


async def interleave(pairs: list[tuple[str, Any]], samples: int) -> dict[str, Stat]:
    stats = {name: Stat(name) for name, _ in pairs}
    for i in range(samples):
        for name, fn in pairs:
            await timed(stats[name], lambda fn=fn, i=i: fn(i))
    for st in stats.values():
        st.wall = sum(st.samples)
    return stats


async def paced_lag(facade: Any, session: ChatSession, rate: float, seconds: float) -> Stat:
    """Writes at ``rate``/s for ``seconds``; returns the secondary-lag samples."""
    facade.metrics.recent_lag.clear()
    stat = Stat(f"dualwrite add_message at {rate:g}/s (request latency)")
    tasks: set[asyncio.Task[Any]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = int(rate * seconds)
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        task = loop.create_task(timed(stat, lambda i=i: facade.add_message(_msg(session, i))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    stat.wall = loop.time() - start
    return stat


async def main(args: argparse.Namespace) -> int:
    with servers() as (mongo_server, pg_server):
        await schema.apply(pg_server.dsn)
        async with (
            MongoStore(mongo_server.uri, database="bench") as old,
            PostgresStore(pg_server.dsn, max_size=32) as new,
            assemble(old, new, FacadeOptions(stage=Stage.OFF)) as off,
            assemble(old, new, FacadeOptions(stage=Stage.DUALWRITE)) as dual,
            assemble(old, new, FacadeOptions(stage=Stage.SHADOW, shadow_sample_rate=1.0)) as shadow,
        ):
            await old.ensure_indexes()
            s = ChatSession.new(title="bench", user_id="bench", created_at=T0)
            await dual.create_session(s)
            await dual.upsert_messages(
                [
                    Message.new(
                        session_id=s.id,
                        sender="user",
                        content={"type": "conversation", "text": str(i)},
                        timestamp=T0 + dt.timedelta(seconds=i),
                    )
                    for i in range(200)
                ]
            )
            # Writes: the same operation through each stage, one call each in turn, into a
            # session of their own so the read test pages a 200-message session.
            ws = ChatSession.new(title="writes", user_id="bench")
            await dual.create_session(ws)
            writes = await interleave(
                [
                    ("add_message off", lambda i: off.add_message(_msg(ws, i))),
                    ("add_message dualwrite", lambda i: dual.add_message(_msg(ws, i))),
                ],
                args.samples,
            )
            # Warm both paths, then reads: history page, off vs shadow at sample rate 1.0.
            for _ in range(20):
                await off.history(s.id)
                await shadow.history(s.id)
            reads = await interleave(
                [
                    ("history off", lambda i: off.history(s.id)),
                    ("history shadow (sample 1.0)", lambda i: shadow.history(s.id)),
                ],
                args.samples,
            )
            await shadow.shadow.drain()
            dropped = shadow.metrics.shadow_dropped._value.get()
            consistency = shadow.metrics.consistency_rate()
            lag_session = ChatSession.new(title="lag", user_id="bench")
            await dual.create_session(lag_session)
            paced = await paced_lag(dual, lag_session, args.rate, args.seconds)
            lag = sorted(dual.metrics.recent_lag)
    rows = [st.row() for st in [*writes.values(), *reads.values(), paced]]
    print_table(rows)
    w = writes["add_message dualwrite"].p50 / writes["add_message off"].p50
    r = reads["history shadow (sample 1.0)"].p50 / reads["history off"].p50
    lag_p99 = lag[min(len(lag) - 1, int(len(lag) * 0.99))] if lag else float("nan")
    lag_p50 = statistics.median(lag) if lag else float("nan")
    ratios = {
        "write p50 dualwrite / off": w,
        "read p50 shadow(1.0) / off": r,
        "secondary lag p99 at rate (s)": lag_p99,
        "secondary lag p50 at rate (s)": lag_p50,
    }
    print("\nratios (side by side in this run):")
    print(
        f"  write p50, dualwrite / off            {w:6.2f}x  target <= 1.3x  "
        f"{'MET' if w <= 1.3 else 'MISSED'}"
    )
    print(
        f"  read p50, shadow(1.0) / off           {r:6.2f}x  target <= 1.05x "
        f"{'MET' if r <= 1.05 else 'MISSED'}  (shadow reads dropped: {dropped:.0f}, "
        f"consistency {consistency})"
    )
    print(
        f"  secondary lag at {args.rate:g} writes/s      p50 {lag_p50 * 1000:.2f} ms, "
        f"p99 {lag_p99 * 1000:.2f} ms ({len(lag)} samples)  target p99 < 1 s "
        f"{'MET' if lag_p99 < 1 else 'MISSED'}"
    )
    path = save("facade", {"conditions": conditions(), "rows": rows, "ratios": ratios})
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
