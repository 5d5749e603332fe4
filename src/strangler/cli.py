"""The ``strangler`` command: a thin entry point over the subcommands in ``operate/``.

It builds ``Settings()`` once, configures logging, runs one subcommand and turns
strangler's errors into a one-line message and an exit code, never a traceback.

Exit codes: 0 success, 1 the job ran and found a problem, 2 bad usage or settings,
3 a store was unavailable, 4 a stage move refused for missing evidence or confirmation,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from strangler import __version__, logs
from strangler.config import Settings
from strangler.core.errors import (
    ConfigError,
    ConfirmationRequired,
    EvidenceMissing,
    InvalidInput,
    StoreUnavailable,
    StranglerError,
)

EPILOG = """\
environment:
  MONGO_URI           the app's MongoDB (the old store)
  SUPABASE_DB_URL     Supabase's Postgres URL (the new store)
  SUPABASE_URL, SUPABASE_KEY   Supabase's REST API and service-role key
  STRANGLER_*         strangler's own settings (see README.md)

Run 'strangler COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``strangler`` parser: each subcommand declares itself (``strangler.operate``)."""
    from strangler.operate import COMMANDS

    parser = argparse.ArgumentParser(
        prog="strangler",
        description="Move a live chat app from MongoDB to Supabase without downtime or data "
        "loss: a dual-write proxy, backfill, verify and repair.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"strangler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
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
    except (EvidenceMissing, ConfirmationRequired) as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 4
    except StranglerError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
