"""`tokenpool doctor`: check everything a running installation needs and say what to fix.

It only looks: the database is opened read-only, nothing is migrated or registered."""
from __future__ import annotations

import asyncio
import datetime as dt
import enum
import fnmatch
import json
import logging
import os
import stat
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import peewee as pw

from shared.core.budget_holds import cost_budgets_enforced
from shared.core.config import API_HASH_ENV, API_ID_ENV, Config, ConfigError, load_config
from shared.core.db import DatabaseMissing, connect_database
from shared.core.keys import MISCONFIGURED_PREFIX, fingerprint
from shared.core.liveness import heartbeats, is_alive
from shared.core.models import ApiKey, utcnow
from shared.core.pricing import Pricer, override_hint
from shared.core.query_rows import tuple_rows
from shared.core.schema import schema_status
from shared.core.status import ELIGIBLE, Status
from shared.reports.queries import key_views


class Level(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""


MARK = {Level.OK: "[green]✓[/]", Level.WARN: "[yellow]![/]", Level.FAIL: "[red]✗[/]"}


def run_checks(config_path: str | None, *, live: bool = False, now: dt.datetime | None = None) -> list[Check]:
    """All checks, in order; later checks are skipped when what they stand on failed."""
    now = now or utcnow()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Check("config", Level.FAIL, str(exc), _config_fix(str(exc)))]
    checks = [_config_check(config)]
    timeout = min(config.database.busy_timeout_seconds, 5)
    try:     # looked at read-only first: a database that is not there is reported, not created
        db = connect_database(config.database_url, busy_timeout_seconds=timeout, read_only=True)
        db.execute_sql("SELECT 1")
    except DatabaseMissing as exc:
        return checks + [Check("database", Level.WARN, str(exc).split(" (")[0], "run `tokenpool migrate`")]
    except (pw.OperationalError, pw.InterfaceError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return checks + [Check("database", Level.FAIL, f"cannot reach {_safe_url(config.database_url)}: {detail}",
                               "start the database server or correct [database] url")]
    checks.append(Check("database", Level.OK, _safe_url(config.database_url)))
    schema = _schema_check(db)
    checks.append(schema)
    if schema.level is not Level.OK:
        return checks
    checks.append(_keys_check(config, now))
    if live and config.keys:
        checks += asyncio.run(_live_key_checks(config))
    checks.append(_pricing_check(config))
    checks += _telegram_check(config)
    checks += _process_checks(config, now)
    return checks


def _pricing_check(config: Config) -> Check:
    """Every model the config names has a price (genai-prices or an override): otherwise its
    calls are shown as unpriced, and enforced cost budgets hold them at $0."""
    pricer = Pricer(config.pricing)
    pricing_log = logging.getLogger("tokenpool.pricing")
    pricing_log.disabled = True          # reported below, as this check, not as a log line
    try:
        unpriced = [model for model in config.models_in_use if not pricer.is_priced(model)]
    finally:
        pricing_log.disabled = False
    if not unpriced:
        return Check("pricing", Level.OK, "prices known for " + ", ".join(config.models_in_use))
    names = ", ".join(unpriced)
    if cost_budgets_enforced(config):
        detail = f"no price known for {names}: enforced cost budgets hold their calls at $0, so cannot stop them"
    else:
        detail = f"no price known for {names}: their calls are shown as unpriced (tokens, no cost)"
    return Check("pricing", Level.WARN, detail, override_hint(unpriced[0]))


def _config_fix(message: str) -> str:
    if "environment variable" in message:
        return ("export each variable named (e.g. `export OPENAI_KEY_MAIN=sk-...`) in this shell, or in the "
                "service's environment (systemd: an EnvironmentFile=)")
    if "config file not found" in message:
        return "run `tokenpool init` to write one, or name yours with -c PATH"
    return "correct that setting in the file (config.example.toml shows every setting with its default)"


def _config_check(config: Config) -> Check:
    if not config.path:
        return Check("config", Level.WARN, "no config file: running on built-in defaults",
                     "run `tokenpool init` and add your keys")
    return Check("config", Level.OK, f"{config.path} ({len(config.keys)} keys)")


def _schema_check(db) -> Check:
    applied, pending, unknown = schema_status(db)
    if unknown:
        return Check("schema", Level.FAIL, f"migrated by a newer tokenpool ({', '.join(unknown)})",
                     "upgrade tokenpool on this host, or go back with the newer one's `tokenpool migrate --to`")
    if not applied:
        return Check("schema", Level.WARN, "empty database", "run `tokenpool migrate`")
    if pending:
        return Check("schema", Level.WARN, f"{len(pending)} migration(s) pending", "run `tokenpool migrate`")
    return Check("schema", Level.OK, f"up to date ({applied[-1]})")


def _keys_check(config: Config, now: dt.datetime) -> Check:
    if not config.keys:
        return Check("keys", Level.WARN, "no [[keys]] in config", "add a [[keys]] table with api_key_env")
    check = _registered_keys_check(config, now)
    known = {fp for (fp,) in tuple_rows(ApiKey.select(ApiKey.fingerprint))}
    unregistered = [k.label for k in config.keys if fingerprint(k.secret) not in known]
    if not unregistered:       # the doctor only looks: registering is `migrate`'s (or a bot's, the worker's) job
        return check
    detail = f"not registered in the database yet: {', '.join(unregistered)}"
    fix = "run `tokenpool migrate` (or start the worker or a bot) to register the config's keys"
    if check.level is Level.FAIL:
        return Check("keys", Level.FAIL, f"{check.detail}; {detail}", f"{check.fix}; {fix}")
    return Check("keys", Level.WARN, detail, fix)


def _registered_keys_check(config: Config, now: dt.datetime) -> Check:
    views = key_views(now, config.pool.low_threshold)
    counts: dict[Status, int] = {}
    for view in views:
        counts[view.status] = counts.get(view.status, 0) + 1
    summary = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda kv: kv[0].value))
    invalid = [v.label + (f" ({v.invalid_reason})" if v.invalid_reason.startswith(MISCONFIGURED_PREFIX) else "")
               for v in views if v.status is Status.INVALID]
    if invalid:
        fix = "replace the key in config, then `tokenpool keys enable LABEL`"
        if any(v.invalid_reason.startswith(MISCONFIGURED_PREFIX) for v in views if v.status is Status.INVALID):
            fix = "correct the key's base_url (its path answered 404/405; the key comes back when it changes), " \
                  "or " + fix
        return Check("keys", Level.FAIL, f"{summary}; invalid: {', '.join(invalid)}", fix)
    if not any(v.status in ELIGIBLE for v in views):
        return Check("keys", Level.WARN, f"{summary}; no key can be used right now",
                     "wait for a reset (`tokenpool keys` shows when) or add keys")
    return Check("keys", Level.OK, summary)


