"""The embedded-server launchers and `strangler demo`: tests, benches and the demo rely on them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from pymongo import MongoClient

from strangler.backends.mongo import MongoStore
from strangler.embedded import EmbeddedMongo, EmbeddedPostgres, free_port
from strangler.embedded.legacy_data import generate


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync-on", "fsync-off"])
async def test_postgres_listens_on_its_port_and_keeps_data_across_restarts(
    tmp_path: Path, fsync: bool
) -> None:
    port = free_port()
    pg = EmbeddedPostgres(tmp_path / "pg", port=port, fsync=fsync)
    pg.start()
    try:
        assert pg.dsn.endswith(f":{port}/postgres")
        conn = await asyncpg.connect(pg.dsn)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        fsync_setting = await conn.fetchval("SHOW fsync")
        await conn.close()
        assert fsync_setting == ("on" if fsync else "off")
        pg.stop(immediate=True)
        assert not pg.running
        pg.start()
        conn = await asyncpg.connect(pg.dsn)
        assert await conn.fetchval("SELECT x FROM kept") == 42
        await conn.close()
    finally:
        pg.stop()


def test_mongo_survives_a_kill_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    mongo = EmbeddedMongo(tmp_path / "mongo")
    mongo.start()
    try:
        with MongoClient(mongo.uri, serverSelectionTimeoutMS=3000) as client:
            client.d.c.insert_one({"_id": 1})
        mongo.stop(kill=True)
        assert not mongo.running
        mongo.start()
        with MongoClient(mongo.uri, serverSelectionTimeoutMS=3000) as client:
            assert client.d.c.find_one({"_id": 1}) == {"_id": 1}
    finally:
        mongo.stop()


async def test_generated_legacy_data_reads_cleanly_through_the_store(
    mongo_store: MongoStore, mongo_server: object, mongo_db: str
) -> None:
    pairs = list(generate(40, 6))
    with MongoClient(mongo_server.uri) as client:  # type: ignore[attr-defined]
        client[mongo_db].chat_sessions.insert_many([s for s, _ in pairs])
        client[mongo_db].messages.insert_many([m for _, ms in pairs for m in ms])
    sessions = [s async for chunk in mongo_store.scan_sessions() for s in chunk]
    messages = [m async for chunk in mongo_store.scan_messages() for m in chunk]
    assert len(sessions) == 40
    assert len(messages) == 240
    kinds = {m.content["type"] for m in messages}  # type: ignore[index,call-overload]
    assert kinds == {"conversation", "audio", "image", "pdf"}


def test_demo_sets_up_once_and_keeps_its_data(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "strangler.cli",
        "demo",
        "--data-dir",
        str(tmp_path / "demo"),
        "--sessions",
        "30",
        "--exit-after-setup",
    ]
    env = {**os.environ, "STRANGLER_LOG_FORMAT": "json"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert first.returncode == 0, first.stderr
    assert "30 sessions, 150 messages (seeded now)" in first.stdout
    assert "stopped cleanly" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert second.returncode == 0, second.stderr
    assert "30 sessions, 150 messages\n" in second.stdout
    assert "schema: up to date" in second.stdout


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536


def test_a_server_orphaned_by_a_dead_process_is_replaced(tmp_path: Path) -> None:
    first = EmbeddedMongo(tmp_path / "mongo")
    first.start()
    orphan, first._proc = first._proc, None  # as if the process that started it had died
    assert orphan is not None
    second = EmbeddedMongo(tmp_path / "mongo", port=free_port())
    second.start()
    try:
        assert orphan.wait(15) is not None  # the stale server was stopped, not left behind
        with MongoClient(second.uri, serverSelectionTimeoutMS=3000) as client:
            client.d.c.insert_one({"_id": 1})
    finally:
        second.stop()


def test_demo_serves_the_api_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    import re
    import signal
    import time
    import urllib.request

    cmd = [sys.executable, "-m", "strangler.cli", "demo", "--data-dir", str(tmp_path / "d")]
    cmd += ["--sessions", "10"]
    env = {**os.environ, "STRANGLER_LOG_FORMAT": "json"}
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "admin token" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        api = re.search(r"HTTP API\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        req = urllib.request.Request(
            f"{api}/sessions",
            data=b'{"title": "demo"}',
            headers={"X-User-Id": "alice", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()
    assert "stopped cleanly" in log.read_text()


def test_demo_starts_at_a_stage_on_the_port_asked(tmp_path: Path) -> None:
    """``--stage live --port N``: the demo moves there with strangler's own commands (the
    backfill before a stage that reads Supabase, the moves forced and recorded) and serves
    on exactly that port; a --port that is taken is an error that says so."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "strangler", "demo", "--data-dir", str(tmp_path / "d")]
    cmd += ["--sessions", "10", "--port", str(port), "--stage", "live"]
    env = {**os.environ, "STRANGLER_LOG_FORMAT": "json"}
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "admin token" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert f"HTTP API               http://127.0.0.1:{port}" in text, text
        assert "$ strangler backfill --source" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            assert json.load(resp)["stage"] == "live"
        # The port is taken now: asking for it again is refused, clearly.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0
        again = [sys.executable, "-m", "strangler", "demo", "--data-dir", str(tmp_path / "e")]
        taken = subprocess.run(
            [*again, "--sessions", "5", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert taken.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr + taken.stdout
        assert "Traceback" not in taken.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()
