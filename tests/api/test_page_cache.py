"""The page caches (``STRANGLER_PAGE_CACHE_SECONDS``), of history pages and of session
lists: a page is served again only until something changes its session (or its user's
sessions), on this instance at once and on others within moments; never where reads come
from MongoDB or are compared, nor while realtime events stall."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from strangler.api.keys import HISTORY_CACHE, HUB, SESSION_LIST_CACHE
from strangler.api.page_cache import PageCache, Span, Ticket
from strangler.core.stages import Stage
from tests.api.conftest import ApiFactory, as_user

ALICE = as_user("alice")
PAGE = (None, None, 50)
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def _at(seconds: int, n: int = 1) -> tuple[dt.datetime, uuid.UUID]:
    return (T0 + dt.timedelta(seconds=seconds), uuid.UUID(int=n))


@dataclass
class Listener:
    listening: bool = True
    listen_epoch: int = 1


def _cache(ttl: float = 60, max_bytes: int = 1 << 20) -> tuple[PageCache, Listener]:
    listener = Listener()
    return PageCache(ttl, max_bytes, listening=listener), listener


EVERYTHING = Span(None, None)


def _fill(
    cache: PageCache,
    sid: uuid.UUID,
    body: bytes,
    stage: Stage = Stage.COMPLETE,
    span: Span = EVERYTHING,
    page: tuple[str | None, str | None, int] = PAGE,
) -> bool:
    ticket = cache.get(stage, sid, page)
    assert isinstance(ticket, Ticket)
    return cache.put(ticket, body, span)


def test_a_page_is_served_again_until_its_session_changes() -> None:
    cache, _ = _cache()
    sid = uuid.uuid4()
    assert _fill(cache, sid, b"page-1")
    assert cache.get(Stage.COMPLETE, sid, PAGE) == b"page-1"
    assert cache.get(Stage.COMPLETE, sid, (None, None, 20)) != b"page-1"  # another page
    cache.invalidate(sid)
    assert isinstance(cache.get(Stage.COMPLETE, sid, PAGE), Ticket)


def test_a_fill_that_raced_a_change_is_not_kept() -> None:
    """Read before a message arrived, stored after: it would be stale until the TTL."""
    cache, _ = _cache()
    sid = uuid.uuid4()
    ticket = cache.get(Stage.COMPLETE, sid, PAGE)
    assert isinstance(ticket, Ticket)
    cache.invalidate(sid, (T0, uuid.uuid4()))  # the event for a message sent meanwhile
    assert not cache.put(ticket, b"stale", EVERYTHING)
    assert isinstance(cache.get(Stage.COMPLETE, sid, PAGE), Ticket)


def test_a_new_message_drops_only_the_pages_it_falls_into() -> None:
    """History is in time order and a message is appended, so the first pages of a long
    history stay cached while the last one (which it joins) goes."""
    cache, _ = _cache()
    sid = uuid.uuid4()
    first = Span.of_page(None, None, _at(0), _at(49), has_more=True)
    last = Span.of_page(_at(49), None, _at(50), _at(60), has_more=False)
    older = Span.of_page(None, _at(50), _at(40), _at(49), has_more=True)  # before= page
    assert _fill(cache, sid, b"first", span=first)
    assert _fill(cache, sid, b"last", span=last, page=("c49", None, 50))
    assert _fill(cache, sid, b"older", span=older, page=(None, "c50", 10))
    cache.invalidate(sid, _at(61))  # appended
    assert cache.get(Stage.COMPLETE, sid, PAGE) == b"first"
    assert cache.get(Stage.COMPLETE, sid, (None, "c50", 10)) == b"older"
    assert isinstance(cache.get(Stage.COMPLETE, sid, ("c49", None, 50)), Ticket)
    cache.invalidate(sid, _at(45, 7))  # a late one, inside both earlier pages
    assert isinstance(cache.get(Stage.COMPLETE, sid, PAGE), Ticket)
    assert isinstance(cache.get(Stage.COMPLETE, sid, (None, "c50", 10)), Ticket)


@pytest.mark.parametrize(
    ("span", "inside", "outside"),
    [
        pytest.param(Span.of_page(None, None, _at(0), _at(9), True), [_at(9), _at(-5)],
                     [_at(9, 2), _at(10)], id="first-page-with-more"),
        pytest.param(Span.of_page(_at(9), None, _at(10), _at(12), False), [_at(9, 2), _at(99)],
                     [_at(9), _at(5)], id="last-page"),
        pytest.param(Span.of_page(None, _at(20), _at(15), _at(19), True), [_at(15), _at(19, 9)],
                     [_at(15, 0), _at(20), _at(21)], id="before-page-with-more"),
        pytest.param(Span.of_page(None, _at(20), _at(1), _at(19), False), [_at(-9), _at(19)],
                     [_at(20), _at(30)], id="before-page-from-the-start"),
        pytest.param(Span.of_page(None, None, None, None, False), [_at(0)], [], id="empty"),
    ],
)  # fmt: skip
def test_a_pages_span_holds_exactly_the_positions_that_change_it(
    span: Span, inside: list[Any], outside: list[Any]
) -> None:
    assert all(span.holds(at) for at in inside)
    assert not any(span.holds(at) for at in outside)


@pytest.mark.parametrize("stage", ["off", "dualwrite", "shadow", "live"])
def test_stages_that_read_mongodb_or_compare_reads_never_use_it(stage: str) -> None:
    cache, _ = _cache()
    assert cache.get(Stage(stage), uuid.uuid4(), PAGE) is None


def test_off_at_zero_seconds_and_while_realtime_events_are_not_flowing() -> None:
    off, _ = _cache(ttl=0)
    assert off.get(Stage.COMPLETE, uuid.uuid4(), PAGE) is None
    cache, listener = _cache()
    sid = uuid.uuid4()
    assert _fill(cache, sid, b"page")
    listener.listening = False  # LISTEN dropped: another instance's change may be missed
    assert cache.get(Stage.COMPLETE, sid, PAGE) is None
    listener.listening, listener.listen_epoch = True, 2  # back, but events were missed
    assert isinstance(cache.get(Stage.COMPLETE, sid, PAGE), Ticket)


def test_pages_expire_and_the_byte_budget_evicts_the_least_recent_session() -> None:
    cache, _ = _cache(ttl=0.05, max_bytes=10)
    a, b = uuid.uuid4(), uuid.uuid4()
    assert _fill(cache, a, b"aaaaaa") and _fill(cache, b, b"bbbbbb")
    assert isinstance(cache.get(Stage.COMPLETE, a, PAGE), Ticket)  # evicted: over 10 bytes
    assert cache.get(Stage.COMPLETE, b, PAGE) == b"bbbbbb"
    time.sleep(0.06)
    assert isinstance(cache.get(Stage.COMPLETE, b, PAGE), Ticket)


async def _page(client: Any, sid: str) -> list[str]:
    resp = await client.get(f"/sessions/{sid}/messages?limit=50", headers=ALICE)
    assert resp.status == 200
    return [m["content"]["text"] for m in (await resp.json())["items"]]


async def _send(client: Any, sid: str, text: str) -> None:
    resp = await client.post(
        f"/sessions/{sid}/messages",
        json={"content": {"type": "conversation", "text": text}},
        headers=ALICE,
    )
    assert resp.status == 201


async def _listening(client: Any) -> None:
    for _ in range(100):
        if client.app[HUB].listening:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the realtime listener did not connect")


async def _settled(*clients: Any) -> None:
    """Every instance has taken in every event so far (a late event for a message a page
    already shows drops that page once more: harmless, but a miss the test would count)."""
    for client in clients:
        hub = client.app[HUB]
        last = await hub.event_log.last_event_id()
        for _ in range(100):
            if hub._last >= last:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the hub did not catch up with the event log")


def _lookups(client: Any, result: str, key: Any = HISTORY_CACHE) -> float:
    value = client.app[key].lookups.labels(result)._value.get()
    assert isinstance(value, float)
    return value


async def test_over_http_this_instance_reads_its_own_writes(make_api: ApiFactory) -> None:
    api = await make_api("complete", page_cache_seconds=60)
    await _listening(api)
    sid = (await (await api.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(api, sid, "one")
    await _settled(api)
    assert await _page(api, sid) == ["one"]
    assert await _page(api, sid) == ["one"]
    assert _lookups(api, "hit") == 1
    await _send(api, sid, "two")
    assert await _page(api, sid) == ["one", "two"]  # no wait: dropped before the 201
    message = await (await api.get(f"/sessions/{sid}/messages", headers=ALICE)).json()
    await api.delete(f"/messages/{message['items'][0]['id']}", headers=ALICE)
    assert await _page(api, sid) == ["two"]


async def test_over_http_another_instances_write_drops_the_page_within_a_second(
    make_api: ApiFactory,
) -> None:
    a = await make_api("complete", page_cache_seconds=60)
    b = await make_api("complete", page_cache_seconds=60)
    await _listening(a)
    await _listening(b)
    sid = (await (await a.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(a, sid, "one")
    await _settled(a, b)
    assert await _page(b, sid) == ["one"]
    assert await _page(b, sid) == ["one"] and _lookups(b, "hit") == 1  # b holds the page
    await _send(a, sid, "two")
    deadline = time.monotonic() + 1.0
    while await _page(b, sid) != ["one", "two"]:
        assert time.monotonic() < deadline, "instance b still serves the old page after 1 s"
        await asyncio.sleep(0.02)


async def test_over_http_the_cache_is_not_used_in_dualwrite(make_api: ApiFactory) -> None:
    api = await make_api("dualwrite", page_cache_seconds=60)
    sid = (await (await api.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(api, sid, "one")
    await _page(api, sid)
    await _page(api, sid)
    assert _lookups(api, "bypass") == 2 and _lookups(api, "hit") == 0


async def _titles(client: Any) -> list[str]:
    resp = await client.get("/sessions?limit=20", headers=ALICE)
    assert resp.status == 200
    return [s["title"] for s in (await resp.json())["items"]]


async def test_over_http_session_lists_follow_this_instances_writes(
    make_api: ApiFactory,
) -> None:
    api = await make_api("complete")  # the cache is on by default
    await _listening(api)
    a = (await (await api.post("/sessions", json={"title": "a"}, headers=ALICE)).json())["id"]
    await _settled(api)
    assert await _titles(api) == ["a"]
    assert await _titles(api) == ["a"]
    assert _lookups(api, "hit", SESSION_LIST_CACHE) == 1
    await api.post("/sessions", json={"title": "b"}, headers=ALICE)
    assert await _titles(api) == ["b", "a"]  # no wait: dropped before the 201
    await api.patch(f"/sessions/{a}", json={"title": "a2"}, headers=ALICE)
    assert await _titles(api) == ["b", "a2"]
    await api.delete(f"/sessions/{a}", headers=ALICE)
    assert await _titles(api) == ["b"]
    bob = await api.get("/sessions?limit=20", headers=as_user("bob"))
    assert (await bob.json())["items"] == []  # a list is one user's


async def test_over_http_another_instances_new_session_shows_within_a_second(
    make_api: ApiFactory,
) -> None:
    a = await make_api("complete")
    b = await make_api("complete")
    await _listening(a)
    await _listening(b)
    await a.post("/sessions", json={"title": "one"}, headers=ALICE)
    await _settled(a, b)
    assert await _titles(b) == ["one"]
    assert await _titles(b) == ["one"] and _lookups(b, "hit", SESSION_LIST_CACHE) == 1
    await a.post("/sessions", json={"title": "two"}, headers=ALICE)
    deadline = time.monotonic() + 1.0
    while await _titles(b) != ["two", "one"]:
        assert time.monotonic() < deadline, "instance b still serves the old list after 1 s"
        await asyncio.sleep(0.02)


def test_expired_pages_and_old_generations_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache holds what is alive, not its budget's worth of expired pages; and a
    scope's generation is forgotten a while after its last change, without letting a
    fill that raced a change keep its page."""
    from strangler.api import page_cache

    clock = [1000.0]
    monkeypatch.setattr(page_cache.time, "monotonic", lambda: clock[0])
    cache, _ = _cache(ttl=10, max_bytes=1 << 20)
    old = [uuid.uuid4() for _ in range(50)]
    for sid in old:
        assert _fill(cache, sid, b"x" * 100)
        cache.invalidate(uuid.uuid4())  # another session changed
    assert cache._bytes == 5000 and len(cache._generations) == 50
    clock[0] += 11  # every page has expired
    racing = cache.get(Stage.COMPLETE, old[0], PAGE)  # a fill begins...
    assert isinstance(racing, Ticket)
    cache.invalidate(old[0])  # ...and its session changes meanwhile
    assert _fill(cache, uuid.uuid4(), b"y" * 100)
    assert cache._bytes == 100 and len(cache._pages) == 1  # the expired 50 are gone
    clock[0] += page_cache.GENERATION_SECONDS + 1
    assert _fill(cache, uuid.uuid4(), b"z")
    assert len(cache._generations) == 0  # all forgotten
    assert not cache.put(racing, b"stale")  # the raced fill is still refused


def test_owners_let_expired_entries_go(monkeypatch: pytest.MonkeyPatch) -> None:
    from strangler.api import owners

    clock = [1000.0]
    monkeypatch.setattr(owners.time, "monotonic", lambda: clock[0])
    cache = owners.Owners(ttl=30)
    first = [uuid.uuid4() for _ in range(100)]
    for sid in first:
        cache.put(sid, "alice")
    clock[0] += 20
    cache.put(first[0], "alice")  # refreshed: it lives on
    clock[0] += 15
    latest = uuid.uuid4()
    cache.put(latest, "bob")
    assert cache.get(first[0]) == "alice" and cache.get(latest) == "bob"
    assert len(cache._owners) == 2  # the 99 expired ones are gone
