"""Steady chat traffic against the HTTP API: what ``strangler demo --traffic`` runs so the
dashboard has something to show.

A handful of users each keep a few sessions and, at about ``rate`` requests a second in
all, send messages (half the requests), read history, list their sessions, create and
rename sessions, and now and then delete a message. It talks HTTP like any client, with
``X-User-Id`` (the demo runs with auth disabled). Errors are counted, never raised: a
rollback drill or a stopped store must not stop the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import aiohttp
import structlog

log = structlog.get_logger(__name__)


@dataclass
class TrafficStats:
    requests: int = 0
    errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class Traffic:
    def __init__(
        self, api: str, *, rate: float = 5.0, users: int = 5, seed: int | None = None
    ) -> None:
        self.api = api.rstrip("/")
        self.rate = rate
        self.users = [f"demo-user-{i}" for i in range(users)]
        self.stats = TrafficStats()
        self._rng = random.Random(seed)
        self._sessions: dict[str, list[str]] = {u: [] for u in self.users}
        self._messages: dict[str, list[str]] = {}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> TrafficStats:
        """Until ``stop()``; the pace holds whatever the latency (requests overlap)."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            inflight: set[asyncio.Task[None]] = set()
            last_report = time.monotonic()
            while not self._stop.is_set():
                if len(inflight) < 32:
                    task = asyncio.create_task(self._one(http))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                if time.monotonic() - last_report > 60:
                    last_report = time.monotonic()
                    log.info("demo_traffic", requests=self.stats.requests, errors=self.stats.errors)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._rng.expovariate(self.rate))
            if inflight:
                await asyncio.wait(inflight, timeout=15)
        return self.stats

    async def _one(self, http: aiohttp.ClientSession) -> None:
        user = self._rng.choice(self.users)
        sessions = self._sessions[user]
        roll = self._rng.random()
        try:
            if not sessions or roll < 0.05:
                body = await self._call(http, user, "POST", "/sessions", {"title": "demo chat"})
                if body and "id" in body:
                    sessions.append(str(body["id"]))
                    del sessions[:-5]  # each user keeps a few sessions going
            elif roll < 0.55:
                sid = self._rng.choice(sessions)
                text = self._rng.choice(("hi", "how are you?", "tell me more", "thanks!"))
                body = await self._call(
                    http,
                    user,
                    "POST",
                    f"/sessions/{sid}/messages",
                    {"content": {"type": "conversation", "text": text}, "sender": "user"},
                )
                if body and "id" in body:
                    kept = self._messages.setdefault(sid, [])
                    kept.append(str(body["id"]))
                    del kept[:-20]
            elif roll < 0.85:
                sid = self._rng.choice(sessions)
                await self._call(http, user, "GET", f"/sessions/{sid}/messages?limit=50")
            elif roll < 0.93:
                await self._call(http, user, "GET", "/sessions?limit=20")
            elif roll < 0.98:
                sid = self._rng.choice(sessions)
                title = f"demo chat {self._rng.randint(1, 999)}"
                await self._call(http, user, "PATCH", f"/sessions/{sid}", {"title": title})
            else:
                sid = self._rng.choice(sessions)
                kept = self._messages.get(sid) or []
                if kept:
                    await self._call(http, user, "DELETE", f"/messages/{kept.pop(0)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.errors += 1
            log.debug("demo_traffic_error", error=f"{type(exc).__name__}: {exc}")

    async def _call(
        self, http: aiohttp.ClientSession, user: str, method: str, path: str, body: object = None
    ) -> dict[str, object] | None:
        async with http.request(
            method, self.api + path, json=body, headers={"X-User-Id": user}
        ) as resp:
            self.stats.requests += 1
            self.stats.by_status[resp.status] = self.stats.by_status.get(resp.status, 0) + 1
            if resp.status >= 400:
                self.stats.errors += 1
                return None
            if resp.content_type != "application/json":
                return None
            data = await resp.json()
            return data if isinstance(data, dict) else None
