"""The HTTP API under test: ``create_app`` served on a real socket over the real stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from strangler.api import create_app
from strangler.config import Settings
from strangler.embedded import free_port

SECRET = "test-jwt-secret-of-at-least-thirty-two-bytes!"
ADMIN = "test-admin-token"


def token(user: str, *, secret: str = SECRET, expires_in: int = 3600, **claims: Any) -> str:
    payload = {"sub": user, "aud": "authenticated", "exp": int(time.time()) + expires_in, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def as_user(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


ApiFactory = Callable[..., Any]


@pytest.fixture
def api_settings(mongo_server: Any, mongo_db: str, clean_pg: str) -> Callable[..., Settings]:
    def make(stage: str | None = "dualwrite", **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mongo_uri": mongo_server.uri,
            "mongo_db": mongo_db,
            "supabase_db_url": clean_pg,
            "stage": stage,
            "supabase_jwt_secret": SECRET,
            "admin_token": ADMIN,
            "stage_poll_seconds": 0.2,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
async def make_api(api_settings: Callable[..., Settings]) -> AsyncIterator[ApiFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def make(stage: str | None = "dualwrite", **overrides: Any) -> TestClient[Any, Any]:
        client = TestClient(TestServer(create_app(api_settings(stage, **overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            async with asyncio.timeout(30):
                await client.close()
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack(file=sys.stderr)
            raise


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve(
    env: dict[str, str], log: Path, *, ready: str = "/readyz", unset: tuple[str, ...] = ()
) -> Iterator[Served]:
    """``strangler serve`` in a process of its own (without the variables in ``unset``),
    once it is ready; on exit, checks that it stops cleanly (exit code 0) on SIGTERM."""
    port = free_port()
    full = {
        **os.environ,
        "SUPABASE_JWT_SECRET": SECRET,
        "STRANGLER_ADMIN_TOKEN": ADMIN,
        "STRANGLER_STAGE_POLL_SECONDS": "0.2",
        "STRANGLER_LOG_FORMAT": "json",
        **env,
    }
    if "STRANGLER_STAGE" not in env:
        full.pop("STRANGLER_STAGE", None)
    for name in unset:
        full.pop(name, None)
    args = [sys.executable, "-m", "strangler.cli", "serve", "--host", "127.0.0.1"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*args, "--port", str(port)], env=full, stdout=subprocess.DEVNULL, stderr=sink
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}{ready}", timeout=1) as answer:
                answer.read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.1)
    try:
        yield Served(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, log.read_text()
