"""One error policy for every backend: what a failure *means*, whichever driver saw it.

Each backend has one table from its driver's exceptions to a ``Failure`` (``mongo/
errors.py``, ``postgres/errors.py``, ``supabase_rest/errors.py``); this module decides what
each failure becomes in the errors tree, and how the message reads. So the same failure
means the same thing everywhere: a value out of range is ``InvalidInput`` over asyncpg and
over PostgREST alike, a refused password is ``StoreMisconfigured`` naming the setting to
fix, and only a store that cannot be reached (or is overloaded) is ``StoreUnavailable``.

Postgres reports SQLSTATE codes through asyncpg and through PostgREST, so both Postgres
backends share :func:`sqlstate_failure`.
"""

from __future__ import annotations

from enum import Enum
from typing import NoReturn

from strangler.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
)


class Failure(Enum):
    """What went wrong, independent of the driver that reported it."""

    #: The id exists already, or a unique constraint forbids the row.
    CONFLICT = "conflict"
    #: A row the write refers to (a message's session) does not exist.
    MISSING_REFERENCE = "missing_reference"
    #: The server refused the value: out of range, malformed, violates a check.
    INVALID = "invalid"
    #: The value is over the server's size limit.
    TOO_LARGE = "too_large"
    #: Wrong credentials, a role without the needed permission, a missing database or
    #: schema: nothing works until a setting is fixed.
    MISCONFIGURED = "misconfigured"
    #: Unreachable, timed out, shutting down, overloaded, or a transient conflict between
    #: transactions: retrying later may succeed.
    UNAVAILABLE = "unavailable"
    #: Anything else: a bug or a state we do not know, reported with the driver's words.
    FAILED = "failed"


def raise_failure(
    failure: Failure, *, store: str, op: str, detail: str, setting: str, cause: BaseException
) -> NoReturn:
    """Raise the errors-tree exception for ``failure``, chained to ``cause``.

    ``store`` names the backend in the message (``mongo``, ``postgres``, ``supabase``),
    ``setting`` the environment variable a misconfiguration is fixed in."""
    where = f"{store}: {op}"
    if failure is Failure.CONFLICT:
        raise Conflict(f"{where}: a record with this id already exists", store=store) from cause
    if failure is Failure.MISSING_REFERENCE:
        raise NotFound(f"{where}: the referenced session does not exist", store=store) from cause
    if failure is Failure.INVALID:
        raise InvalidInput(f"{where}: the server refused the value: {detail}") from cause
    if failure is Failure.TOO_LARGE:
        raise PayloadTooLarge(f"{where}: over the server's size limit: {detail}") from cause
    if failure is Failure.MISCONFIGURED:
        raise StoreMisconfigured(
            f"{where}: refused: {detail}; check {setting} (credentials, the role's "
            "permissions, the database name) and that the schema is applied "
            "('strangler schema apply')",
            store=store,
        ) from cause
    if failure is Failure.UNAVAILABLE:
        raise StoreUnavailable(f"{where}: server unavailable ({detail})", store=store) from cause
    raise StoreError(f"{where} failed: {detail}", store=store) from cause


#: SQLSTATE classes (the first two characters) and what they mean.
_SQLSTATE_CLASSES = {
    "08": Failure.UNAVAILABLE,  # connection exception
    "22": Failure.INVALID,  # data exception: out of range, bad format, too long for the column
    "28": Failure.MISCONFIGURED,  # invalid authorization: wrong user or password
    "3D": Failure.MISCONFIGURED,  # the database does not exist
    "3F": Failure.MISCONFIGURED,  # the schema does not exist
    "40": Failure.UNAVAILABLE,  # serialization failure, deadlock: retry
    "53": Failure.UNAVAILABLE,  # insufficient resources: too many connections, disk full
    "57": Failure.UNAVAILABLE,  # operator intervention: shutdown, query cancelled (timeout)
    "58": Failure.UNAVAILABLE,  # system error (I/O)
}
#: Single SQLSTATE codes, where the class alone does not say enough.
_SQLSTATES = {
    "23505": Failure.CONFLICT,  # unique violation
    "23503": Failure.MISSING_REFERENCE,  # foreign key violation
    "23502": Failure.INVALID,  # not null violation
    "23514": Failure.INVALID,  # check violation
    "42501": Failure.MISCONFIGURED,  # insufficient privilege
    "42P01": Failure.MISCONFIGURED,  # undefined table: the schema is not applied
    "42883": Failure.MISCONFIGURED,  # undefined function: the schema is not applied
    "54000": Failure.TOO_LARGE,  # program limit exceeded (a row or value over a limit)
}


def sqlstate_failure(code: str) -> Failure:
    """What a Postgres SQLSTATE means (asyncpg and PostgREST both report them)."""
    if code in _SQLSTATES:
        return _SQLSTATES[code]
    return _SQLSTATE_CLASSES.get(code[:2], Failure.FAILED)
