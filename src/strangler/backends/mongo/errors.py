"""PyMongo's failures in the errors tree: the MongoDB backend's one error table.

Server errors carry a numeric code (``OperationFailure.code``), read from ``_CODES``;
PyMongo's own exception types say the rest (a server it cannot select is unreachable, a
bad URI is a setting to fix). The meaning of each failure is the shared policy's
(``backends.errors``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from strangler.backends.errors import Failure, raise_failure

STORE = "mongo"
SETTING = "MONGO_URI"

#: MongoDB server error codes (src/mongo/base/error_codes.yml) and what they mean.
_CODES = {
    11000: Failure.CONFLICT,  # DuplicateKey
    11001: Failure.CONFLICT,  # DuplicateKey (legacy)
    13: Failure.MISCONFIGURED,  # Unauthorized: the user lacks a role
    18: Failure.MISCONFIGURED,  # AuthenticationFailed
    8000: Failure.MISCONFIGURED,  # AtlasError (bad credentials on Atlas)
    10334: Failure.TOO_LARGE,  # BSONObjectTooLarge
    17419: Failure.TOO_LARGE,  # the resulting document would be too large
    2: Failure.INVALID,  # BadValue
    14: Failure.INVALID,  # TypeMismatch
    50: Failure.UNAVAILABLE,  # MaxTimeMSExpired
    6: Failure.UNAVAILABLE,  # HostUnreachable
    7: Failure.UNAVAILABLE,  # HostNotFound
    89: Failure.UNAVAILABLE,  # NetworkTimeout
    91: Failure.UNAVAILABLE,  # ShutdownInProgress
    112: Failure.UNAVAILABLE,  # WriteConflict: retry
    189: Failure.UNAVAILABLE,  # PrimarySteppedDown
    262: Failure.UNAVAILABLE,  # ExceededTimeLimit
    10107: Failure.UNAVAILABLE,  # NotWritablePrimary
    11600: Failure.UNAVAILABLE,  # InterruptedAtShutdown
    11602: Failure.UNAVAILABLE,  # InterruptedDueToReplStateChange
    13435: Failure.UNAVAILABLE,  # NotPrimaryNoSecondaryOk
    13436: Failure.UNAVAILABLE,  # NotPrimaryOrSecondary
}


def _bulk_code(exc: BulkWriteError) -> int | None:
    """The first write error's code (a duplicate id is the one that matters)."""
    codes: list[Any] = [e.get("code") for e in exc.details.get("writeErrors", [])]
    if 11000 in codes:
        return 11000
    return codes[0] if codes else None


def failure_of(exc: BaseException) -> tuple[Failure, str]:
    """What ``exc`` means, and the detail a message should carry."""
    if isinstance(exc, DuplicateKeyError):
        return Failure.CONFLICT, "duplicate key"
    if isinstance(exc, BulkWriteError):
        code = _bulk_code(exc)
        return _CODES.get(code, Failure.FAILED) if code else Failure.FAILED, f"bulk write: {exc}"
    if isinstance(exc, DocumentTooLarge):
        return Failure.TOO_LARGE, "a document is over MongoDB's 16 MB limit"
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WTimeoutError, InvalidOperation)):
        # ServerSelectionTimeoutError is a ConnectionFailure: no server answered in time.
        return Failure.UNAVAILABLE, type(exc).__name__
    if isinstance(exc, ConfigurationError):
        return Failure.MISCONFIGURED, str(exc)
    if isinstance(exc, OperationFailure):
        return _CODES.get(exc.code or 0, Failure.FAILED), f"code {exc.code}: {exc.details}"
    return Failure.FAILED, f"{type(exc).__name__}: {exc}"


@contextmanager
def translate_errors(op: str) -> Iterator[None]:
    """Turn PyMongo errors into the errors tree, chained, naming the operation."""
    try:
        yield
    except PyMongoError as exc:
        failure, detail = failure_of(exc)
        raise_failure(failure, store=STORE, op=op, detail=detail, setting=SETTING, cause=exc)
