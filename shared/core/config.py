"""Configuration: one TOML file parsed once, at the edge, into typed settings.

Every error names the file, the key and what is wrong. Secrets are read here (from
the environment or the file) and kept only in `KeyConfig.secret`, which never
appears in a repr, a log line or the database.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "TOKENPOOL_CONFIG"
DATABASE_ENV = "TOKENPOOL_DATABASE_URL"
SESSION_STRING_ENV = "TOKENPOOL_SESSION_STRING"   # a Telegram session string, when no file is used


class ConfigError(Exception):
    """A problem the user can fix in their config file; the message says where."""


@dataclass(frozen=True)
class KeyConfig:
    """One API key of the pool. `secret` is never shown; use `masked` instead."""
    label: str = ""
    api_key: str = dataclasses.field(default="", repr=False)
    api_key_env: str = ""
    daily_token_limit: int | None = None
    base_url: str = ""
    reset: str | None = None
    enabled: bool = True
    models: list[str] = field(default_factory=list)   # model name patterns it serves; empty: any

    @property
    def secret(self) -> str:
        return self.api_key


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    # Seconds a call waits for the database before it is retried.
    busy_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class PoolConfig:
    daily_token_limit: int = 2_500_000
    low_threshold: int = 500_000
    reset: str = "rolling"          # "rolling" (24 h from the key's anchor) or "utc-day"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, for models genai-prices does not know (or to override it)."""
    input_per_mtok: Decimal = Decimal(0)
    cached_input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal = Decimal(0)


@dataclass(frozen=True)
class PricingConfig:
    overrides: dict[str, ModelPrice] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientConfig:
    default_model: str = "gpt-4o-mini"
    timeout_seconds: float = 60.0
    max_attempts: int = 4           # keys tried per request before giving up
    server_error_retries: int = 1   # retries on the same key after a 5xx / timeout
    retry_backoff_seconds: float = 0.5      # first wait before such a retry (doubles each time)
    rate_limit_cooldown_seconds: float = 5.0  # cooldown after a 429 that names no reset (doubles)
    ranking_stale_seconds: float = 30.0    # no worker heartbeat this long: select keys ourselves


@dataclass(frozen=True)
class BotConfig:
    name: str = "main"
    api_id: int = 0
    api_hash: str = dataclasses.field(default="", repr=False)
    api_hash_env: str = ""
    session_string_env: str = ""
    command_prefix: str = "."
    deliver_alerts: bool = True
    alert_poll_seconds: float = 5.0         # how often this bot looks for undelivered alerts
    catch_up_dialogs: int = 30              # recent private chats scanned for unread messages at start
    max_flood_wait_seconds: int = 300       # longer FloodWaits give up the call instead of waiting


@dataclass(frozen=True)
class AutoReplyConfig:
    enabled: bool = True
    model: str = ""                 # empty: client.default_model
    models: list[str] = field(default_factory=list)   # a fallback chain; overrides `model` when set
    system_prompt: str = "You are a friendly assistant replying on the owner's behalf. Keep answers short."
    context_messages: int = 12
    cooldown_seconds: int = 30
    mode: str = "all"               # "all", "allow" (only allow-listed chats) or "deny"
    contacts_only: bool = False
    working_hours: str = ""         # e.g. "09:00-18:00" (UTC); empty means always
    max_message_age_minutes: int = 720
    fallback_text: str = ""
    max_output_tokens: int = 400
    skip_muted: bool = True                 # no replies in chats whose notifications the owner muted
    loop_fast_reply_seconds: float = 5.0    # an answer to our reply faster than this looks automated
    loop_max_fast_exchanges: int = 3       # that many in a row: we stop replying in the chat ...
    loop_pause_minutes: int = 360           # ... for this long


@dataclass(frozen=True)
class WorkerConfig:
    name: str = ""                  # empty: hostname:pid
    tick_seconds: float = 2.0
    lease_seconds: float = 10.0
    policy: str = "sticky"          # "sticky", "round-robin" or "most-remaining"
    headroom_tokens: int = 4_000
    retention_days: int = 90
    rate_limit_alert_hits: int = 3  # 429s in one window before the key's "rate limited" alert; 0: never


@dataclass(frozen=True)
class KeyBudget:
    """Limits for one key (by label), under [budgets.keys."<label>"]."""
    daily_cost_usd: Decimal | None = None
    monthly_cost_usd: Decimal | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None


@dataclass(frozen=True)
class BudgetConfig:
    daily_cost_usd: Decimal | None = None
    monthly_cost_usd: Decimal | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    keys: dict[str, KeyBudget] = field(default_factory=dict)


@dataclass(frozen=True)
class DashboardConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = dataclasses.field(default="", repr=False)
    refresh_seconds: int = 5


