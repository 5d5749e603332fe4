"""The HTTP API under test: ``create_app`` served on a real socket over the real stores."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from strangler.api import create_app
from strangler.config import Settings

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
