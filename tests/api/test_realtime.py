"""Realtime: SSE per session, a WebSocket per user, replay after a reconnect, and delivery
across two API processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import ADMIN, ApiFactory, as_user, serve, token

ALICE = as_user("alice")


async def _sse_events(
    resp: aiohttp.ClientResponse, n: int, within: float = 5.0
) -> list[dict[str, Any]]:
    """Read ``n`` events (not comments) from an open SSE response."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(within):
        while len(events) < n:
            raw = await resp.content.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in current:
                    current["data"] = json.loads(current["data"])
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                current[key] = value
    return events


async def _session(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.post("/sessions", json={"title": "rt"}, headers=ALICE)
    return await resp.json()  # type: ignore[no-any-return]


async def _send(client: TestClient[Any, Any], sid: str, text: str) -> dict[str, Any]:
    resp = await client.post(
        f"/sessions/{sid}/messages",
        json={"content": {"type": "conversation", "text": text}},
        headers=ALICE,
    )
    assert resp.status == 201
    return await resp.json()  # type: ignore[no-any-return]


async def test_sse_delivers_new_messages_and_replays_after_a_reconnect(
    make_api: ApiFactory,
) -> None:
    client = await make_api("dualwrite")
    s = await _session(client)
    async with client.get(f"/sessions/{s['id']}/events", headers=ALICE) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        first = await _send(client, s["id"], "one")
        (event,) = await _sse_events(stream, 1)
    assert event["event"] == "message.created" and event["data"]["id"] == first["id"]
    for text in ("two", "three"):  # sent while nobody listens
        await _send(client, s["id"], text)
    headers = {**ALICE, "Last-Event-ID": event["id"]}
    async with client.get(f"/sessions/{s['id']}/events", headers=headers) as stream:
        missed = await _sse_events(stream, 2)
    assert [e["data"]["content"]["text"] for e in missed] == ["two", "three"]
    assert int(missed[0]["id"]) > int(event["id"])


async def _until(count: Callable[[], Awaitable[int]], want: int) -> None:
    """Poll another process (there is no event to wait on) until ``count()`` is ``want``."""
    for _ in range(50):
        if await count() == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{await count()}, not {want}, after 5 s")


async def test_streams_whose_clients_left_end_quietly_in_the_real_server(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    """``strangler serve`` does not cancel a handler when its client disconnects (aiohttp's
    test server does, so this runs against the real process). The hub sweeps streams whose
    client left every poll interval (1 s) instead of holding them until their next event or
    heartbeat (up to 15 s), and an event that meets a closed connection first ends its
    stream with no error logged (it once logged ``request_crashed`` with a traceback)."""
    env = {
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_STAGE": "complete",
    }
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with serve(env, tmp_path / "serve.log") as served:
        async with aiohttp.ClientSession() as http:

            async def subscribers() -> int:
                async with http.get(f"{served.url}/admin/status", headers=admin) as resp:
                    n: int = (await resp.json())["process"]["realtime_subscribers"]
                    return n

            async with http.post(
                f"{served.url}/sessions", json={"title": "t"}, headers=ALICE
            ) as resp:
                sid = (await resp.json())["id"]
            url = f"{served.url}/sessions/{sid}/events"
            streams = [await http.get(url, headers=ALICE) for _ in range(3)]
            for stream in streams:
                assert stream.status == 200
                await stream.content.readline()  # the retry line: subscribed
            assert await subscribers() == 3
            streams[0].close()  # a browser tab goes away
            await _until(subscribers, 2)
            for stream in streams[1:]:  # and these meet the next event first
                stream.close()
            async with http.post(
                f"{url[: -len('/events')]}/messages",
                json={"content": {"type": "conversation", "text": "to nobody"}},
                headers=ALICE,
            ) as resp:
                assert resp.status == 201
            await _until(subscribers, 0)
        log = served.log.read_text()
    assert "request_crashed" not in log and "Traceback" not in log, log


@pytest.mark.parametrize("stage", ["dualwrite", "complete"])
async def test_concurrent_sends_each_arrive_once_in_id_order(
    make_api: ApiFactory, stage: str
) -> None:
    client = await make_api(stage)
    s = await _session(client)
    async with client.get(f"/sessions/{s['id']}/events", headers=ALICE) as stream:
        sent = await asyncio.gather(*(_send(client, s["id"], str(i)) for i in range(40)))
        events = await _sse_events(stream, 40)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids))
    assert sorted(e["data"]["id"] for e in events) == sorted(m["id"] for m in sent)


