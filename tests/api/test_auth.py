"""Auth: bad tokens are refused, and nobody reaches another user's data."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from tests.api.conftest import SECRET, ApiFactory, as_user, token

ALICE, BOB = as_user("alice"), as_user("bob")


def _unsigned(user: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims = {"sub": user, "aud": "authenticated", "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic YWxpY2U6eA=="}, "missing bearer token"),
        ({"Authorization": f"Bearer {token('alice', secret='x' * 40)}"}, "invalid token"),
        ({"Authorization": f"Bearer {token('alice', expires_in=-10)}"}, "expired"),
        ({"Authorization": f"Bearer {_unsigned('alice')}"}, "not accepted"),
        ({"Authorization": "Bearer not.a.jwt"}, "invalid token"),
        (
            {
                "Authorization": "Bearer "
                + jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, SECRET, "HS256")
            },
            "invalid token",  # no audience
        ),
        (
            {
                "Authorization": "Bearer "
                + jwt.encode({"aud": "authenticated", "exp": int(time.time()) + 3600}, SECRET)
            },
            "invalid token",  # no subject
        ),
    ],
)
async def test_bad_credentials_are_refused(
    make_api: ApiFactory, headers: dict[str, str], why: str
) -> None:
    client = await make_api("dualwrite")
    resp = await client.get("/sessions", headers=headers)
    body = await resp.json(content_type=None)
    assert resp.status == 401, body
    assert body["code"] == "unauthorized" and why in body["detail"]
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_no_endpoint_reaches_another_users_data(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite")
    s = await (await client.post("/sessions", json={"title": "mine"}, headers=ALICE)).json()
    m = await (
        await client.post(
            f"/sessions/{s['id']}/messages",
            json={"content": {"type": "conversation", "text": "secret"}},
            headers=ALICE,
        )
    ).json()
    probes = [
        ("get", f"/sessions/{s['id']}", None),
        ("patch", f"/sessions/{s['id']}", {"title": "stolen"}),
        ("delete", f"/sessions/{s['id']}", None),
        ("get", f"/sessions/{s['id']}/messages", None),
        ("post", f"/sessions/{s['id']}/messages", {"content": {"type": "conversation"}}),
        ("get", f"/messages/{m['id']}", None),
        ("delete", f"/messages/{m['id']}", None),
    ]
    for method, path, body in probes:
        resp = await getattr(client, method)(path, json=body, headers=BOB)
        assert resp.status == 404, (method, path, await resp.text())
    listed = await (await client.get("/sessions", headers=BOB)).json()
    assert listed["items"] == []
    still = await (await client.get(f"/sessions/{s['id']}/messages", headers=ALICE)).json()
    assert [x["content"]["text"] for x in still["items"]] == ["secret"]
    assert (await (await client.get(f"/sessions/{s['id']}", headers=ALICE)).json())[
        "title"
    ] == "mine"


async def test_disabled_auth_takes_the_user_from_a_header(make_api: ApiFactory) -> None:
    client = await make_api("dualwrite", auth="disabled", supabase_jwt_secret=None)
    resp = await client.post("/sessions", json={"title": "t"}, headers={"X-User-Id": "carol"})
    assert resp.status == 201 and (await resp.json())["user_id"] == "carol"
    resp = await client.get("/sessions")
    assert resp.status == 401 and "X-User-Id" in (await resp.json())["detail"]


async def test_auth_without_a_way_to_verify_tokens_does_not_start(
    api_settings: Any,
) -> None:
    from strangler.api import create_app
    from strangler.core.errors import ConfigError

    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET"):
        create_app(api_settings("dualwrite", supabase_jwt_secret=None))


@pytest.fixture
async def jwks_url() -> Any:
    """A JWKS endpoint with one RSA key (as Supabase's asymmetric signing keys publish)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})

    async def keys(_: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/auth/v1/.well-known/jwks.json", keys)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/auth/v1/.well-known/jwks.json")), key
    await server.close()


async def test_asymmetric_tokens_are_verified_against_the_jwks(
    make_api: ApiFactory, jwks_url: Any
) -> None:
    url, key = jwks_url
    client = await make_api("dualwrite", supabase_jwt_secret=None, supabase_jwks_url=url)
    claims = {"sub": "dana", "aud": "authenticated", "exp": int(time.time()) + 3600}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    resp = await client.get("/sessions", headers={"Authorization": f"Bearer {good}"})
    assert resp.status == 200, await resp.text()
    forged = jwt.encode(claims, SECRET, algorithm="HS256")  # no HS256 secret configured
    resp = await client.get("/sessions", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status == 401
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
    resp = await client.get("/sessions", headers={"Authorization": f"Bearer {wrong}"})
    assert resp.status == 401
