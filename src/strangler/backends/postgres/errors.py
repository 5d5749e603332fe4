"""asyncpg's failures in the errors tree: the Postgres backend's one error table.

Server errors carry a SQLSTATE, read with the policy shared by every Postgres backend
(``backends.errors.sqlstate_failure``); a socket, timeout or protocol failure means the
server cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from strangler.backends.errors import Failure, raise_failure, sqlstate_failure

STORE = "postgres"
SETTING = "SUPABASE_DB_URL"

#: Failures before or outside a server answer: the server is unreachable or went away.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
)


def failure_of(exc: BaseException) -> tuple[Failure, str]:
    """What ``exc`` means, and the detail a message should carry."""
    if isinstance(exc, asyncpg.PostgresError):
        code = exc.sqlstate or ""
        return sqlstate_failure(code), f"{code}: {exc}"
    if isinstance(exc, UNREACHABLE):
        return Failure.UNAVAILABLE, type(exc).__name__
    return Failure.FAILED, f"{type(exc).__name__}: {exc}"


@contextmanager
def translate_errors(op: str) -> Iterator[None]:
    """Turn asyncpg and socket errors into the errors tree, chained, naming the operation."""
    try:
        yield
    except (asyncpg.PostgresError, *UNREACHABLE) as exc:
        failure, detail = failure_of(exc)
        raise_failure(failure, store=STORE, op=op, detail=detail, setting=SETTING, cause=exc)
