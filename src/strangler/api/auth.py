"""Who is calling: Supabase Auth JWTs, or ``X-User-Id`` when auth is disabled.

Tokens are verified with ``SUPABASE_JWT_SECRET`` (HS256, Supabase's legacy shared secret)
or against the project's JWKS (its asymmetric signing keys, RS256 or ES256), chosen by the
token's ``alg``. ``none`` and every other algorithm are refused. The user id is ``sub``;
``exp`` is required.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field

import jwt
import structlog
from aiohttp import web

from strangler.config import Settings
from strangler.core.errors import ConfigError, Forbidden, Unauthorized

log = structlog.get_logger(__name__)
ASYMMETRIC = ("RS256", "ES256")
#: The dashboard's session cookie (``HttpOnly``, ``SameSite=Strict``, path ``/admin``).
ADMIN_COOKIE = "strangler_admin"


@dataclass
class Authenticator:
    disabled: bool
    secret: str | None
    jwks: jwt.PyJWKClient | None
    audience: str
    admin_token: str | None
    #: Required ``iss``; None: not checked.
    issuer: str | None = None
    #: token → (sub, exp) of tokens already verified
    _verified: dict[str, tuple[str, float]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        secret = (
            settings.supabase_jwt_secret.get_secret_value()
            if settings.supabase_jwt_secret
            else None
        )
        jwks_url = settings.supabase_jwks_url or (
            f"{settings.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"
            if settings.supabase_url
            else None
        )
        disabled = settings.auth == "disabled"
        if not disabled and secret is None and jwks_url is None:
            raise ConfigError(
                "auth is enabled but nothing can verify tokens: set SUPABASE_JWT_SECRET "
                "(HS256) or SUPABASE_URL / SUPABASE_JWKS_URL (asymmetric keys), or "
                "STRANGLER_AUTH=disabled for local development"
            )
        if disabled:
            log.warning(
                "auth_disabled",
                detail="STRANGLER_AUTH=disabled: any caller can act as any user via the "
                "X-User-Id header. Never run this way in production.",
            )
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        return cls(
            disabled=disabled,
            secret=secret,
            jwks=jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None,
            audience=settings.jwt_audience,
            admin_token=admin,
            issuer=settings.jwt_issuer
            or (f"{settings.supabase_url.rstrip('/')}/auth/v1" if settings.supabase_url else None),
        )

    async def user(self, request: web.Request) -> str:
        """The caller's user id, or ``Unauthorized``."""
        if self.disabled:
            user = request.headers.get("X-User-Id", "").strip()
            if not user:
                raise Unauthorized("auth is disabled; name the user in the X-User-Id header")
            return user
        token = _bearer(request)
        if token is None:
            raise Unauthorized("missing bearer token: send Authorization: Bearer <Supabase JWT>")
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]  # verified before and not expired: a token never changes
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg == "HS256" and self.secret is not None:
                key: object = self.secret
            elif alg in ASYMMETRIC and self.jwks is not None:
                signing = await asyncio.get_running_loop().run_in_executor(
                    None, self.jwks.get_signing_key_from_jwt, token
                )
                key = signing.key
            else:
                raise Unauthorized(f"tokens signed with {alg!r} are not accepted")
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", *(["iss"] if self.issuer else [])]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired; sign in again") from None
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("the token has no subject (sub)")
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[token] = (sub, float(claims["exp"]))
        return sub

    def admin(self, request: web.Request) -> None:
        """Allow the request only with the admin token (compared in constant time), sent as
        a bearer token or as the dashboard's session cookie. A cookie-authenticated request
        that changes something must also carry ``X-Strangler-Dashboard: 1``, a header a
        cross-site form cannot send (CSRF), on top of the cookie's ``SameSite=Strict``."""
        if self.admin_token is None:
            raise Forbidden("the admin API is disabled: set STRANGLER_ADMIN_TOKEN to enable it")
        token = _bearer(request)
        if token is None:
            cookie = request.cookies.get(ADMIN_COOKIE)
            if cookie is None:
                raise Unauthorized("missing bearer token: send Authorization: Bearer <admin token>")
            if not hmac.compare_digest(cookie.encode(), self.admin_cookie().encode()):
                raise Forbidden("the dashboard session is no longer valid; sign in again")
            if request.method not in ("GET", "HEAD") and (
                request.headers.get("X-Strangler-Dashboard") != "1"
            ):
                raise Forbidden("a dashboard request that changes something needs its header")
            return
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise Forbidden("wrong admin token")

    def check_admin_token(self, token: str) -> bool:
        return self.admin_token is not None and hmac.compare_digest(
            token.encode(), self.admin_token.encode()
        )

    def admin_cookie(self) -> str:
        """The dashboard session cookie's value: an HMAC of the admin token, so the token
        itself never sits in the browser, and rotating the token ends every session."""
        assert self.admin_token is not None
        return hmac.new(self.admin_token.encode(), b"strangler-dashboard", "sha256").hexdigest()


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
