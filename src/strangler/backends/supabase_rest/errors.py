"""PostgREST's and httpx's failures in the errors tree: the REST backend's one error table.

PostgREST passes Postgres' SQLSTATE through in ``code``, read with the policy every
Postgres backend shares (``backends.errors.sqlstate_failure``), so a failure means the same
over REST as over asyncpg. Its own ``PGRST`` codes and the HTTP status say the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson
from postgrest.exceptions import APIError
from pydantic import ValidationError

from strangler.backends.errors import Failure, raise_failure, sqlstate_failure

STORE = "supabase"
SETTING = "SUPABASE_URL and SUPABASE_KEY (the service-role key)"

#: PostgREST's own error codes (https://postgrest.org/en/stable/references/errors.html).
_PGRST = {
    "PGRST000": Failure.UNAVAILABLE,  # cannot connect to the database
    "PGRST001": Failure.UNAVAILABLE,  # internal connection error
    "PGRST002": Failure.UNAVAILABLE,  # the schema cache is being built
    "PGRST003": Failure.UNAVAILABLE,  # timed out waiting for a pool connection
    "PGRST106": Failure.MISCONFIGURED,  # the schema is not exposed
    "PGRST200": Failure.MISCONFIGURED,  # a relationship is missing from the schema cache
    "PGRST202": Failure.MISCONFIGURED,  # a function is missing from the schema cache
    "PGRST205": Failure.MISCONFIGURED,  # a table is missing from the schema cache
    "PGRST300": Failure.MISCONFIGURED,  # the server's JWT secret is not set
    "PGRST301": Failure.MISCONFIGURED,  # the key (JWT) is invalid or expired
    "PGRST302": Failure.MISCONFIGURED,  # anonymous access is disabled: no key sent
}


def _status_failure(status: int) -> Failure:
    if status in (401, 403):
        return Failure.MISCONFIGURED
    if status == 413:
        return Failure.TOO_LARGE
    if status == 409:
        return Failure.CONFLICT
    if status in (408, 429) or status >= 500:
        return Failure.UNAVAILABLE
    return Failure.FAILED


def failure_of(exc: BaseException) -> tuple[Failure, str]:
    """What ``exc`` means, and the detail a message should carry."""
    if isinstance(exc, APIError):
        code = str(exc.code) if exc.code is not None else ""
        detail = f"{code or 'no code'}: {exc.message or exc}"
        if code in _PGRST:
            return _PGRST[code], detail
        if len(code) == 3 and code.isdigit():  # no PostgREST body: the HTTP status
            return _status_failure(int(code)), detail
        if len(code) == 5 and not code.startswith("PGRST"):  # a Postgres SQLSTATE
            return sqlstate_failure(code), detail
        return Failure.FAILED, detail
    if isinstance(exc, (httpx.TransportError, httpx.TimeoutException)):
        return Failure.UNAVAILABLE, f"REST API unreachable: {type(exc).__name__}: {exc}"
    if isinstance(exc, (json.JSONDecodeError, orjson.JSONDecodeError, ValidationError)):
        # A proxy's error page, a gateway timeout: the REST API is not answering itself.
        return Failure.UNAVAILABLE, f"the REST API answered something that is not JSON ({exc})"
    return Failure.FAILED, f"{type(exc).__name__}: {exc}"


@contextmanager
def translate_errors(op: str) -> Iterator[None]:
    """PostgREST and transport errors → the errors tree, naming the operation."""
    try:
        yield
    except (
        APIError,
        httpx.TransportError,
        httpx.TimeoutException,
        json.JSONDecodeError,
        orjson.JSONDecodeError,
        ValidationError,
    ) as exc:
        failure, detail = failure_of(exc)
        raise_failure(failure, store=STORE, op=op, detail=detail, setting=SETTING, cause=exc)