async def _live_key_checks(config: Config) -> list[Check]:
    """Ask each key's endpoint for its model list: proves the secret and the base_url work."""
    import openai

    async def probe(key):
        client = openai.AsyncOpenAI(api_key=key.secret, base_url=key.base_url or None, max_retries=0, timeout=10)
        try:
            listed = [m.id for m in (await client.models.list()).data]
            missing = [p for p in key.models if not any(fnmatch.fnmatchcase(m, p) for m in listed)]
            if missing:
                return Check(f"key {key.label}", Level.WARN,
                             f"accepted, but its endpoint lists no model matching {', '.join(missing)} "
                             f"({len(listed)} models listed)",
                             "fix `models` of this key, or its base_url (another provider?)")
            serves = f"; serves {', '.join(key.models)}" if key.models else ""
            return Check(f"key {key.label}", Level.OK, f"accepted by the API{serves}")
        except openai.AuthenticationError:
            return Check(f"key {key.label}", Level.FAIL, "rejected by the API (401)", "replace the key")
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405):
                return Check(f"key {key.label}", Level.FAIL, f"API answered {exc.status_code} at {key.base_url}",
                             "the base_url's path looks wrong (it usually ends in /v1)")
            return Check(f"key {key.label}", Level.WARN, f"API answered {exc.status_code}")
        except openai.APIConnectionError:
            where = key.base_url or "the OpenAI API"
            return Check(f"key {key.label}", Level.FAIL, f"cannot reach {where}", "check base_url and the network")
        finally:
            await client.close()

    return list(await asyncio.gather(*(probe(k) for k in config.keys)))


def _telegram_check(config: Config) -> list[Check]:
    return [_telegram_app_check(config), _session_check(config)]


