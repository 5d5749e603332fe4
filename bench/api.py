"""The HTTP API under load, stage by stage, and realtime fan-out.

A closed loop of ``--clients`` concurrent clients (70% history pages, 20% sends, 10%
session lists) runs for ``--seconds`` against ``strangler serve`` (a process of its own)
in ``off``, ``dualwrite`` and ``complete`` (with its defaults, so with the page caches on),
once more in ``complete`` with the page caches off, and against a bare aiohttp handler
serving the same history JSON from memory. It prints RPS and p50/p99 per stage, and the ratios:

* complete / off      (target >= 1.0: "performance at least as good as MongoDB")
* dualwrite / off     (target >= 0.75)
* complete / bare     (target >= 0.5: the honest overhead figure)

Then ``--subscribers`` SSE subscribers listen to one session while messages are posted;
the delivery latency p99 must stay under 250 ms.

MongoDB here is SecantusDB, a Python stand-in that is much slower than mongod.

    python bench/api.py [--clients 64] [--seconds 30] [--subscribers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson

from _common import CpuSplit, conditions, save, servers
from strangler import schema
from strangler.core.records import Keyset
from strangler.embedded import free_port

SECRET = "bench-secret-bench-secret-bench-secret!"
ADMIN = "bench-admin"


def _token(user: str) -> str:
    claims = {"sub": user, "aud": "authenticated", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Server:
    """``strangler serve`` in its own process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **env,
            "SUPABASE_JWT_SECRET": SECRET,
            "STRANGLER_ADMIN_TOKEN": ADMIN,
            "STRANGLER_LOG_LEVEL": "warning",
            "STRANGLER_LOG_FORMAT": "json",
        }
        if env.get("STRANGLER_STAGE") == "decommissioned":  # the finish line: no MongoDB
            self.env.pop("MONGO_URI", None)
        self.log = log

    async def __aenter__(self) -> Server:
        with self.log.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "strangler.cli", "serve", "--port", str(self.port)),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit(f"the server did not start; see {self.log}")

    async def __aexit__(self, *exc: Any) -> None:
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), 30)


async def _seed(url: str, users: int, sessions: int, per: int) -> list[tuple[str, str]]:
    """Sessions with history, through the API; returns (user, session id) pairs."""
    out = []
    async with aiohttp.ClientSession() as http:
        for u in range(users):
            headers = {"Authorization": f"Bearer {_token(f'user{u}')}"}
            for _ in range(sessions):
                async with http.post(
                    f"{url}/sessions", json={"title": "bench"}, headers=headers
                ) as r:
                    sid = (await r.json())["id"]
                out.append((f"user{u}", sid))
                msgs = [
                    http.post(
                        f"{url}/sessions/{sid}/messages",
                        json={"content": {"type": "conversation", "text": f"message {i}"}},
                        headers=headers,
                    )
                    for i in range(per)
                ]
                for m in msgs:
                    async with m:
                        pass
    return out


#: The request mix: shares of history pages, sends and session lists.
MIX = (0.7, 0.2, 0.1)
#: Which history page a reader asks for: the oldest 50 messages (a new message never
#: changes it once a session has 50), or the newest 50 (``before`` a cursor past the end:
#: every message sent to the session changes it, the page cache's worst case).
PAGES = {
    "first": "",
    "last": "&before=" + Keyset(dt.datetime(9999, 1, 1, tzinfo=dt.UTC), uuid.UUID(int=0)).encode(),
}