@dataclass(frozen=True)
class Config:
    path: str = ""
    data_dir: str = "data"
    log_level: str = "INFO"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    keys: list[KeyConfig] = field(default_factory=list)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    autoreply: AutoReplyConfig = field(default_factory=AutoReplyConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return "sqlite:///" + str(Path(self.data_dir) / "tokenpool.db")

    @property
    def session_file(self) -> Path:
        """Where `tokenpool-bot login` keeps this bot's Telegram session."""
        return Path(self.data_dir) / f"{self.bot.name}.session"

    @property
    def session_string_env(self) -> str:
        """The environment variable a session string is read from."""
        return self.bot.session_string_env or SESSION_STRING_ENV

    def key_limit(self, key: KeyConfig) -> int:
        return key.daily_token_limit if key.daily_token_limit is not None else self.pool.daily_token_limit

    def key_reset(self, key: KeyConfig) -> str:
        return key.reset or self.pool.reset


RESET_MODES = ("rolling", "utc-day")
POLICIES = ("sticky", "round-robin", "most-remaining")
AUTOREPLY_MODES = ("all", "allow", "deny")


def load_config(path: str | os.PathLike | None = None, *, env: typing.Mapping[str, str] | None = None,
                required: bool = False) -> Config:
    """Load and validate the config file.

    With no path, `$TOKENPOOL_CONFIG` or ./config.toml is used; when that file does not
    exist and `required` is false, the defaults are returned (the offline demo runs so).
    """
    env = os.environ if env is None else env
    explicit = path is not None or CONFIG_ENV in env
    path = Path(path if path is not None else env.get(CONFIG_ENV, DEFAULT_CONFIG_PATH))
    if not path.exists():
        if required or explicit:
            raise ConfigError(f"{path}: config file not found (create one with `tokenpool init`)")
        return _with_env_overrides(Config(), env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(raw, str(path), env)


def parse_config(raw: dict, path: str = "<config>", env: typing.Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    config = _build(Config, {**raw, "path": path}, path, "")
    if path != "<config>":  # a relative data_dir is relative to the config file
        config = dataclasses.replace(config, data_dir=str(Path(path).parent / Path(config.data_dir).expanduser()))
    config = _resolve_keys(config, raw, path, env)
    _validate(config, path)
    return _with_env_overrides(config, env)


def _with_env_overrides(config: Config, env: typing.Mapping[str, str]) -> Config:
    url = env.get(DATABASE_ENV)
    if url:
        config = dataclasses.replace(config, database=dataclasses.replace(config.database, url=url))
    return config


# --- generic TOML -> dataclass conversion -------------------------------------------------

def _build(cls, data, path: str, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for name, value in data.items():
        if name not in hints:
            dotted = f"{where}.{name}" if where else name
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{dotted}'{hint}")
        values[name] = _convert(hints[name], value, path, f"{where}.{name}" if where else name)
    return cls(**values)


def _convert(hint, value, path: str, key: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value, path, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: '{key}' must be a list")
        (item,) = typing.get_args(hint)
        return [_convert(item, v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' must be a table")
        _, item = typing.get_args(hint)
        return {k: _convert(item, v, path, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: '{key}' must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: '{key}' must be a whole number, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: '{key}' must be a number, not {value!r}")
        return float(value)
    if hint is Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: '{key}' must be a number, not {value!r}")
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"{path}: '{key}' must be a number, not {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: '{key}' must be a string, not {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not user input


# --- checks that span several keys ---------------------------------------------------------

def _resolve_keys(config: Config, raw: dict, path: str, env) -> Config:
    """Read each key's secret from its env var or inline value."""
    resolved = []
    for i, key in enumerate(config.keys):
        where = f"keys[{i}]" + (f" ('{key.label}')" if key.label else "")
        if key.api_key and key.api_key_env:
            raise ConfigError(f"{path}: {where}: give either 'api_key' or 'api_key_env', not both")
        if key.api_key_env:
            secret = env.get(key.api_key_env, "")
            if not secret:
                raise ConfigError(f"{path}: {where}: environment variable '{key.api_key_env}' "
                                  "named by 'api_key_env' is not set")
        elif key.api_key:
            secret = key.api_key
        else:
            raise ConfigError(f"{path}: {where}: missing 'api_key_env' (or inline 'api_key')")
        label = key.label or f"key{i + 1}"
        resolved.append(dataclasses.replace(key, api_key=secret.strip(), label=label))
    return dataclasses.replace(config, keys=resolved)


def _positive(path, key, value, allow_zero=False):
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{path}: '{key}' must be {'zero or more' if allow_zero else 'positive'}, "
                          f"not {value}")


def _validate(config: Config, path: str) -> None:
    _positive(path, "pool.daily_token_limit", config.pool.daily_token_limit)
    _positive(path, "pool.low_threshold", config.pool.low_threshold, allow_zero=True)
    _choice(path, "pool.reset", config.pool.reset, RESET_MODES)
    labels: dict[str, int] = {}
    secrets: dict[str, int] = {}
    for i, key in enumerate(config.keys):
        where = f"keys[{i}]"
        _positive(path, f"{where}.daily_token_limit", key.daily_token_limit)
        if key.reset is not None:
            _choice(path, f"{where}.reset", key.reset, RESET_MODES)
        if key.base_url and not key.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: '{where}.base_url' must start with http:// or https://")
        if key.label in labels:
            raise ConfigError(f"{path}: {where}: duplicate label '{key.label}' "
                              f"(also keys[{labels[key.label]}])")
        if key.secret in secrets:
            raise ConfigError(f"{path}: {where}: duplicate key: the same API key as "
                              f"keys[{secrets[key.secret]}]")
        labels[key.label] = i
        secrets[key.secret] = i
    _positive(path, "client.timeout_seconds", config.client.timeout_seconds)
    _positive(path, "client.max_attempts", config.client.max_attempts)
    _positive(path, "client.server_error_retries", config.client.server_error_retries, allow_zero=True)
    _positive(path, "client.retry_backoff_seconds", config.client.retry_backoff_seconds, allow_zero=True)
    _positive(path, "client.rate_limit_cooldown_seconds", config.client.rate_limit_cooldown_seconds)
    _positive(path, "client.ranking_stale_seconds", config.client.ranking_stale_seconds)
    _positive(path, "worker.tick_seconds", config.worker.tick_seconds)
    _positive(path, "worker.lease_seconds", config.worker.lease_seconds)
    _positive(path, "worker.retention_days", config.worker.retention_days)
    _positive(path, "worker.headroom_tokens", config.worker.headroom_tokens, allow_zero=True)
    _positive(path, "worker.rate_limit_alert_hits", config.worker.rate_limit_alert_hits, allow_zero=True)
    _validate_budgets(config, path)
    _choice(path, "worker.policy", config.worker.policy, POLICIES)
    _choice(path, "autoreply.mode", config.autoreply.mode, AUTOREPLY_MODES)
    _positive(path, "autoreply.context_messages", config.autoreply.context_messages, allow_zero=True)
    _positive(path, "autoreply.cooldown_seconds", config.autoreply.cooldown_seconds, allow_zero=True)
    _positive(path, "autoreply.max_message_age_minutes", config.autoreply.max_message_age_minutes,
              allow_zero=True)
    _positive(path, "autoreply.loop_max_fast_exchanges", config.autoreply.loop_max_fast_exchanges)
    _positive(path, "autoreply.loop_pause_minutes", config.autoreply.loop_pause_minutes, allow_zero=True)
    _working_hours(path, "autoreply.working_hours", config.autoreply.working_hours)
    _positive(path, "bot.alert_poll_seconds", config.bot.alert_poll_seconds)
    _positive(path, "bot.catch_up_dialogs", config.bot.catch_up_dialogs, allow_zero=True)
    if not config.bot.name.strip():
        raise ConfigError(f"{path}: 'bot.name' must not be empty")
    if not (0 < config.dashboard.port < 65536):
        raise ConfigError(f"{path}: 'dashboard.port' must be between 1 and 65535")
    _positive(path, "dashboard.refresh_seconds", config.dashboard.refresh_seconds)
    for model, price in config.pricing.overrides.items():
        for name in ("input_per_mtok", "cached_input_per_mtok", "output_per_mtok"):
            value = getattr(price, name)
            if value is not None and value < 0:
                raise ConfigError(f"{path}: 'pricing.overrides.{model}.{name}' must not be negative")


WORKING_HOURS_FORMAT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _working_hours(path, key, value):
    if value and not WORKING_HOURS_FORMAT.match(value.strip()):
        raise ConfigError(f"{path}: '{key}' must look like \"09:00-18:00\" (UTC), not {value!r}")


def _validate_budgets(config: Config, path: str) -> None:
    labels = {key.label for key in config.keys}
    scopes: list[tuple[str, BudgetConfig | KeyBudget]] = [("budgets", config.budgets)]
    scopes += [(f"budgets.keys.{label}", budget) for label, budget in config.budgets.keys.items()]
    for where, budget in scopes:
        for name in ("daily_cost_usd", "monthly_cost_usd", "daily_tokens", "monthly_tokens"):
            _positive(path, f"{where}.{name}", getattr(budget, name))
    for label in config.budgets.keys:
        if label not in labels:
            raise ConfigError(f"{path}: 'budgets.keys.{label}' names no key (labels: {', '.join(sorted(labels))})")


def _choice(path, key, value, choices):
    if value not in choices:
        raise ConfigError(f"{path}: '{key}' must be one of {', '.join(repr(c) for c in choices)}, "
                          f"not {value!r}")
