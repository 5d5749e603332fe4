"""``strangler schema print|apply``: the Supabase schema from ``supabase/migrations``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from strangler import schema
from strangler.config import Settings
from strangler.core.errors import ConfigError

if TYPE_CHECKING:
    from strangler.operate.common import Subparsers


def add_parser(sub: Subparsers) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
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