async def _load(
    url: str,
    pairs: list[tuple[str, str]],
    clients: int,
    seconds: float,
    mix: tuple[float, float, float] = MIX,
    page: str = "first",
) -> dict[str, Any]:
    tokens = {u: {"Authorization": f"Bearer {_token(u)}"} for u, _ in pairs}
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {"history": [], "send": [], "list": []}
    errors = 0
    stop = time.monotonic() + seconds
    rng = random.Random(1)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            user, sid = rng.choice(pairs)
            roll = rng.random()
            start = time.perf_counter()
            if roll < mix[0]:
                kind = "history"
                req = http.get(
                    f"{url}/sessions/{sid}/messages?limit=50{PAGES[page]}", headers=tokens[user]
                )
            elif roll < mix[0] + mix[1]:
                kind = "send"
                req = http.post(
                    f"{url}/sessions/{sid}/messages",
                    json={"content": {"type": "conversation", "text": "load"}},
                    headers=tokens[user],
                )
            else:
                kind = "list"
                req = http.get(f"{url}/sessions?limit=20", headers=tokens[user])
            async with req as resp:
                await resp.read()
                if resp.status >= 400:
                    errors += 1
            took = time.perf_counter() - start
            latencies.append(took)
            by_kind[kind].append(took)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "by_kind": {k: _percentiles(v) for k, v in by_kind.items() if v},
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {
        "n": len(samples),
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[int(len(samples) * 0.99)] * 1000,
    }


def _kinds(r: dict[str, Any]) -> str:
    return "  ".join(
        f"{k} p50 {v['p50_ms']:.1f} p99 {v['p99_ms']:.1f}" for k, v in r["by_kind"].items()
    )


async def _cache_lookups(url: str) -> dict[str, dict[str, float]]:
    """``strangler_{history,session_list}_cache_total`` by result, from ``/metrics``."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        for cache in ("history", "session_list"):
            if line.startswith(f"strangler_{cache}_cache_total{{"):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                out.setdefault(cache, {})[result] = float(line.rsplit(" ", 1)[1])
    return out


async def _capture(url: str) -> dict[str, float]:
    """The forward follower's figures from ``/metrics``: bypass writes counted (under this
    load every write goes through the API, so each one is a false positive), changes
    applied, and whether this instance leads."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out = {"bypass_writes": 0.0, "applied": 0.0, "leading": 0.0}
    for line in text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith("strangler_bypass_writes_total{"):
            out["bypass_writes"] += float(value)
        elif line.startswith('strangler_follower_applied_total{follower="forward"}'):
            out["applied"] = float(value)
        elif line.startswith('strangler_follower_state{follower="forward",state="leading"}'):
            out["leading"] = float(value)
    return out


def _hit_rates(looked: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{cache} {counts.get('hit', 0) / max(1, sum(counts.values())):.0%}"
        for cache, counts in looked.items()
    )


async def _bare(history: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """A bare aiohttp handler serving the same JSON from memory, in its own process."""
    port = free_port()
    code = (
        "import sys\nfrom aiohttp import web\n"
        f"body = open({str(_BARE_BODY)!r}, 'rb').read()\n"
        "async def h(r):\n    return web.Response(body=body, content_type='application/json')\n"
        "app = web.Application()\napp.router.add_route('*', '/{tail:.*}', h)\n"
        f"web.run_app(app, host='127.0.0.1', port={port}, print=None, access_log=None)\n"
    )
    _BARE_BODY.write_bytes(history)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    try:
        await asyncio.sleep(1.5)
        with CpuSplit({"client": os.getpid(), "server": proc.pid}) as cpu:
            r = await _load(f"http://127.0.0.1:{port}", [("user0", "x")], clients, seconds)
        r["cpu_us_per_request"] = cpu.per_request(r["requests"])
        r["cpu_line"] = cpu.line(r["requests"])
        return r
    finally:
        proc.terminate()
        await proc.wait()


STAGES = ("off", "dualwrite", "complete")
#: Also loadable with --stages: the finish line, served without MONGO_URI.
EXTRA_STAGES = ("decommissioned",)
_BARE_BODY = Path(tempfile.gettempdir()) / "strangler-bench-bare.json"


async def _fanout(url: str, user: str, sid: str, subscribers: int, posts: int) -> dict[str, Any]:
    """``subscribers`` SSE streams on one session; latency from POST to each delivery."""
    headers = {"Authorization": f"Bearer {_token(user)}"}
    sent_at: dict[str, float] = {}
    delays: list[float] = []
    ready = asyncio.Event()
    connected = 0

    async def subscriber(http: aiohttp.ClientSession) -> None:
        nonlocal connected
        async with http.get(f"{url}/sessions/{sid}/events", headers=headers) as resp:
            connected += 1
            if connected == subscribers:
                ready.set()
            got = 0
            async for line in resp.content:
                if line.startswith(b"data: "):
                    data = orjson.loads(line[6:])
                    if data.get("id") in sent_at:
                        delays.append(time.perf_counter() - sent_at[data["id"]])
                        got += 1
                        if got == posts:
                            return

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(None)
    ) as http:
        tasks = [asyncio.create_task(subscriber(http)) for _ in range(subscribers)]
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(1)
        for i in range(posts):
            start = time.perf_counter()
            async with http.post(
                f"{url}/sessions/{sid}/messages",
                json={"content": {"type": "conversation", "text": f"fan {i}"}},
                headers=headers,
            ) as resp:
                sent_at[(await resp.json())["id"]] = start
            await asyncio.sleep(0.5)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    delays.sort()
    return {
        "subscribers": subscribers,
        "deliveries": len(delays),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000,
    }


