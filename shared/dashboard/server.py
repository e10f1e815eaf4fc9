"""The dashboard's web server: routes, the page, the JSON endpoints, and running it.

Every number comes from the shared reporting core (`shared.reports.queries`, through
`payloads`); the handlers only parse the request, run the report on the database
thread, and answer. Nothing here writes to the database.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import jinja2
import peewee as pw
from aiohttp import web

from shared.core.config import Config
from shared.core.db import DatabaseUnavailable, database, retrying
from shared.core.models import utcnow
from shared.core.startup import open_readonly
from shared.dashboard import payloads, templating
from shared.dashboard.request_log import quiet_parse_errors
from shared.dashboard.security import (
    COOKIE,
    Guard,
    Throttle,
    auth_middleware,
    check_bind,
    headers_middleware,
    see_other,
    session_cookie_options,
)
from shared.reports.queries import ReportError

log = logging.getLogger("tokenpool.dashboard")

HERE = Path(__file__).resolve().parent
CONFIG_KEY = web.AppKey("config", Config)
CLOCK_KEY: web.AppKey[Callable[[], dt.datetime]] = web.AppKey("clock")
DB_THREAD_KEY = web.AppKey("db_thread", concurrent.futures.ThreadPoolExecutor)
GUARD_KEY = web.AppKey("guard", Guard)
TEMPLATES_KEY = web.AppKey("templates", jinja2.Environment)


class BadParameter(ValueError):
    """A query parameter the endpoint cannot take; answered with a 400 and this message."""


def create_app(config: Config, *, clock: Callable[[], dt.datetime] = utcnow,
               throttle: Throttle | None = None) -> web.Application:
    """The dashboard application over the database `shared.core.db.database` is bound to."""
    guard = Guard(config.dashboard.token, throttle)
    app = web.Application(middlewares=[headers_middleware, errors_middleware, auth_middleware(guard)])
    app[CONFIG_KEY] = config
    app[CLOCK_KEY] = clock
    app[GUARD_KEY] = guard
    app[TEMPLATES_KEY] = templating.environment()
    # One thread for the database: peewee keeps one connection per thread.
    app[DB_THREAD_KEY] = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-db")
    app.on_cleanup.append(_close_db_thread)
    app.router.add_get("/", page)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/api/stats", api_stats)
    app.router.add_get("/api/keys", api_keys)
    app.router.add_get("/api/recent", api_recent)
    app.router.add_get("/api/usage", api_usage)
    app.router.add_get("/chart.png", chart_png)
    for file in sorted((HERE / "static").iterdir()):   # a fixed set: no path from a client reaches the disk
        app.router.add_get(f"/static/{file.name}", _static_file(file))
    quiet_parse_errors()
    return app


def _static_file(path: Path):
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)
    return serve


async def _close_db_thread(app: web.Application) -> None:
    executor = app[DB_THREAD_KEY]
    await asyncio.get_running_loop().run_in_executor(executor, _close_connection)
    executor.shutdown(wait=True)


def _close_connection() -> None:
    if database.obj is not None and not database.obj.is_closed():
        database.obj.close()


async def _on_db(request: web.Request, fn, *args):
    """Run a report on the database thread, retrying a database that is briefly away."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[DB_THREAD_KEY],
                                      lambda: retrying(fn, *args, attempts=3, what="dashboard report"))


