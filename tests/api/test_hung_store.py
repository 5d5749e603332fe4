"""The authoritative store hangs (its processes stopped, connections open): every chat
request is answered, 503 with ``Retry-After``, within the store timeout + 0.5 s, however
many store calls it makes (``core.budget``), and the API recovers when the store does."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from strangler.api.keys import FACADE
from tests.api.conftest import ADMIN, ApiFactory, as_user
from tests.pause import paused, signal_all

STORE_TIMEOUT = 1.0


@pytest.mark.parametrize(("stage", "hung"), [("dualwrite", "mongo"), ("live", "pg")])
async def test_every_request_is_answered_503_within_the_store_timeout(
    make_api: ApiFactory, mongo_server: Any, pg_server: Any, stage: str, hung: str
) -> None:
    client = await make_api(
        stage,
        store_timeout=STORE_TIMEOUT,
        secondary_timeout=0.5,
        breaker_failures=3,
        follow=False,
        guard=False,
    )
    alice = as_user("alice")
    resp = await client.post("/sessions", json={"title": "t"}, headers=alice)
    assert resp.status == 201
    sid = (await resp.json())["id"]
    message = {"content": {"type": "conversation", "text": "hi"}}
    requests = [
        ("PATCH", f"/sessions/{sid}", {"title": "renamed"}),
        ("POST", f"/sessions/{sid}/messages", message),
        ("GET", f"/sessions/{sid}/messages", None),
        ("GET", f"/sessions/{sid}", None),
        ("GET", "/sessions", None),
        ("POST", "/sessions", {"title": "u"}),
        ("DELETE", f"/sessions/{sid}", None),
    ]
    took: dict[str, float] = {}
    with paused(pg_server if hung == "pg" else mongo_server):
        for method, path, body in requests * 2:
            start = time.monotonic()
            resp = await client.request(method, path, json=body, headers=alice)
            took[f"{method} {path}"] = max(
                took.get(f"{method} {path}", 0), time.monotonic() - start
            )
            problem = await resp.json()
            assert resp.status == 503, (method, path, problem)
            assert resp.headers["Retry-After"] == "1"
            assert problem["code"] == "store_unavailable", problem
        # The status page answers while the store hangs, and says which one.
        start = time.monotonic()
        resp = await client.get("/admin/status", headers={"Authorization": f"Bearer {ADMIN}"})
        status_took = time.monotonic() - start
        assert resp.status == 200
        backends = (await resp.json())["backends"]
        role = "new" if hung == "pg" else "old"
        assert not backends[role]["healthy"], backends[role]
    print(f"{hung} hung at {stage}: slowest {max(took.values()):.2f}s; {took}")
    # The target: store timeout + 0.5 s. (PyMongo's server selection overshoots its
    # deadline by up to 0.5 s; the request stops waiting 0.1 s past it: ``budget.bounded``.)
    assert max(took.values()) <= STORE_TIMEOUT + 0.5, took
    assert status_took < 3.0, status_took  # 1 s for a ping, then 1 s for a count at most
    resp = await client.post(f"/sessions/{sid}/messages", json=message, headers=alice)
    assert resp.status == 201


async def test_sends_queued_behind_a_hung_statement_answer_within_their_own_time(
    make_api: ApiFactory, pg_server: Any
) -> None:
    """At ``live`` sends share statements (the outbox); while Postgres hangs, a send that
    queues behind a hung statement is still answered within its own request's time."""
    client = await make_api(
        "live", store_timeout=STORE_TIMEOUT, secondary_timeout=0.5, follow=False, guard=False
    )
    alice = as_user("alice")
    resp = await client.post("/sessions", json={"title": "t"}, headers=alice)
    sid = (await resp.json())["id"]
    message = {"content": {"type": "conversation", "text": "hi"}}
    # Once sent to, the session's owner is known: the sends below go straight to the outbox.
    resp = await client.post(f"/sessions/{sid}/messages", json=message, headers=alice)
    assert resp.status == 201

    async def send(delay: float) -> tuple[int, float]:
        await asyncio.sleep(delay)
        start = time.monotonic()
        resp = await client.post(f"/sessions/{sid}/messages", json=message, headers=alice)
        await resp.read()
        return resp.status, time.monotonic() - start

    with paused(pg_server):
        answers = await asyncio.gather(*(send(0.15 * i) for i in range(8)))
    print(f"sends queued behind a hung statement: {answers}")
    assert {status for status, _ in answers} == {503}, answers
    assert max(took for _, took in answers) <= STORE_TIMEOUT + 0.5, answers


async def test_a_landed_write_is_journaled_in_the_other_store_when_its_own_hangs(
    make_api: ApiFactory, pg_server: Any
) -> None:
    """The rename lands in Postgres (authoritative at ``live``), then Postgres hangs before
    the write's journal entry for MongoDB: the entry goes to MongoDB's journal instead, the
    request answers 200 within the store timeout + 0.5 s, and MongoDB gets the rename."""
    client = await make_api(
        "live", store_timeout=STORE_TIMEOUT, secondary_timeout=0.5, follow=False, guard=False
    )
    alice = as_user("alice")
    resp = await client.post("/sessions", json={"title": "t"}, headers=alice)
    sid = (await resp.json())["id"]
    facade = client.app[FACADE]
    new = facade.store("new")
    rename = new.rename_session

    async def rename_then_hang(session_id: Any, title: str) -> Any:
        renamed = await rename(session_id, title)
        signal_all(pg_server, signal.SIGSTOP)
        return renamed

    new.rename_session = rename_then_hang  # type: ignore[method-assign]
    try:
        start = time.monotonic()
        resp = await client.patch(f"/sessions/{sid}", json={"title": "renamed"}, headers=alice)
        took = time.monotonic() - start
        assert resp.status == 200, await resp.text()
        # Where the entry went: MongoDB's journal, for MongoDB.
        assert await facade.journals["old"].depth("old") >= 1
    finally:
        new.rename_session = rename  # type: ignore[method-assign]
        signal_all(pg_server, signal.SIGCONT)
    print(f"rename answered in {took:.2f}s with Postgres hung after it")
    assert took <= STORE_TIMEOUT + 0.5, took
    deadline = time.monotonic() + 10
    while (await facade.store("old").get_session(sid)).title != "renamed":
        assert time.monotonic() < deadline, "MongoDB never got the rename"
        await asyncio.sleep(0.2)
