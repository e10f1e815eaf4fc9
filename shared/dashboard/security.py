"""Who may see the dashboard, and the headers every response carries.

Safe by default: the dashboard listens on loopback, where only people on the host (or at
the end of an SSH tunnel) reach it. To listen anywhere else, `[dashboard] token` must be
set; then every request carries it (`Authorization: Bearer …`) or a session cookie that
the login form sets. Tokens are compared in constant time; failed attempts are logged
(never the attempted token) and answered more slowly each time.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import time

from aiohttp import web

from shared.core.config import Config, ConfigError

log = logging.getLogger("tokenpool.dashboard")

COOKIE = "tokenpool_dashboard"
PUBLIC_PATHS = frozenset({"/login", "/static/style.css", "/static/favicon.svg"})

# No inline script or style, nothing from elsewhere, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Server": "tokenpool",
}


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: Config) -> None:
    """Refuse to listen beyond loopback without a token (a ConfigError naming the key)."""
    host = config.dashboard.host
    if not is_loopback(host) and not config.dashboard.token:
        raise ConfigError(
            f"{config.path or '<config>'}: 'dashboard.token' must be set to listen on {host!r}, which is not "
            "a loopback address (or keep 'dashboard.host' = \"127.0.0.1\" and reach it over an SSH tunnel)")


class Throttle:
    """Failed attempts per client address: each one waits longer (doubling, capped)."""

    def __init__(self, base_delay: float = 0.5, max_delay: float = 10.0, forget_after: float = 900.0,
                 max_clients: int = 10_000):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_clients = max_clients
        self._failures: dict[str, tuple[int, float]] = {}

    def failures(self, client: str) -> int:
        count, last = self._failures.get(client, (0, 0.0))
        return count if time.monotonic() - last < self.forget_after else 0

    def failed(self, client: str) -> float:
        """Count a failure; returns how long to hold the answer back."""
        if len(self._failures) >= self.max_clients:
            self._failures.clear()
        count = self.failures(client) + 1
        self._failures[client] = (count, time.monotonic())
        return min(self.base_delay * 2 ** (count - 1), self.max_delay)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


class Guard:
    """The token rules for one dashboard (no token configured: everyone on loopback may look)."""

    def __init__(self, token: str, throttle: Throttle | None = None):
        self._token = token.encode("utf-8")
        self._session = (hmac.new(self._token, b"tokenpool dashboard session", hashlib.sha256).hexdigest()
                         if token else "")
        self.throttle = throttle or Throttle()

    @property
    def enabled(self) -> bool:
        return bool(self._token)

    def token_matches(self, attempt: str) -> bool:
        # Header bytes that are not UTF-8 arrive as lone surrogates: compare the raw bytes.
        return hmac.compare_digest(attempt.encode("utf-8", "surrogateescape"), self._token)

    def session_value(self) -> str:
        """The cookie's value: derived from the token, so the cookie never holds the token itself."""
        return self._session

    def session_matches(self, value: str) -> bool:
        return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), self._session.encode("utf-8"))

    async def reject(self, request: web.Request, what: str) -> None:
        """Log a failed attempt (never what was tried) and hold the answer back."""
        client = request.remote or "?"
        delay = self.throttle.failed(client)
        log.warning("dashboard: rejected %s from %s on %s (%d recent failures)", what, client, request.path,
                    self.throttle.failures(client))
        await asyncio.sleep(delay)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def auth_middleware(guard: Guard):
    @web.middleware
    async def check(request: web.Request, handler):
        if not guard.enabled or request.path in PUBLIC_PATHS:
            return await handler(request)
        bearer = _bearer(request)
        if bearer is not None:
            if guard.token_matches(bearer):
                guard.throttle.succeeded(request.remote or "?")
                return await handler(request)
            await guard.reject(request, "a bearer token")
            return _unauthorized(request, "wrong token")
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            if guard.session_matches(cookie):
                return await handler(request)
            await guard.reject(request, "a session cookie")
            return _unauthorized(request, "session expired: log in again")
        return _unauthorized(request, "a token is required")
    return check


def _unauthorized(request: web.Request, message: str) -> web.StreamResponse:
    if request.path.startswith("/api/") or request.path == "/chart.png":
        return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": "Bearer"})
    return see_other("/login")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def headers_middleware(request: web.Request, handler):
    """Security headers on every answer, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def session_cookie_options(request: web.Request, hours: int, trust_forwarded_proto: bool = False) -> dict:
    """The session cookie expires after `hours`, and is Secure whenever the browser reached
    us over TLS: our own TLS socket, or (only if trusted) a proxy saying X-Forwarded-Proto https."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    secure = request.transport is not None and request.transport.get_extra_info("sslcontext") is not None
    secure = secure or (trust_forwarded_proto and forwarded == "https")
    return {"httponly": True, "samesite": "Strict", "path": "/", "secure": secure, "max_age": hours * 3600}
