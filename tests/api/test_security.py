"""Security (reliability issue): tokens from the wrong issuer, other users' realtime
streams, hostile strings as data, oversized headers and slow clients against the real
``strangler serve`` process, and secrets kept out of logs and error bodies."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import SECRET, ApiFactory, as_user, serve, token

ALICE, BOB = as_user("alice"), as_user("bob")


async def test_a_token_from_another_issuer_is_refused(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", supabase_url="https://ref.supabase.co")
    good = token("alice", iss="https://ref.supabase.co/auth/v1")
    resp = await client.get("/sessions", headers={"Authorization": f"Bearer {good}"})
    assert resp.status == 200
    for bad in (token("alice", iss="https://evil.example/auth/v1"), token("alice")):
        resp = await client.get("/sessions", headers={"Authorization": f"Bearer {bad}"})
        body = await resp.json()
        assert resp.status == 401 and "invalid token" in body["detail"], body
    # Signed with another project's secret: forged.
    forged = token("alice", secret="another-projects-secret-of-32-bytes!", iss="x")
    resp = await client.get("/sessions", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401


async def test_a_websocket_never_carries_another_users_events(make_api: ApiFactory) -> None:
    client = await make_api("complete")
    async with client.ws_connect(f"/ws?access_token={token('bob')}") as bob_ws:
        s = await (await client.post("/sessions", json={"title": "a"}, headers=ALICE)).json()
        await client.post(
            f"/sessions/{s['id']}/messages",
            json={"content": {"type": "conversation", "text": "private"}},
            headers=ALICE,
        )
        mine = await (await client.post("/sessions", json={"title": "b"}, headers=BOB)).json()
        async with asyncio.timeout(5):
            first = await bob_ws.receive_json()
    # Bob's first event is his own session: Alice's two events never reached him.
    assert first["event"] == "session.created" and first["data"]["id"] == mine["id"]
    resp = await client.get(f"/sessions/{s['id']}/events", headers={**BOB, "Last-Event-ID": "0"})
    assert resp.status == 404


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE messages; --",
        "../../../../etc/passwd",
        "..\\..\\windows\\system32",
        "%2e%2e%2f%2e%2e%2f",
        "$where: function() { return true }",
        '{"$gt": ""}',
    ],
)
async def test_injection_and_traversal_strings_are_data(make_api: ApiFactory, hostile: str) -> None:
    client = await make_api("dualwrite")
    s = await (await client.post("/sessions", json={"title": hostile}, headers=ALICE)).json()
    assert s["title"] == hostile
    found = await (await client.get("/sessions", params={"search": hostile}, headers=ALICE)).json()
    assert [x["id"] for x in found["items"]] == [s["id"]]
    # In a path, the string is an id that does not parse: 400, never a file or a query.
    resp = await client.get(f"/sessions/{hostile}", headers=ALICE)
    assert resp.status in (400, 404)
    assert (await resp.read()).startswith(b"{")


@pytest.fixture
def served(mongo_server: Any, mongo_db: str, clean_pg: str, tmp_path: Path) -> Any:
    env = {
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_DB_URL": clean_pg,
        "STRANGLER_STAGE": "dualwrite",
        "STRANGLER_HEADER_TIMEOUT": "1.5",
        "STRANGLER_BODY_TIMEOUT": "1.5",
    }
    with serve(env, tmp_path / "serve.log") as s:
        yield s


def _status(answer: bytes) -> int:
    """The status code of a raw answer (HTTP/1.0 or 1.1: a request that failed to parse has
    no version to echo)."""
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def _raw(url: str, data: bytes, *, wait: float = 10) -> tuple[bytes, float]:
    """Send raw bytes; return the server's answer and how long it took to come."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, sep, body = answer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if sep and length is not None and len(body) >= length:
                break  # a whole answer: the server may linger before it closes
    return answer, time.monotonic() - started


def test_oversized_headers_get_431_and_no_traceback(served: Any) -> None:
    answer, _ = _raw(
        served.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    assert _status(answer) == 431, answer[:200]
    assert b'"code":"headers_too_large"' in answer
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    answer, _ = _raw(served.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert _status(answer) == 431, answer[:200]
    assert "Traceback" not in served.log.read_text()


def test_an_oversized_body_gets_413(served: Any) -> None:
    body = b"x" * (33 * 1024 * 1024)
    head = (
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token("alice").encode() + b"\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    try:
        answer, _ = _raw(served.url, head + body)
    except (ConnectionResetError, BrokenPipeError):
        pytest.fail("the server reset the connection instead of answering 413")
    assert _status(answer) == 413, answer[:200]


def test_slow_clients_are_cut_off(served: Any) -> None:
    # Headers that never end: 408 and closed after STRANGLER_HEADER_TIMEOUT.
    answer, took = _raw(served.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    assert _status(answer) == 408 and 1.0 < took < 6, (answer, took)
    # A body that never arrives: 408 after STRANGLER_BODY_TIMEOUT.
    head = (
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token("alice").encode() + b"\r\n"
        b'Content-Length: 100\r\nConnection: close\r\n\r\n{"title": '
    )
    answer, took = _raw(served.url, head)
    assert _status(answer) == 408, answer[:300]
    assert b"request_timeout" in answer and took < 6
    # The server still serves everyone else.
    with urllib.request.urlopen(f"{served.url}/healthz", timeout=5) as ok:
        assert ok.status == 200


def test_secrets_never_reach_logs_or_error_bodies(
    mongo_server: Any, mongo_db: str, tmp_path: Path
) -> None:
    """Supabase is unreachable, with the service key, a database password, the JWT secret
    and the admin token set: requests fail (503), and none of the secrets shows anywhere."""
    secrets = {
        "SUPABASE_KEY": "service-role-key-d0-not-leak-4f1c",
        "SUPABASE_DB_URL": "postgresql://postgres:pa55-d0-not-leak-77@127.0.0.1:9/postgres",
        "STRANGLER_ADMIN_TOKEN": "admin-token-d0-not-leak-93",
    }
    env = {
        "MONGO_URI": mongo_server.uri,
        "MONGO_DB": mongo_db,
        "SUPABASE_URL": "http://127.0.0.1:9",
        "STRANGLER_STAGE": "live",  # Supabase authoritative: every request needs it
        "STRANGLER_STORE_TIMEOUT": "1",
        "STRANGLER_JWT_ISSUER": "http://127.0.0.1:9/auth/v1",
        **secrets,
    }
    bodies: list[str] = []
    codes: list[int] = []
    log = tmp_path / "serve.log"
    with serve(env, log, ready="/healthz") as s:
        headers = {"Authorization": f"Bearer {token('alice', iss='http://127.0.0.1:9/auth/v1')}"}
        for method, path in (("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/readyz")):
            req = urllib.request.Request(
                f"{s.url}{path}",
                method=method,
                headers={**headers, "Content-Type": "application/json"},
                data=b'{"title": "t"}' if method == "POST" else None,
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    codes.append(resp.status)
                    bodies.append(resp.read().decode())
            except urllib.error.HTTPError as err:
                codes.append(err.code)
                bodies.append(err.read().decode())
                err.close()
    assert codes == [503, 503, 503], bodies
    text = log.read_text() + "\n".join(bodies)
    assert "store_unavailable" in text  # the failures really happened
    for name, value in secrets.items():
        leaked = value.rsplit(":", 1)[0].rsplit("@", 1)[0] if "@" in value else value
        assert "d0-not-leak" not in text, f"{name} leaked: {text[-2000:]}"
        assert leaked not in text
    assert SECRET not in text
