"""The finish line: the runbook's last step exactly as written. From ``complete``, the move
to ``decommissioned`` (refused without ``--confirm``, which drops what is still queued for
MongoDB), then ``MONGO_URI`` removed, ``strangler serve`` started, and the seed's
checklist run over HTTP, realtime included. Real processes, real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import aiohttp

from tests.api.checklist import seed_checklist
from tests.api.conftest import ADMIN, SECRET, as_user, serve
from tests.cli import strangler

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
#: The checklist runs as alice and expects her to start with nothing; bob's data crosses the
#: finish line.
BOB = as_user("bob")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "STRANGLER_STAGE")}
    return {
        **env,
        "SUPABASE_JWT_SECRET": SECRET,
        "STRANGLER_ADMIN_TOKEN": ADMIN,
        "STRANGLER_LOG_FORMAT": "json",
        **extra,
    }


async def _status(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/admin/status", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def test_the_runbooks_last_step_serves_without_mongodb(
    mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path
) -> None:
    with_mongo = _env(
        MONGO_URI=mongo_server.uri,
        MONGO_DB=mongo_db,
        SUPABASE_DB_URL=clean_pg,
        # Without the followers, writes at complete are parked for MongoDB: the journal
        # entries the decommission must drop.
        STRANGLER_FOLLOW="false",
    )
    without_mongo = {k: v for k, v in with_mongo.items() if k != "MONGO_URI"}
    forced = strangler(with_mongo, "stage", "set", "complete", "--force", "--reason", "test")
    assert forced.returncode == 0, forced.stderr

    # Serving without MONGO_URI before the finish line is refused, saying what to do.
    early = strangler(without_mongo, "serve", "--host", "127.0.0.1", "--port", "0")
    assert early.returncode == 2, early.stderr
    assert "MONGO_URI is not set, but the migration is at complete" in early.stderr
    assert "strangler stage set decommissioned --confirm" in early.stderr

    # Writes at complete, with MongoDB still configured: parked for it.
    with serve(with_mongo, tmp_path / "complete.log") as served:
        async with aiohttp.ClientSession(base_url=served.url) as http:
            async with http.post(
                "/sessions", json={"title": "Written at complete"}, headers=BOB
            ) as resp:
                assert resp.status == 201
                before = await resp.json()
            async with http.post(
                f"/sessions/{before['id']}/messages",
                json={"content": {"type": "conversation", "text": "still here"}},
                headers=BOB,
            ) as resp:
                assert resp.status == 201
            queued = (await _status(http))["backends"]["old"]["repair_queue_depth"]
    assert queued >= 2  # the session and the message, parked for MongoDB

    # The move needs the explicit yes, and says what it drops.
    refused = strangler(without_mongo, "stage", "set", "decommissioned")
    assert refused.returncode == 4, refused.stderr
    assert re.search(rf"the {queued} write\(s\) still queued for it are dropped", refused.stderr)
    assert "--confirm" in refused.stderr
    done = strangler(without_mongo, "stage", "set", "decommissioned", "--confirm")
    assert done.returncode == 0, done.stderr
    assert "remove MONGO_URI" in done.stdout

    got = strangler(without_mongo, "stage", "get", "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["stage"] == "decommissioned"

    # The runbook's last step: MONGO_URI removed, serve, the seed's checklist over HTTP.
    with serve(without_mongo, tmp_path / "decommissioned.log", unset=("MONGO_URI",)) as served:
        async with aiohttp.ClientSession(base_url=served.url) as http:
            await seed_checklist(http)
            async with http.get(f"/sessions/{before['id']}/messages", headers=BOB) as resp:
                page = await resp.json()
            assert [m["content"]["text"] for m in page["items"]] == ["still here"]
            # Real-time updates: an SSE stream gets the next message.
            async with http.get(f"/sessions/{before['id']}/events", headers=BOB) as stream:
                assert stream.status == 200
                await stream.content.readline()  # the retry line: subscribed
                async with http.post(
                    f"/sessions/{before['id']}/messages",
                    json={"content": {"type": "conversation", "text": "after mongo"}},
                    headers=BOB,
                ) as resp:
                    assert resp.status == 201
                seen = b""
                async with asyncio.timeout(10):
                    while b"after mongo" not in seen:
                        seen += await stream.content.readline()
                assert b"message.created" in seen
            # MongoDB is not asked; what was queued for it is dropped by the replayer.
            for _ in range(50):
                old = (await _status(http))["backends"]["old"]
                if old["repair_queue_depth"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert old["decommissioned"] and old["healthy"] and old["repair_queue_depth"] == 0
            async with http.get("/readyz") as resp:
                assert resp.status == 200
    log = (tmp_path / "decommissioned.log").read_text()
    assert '"event": "supabase_alone"' in log
    assert '"event": "mongo_journal_dropped"' in log

    # Leaving the finish line is a forced move, with what it takes spelled out.
    back = strangler(without_mongo, "stage", "set", "complete")
    assert back.returncode == 2, back.stderr
    assert "MongoDB was decommissioned" in back.stderr and "--force" in back.stderr


async def test_serve_over_the_rest_api_alone_is_refused_before_the_finish_line(
    clean_pg: str,
) -> None:
    """Only SUPABASE_URL and SUPABASE_KEY, but STRANGLER_STAGE says MongoDB is still in use:
    a configuration error naming the way out, before anything is served."""
    env = _env(
        SUPABASE_URL="http://127.0.0.1:9",
        SUPABASE_KEY="service-role-key",
        STRANGLER_STAGE="rampdown",
    )
    env.pop("SUPABASE_DB_URL", None)
    result = strangler(env, "serve", "--host", "127.0.0.1", "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "MONGO_URI is not set, but the migration is at rampdown" in result.stderr
    assert "Traceback" not in result.stderr
