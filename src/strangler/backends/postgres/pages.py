"""History pages rendered as JSON by Postgres: the uncached read path at ``rampdown`` and
``complete``.

``PostgresStore.history`` hands back ``Message`` records, which the API then renders one by
one (``api.chat.record_json``). For a 50-message page that is most of the request's time
in Python: decoding 50 rows and their ``jsonb``, building the records, and encoding them
again. Where Postgres serves reads and nothing compares them (``DualWriteStore.
rendered_history``), the page is instead rendered by Postgres in the same query, and the
API only wraps the bytes it gets back.

The JSON is ``record_json``'s, item for item: the same keys in the same order, timestamps
as ISO 8601 UTC with milliseconds and a ``Z``, ``content`` as stored. Two things differ in
form only, not in value: ``content`` comes in Postgres' ``jsonb`` text form (a space after
``:`` and ``,``, keys ordered by length), and a number keeps the form Postgres stores it in
(``1e2`` reads back as ``100``). ``tests/backends/test_postgres_pages.py`` checks that the
two parse to equal values.
"""

from __future__ import annotations

from strangler.backends.postgres.store import PostgresStore
from strangler.backends.validation import check_limit
from strangler.core import ids
from strangler.core.errors import InvalidInput
from strangler.core.ids import IdLike
from strangler.core.normalize import utc_ms
from strangler.core.records import Keyset, RenderedPage

#: One message as ``record_json`` renders it, from a row of the window ``w`` (``_query``).
_ITEM = (
    """'{"id":"' || w.id || '","session_id":"' || w.session_id"""
    """ || '","sender":' || coalesce(to_json(w.sender)::text, 'null')"""
    """ || ',"content":' || coalesce(w.content::text, 'null')"""
    """ || ',"timestamp":"' || to_char(w.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
    """ || '","audio":' || coalesce(to_json(w.audio)::text, 'null')"""
    """ || ',"image":' || coalesce(to_json(w.image)::text, 'null')"""
    """ || ',"pdf":' || coalesce(to_json(w.pdf)::text, 'null') || '}'"""
)


def _query(where: str, order: str, order_w: str) -> str:
    """``where`` and ``order`` pick the rows (``$3``, ``$4``: the cursor), ``order_w`` is
    ``order`` over the window's columns; ``$2`` is the page size. The window holds one row
    more than the page, which says whether more lie beyond it."""
    return (
        "WITH w AS (SELECT id, session_id, sender, content,"
        " timestamp AS t, audio, image, pdf"
        f" FROM messages WHERE session_id = $1{where} ORDER BY {order} LIMIT $2 + 1),"
        f" p AS (SELECT * FROM w ORDER BY {order_w} LIMIT $2)"
        " SELECT (SELECT count(*) FROM w) > $2,"
        " convert_to('[' || coalesce(string_agg(" + _ITEM + ", ',' ORDER BY w.t, w.id), '')"
        " || ']', 'UTF8'),"
        " (array_agg(w.t ORDER BY w.t, w.id))[1], (array_agg(w.id ORDER BY w.t, w.id))[1],"
        " (array_agg(w.t ORDER BY w.t DESC, w.id DESC))[1],"
        " (array_agg(w.id ORDER BY w.t DESC, w.id DESC))[1]"
        " FROM p AS w"
    )


_FORWARD = "timestamp, id"
_BACKWARD = "timestamp DESC, id DESC"
_QUERIES = {
    "first": _query("", _FORWARD, "t, id"),
    "after": _query(" AND (timestamp, id) > ($3, $4)", _FORWARD, "t, id"),
    "before": _query(" AND (timestamp, id) < ($3, $4)", _BACKWARD, "t DESC, id DESC"),
}


async def history_json(
    store: PostgresStore,
    session_id: IdLike,
    *,
    limit: int = 50,
    after: Keyset | None = None,
    before: Keyset | None = None,
) -> RenderedPage:
    """The page ``store.history`` would give for these arguments, rendered by Postgres.
    Errors as ``PostgresStore.history``."""
    sid = ids.parse_id(session_id, field="session_id")
    limit = check_limit(limit)
    if after is not None and before is not None:
        raise InvalidInput("give either after or before, not both")
    cursor = after or before
    which = "after" if after is not None else "before" if before is not None else "first"
    args = () if cursor is None else (cursor.at, cursor.id)
    async with store.connection("history") as conn:
        row = await conn.fetchrow(_QUERIES[which], sid, limit, *args)
    assert row is not None  # an aggregate always gives one row
    has_more, items, first_at, first_id, last_at, last_id = row
    return RenderedPage(
        items=items,
        has_more=has_more,
        first=None if first_id is None else (utc_ms(first_at), first_id),
        last=None if last_id is None else (utc_ms(last_at), last_id),
    )


class PostgresPages:
    """``HistoryRenderer`` over a Postgres store: ``history_json`` bound to it."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def history_json(
        self,
        session_id: IdLike,
        *,
        limit: int = 50,
        after: Keyset | None = None,
        before: Keyset | None = None,
    ) -> RenderedPage:
        return await history_json(self._store, session_id, limit=limit, after=after, before=before)
