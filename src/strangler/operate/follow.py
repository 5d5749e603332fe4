"""``strangler follow status|reset``: the change followers, shared by every instance."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import TYPE_CHECKING

from strangler.config import Settings
from strangler.core.errors import ConfigError, InvalidInput
from strangler.core.records import follower_summary
from strangler.operate.common import origin
from strangler.proxy.follower import DIRECTIONS
from strangler.runtime import Runtime

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers

NAMES = tuple(d.name for d in DIRECTIONS)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "follow",
        help="show or reset the change followers (writes that bypass the facade)",
        description="A follower copies every change made to one store into the other, whoever "
        "made it: 'forward' follows MongoDB's change stream into Supabase while MongoDB is "
        "authoritative (dualwrite, shadow). One follower leads across all instances of "
        "'strangler serve'. 'status' shows each follower's state, leader, position and "
        "counts. A follower that lost its position is 'stale' and stops: 'reset' it to "
        "follow from now, then run 'strangler verify' and 'strangler repair' for what it "
        "missed before (in that order, so nothing falls between the two).",
    )
    p.add_argument("action", choices=["status", "reset"])
    p.add_argument("follower", nargs="?", choices=NAMES, help="with 'reset': which follower")
    p.add_argument("--json", action="store_true", help="with 'status': machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "status":
        return asyncio.run(status(settings, as_json=args.json))
    if not args.follower:
        raise InvalidInput(f"strangler follow reset needs a FOLLOWER ({', '.join(NAMES)})")
    return asyncio.run(reset(settings, args.follower))


def _age(at: dt.datetime | None) -> str:
    if at is None:
        return "never"
    seconds = (dt.datetime.now(dt.UTC) - at).total_seconds()
    return f"{seconds:,.1f}s ago"


async def status(settings: Settings, *, as_json: bool) -> int:
    async with Runtime.open(settings, start=False) as runtime:
        records = {name: await runtime.followers.load(name) for name in NAMES}
    now = dt.datetime.now(dt.UTC)
    out = {name: follower_summary(r, now) for name, r in records.items()}
    #: Exit 1 when a follower is stale, in both forms: a script can alert on it.
    stale = [n for n, i in out.items() if i["state"] == "stale"]
    if as_json:
        print(json.dumps(out, indent=2))
        return 1 if stale else 0
    for name, info in out.items():
        r = records[name]
        print(f"{name}: {info['state']}" + (f" ({info['reason']})" if info["reason"] else ""))
        print(f"  leader: {info['leader'] or 'none (no instance is following now)'}")
        if r is not None:
            print(
                f"  position saved {_age(r.updated_at)}; last change {_age(r.position_at)}; "
                f"applied {r.applied:,}, bypass writes {r.bypass:,}, reported {r.reported:,}"
            )
    return 1 if stale else 0


async def reset(settings: Settings, name: str) -> int:
    """Follow from now: the position is the feed's latest, the state running."""
    async with Runtime.open(settings, start=False) as runtime:
        feed = runtime.feeds.get(name)
        if feed is None:
            raise ConfigError(
                f"the {name} follower reads "
                + ("MongoDB's change stream: set MONGO_URI" if name == "forward" else "")
                + ("Postgres's change log: set SUPABASE_DB_URL" if name == "reverse" else "")
                + " (once the migration is decommissioned, no follower runs)"
            )
        position = await feed.position_now()
        await runtime.followers.reset(name, position)
    print(
        f"follower {name} now follows from {position.get('at')} (reset by {origin()}); "
        "changes made before then are for verify and repair to find"
    )
    return 0