async def test_sse_is_only_for_the_sessions_owner(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    s = await _session(client)
    resp = await client.get(f"/sessions/{s['id']}/events", headers=as_user("bob"))
    assert resp.status == 404
    resp = await client.get(f"/sessions/{s['id']}/events", headers={"Last-Event-ID": "x", **ALICE})
    assert resp.status == 400


async def test_websocket_carries_all_of_a_users_sessions(make_api: ApiFactory) -> None:
    client = await make_api("complete")
    async with client.ws_connect(f"/ws?access_token={token('alice')}") as ws:
        a = await _session(client)
        await _send(client, a["id"], "hi")
        await client.patch(f"/sessions/{a['id']}", json={"title": "renamed"}, headers=ALICE)
        kinds = []
        async with asyncio.timeout(5):
            while len(kinds) < 3:
                msg = await ws.receive_json()
                kinds.append(msg["event"])
    assert kinds == ["session.created", "message.created", "session.renamed"]
    bad = await client.get("/ws?access_token=nope")
    assert bad.status == 401


@pytest.fixture
def second_instance(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> Iterator[str]:
    """``strangler serve`` in a process of its own, on the same stores."""
    env = {"MONGO_URI": mongo_server.uri, "MONGO_DB": mongo_db, "SUPABASE_DB_URL": clean_pg}
    with serve(env, tmp_path / "serve.log") as served:
        yield served.url


LADDER = ["off", "dualwrite", "shadow", "live", "rampdown", "complete"]


@pytest.mark.parametrize("stage", LADDER)
async def test_a_message_posted_on_one_instance_reaches_a_subscriber_on_another(
    make_api: ApiFactory, second_instance: str, stage: str
) -> None:
    """The stage lives in the control table, shared by both instances."""
    client = await make_api(None)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for step in LADDER[1 : LADDER.index(stage) + 1]:  # evidence is not this test's subject
        move = {"stage": step, "force": True, "reason": "test"}
        resp = await client.put("/admin/stage", json=move, headers=admin)
        assert resp.status == 200, await resp.text()
    await asyncio.sleep(0.5)  # both instances follow within the poll interval
    s = await _session(client)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{second_instance}/sessions/{s['id']}/events", headers=ALICE) as stream,
    ):
        assert stream.status == 200, await stream.text()
        await asyncio.sleep(0.2)
        start = time.monotonic()
        sent = await _send(client, s["id"], "across")
        # The session's own event may come first: where MongoDB leads a create does not
        # wait for the event log, so under load it can land after the stream opened.
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(3):
            while not events or events[-1].get("event") == "session.created":
                events += await _sse_events(stream, 1, within=3)
        event = events[-1]
        latency = time.monotonic() - start
    assert event["event"] == "message.created", events
    assert event["data"]["id"] == sent["id"]
    assert latency < 1.0, latency


async def test_sigterm_ends_open_streams_and_exits_cleanly(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    """Shutdown closes SSE streams first (so draining does not wait for them), then exits 0."""
    env = {"MONGO_URI": mongo_server.uri, "MONGO_DB": mongo_db, "SUPABASE_DB_URL": clean_pg}
    with serve(env, tmp_path / "serve.log") as served:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{served.url}/sessions", json={"title": "t"}, headers=ALICE
            ) as resp:
                s = await resp.json()
            async with http.get(f"{served.url}/sessions/{s['id']}/events", headers=ALICE) as stream:
                assert stream.status == 200
                start = time.monotonic()
                served.proc.terminate()
                async with asyncio.timeout(8):
                    while await stream.content.readline():
                        pass  # the server ends the stream
                ended = time.monotonic() - start
        assert ended < 8
        await asyncio.to_thread(served.proc.wait, 20)
        assert served.proc.returncode == 0, served.log.read_text()


async def test_a_hung_postgres_at_dualwrite_delays_events_but_not_requests(
    make_api: ApiFactory, pg_server: Any
) -> None:
    """Postgres (not authoritative) hangs: sends stay fast once its breaker is open, their
    events wait in the outbox, and reach the stream in order once Postgres is back."""
    from tests.pause import paused

    client = await make_api(
        "dualwrite",
        store_timeout=1.0,
        secondary_timeout=0.5,
        breaker_failures=3,
        breaker_probe_max_seconds=1.0,
    )
    alice = as_user("alice")
    resp = await client.post("/sessions", json={"title": "t"}, headers=alice)
    sid = (await resp.json())["id"]
    stream = await client.get(f"/sessions/{sid}/events", headers=alice)
    assert stream.status == 200
    await stream.content.readline()  # the retry line: subscribed
    took = []
    with paused(pg_server):
        for i in range(10):
            start = time.monotonic()
            resp = await client.post(
                f"/sessions/{sid}/messages",
                json={"content": {"type": "conversation", "text": f"m{i}"}},
                headers=alice,
            )
            took.append(time.monotonic() - start)
            assert resp.status == 201
    # Before the breaker opened: the secondary timeout, and no wait for the event.
    assert max(took) < 0.5 + 0.3, took
    assert max(took[5:]) < 0.3, took  # open: nothing waits on Postgres
    texts: list[str] = []
    kind = b""
    async with asyncio.timeout(15):
        while len(texts) < 10:
            line = await stream.content.readline()
            if line.startswith(b"event: "):
                # The session's own session.created may arrive first: at dualwrite nothing
                # waits for the log, so it can land after the stream subscribed.
                kind = line[7:].strip()
            elif line.startswith(b"data: ") and kind == b"message.created":
                texts.append(json.loads(line[6:])["content"]["text"])
    assert texts == [f"m{i}" for i in range(10)]  # every event, in order
    stream.close()
