"""Chaos and soak: zero downtime and zero data loss through a full migration and rollback.

Two ``strangler serve`` instances run on SecantusDB and embedded PostgreSQL behind a small
client-side balancer (round robin; a refused connection goes to the other instance, as a
load balancer's passive health check does). A load generator keeps a **ledger of every
acknowledged write**: session creates, renames and deletes, messages (some with an image
attachment) and message deletes. Meanwhile the stage walks ``off → … → complete → … → off``
twice, and faults are injected at set points:

* PostgreSQL stopped and restarted, MongoDB stopped and restarted (while each is the
  non-authoritative store, and in round 2 also while authoritative);
* SIGKILL of an API instance, then a restart on the same port;
* a slow store: its processes paused (SIGSTOP) for 200 ms of every 250 ms.

At the end (stage ``off``): every acknowledged write must be in MongoDB (the authoritative
store) with its last acknowledged value, every acknowledged delete absent; after
``strangler repair``, ``strangler verify`` must exit 0; the fault-free stage changes and the
outages of a non-authoritative store must have failed zero requests. Failures while the
authoritative store is down are expected (503) and reported by fault.

``--soak-seconds N`` repeats the walk until N seconds have passed and samples each
instance's RSS and open file descriptors (sockets included) every few seconds: both must
stay flat.

    python bench/chaos.py [--dwell 6] [--clients 8] [--soak-seconds 0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from _common import conditions, save, server_pids
from strangler import schema
from strangler.backends.mongo import MongoStore
from strangler.core.errors import NotFound
from strangler.embedded import EmbeddedMongo, EmbeddedPostgres, free_port

ADMIN = "chaos-admin-token"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
PNG = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
    + b"\x1f\x15\xc4\x89"
    + bytes(16)
).decode()
SERVE = [sys.executable, "-m", "strangler.cli", "serve", "--host", "127.0.0.1"]
STAGES = ["off", "dualwrite", "shadow", "live", "rampdown", "complete"]
WALK = STAGES + STAGES[-2::-1]  # off → complete → off


# --- the pieces ---------------------------------------------------------------------------


class Instance:
    """``strangler serve`` in a process of its own, restartable on the same port."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [*SERVE, "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise SystemExit(f"{self.name} did not start; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.terminate()
        return await asyncio.to_thread(self.proc.wait, 30)

    def sample(self) -> dict[str, int]:
        """RSS (kB) and open file descriptors of the running process."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
        except OSError:  # it exited meanwhile
            return {}
        rss = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS"))
        sockets = 0
        for fd in fds:
            with contextlib.suppress(OSError):  # closed between listing and reading
                sockets += os.readlink(f"/proc/{self.proc.pid}/fd/{fd}").startswith("socket:")
        return {"rss_kb": rss, "fds": len(fds), "sockets": sockets}


@dataclass
class Failure:
    at: float
    phase: str
    kind: str


@dataclass
class Ledger:
    """What the API acknowledged. ``titles`` holds every title a session may have: the last
    acknowledged one, plus any whose request failed without an answer (it may have landed)."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_sessions: set[str] = field(default_factory=set)
    deleted_messages: set[str] = field(default_factory=set)
    maybe_deleted: set[str] = field(default_factory=set)
    #: Deletes answered 404: not an acknowledged delete, and not judged.
    deletes_not_found: int = 0

    def deleted(self, rid: str, status: int, live: dict[str, Any], gone: set[str]) -> None:
        """Record the answer to a delete: acknowledged (204), not found (404: not judged),
        or unanswered (it may have landed: not judged either)."""
        if status == 204:
            gone.add(rid)
            live.pop(rid, None)
            return
        if status == 404:
            self.deletes_not_found += 1
        if status in (0, 404) or status >= 500:
            self.maybe_deleted.add(rid)


class Load:
    """Closed-loop clients; each owns its sessions, so the ledger's order is exact."""

    def __init__(self, instances: list[Instance], clients: int, rate: float, seed: int = 1) -> None:
        self.instances = instances
        self.clients = clients
        #: Requests a second in all: steady traffic, not saturation, so a rollback's replay
        #: into MongoDB (SecantusDB: a few hundred writes a second) can catch up.
        self.pause = clients / rate
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.phase = "steady"
        self.requests = 0
        self.failures: list[Failure] = []
        self.latencies: list[float] = []
        self._stop = False
        self._rr = 0

    def stop(self) -> None:
        self._stop = True

    def fail(self, kind: str) -> None:
        """A failed request, under the phase at the moment it failed: a request in flight
        on an instance when it is killed fails with the kill, whenever it started."""
        self.failures.append(Failure(time.time(), self.phase, kind))

    async def _send(
        self, http: aiohttp.ClientSession, user: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        """One request through the balancer: (status, JSON) or (0, None) with no answer."""
        headers = {"X-User-Id": user}
        last: Exception | None = None
        start = time.perf_counter()
        first, self._rr = self._rr, self._rr + 1  # fixed now: other requests move it on
        for attempt in range(len(self.instances)):
            inst = self.instances[(first + attempt) % len(self.instances)]
            try:
                async with http.request(
                    method, inst.url + path, json=body, headers=headers
                ) as resp:
                    data = await resp.json() if resp.content_type.endswith("json") else None
                    self.requests += 1
                    self.latencies.append(time.perf_counter() - start)
                    if resp.status >= 500:
                        self.fail(f"HTTP {resp.status}")
                    return resp.status, data
            except aiohttp.ClientConnectorError as exc:
                last = exc
                continue  # refused: the request never left; the balancer tries the next one
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.requests += 1
                self.fail(type(exc).__name__)
                return 0, None
        self.requests += 1
        self.fail(f"no instance reachable: {last}")
        return 0, None

    async def _client(self, http: aiohttp.ClientSession, n: int) -> None:
        user = f"chaos-{n}"
        mine: list[str] = []
        led = self.ledger
        while not self._stop:
            await asyncio.sleep(self.rng.expovariate(1 / self.pause))
            roll = self.rng.random()
            if not mine or roll < 0.10:
                status, data = await self._send(http, user, "POST", "/sessions", {"title": "t0"})
                if status == 201:
                    led.sessions[data["id"]] = {"user": user, "titles": {"t0"}, "last": "t0"}
                    mine.append(data["id"])
            elif roll < 0.55:
                sid = self.rng.choice(mine)
                body: dict[str, Any] = {"content": {"type": "conversation", "text": f"m{roll}"}}
                if self.rng.random() < 0.2:
                    body["image"] = PNG
                status, data = await self._send(
                    http, user, "POST", f"/sessions/{sid}/messages", body
                )
                if status == 201:
                    led.messages[data["id"]] = {"session": sid, "text": body["content"]["text"]}
            elif roll < 0.70:
                sid = self.rng.choice(mine)
                title = f"t{self.rng.randrange(10**6)}"
                status, _ = await self._send(
                    http, user, "PATCH", f"/sessions/{sid}", {"title": title}
                )
                entry = led.sessions[sid]
                if status == 200:
                    entry["titles"] = {title}
                    entry["last"] = title
                elif status == 0 or status >= 500:
                    entry["titles"].add(title)  # no answer: it may have landed
            elif roll < 0.75:
                candidates = [m for m, v in led.messages.items() if v["session"] in mine]
                if candidates:
                    mid = self.rng.choice(candidates)
                    status, _ = await self._send(http, user, "DELETE", f"/messages/{mid}")
                    led.deleted(mid, status, led.messages, led.deleted_messages)
            elif roll < 0.78 and len(mine) > 1:
                sid = mine.pop(self.rng.randrange(len(mine)))
                status, _ = await self._send(http, user, "DELETE", f"/sessions/{sid}")
                led.deleted(sid, status, led.sessions, led.deleted_sessions)
            else:
                sid = self.rng.choice(mine)
                await self._send(http, user, "GET", f"/sessions/{sid}/messages?limit=50")

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        # A new connection per request, as a balancer in front of restarting instances
        # does: no pooled connection to a killed process is ever reused.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await asyncio.gather(*(self._client(http, n) for n in range(self.clients)))


# --- the walk -------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    stage: str  # injected while at this stage (by position in the walk)
    #: True when requests may fail: the authoritative store is down, or an instance is
    #: killed with requests in flight (they fail with it; new ones go to the other).
    expect_failures: bool


class Harness:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.mongo = EmbeddedMongo(tmp / "mongo")
        self.pg = EmbeddedPostgres(tmp / "pg")
        self.events: list[dict[str, Any]] = []
        self.backfills: list[dict[str, Any]] = []
        self.repairs: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []

    def note(self, what: str, **extra: Any) -> None:
        self.events.append({"at": time.time(), "what": what, **extra})
        print(f"  {time.strftime('%H:%M:%S')} {what} {extra if extra else ''}", flush=True)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as http:
            for inst in self.instances:
                with contextlib.suppress(aiohttp.ClientConnectorError):
                    async with http.request(
                        method, inst.url + path, json=body, headers=ADMIN_H
                    ) as r:
                        return r.status, await r.json()
        raise RuntimeError("no instance answers the admin API")

    async def drain(self, within: float = 180) -> None:
        """Wait until neither repair queue holds anything."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status, body = await self.admin("GET", "/admin/status")
                depths = [b["repair_queue_depth"] for b in body["backends"].values()]
                if status == 200 and all(d == 0 for d in depths):
                    return
            await asyncio.sleep(0.5)
        self.note("repair queue did not drain", within=within)

    async def set_stage(self, stage: str) -> None:
        """As an operator does: if the move is refused while repairs are pending, wait for
        the queue to drain and try again."""
        body = {"stage": stage, "reason": "chaos"}
        status, answer = await self.admin("PUT", "/admin/stage", body)
        if status == 409:
            self.note("stage change waits for the repair queue", stage=stage)
            await self.drain()
            status, answer = await self.admin("PUT", "/admin/stage", body)
        if status != 200:
            raise RuntimeError(f"stage {stage}: {status} {answer}")
        await asyncio.sleep(0.5)  # every instance polls the control table every 0.2 s

    async def inject(self, fault: Fault) -> None:
        self.load.phase = fault.name
        self.note(f"fault: {fault.name}")
        hold = self.args.fault_seconds
        if fault.name.startswith("pg down"):
            await asyncio.to_thread(self.pg.stop, immediate=True)
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.pg.start)
        elif fault.name.startswith("mongo down"):
            await asyncio.to_thread(self.mongo.stop, kill=True)
            await asyncio.sleep(hold)
            await asyncio.to_thread(self.mongo.start)
        elif fault.name.startswith("sigkill"):
            victim = self.instances[1]
            victim.kill()
            await asyncio.sleep(hold)
            await victim.start()
        elif fault.name.startswith("slow"):
            target = self.pg if "pg" in fault.name else self.mongo
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                pids = server_pids(target)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                await asyncio.sleep(0.2)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # let clients see the recovery under the fault's label
        self.load.phase = "steady"

    def faults(self, round_no: int) -> dict[int, Fault]:
        """Which fault at which position of the walk, per round."""
        if round_no == 0:
            return {
                1: Fault("pg down (non-authoritative)", "dualwrite", False),
                2: Fault("slow mongo (authoritative)", "shadow", False),
                3: Fault("mongo down (non-authoritative)", "live", False),
                5: Fault("sigkill api instance", "complete", True),
                6: Fault("slow pg (authoritative)", "rampdown", False),
                9: Fault("slow pg (non-authoritative)", "dualwrite", False),
            }
        return {
            1: Fault("sigkill api instance", "dualwrite", True),
            2: Fault("pg down (non-authoritative)", "shadow", False),
            4: Fault("mongo down (non-authoritative)", "rampdown", False),
            7: Fault("pg down (authoritative)", "live", True),
            9: Fault("mongo down (authoritative)", "dualwrite", True),
        }

    async def walk(self, round_no: int) -> None:
        plan = self.faults(round_no)
        for pos, stage in enumerate(WALK):
            if pos:
                self.load.phase = f"stage change to {stage}"
                self.note(f"stage → {stage}", round=round_no + 1)
                await self.set_stage(stage)
                await asyncio.sleep(1.0)
                self.load.phase = "steady"
            if stage == "dualwrite" and pos == 1:
                await self.backfill(round_no)
                await self.repair(round_no)
            await asyncio.sleep(self.args.dwell / 2)
            if pos in plan:
                await self.inject(plan[pos])
            await asyncio.sleep(self.args.dwell / 2)

    async def backfill(self, round_no: int) -> None:
        """The runbook's step 3, under the load: copy what only MongoDB holds."""
        self.note("backfill", round=round_no + 1)
        code, summary = await self.cli(
            *("backfill", "--source", self.mongo.uri, "--workers", "1"),
            *("--report", str(self.tmp / f"backfill-{round_no}.jsonl")),
            *("--checkpoint", str(self.tmp / f"backfill-{round_no}.checkpoint.json")),
        )
        self.backfills.append({"round": round_no + 1, "exit": code, "summary": summary})

    async def repair(self, round_no: int) -> None:
        """The runbook's step 4: a backfill never overwrites or deletes, so what changed in
        MongoDB alone while the stage was ``off`` (renames, deletes) is repaired here, under
        the load, before shadow reads compare the stores."""
        code, lines = await self.cli("repair")
        self.repairs.append({"round": round_no + 1, "exit": code, "output": lines})
        self.note("repair", round=round_no + 1, output=" | ".join(lines[1:]))

    async def cli(self, *args: str) -> tuple[int, list[str]]:
        """``strangler <args>`` with the instances' environment: exit code and stdout lines
        (stderr is noted when it fails)."""
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "strangler.cli", *args),
            env={**os.environ, **self.instances[0].env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        code = proc.returncode if proc.returncode is not None else -1
        if code != 0:
            self.note(f"strangler {args[0]} exited {code}", stderr=err.decode()[-500:])
        return code, out.decode().strip().splitlines()

    async def sampler(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while not self.load._stop:
                for inst in self.instances:
                    s: dict[str, Any] = inst.sample()
                    if not s:
                        continue
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError):
                        async with http.get(f"{inst.url}/admin/status", headers=ADMIN_H) as r:
                            s["tasks"] = (await r.json())["process"]["asyncio_tasks"]
                    self.samples.append({"t": time.time(), "instance": inst.name, **s})
                await asyncio.sleep(self.args.sample_seconds)

    async def run(self) -> dict[str, Any]:
        self.mongo.start()
        self.pg.start()
        self.instances: list[Instance] = []
        try:
            return await self._run()
        finally:
            for inst in self.instances:  # a run that failed halfway leaves none behind
                if inst.proc is not None and inst.proc.poll() is None:
                    inst.kill()
            await asyncio.to_thread(self.mongo.stop)
            await asyncio.to_thread(self.pg.stop)

    async def _run(self) -> dict[str, Any]:
        await schema.apply(self.pg.dsn)
        env = {
            **os.environ,
            "MONGO_URI": self.mongo.uri,
            "MONGO_DB": "chat",
            "SUPABASE_DB_URL": self.pg.dsn,
            "STRANGLER_AUTH": "disabled",
            "STRANGLER_ADMIN_TOKEN": ADMIN,
            "STRANGLER_STAGE_POLL_SECONDS": "0.2",
            "STRANGLER_LOG_FORMAT": "json",
            "STRANGLER_LOG_LEVEL": "warning",
        }
        env.pop("STRANGLER_STAGE", None)
        self.instances = [Instance(n, env, self.tmp) for n in ("api-a", "api-b")]
        for inst in self.instances:
            await inst.start()
        self.load = Load(self.instances, self.args.clients, self.args.rate)
        load_task = asyncio.create_task(self.load.run())
        sampler = asyncio.create_task(self.sampler())
        started = time.monotonic()
        rounds = 0
        try:
            await asyncio.sleep(self.args.dwell / 2)
            while True:
                await self.walk(rounds % 2)
                rounds += 1
                if rounds >= 2 and time.monotonic() - started >= self.args.soak_seconds:
                    break
        finally:
            self.load.stop()
            await load_task
            await sampler
        await self.drain()
        return await self.judge(rounds, time.monotonic() - started)

    async def judge(self, rounds: int, seconds: float) -> dict[str, Any]:
        led = self.load.ledger
        lost: list[str] = []
        resurrected: list[str] = []
        async with MongoStore(self.mongo.uri, database="chat", timeout=30) as mongo:
            import uuid

            for sid, entry in led.sessions.items():
                if sid in led.maybe_deleted:
                    continue
                try:
                    s = await mongo.get_session(uuid.UUID(sid))
                except NotFound:
                    lost.append(f"session {sid} missing")
                    continue
                if s.title not in entry["titles"]:
                    lost.append(f"session {sid} title {s.title!r}, acknowledged {entry['last']!r}")
            for mid, m in led.messages.items():
                if mid in led.maybe_deleted or m["session"] in led.maybe_deleted:
                    continue
                cascaded = m["session"] in led.deleted_sessions
                try:
                    await mongo.get_message(uuid.UUID(mid))
                except NotFound:
                    if not cascaded:
                        lost.append(f"message {mid} missing")
                else:
                    if cascaded:
                        resurrected.append(f"message {mid} of a deleted session present")
            for rid in led.deleted_sessions:
                with contextlib.suppress(NotFound):
                    await mongo.get_session(uuid.UUID(rid))
                    resurrected.append(f"session {rid} deleted but present")
            for rid in led.deleted_messages:
                with contextlib.suppress(NotFound):
                    await mongo.get_message(uuid.UUID(rid))
                    resurrected.append(f"message {rid} deleted but present")
        _, repair_output = await self.cli("repair")
        verify_exit, _ = await self.cli("verify", "--json")
        status, divergences = await self.admin("GET", "/admin/divergences?limit=1000")
        for inst in self.instances:
            await inst.stop()
        by_phase: dict[str, dict[str, int]] = {}
        for f in self.load.failures:
            by_phase.setdefault(f.phase, {}).setdefault(f.kind, 0)
            by_phase[f.phase][f.kind] += 1
        expected = {f.name for r in (0, 1) for f in self.faults(r).values() if f.expect_failures}
        unexpected = {phase: kinds for phase, kinds in by_phase.items() if phase not in expected}
        lat = sorted(self.load.latencies)
        checks = {
            "every acknowledged write present": not lost,
            "every acknowledged delete absent": not resurrected,
            "every backfill and repair succeeded": all(
                b["exit"] == 0 for b in self.backfills + self.repairs
            ),
            "verify exits 0 after repair": verify_exit == 0,
            "zero failures at fault-free stage changes and non-authoritative outages": (
                not unexpected
            ),
        }
        return {
            "rounds": rounds,
            "seconds": round(seconds, 1),
            "requests": self.load.requests,
            "failures": len(self.load.failures),
            "failures_by_phase": by_phase,
            "latency_ms": {
                "p50": statistics.median(lat) * 1000 if lat else None,
                "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            },
            "ledger": {
                "sessions": len(led.sessions),
                "messages": len(led.messages),
                "deleted_sessions": len(led.deleted_sessions),
                "deleted_messages": len(led.deleted_messages),
                "ambiguous": len(led.maybe_deleted),
                "deletes_answered_404": led.deletes_not_found,
            },
            "lost": lost[:20],
            "resurrected": resurrected[:20],
            "backfills": self.backfills,
            "repairs_after_backfill": self.repairs,
            "repair_output": repair_output,
            "verify_exit": verify_exit,
            "divergences_recorded": len(divergences.get("items", [])) if status == 200 else None,
            "checks": checks,
            "result": "pass" if all(checks.values()) else "fail",
            "soak": soak_summary(self.samples),
            "samples": self.samples,
            "events": self.events,
        }


def soak_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per instance: RSS, fds, sockets and asyncio tasks at the start, the end and their
    peak; ``flat`` when the last quarter's median RSS is within 25% (+16 MB) of the first
    quarter's, the socket count's peak grew by at most 12 (the pools' headroom), and the
    asyncio task count's floor by at most 20 (the floor: a leak raises it, while an outage
    only piles up requests for a while)."""
    out: dict[str, Any] = {}
    for name in sorted({s["instance"] for s in samples}):
        mine = [s for s in samples if s["instance"] == name]
        if len(mine) < 8:
            out[name] = {"samples": len(mine), "flat": None}
            continue
        q = len(mine) // 4
        first, last = mine[:q], mine[-q:]
        rss0 = statistics.median(s["rss_kb"] for s in first)
        rss1 = statistics.median(s["rss_kb"] for s in last)
        sock0 = max(s["sockets"] for s in first)
        sock1 = max(s["sockets"] for s in last)
        # The floor, not the peak: during an outage requests pile up waiting (80 req/s for
        # 3 s); a leak raises the floor.
        tasks0 = min((s["tasks"] for s in first if "tasks" in s), default=0)
        tasks1 = min((s["tasks"] for s in last if "tasks" in s), default=0)
        out[name] = {
            "samples": len(mine),
            "rss_mb_first_quarter": round(rss0 / 1024, 1),
            "rss_mb_last_quarter": round(rss1 / 1024, 1),
            "rss_mb_peak": round(max(s["rss_kb"] for s in mine) / 1024, 1),
            "sockets_first_quarter_max": sock0,
            "sockets_last_quarter_max": sock1,
            "fds_max": max(s["fds"] for s in mine),
            "asyncio_tasks_first_quarter_min": tasks0,
            "asyncio_tasks_last_quarter_min": tasks1,
            "asyncio_tasks_peak": max((s.get("tasks", 0) for s in mine), default=0),
            "flat": rss1 <= rss0 * 1.25 + 16 * 1024
            and sock1 <= sock0 + 12
            and tasks1 <= tasks0 + 20,
        }
    return out


def print_report(r: dict[str, Any]) -> None:
    print(f"\n{r['rounds']} walks off→complete→off in {r['seconds']} s")
    print(
        f"requests {r['requests']:,}  failures {r['failures']:,}  "
        f"p50 {r['latency_ms']['p50']:.1f} ms  p99 {r['latency_ms']['p99']:.1f} ms"
    )
    for phase, kinds in sorted(r["failures_by_phase"].items()):
        print(f"  failures during {phase}: {kinds}")
    led = r["ledger"]
    print(
        f"ledger: {led['sessions']} sessions, {led['messages']} messages acknowledged; "
        f"{led['deleted_sessions']} session and {led['deleted_messages']} message deletes; "
        f"{led['ambiguous']} ambiguous"
    )
    print(f"divergences recorded by shadow reads: {r['divergences_recorded']}")
    for b in r["backfills"]:
        print(f"backfill in round {b['round']}: exit {b['exit']}")
        for line in b["summary"][-5:]:
            print(f"    {line}")
    for b in r["repairs_after_backfill"]:
        print(f"repair after the backfill, round {b['round']}: " + " | ".join(b["output"][1:]))
    print("final repair: " + " | ".join(r["repair_output"]))
    for line in r["lost"] + r["resurrected"]:
        print(f"  LOST/RESURRECTED: {line}")
    for name, s in r["soak"].items():
        print(f"soak {name}: {s}")
    for check, ok in r["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {check}")
    print(f"result: {r['result'].upper()}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="strangler-chaos-") as tmp:
        report = await Harness(args, Path(tmp)).run()
    print_report(report)
    report["conditions"] = conditions()
    report["args"] = vars(args)
    print(f"saved {save('chaos', report)}")
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dwell", type=float, default=6, help="seconds at each stage")
    p.add_argument("--fault-seconds", type=float, default=3, help="how long a fault lasts")
    p.add_argument("--clients", type=int, default=8, help="concurrent load clients")
    p.add_argument("--rate", type=float, default=80, help="requests per second in all")
    p.add_argument("--soak-seconds", type=float, default=0, help="keep walking this long")
    p.add_argument("--sample-seconds", type=float, default=2, help="RSS/fd sampling period")
    return p


if __name__ == "__main__":
    result = asyncio.run(main(parser().parse_args()))
    sys.exit(0 if result["result"] == "pass" else 1)