@web.middleware
async def errors_middleware(request: web.Request, handler):
    """Bad parameters are 400s and an unreachable database a 503, each with a JSON message."""
    try:
        return await handler(request)
    except (BadParameter, ReportError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except (DatabaseUnavailable, pw.OperationalError) as exc:
        log.warning("dashboard: database unavailable: %s", exc)
        return web.json_response({"error": "the database is unavailable; try again shortly"}, status=503)
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            return web.json_response({"error": exc.reason}, status=exc.status)
        raise


# --- parameters ----------------------------------------------------------------------------------

def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be between {low} and {high}, not {value}")
    return value


def text_param(request: web.Request, name: str, default: str) -> str:
    raw = request.query.get(name, default)
    if not raw.isascii() or not raw.isalpha():
        raise BadParameter(f"{name} must be a word, not {raw[:40]!r}")
    return raw


def choice_param(request: web.Request, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = text_param(request, name, default)
    if raw not in choices:
        raise BadParameter(f"{name} must be one of {', '.join(choices)}, not {raw[:40]!r}")
    return raw


# --- pages ---------------------------------------------------------------------------------------

async def page(request: web.Request) -> web.Response:
    config, now = request.app[CONFIG_KEY], request.app[CLOCK_KEY]()
    context = await _on_db(request, payloads.page_payload, now, config)
    html = request.app[TEMPLATES_KEY].get_template("index.html").render(
        **context, refresh_seconds=config.dashboard.refresh_seconds, token_required=request.app[GUARD_KEY].enabled)
    return web.Response(text=html, content_type="text/html")


async def login_form(request: web.Request) -> web.Response:
    if not request.app[GUARD_KEY].enabled:
        raise web.HTTPSeeOther("/")
    return _login_page(request, "")


def _login_page(request: web.Request, message: str, status: int = 200) -> web.Response:
    html = request.app[TEMPLATES_KEY].get_template("login.html").render(message=message)
    return web.Response(text=html, content_type="text/html", status=status)


async def login(request: web.Request) -> web.StreamResponse:
    guard = request.app[GUARD_KEY]
    if not guard.enabled:
        raise web.HTTPSeeOther("/")
    form = await request.post()
    attempt = form.get("token")
    if not isinstance(attempt, str) or not guard.token_matches(attempt):
        await guard.reject(request, "a login")
        return _login_page(request, "That token is not right.", status=401)
    guard.throttle.succeeded(request.remote or "?")
    response = see_other("/")
    dashboard = request.app[CONFIG_KEY].dashboard
    response.set_cookie(COOKIE, guard.session_value(),
                        **session_cookie_options(request, dashboard.session_hours, dashboard.trust_forwarded_proto))
    return response


# --- JSON ----------------------------------------------------------------------------------------

async def api_stats(request: web.Request) -> web.Response:
    config, now = request.app[CONFIG_KEY], request.app[CLOCK_KEY]()
    return web.json_response(await _on_db(request, payloads.stats_payload, now, config))


async def api_keys(request: web.Request) -> web.Response:
    config, now = request.app[CONFIG_KEY], request.app[CLOCK_KEY]()
    return web.json_response(await _on_db(request, payloads.keys_payload, now, config))


async def api_recent(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", payloads.RECENT_CALLS, 1, payloads.MAX_RECENT)
    return web.json_response(await _on_db(request, payloads.recent_payload, limit))


async def api_usage(request: web.Request) -> web.Response:
    days = int_param(request, "days", 30, 1, payloads.MAX_DAYS)
    by = text_param(request, "by", "day")
    now = request.app[CLOCK_KEY]()
    return web.json_response(await _on_db(request, payloads.usage_payload, now, days, by))


async def chart_png(request: web.Request) -> web.Response:
    days = int_param(request, "days", payloads.CHART_DAYS, 2, payloads.MAX_CHART_DAYS)
    metric = choice_param(request, "metric", "tokens", ("tokens", "cost"))
    size = choice_param(request, "size", "wide", ("wide", "phone"))
    now = request.app[CLOCK_KEY]()
    png = await _on_db(request, payloads.chart_png, now, days, metric, size == "phone")
    return web.Response(body=png, content_type="image/png")


# --- running it ----------------------------------------------------------------------------------

def run_dashboard(config: Config) -> None:
    """Serve the dashboard until interrupted (refuses a non-loopback host without a token)."""
    check_bind(config)
    open_readonly(config)
    listening = _listen(config.dashboard.host, config.dashboard.port)   # before saying where it serves
    app = create_app(config)
    where = f"http://{_url_host(config.dashboard.host)}:{config.dashboard.port}/"
    access = "token required" if config.dashboard.token else "no token: loopback only"
    print(f"tokenpool dashboard at {where} ({access}); Ctrl-C stops it", flush=True)
    web.run_app(app, sock=listening, print=None, access_log=None, handle_signals=True)


class PortUnavailable(Exception):
    """The dashboard's address cannot be listened on; the message says what to change."""


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        reason = ("is in use (another dashboard?)" if exc.errno == errno.EADDRINUSE
                  else f"cannot be used ({exc.strerror})")
        raise PortUnavailable(f"{host}:{port} {reason}: choose another with --port or [dashboard] port") from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