def _telegram_app_check(config: Config) -> Check:
    """api_id / api_hash: from [bot] or the environment (the bot's own rules, userbot/session.py)."""
    has_id = bool(config.bot.api_id) or bool(os.environ.get(API_ID_ENV, "").strip())
    has_hash = bool(config.bot.api_hash or (config.bot.api_hash_env and os.environ.get(config.bot.api_hash_env))
                    or os.environ.get(API_HASH_ENV))
    missing = [name for name, present in (("api_id", has_id), ("api_hash", has_hash)) if not present]
    if missing:
        return Check("telegram app", Level.WARN, f"no {' or '.join(missing)} (in [bot] or ${API_ID_ENV} / "
                     f"${API_HASH_ENV})", "get them at https://my.telegram.org (only needed on hosts that run a bot)")
    return Check("telegram app", Level.OK, "api_id and api_hash set")


def _session_check(config: Config) -> Check:
    if os.environ.get(config.session_string_env):
        return Check("telegram session", Level.OK, f"session string from ${config.session_string_env}")
    path = config.session_file
    if not path.exists():
        return Check("telegram session", Level.WARN, f"no session at {path}",
                     "run `tokenpool-bot login` (only needed on hosts that run a bot)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check("telegram session", Level.FAIL, f"{path} is readable by others ({oct(mode)})",
                     f"chmod 600 {path}")
    return Check("telegram session", Level.OK, str(path))


def _process_checks(config: Config, now: dt.datetime) -> list[Check]:
    workers = heartbeats("worker")
    alive = [w for w in workers if is_alive(w, now)]
    if alive:
        worker = Check("worker", Level.OK, ", ".join(f"{w.name} seen {_ago(now, w.last_seen)}" for w in alive))
    elif workers:
        last = max(workers, key=lambda w: w.last_seen)
        worker = Check("worker", Level.WARN, f"not running (last seen {_ago(now, last.last_seen)})",
                       "start it: `systemctl start tokenpool-worker` or `tokenpool-worker`")
    else:
        worker = Check("worker", Level.WARN, "never ran against this database",
                       "start `tokenpool-worker` (bots fall back to a slower degraded mode without it)")
    bots = heartbeats("bot")
    down = [b for b in bots if not is_alive(b, now)]
    detail = ", ".join(f"{b.name} {'down' if b in down else 'up'} ({_ago(now, b.last_seen)})"
                       for b in bots) or "none seen yet"
    if down:
        names = ", ".join(b.name for b in down)
        fix = f"start {names} (`tokenpool-bot`), or ignore a bot you retired"
        return [worker, Check("bots", Level.WARN, detail, fix)]
    return [worker, Check("bots", Level.OK if bots else Level.WARN, detail,
                          "" if bots else "start `tokenpool-bot` on the host that has the Telegram session")]


def _ago(now: dt.datetime, then: dt.datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _safe_url(url: str) -> str:
    """The URL without its password."""
    parts = urlparse(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunparse(parts._replace(netloc=netloc))


def cmd_doctor(args) -> int:
    checks = run_checks(args.config, live=args.live)
    if args.json:
        print(json.dumps([{"check": c.name, "level": c.level.value, "detail": c.detail, "fix": c.fix}
                          for c in checks], indent=2))
    else:
        from rich.console import Console
        from rich.markup import escape
        console = Console()
        for c in checks:      # details and fixes are plain text: "[[keys]]" is not markup
            console.print(f"{MARK[c.level]} [bold]{escape(c.name)}[/]: {escape(c.detail)}", highlight=False)
            if c.fix:
                console.print(f"    → {escape(c.fix)}", highlight=False)
    return exit_status(checks)


def exit_status(checks: list[Check]) -> int:
    """0: all ok; 1: something fails; 3: warnings only (so scripts and CI can tell)."""
    if any(c.level is Level.FAIL for c in checks):
        return 1
    return 3 if any(c.level is Level.WARN for c in checks) else 0


def register(command) -> None:
    sub = command("doctor", cmd_doctor, "check config, database, schema, keys, session and worker; say what to fix "
                                        "(exit status 0: all ok, 1: something fails, 3: warnings only)")
    sub.add_argument("--live", action="store_true", help="also ask each key's API for its model list")

