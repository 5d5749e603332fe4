"""The errors every part of strangler raises.

Nothing above ``strangler.backends`` sees a driver exception (pymongo, asyncpg,
httpx/postgrest): each store translates them at its boundary and chains the
original with ``raise ... from e``.

The tree::

    StranglerError
    ├── StoreError                a store could not do what was asked
    │   ├── StoreUnavailable      the server is unreachable, timed out or refused (HTTP 503)
    │   │   └── StoreMisconfigured  it refused our credentials or permissions: a setting to fix
    │   ├── Conflict              the id already exists, or a constraint forbids it (HTTP 409)
    │   ├── NotFound              the record (or the session it needs) does not exist (HTTP 404)
    │   ├── PositionLost          a change feed can no longer resume from its saved position
    │   └── CorruptRecord         a stored document cannot be read as a domain record
    ├── InvalidInput              the caller's input is wrong; ``.errors`` says where (HTTP 400/422)
    │   └── PayloadTooLarge       a value is over a configured size limit (HTTP 413)
    ├── DivergenceError           the two stores disagree where they must agree
    └── ConfigError               the settings are incomplete or contradict each other
"""

from __future__ import annotations

from typing import Any


class StranglerError(Exception):
    """The root of every error strangler raises on purpose."""

    #: A stable, machine-readable code (used by the HTTP problem details).
    code = "strangler_error"


class ConfigError(StranglerError):
    """The settings are incomplete or contradict each other."""

    code = "config_error"


class NotConfigured(ConfigError):
    """A feature this deployment's settings leave out (for example strangler's own tables
    over Supabase's REST API alone); the message says which setting turns it on. The API
    answers 501, the CLI exits 2."""

    code = "not_configured"


class StoreError(StranglerError):
    """A store could not carry out an operation."""

    code = "store_error"

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        self.store = store


class StoreUnavailable(StoreError):
    """The server is unreachable, timed out, or is refusing work. Retrying later may succeed."""

    code = "store_unavailable"


class StoreMisconfigured(StoreUnavailable, ConfigError):
    """The store refused strangler's credentials or permissions (a wrong password, a key
    without the needed role, a database that does not exist). Nothing works until a setting
    is fixed, and the message names it. It is both unavailable (the API answers 503, a job
    stops) and a configuration error (the CLI exits 2)."""

    code = "store_misconfigured"


class Conflict(StoreError):
    """The record already exists, or a constraint forbids the change."""

    code = "conflict"


class EvidenceMissing(Conflict):
    """A stage move refused: the records do not show what it needs (``core.evidence``).
    ``checks`` lists every piece of evidence the move needs, met or not, as JSON objects
    (``key``, ``need``, ``ok``, ``found``, ``fix``)."""

    code = "evidence_missing"

    def __init__(self, message: str, *, checks: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.checks = checks


class ConfirmationRequired(Conflict):
    """A move that cannot be undone cleanly (to ``decommissioned``) was asked for without
    the explicit confirmation it needs; the message says what it does and how to confirm."""

    code = "confirmation_required"


class NotFound(StoreError):
    """The record, or a record it refers to, does not exist."""

    code = "not_found"


class PositionLost(StoreError):
    """A change feed cannot resume from the saved position: the history rolled past it, or
    the position belongs to another deployment. Changes may have been missed, so the
    follower stops (``stale``) until an operator verifies, repairs and restarts it."""

    code = "position_lost"


class CorruptRecord(StoreError):
    """A stored document cannot be presented as a domain record (the backfill quarantines it).

    ``reasons`` holds the reason codes (``sender_invalid``, ``id_unmappable``, ...).
    """

    code = "corrupt_record"

    def __init__(
        self, message: str, *, store: str | None = None, reasons: list[str] | None = None
    ) -> None:
        super().__init__(message, store=store)
        self.reasons = reasons or []


class InvalidInput(StranglerError):
    """The caller's input is invalid.

    ``errors`` is a list of ``{"loc": [...], "msg": str, "type": str}`` entries, the same
    shape pydantic uses, so an API can return field-level detail.
    """

    code = "invalid_input"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class PayloadTooLarge(InvalidInput):
    """A value is over a configured size limit."""

    code = "payload_too_large"


class DivergenceError(StranglerError):
    """The two stores disagree where the stage requires them to agree."""

    code = "divergence"


class Unauthorized(StranglerError):
    """The request carries no valid credentials."""

    code = "unauthorized"


class Forbidden(StranglerError):
    """The credentials are valid but do not allow this."""

    code = "forbidden"