async def main(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    with servers() as (mongo, pg), tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        await schema.apply(pg.dsn)
        base = {"MONGO_URI": mongo.uri, "MONGO_DB": "chat", "SUPABASE_DB_URL": pg.dsn}
        # Seed in dualwrite so both stores hold the same history.
        async with Server({**base, "STRANGLER_STAGE": "dualwrite"}, log) as srv:
            pairs = await _seed(srv.url, args.users, args.sessions, args.messages)
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"{srv.url}/sessions/{pairs[0][1]}/messages?limit=50",
                    headers={"Authorization": f"Bearer {_token(pairs[0][0])}"},
                ) as r,
            ):
                history = await r.read()
        print(f"seeded {len(pairs)} sessions x {args.messages} messages", flush=True)

        def split(srv: Server) -> CpuSplit:
            return CpuSplit(
                {"client": os.getpid(), "server": srv.proc.pid, "postgres": pg, "mongodb": mongo}
            )

        for stage in args.stages:
            async with Server({**base, "STRANGLER_STAGE": stage}, log) as srv:
                await _load(srv.url, pairs, args.clients, 2, args.mix, args.page)  # warm up
                with split(srv) as cpu:
                    results[stage] = await _load(
                        srv.url, pairs, args.clients, args.seconds, args.mix, args.page
                    )
                results[stage]["cpu_us_per_request"] = cpu.per_request(results[stage]["requests"])
                if stage == "complete":
                    results[stage]["cache_lookups"] = await _cache_lookups(srv.url)
                if stage == "dualwrite":
                    await asyncio.sleep(2.0)  # the follower settles and applies the last writes
                    results[stage]["capture"] = await _capture(srv.url)
            r = results[stage]
            print(
                f"  {stage:<10} {r['rps']:>8,.0f} req/s  p50 {r['p50_ms']:6.1f} ms  "
                f"p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}",
                flush=True,
            )
            print(f"             ({_kinds(r)})", flush=True)
            print(f"             CPU per request: {cpu.line(r['requests'])}", flush=True)
            if "cache_lookups" in r:
                rates = _hit_rates(r["cache_lookups"])
                print(f"             page cache hit rates (warm-up included): {rates}", flush=True)
            if "capture" in r:
                c = r["capture"]
                print(
                    f"             forward follower {'leading' if c['leading'] else 'NOT leading'}:"
                    f" bypass writes counted {c['bypass_writes']:.0f} (every write went through"
                    " the API: each would be a false positive; target 0)",
                    flush=True,
                )
        if args.uncached_row and "complete" in args.stages:
            # The same stage with the page caches off (STRANGLER_PAGE_CACHE_SECONDS=0).
            env = {**base, "STRANGLER_STAGE": "complete", "STRANGLER_PAGE_CACHE_SECONDS": "0"}
            async with Server(env, log) as srv:
                await _load(srv.url, pairs, args.clients, 2, args.mix, args.page)  # warm up
                with split(srv) as cpu:
                    r = await _load(srv.url, pairs, args.clients, args.seconds, args.mix, args.page)
            r["cpu_us_per_request"] = cpu.per_request(r["requests"])
            results["complete_uncached"] = r
            print(
                f"  {'complete, page cache off':<10} {r['rps']:>8,.0f} req/s  "
                f"p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}",
                flush=True,
            )
            print(f"             ({_kinds(r)})", flush=True)
            print(f"             CPU per request: {cpu.line(r['requests'])}", flush=True)
        results["bare"] = await _bare(history, args.clients, args.seconds)
        print(f"  bare       {results['bare']['rps']:>8,.0f} req/s", flush=True)
        print(f"             CPU per request: {results['bare'].pop('cpu_line')}", flush=True)
        if args.subscribers:
            async with Server({**base, "STRANGLER_STAGE": "complete"}, log) as srv:
                user, sid = pairs[0]
                results["fanout"] = await _fanout(srv.url, user, sid, args.subscribers, 10)
        if (
            set(args.stages) != set(STAGES)
            or not args.subscribers
            or args.mix != MIX
            or args.page != "first"
        ):
            print("\na partial run (--stages, --mix, --page or --subscribers 0): not saved")
            for stage in [
                *args.stages,
                *(["complete_uncached"] if "complete_uncached" in results else []),
            ]:
                print(f"  {stage} / bare  {results[stage]['rps'] / results['bare']['rps']:5.2f}x")
            if "fanout" in results:
                f = results["fanout"]
                print(f"  SSE fan-out: p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms")
            return 0
    off = results["off"]["rps"]
    ratios = {
        "complete_vs_off": results["complete"]["rps"] / off,
        "dualwrite_vs_off": results["dualwrite"]["rps"] / off,
        "complete_vs_bare": results["complete"]["rps"] / results["bare"]["rps"],
    }
    if "complete_uncached" in results:
        ratios["complete_uncached_vs_bare"] = (
            results["complete_uncached"]["rps"] / results["bare"]["rps"]
        )
    f = results["fanout"]
    print(
        f"\n{args.clients} clients, {args.seconds:g} s per stage (70% history, 20% send, 10% list)"
    )
    print(f"  complete / off    {ratios['complete_vs_off']:5.2f}x  (target >= 1.0)")
    print(f"  dualwrite / off   {ratios['dualwrite_vs_off']:5.2f}x  (target >= 0.75)")
    print(f"  complete / bare   {ratios['complete_vs_bare']:5.2f}x  (target >= 0.5)")
    if "complete_uncached_vs_bare" in ratios:
        print(f"  complete, page cache off / bare  {ratios['complete_uncached_vs_bare']:5.2f}x")
    print(
        f"  SSE fan-out to {f['subscribers']} subscribers: {f['deliveries']} deliveries, "
        f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms (target < 250 ms)"
    )
    print(f"saved {save('api', {'conditions': conditions(), **results, 'ratios': ratios})}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES + EXTRA_STAGES,
        default=list(STAGES),
        help="stages to load (a partial run prints ratios to bare and saves nothing)",
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument(
        "--no-uncached-row",
        dest="uncached_row",
        action="store_false",
        help="skip the extra complete run with the page caches off",
    )
    parser.add_argument(
        "--mix",
        type=lambda t: tuple(float(x) for x in t.split(",")),
        default=MIX,
        metavar="H,S,L",
        help="shares of history pages, sends and session lists (default 0.7,0.2,0.1); "
        "a run with another mix prints ratios to bare and saves nothing",
    )
    parser.add_argument(
        "--page",
        choices=sorted(PAGES),
        default="first",
        help="history page the readers ask for: first (default) or last, the newest 50 "
        "messages, which every send to the session changes (a partial run: not saved)",
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=5, help="per user")
    parser.add_argument("--messages", type=int, default=60, help="per session")
    sys.exit(asyncio.run(main(parser.parse_args())))
