"""The history page cache (``STRANGLER_HISTORY_CACHE_SECONDS``): served again only until
something changes the session, on this instance at once and on others within moments;
never where reads come from MongoDB or are compared, nor while realtime events stall."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from strangler.api.history_cache import HistoryCache, Ticket
from strangler.api.keys import HISTORY_CACHE, HUB
from strangler.proxy.stages import Stage
from tests.api.conftest import ApiFactory, as_user

ALICE = as_user("alice")
PAGE = (None, None, 50)


@dataclass
class Listener:
    listening: bool = True
    listen_epoch: int = 1


def _cache(ttl: float = 60, max_bytes: int = 1 << 20) -> tuple[HistoryCache, Listener]:
    listener = Listener()
    return HistoryCache(ttl, max_bytes, listening=listener), listener


def _fill(cache: HistoryCache, sid: uuid.UUID, body: bytes, stage: Stage = Stage.COMPLETE) -> bool:
    ticket = cache.get(stage, sid, PAGE)
    assert isinstance(ticket, Ticket)
    return cache.put(ticket, body)


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
    cache.invalidate(sid)  # the event for a message sent meanwhile
    assert not cache.put(ticket, b"stale")
    assert isinstance(cache.get(Stage.COMPLETE, sid, PAGE), Ticket)


@pytest.mark.parametrize("stage", ["off", "dualwrite", "shadow", "live"])
def test_stages_that_read_mongodb_or_compare_reads_never_use_it(stage: str) -> None:
    cache, _ = _cache()
    assert cache.get(Stage(stage), uuid.uuid4(), PAGE) is None


def test_off_by_default_and_while_realtime_events_are_not_flowing() -> None:
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


def _lookups(client: Any, result: str) -> float:
    value = client.app[HISTORY_CACHE].lookups.labels(result)._value.get()
    assert isinstance(value, float)
    return value


async def test_over_http_this_instance_reads_its_own_writes(make_api: ApiFactory) -> None:
    api = await make_api("complete", history_cache_seconds=60)
    await _listening(api)
    sid = (await (await api.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(api, sid, "one")
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
    a = await make_api("complete", history_cache_seconds=60)
    b = await make_api("complete", history_cache_seconds=60)
    await _listening(a)
    await _listening(b)
    sid = (await (await a.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(a, sid, "one")
    assert await _page(b, sid) == ["one"]
    assert await _page(b, sid) == ["one"] and _lookups(b, "hit") == 1  # b holds the page
    await _send(a, sid, "two")
    deadline = time.monotonic() + 1.0
    while await _page(b, sid) != ["one", "two"]:
        assert time.monotonic() < deadline, "instance b still serves the old page after 1 s"
        await asyncio.sleep(0.02)


async def test_over_http_the_cache_is_not_used_in_dualwrite(make_api: ApiFactory) -> None:
    api = await make_api("dualwrite", history_cache_seconds=60)
    sid = (await (await api.post("/sessions", json={"title": "t"}, headers=ALICE)).json())["id"]
    await _send(api, sid, "one")
    await _page(api, sid)
    await _page(api, sid)
    assert _lookups(api, "bypass") == 2 and _lookups(api, "hit") == 0
