"""State-based replication: make the target's copy of a record equal the source's.

``mirror`` reads the record from the source and writes that state (or its absence) to the
target, then reads the source again; if the source changed meanwhile it goes round again.
Because each writer re-reads after writing, the last one to write the target always writes
the final value, so concurrent updates converge; and because only the source's state is
copied, a replay can never create a write the source does not hold.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from strangler.core.errors import (
    CorruptRecord,
    DivergenceError,
    NotFound,
    StoreUnavailable,
    StranglerError,
)
from strangler.core.models import ChatSession, Message
from strangler.core.ports import BulkDeleter, BulkReader, ChatStore
from strangler.core.records import Table

MAX_ROUNDS = 5


async def read_state(store: ChatStore, table: Table, record_id: uuid.UUID) -> Any:
    """The record, or None when the store does not hold it."""
    try:
        if table == "chat_sessions":
            return await store.get_session(record_id)
        return await store.get_message(record_id)
    except NotFound:
        return None


async def apply_state(
    source: ChatStore, target: ChatStore, table: Table, record_id: uuid.UUID, state: Any
) -> None:
    """Write ``state`` (a record, or None for absent) into ``target``."""
    if state is None:
        try:
            if table == "chat_sessions":
                await target.delete_session(record_id)
            else:
                await target.delete_message(record_id)
        except NotFound:
            pass
        return
    if isinstance(state, ChatSession):
        await target.upsert_sessions([state])
        return
    assert isinstance(state, Message)
    try:
        await target.upsert_messages([state])
    except NotFound:
        # The target lacks the session: bring it over first (or learn that it is gone).
        await mirror(source, target, "chat_sessions", state.session_id)
        if await read_state(source, "chat_sessions", state.session_id) is None:
            if await read_state(source, table, record_id) is None:
                # Deleted with its session since ``state`` was read (a change stream's
                # document, or a first read): nothing to copy, and ``mirror``'s next read
                # finds the absence and copies that.
                return
            raise CorruptRecord(
                f"message {record_id} refers to session {state.session_id}, which the source "
                "does not hold either: an orphan that cannot be copied"
            ) from None
        await target.upsert_messages([state])


async def mirror(
    source: ChatStore, target: ChatStore, table: Table, record_id: uuid.UUID, *, known: Any = ...
) -> None:
    """Make ``target`` hold what ``source`` holds for the record (or nothing).

    ``known`` skips the first read when the caller already has the source's state. Raises
    ``DivergenceError`` if the source keeps changing, and the stores' errors as they come;
    the caller journals the record and replays it later.
    """
    state = await read_state(source, table, record_id) if known is ... else known
    for _ in range(MAX_ROUNDS):
        await apply_state(source, target, table, record_id, state)
        again = await read_state(source, table, record_id)
        if again == state:
            return
        state = again
    raise DivergenceError(f"{table} {record_id} kept changing while it was mirrored")


async def mirror_many(
    source: BulkReader,
    target: ChatStore,
    table: Table,
    record_ids: Sequence[uuid.UUID],
    *,
    deleter: BulkDeleter | None = None,
    why: Counter[str] | None = None,
    gone: set[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """``mirror`` for many records of one table in a few round trips, whatever their
    number: the source read in one query; the records it holds written in one upsert, and
    those it does not hold deleted in one go by ``deleter`` (the target's bulk delete,
    when the caller has one); the source read again. Returns the ids this could not settle, for
    ``mirror`` one by one: records the source cannot read, or changed (or brought back)
    meanwhile, deletes where the target cannot delete in bulk, and every written id when
    the target refused the batch (a value it rejects; messages whose sessions it lacks
    are written again once their sessions are brought over, in bulk too). Raises
    ``StoreUnavailable`` when either store is not answering. ``why`` counts, by reason,
    the ids left for one by one (``unreadable``, ``refused``, ``session_gone``,
    ``changed``, ``back``, ``no_bulk_delete``), for the caller's log; ``gone`` gets the
    ids the source did not hold."""
    why = Counter() if why is None else why
    states = await source.read_many(table, record_ids)
    if gone is not None:
        gone.update(i for i in record_ids if i not in states)
    held = {i: st for i, st in states.items() if not isinstance(st, CorruptRecord)}
    unreadable = [i for i in record_ids if isinstance(states.get(i), CorruptRecord)]
    absent = [i for i in record_ids if i not in states]
    rest = list(unreadable)
    why["unreadable"] += len(unreadable)
    if absent and deleter is not None:
        await deleter.delete_many(table, absent)
    else:
        rest += absent
        why["no_bulk_delete"] += len(absent)
        absent = []
    if held:
        try:
            records = list(held.values())
            if table == "chat_sessions":
                await target.upsert_sessions([r for r in records if isinstance(r, ChatSession)])
            else:
                await target.upsert_messages([r for r in records if isinstance(r, Message)])
        except StoreUnavailable:
            raise
        except StranglerError:
            orphaned: set[uuid.UUID] = set()
            if table == "messages":
                held, orphaned = await _with_sessions(source, target, held, deleter)
            else:
                held = {}
            refused = [i for i in states if i not in held and i not in unreadable]
            why["session_gone"] += len(orphaned)
            why["refused"] += len(refused) - len(orphaned)
            rest += refused
    if not held and not absent:
        return rest
    again = await source.read_many(table, [*held, *absent])
    changed = [i for i, st in held.items() if again.get(i) != st]
    back = [i for i in absent if i in again]
    why["changed"] += len(changed)
    why["back"] += len(back)
    return rest + changed + back


async def _with_sessions(
    source: BulkReader,
    target: ChatStore,
    held: dict[uuid.UUID, Any],
    deleter: BulkDeleter | None,
) -> tuple[dict[uuid.UUID, Any], set[uuid.UUID]]:
    """The target refused a batch of messages: most likely a session it lacks (created
    in an outage, its journal entry in a later batch). Bring the messages' sessions over
    in bulk and write the messages again. Returns the ones written (none if it is refused
    again: an orphan in the source, a value the target rejects; one by one, to find which)
    and the ones left out because their session is gone (none when all were refused).
    Messages whose session the source no longer holds (deleted since they were read:
    the load deletes sessions all along), or could not bring over, are not in the second
    write: one by one, each finds its own absence. (Once, after a 30 s hang, 281
    messages of a batch went one by one for that: 2.4 s of its 4 s. Before the sessions
    were brought over in bulk, 257 of a batch went one by one, 1.6 s of its 2.1 s.)"""
    sessions = list({m.session_id for m in held.values() if isinstance(m, Message)})
    gone: set[uuid.UUID] = set()
    left = await mirror_many(source, target, "chat_sessions", sessions, deleter=deleter, gone=gone)
    missing = gone | set(left)
    keep = {i: m for i, m in held.items() if m.session_id not in missing}
    try:
        await target.upsert_messages([m for m in keep.values() if isinstance(m, Message)])
    except StoreUnavailable:
        raise
    except StranglerError:
        return {}, set()  # all refused: counted as such
    return keep, {i for i in held if i not in keep}
