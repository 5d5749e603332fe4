"""The ``strangler`` subcommands, one module each.

Every module has ``add_parser(subparsers)``, which declares the command's arguments and
help and sets ``func`` to its ``run(args, settings) -> exit code``. The jobs use the same
composition root as the API (``strangler.runtime``); ``strangler.cli`` only parses,
configures logging and turns errors into exit codes.
"""

from strangler.operate import (
    backfill,
    demo,
    follow,
    partitions,
    repair,
    schema,
    serve,
    stage,
    tombstones,
    verify,
)

#: In the order ``strangler --help`` lists them.
COMMANDS = (schema, serve, demo, stage, follow, verify, repair, tombstones, backfill, partitions)

__all__ = ["COMMANDS"]
