"""Configuration: one TOML file parsed once, at the edge, into typed settings.

Every error names the file, the key and what is wrong. Secrets are read here (from
the environment or the file) and kept only in `KeyConfig.secret`, which never
appears in a repr, a log line or the database.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from shared.core.config_limits import (
    BASE_URL_COLUMN,
    BOT_COLUMN,
    DAY,
    HOUR,
    LABEL_COLUMN,
    MODEL_COLUMN,
    PRICE_MAX,
    TOKENS_MAX,
    USD_MAX,
    WORKER_NAME_MAX,
    YEAR_DAYS,
    limit_of,
    list_setting,
    secret_setting,
    setting,
)

log = logging.getLogger("tokenpool.config")

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "TOKENPOOL_CONFIG"
DATABASE_ENV = "TOKENPOOL_DATABASE_URL"
SESSION_STRING_ENV = "TOKENPOOL_SESSION_STRING"   # a Telegram session string, when no file is used
API_ID_ENV = "TOKENPOOL_API_ID"                   # Telegram api_id / api_hash when [bot] has none
API_HASH_ENV = "TOKENPOOL_API_HASH"
# The commented example `tokenpool init` copies; shipped in the wheel (the top-level copy is checked equal).
EXAMPLE_CONFIG = Path(__file__).with_name("config.example.toml")


def user_data_dir(env: typing.Mapping[str, str] | None = None) -> Path:
    """Where data goes when no config file names a place: `$XDG_DATA_HOME/tokenpool`, by default
    `~/.local/share/tokenpool` (never the current directory, wherever a command is run)."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME", "")
    if not Path(base).is_absolute():              # the XDG rule: a relative value is ignored
        base = str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "tokenpool"


RESET_MODES = ("rolling", "utc-day")
ALLOWANCE_WINDOWS = ("utc-day", "rolling", "minute")
ALLOWANCE_NAME_MAX = 100
POLICIES = ("sticky", "round-robin", "most-remaining")
AUTOREPLY_MODES = ("all", "allow", "deny")
MEDIA_MODES = ("ignore", "text")
PHOTO_MODES = MEDIA_MODES + ("vision",)
IMAGE_DETAILS = ("low", "high", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """A problem the user can fix in their config file; the message says where."""


@dataclass(frozen=True)
class KeyConfig:
    """One API key of the pool. `secret` is never shown; use `masked` instead."""
    label: str = setting("", max_length=LABEL_COLUMN)
    api_key: str = secret_setting("", max_length=1_000)
    api_key_env: str = setting("", max_length=200)
    daily_token_limit: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    base_url: str = setting("", max_length=BASE_URL_COLUMN)
    reset: str | None = setting(None, choices=RESET_MODES)
    enabled: bool = True
    models: list[str] = list_setting(max_length=MODEL_COLUMN, non_empty=True)   # model patterns it serves; empty: any
    # Names of the [[allowances]] it draws on (with other keys, maybe).
    allowances: list[str] = list_setting(max_length=ALLOWANCE_NAME_MAX, non_empty=True)

    @property
    def secret(self) -> str:
        return self.api_key


@dataclass(frozen=True)
class AllowanceConfig:
    """What a provider grants an organization or account, shared by the keys that name it:
    `tokens` and/or `requests` per `window`, for the models matching `models` (empty: any)."""
    name: str = setting("", max_length=ALLOWANCE_NAME_MAX)     # required: checked in _validate_allowances
    window: str = setting("utc-day", choices=ALLOWANCE_WINDOWS)   # "rolling": 24 h from first registration
    tokens: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    requests: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    models: list[str] = list_setting(max_length=MODEL_COLUMN, non_empty=True)


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = setting("", max_length=2_000)
    # Seconds a call waits for the database before it is retried.
    busy_timeout_seconds: float = setting(10.0, low=0, above=True, high=HOUR)


@dataclass(frozen=True)
class PoolConfig:
    daily_token_limit: int = setting(2_500_000, low=0, above=True, high=TOKENS_MAX)
    low_threshold: int = setting(500_000, low=0, high=TOKENS_MAX)
    reset: str = setting("rolling", choices=RESET_MODES)   # "rolling" (24 h from the key's anchor) or "utc-day"


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens, for models genai-prices does not know (or to override it)."""
    input_per_mtok: Decimal = setting(Decimal(0), low=0, high=PRICE_MAX)
    cached_input_per_mtok: Decimal | None = setting(None, low=0, high=PRICE_MAX)
    output_per_mtok: Decimal = setting(Decimal(0), low=0, high=PRICE_MAX)


@dataclass(frozen=True)
class PricingConfig:
    overrides: dict[str, ModelPrice] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientConfig:
    default_model: str = setting("gpt-4o-mini", max_length=MODEL_COLUMN, non_empty=True)
    timeout_seconds: float = setting(60.0, low=0, above=True, high=HOUR)
    max_attempts: int = setting(4, low=1, high=100)             # keys tried per request before giving up
    server_error_retries: int = setting(1, low=0, high=100)     # retries on the same key after a 5xx / timeout
    retry_backoff_seconds: float = setting(0.5, low=0, high=HOUR)   # first wait before such a retry (doubles)
    rate_limit_cooldown_seconds: float = setting(5.0, low=0, above=True, high=DAY)  # after a 429 naming no reset
    # Output tokens reserved against allowances for a call that sets no max_tokens.
    reserve_output_tokens: int = setting(1024, low=1, high=TOKENS_MAX)
    # A reservation its process never settled (it died mid-call) stops counting after this.
    reservation_ttl_seconds: float = setting(600.0, low=0, above=True, high=DAY)
    # A key's own daily_token_limit is reserved like an allowance once fewer than
    # pool.low_threshold tokens are left (off: checked, not reserved).
    reserve_key_limits: bool = True


@dataclass(frozen=True)
class BotConfig:
    name: str = setting("main", max_length=BOT_COLUMN, non_empty=True)
    api_id: int = setting(0, low=0, high=2**31 - 1)
    api_hash: str = secret_setting("", max_length=200)
    api_hash_env: str = setting("", max_length=200)
    session_string_env: str = setting("", max_length=200)
    command_prefix: str = setting(".", max_length=8, non_empty=True)
    deliver_alerts: bool = True
    alert_poll_seconds: float = setting(5.0, low=0, above=True, high=HOUR)  # how often this bot looks for alerts
    catch_up_dialogs: int = setting(30, low=0, high=10_000)      # recent private chats scanned for unread at start
    max_flood_wait_seconds: int = setting(300, low=0, high=DAY)  # longer FloodWaits give up the call instead


@dataclass(frozen=True)
class RecipientsConfig:
    """Who gets auto-replies, like Telegram Business: a chat must pass both questions
    (contact or not? a chat that existed before, or a new one?). Allow/deny lists win."""
    contacts: bool = True
    non_contacts: bool = True
    existing_chats: bool = True
    new_chats: bool = True


@dataclass(frozen=True)
class MediaByKindConfig:
    """What each kind of media gets; a kind left out follows `autoreply.media`."""
    photo: str | None = setting(None, choices=PHOTO_MODES)      # "vision": the photo goes to the model
    voice: str | None = setting(None, choices=MEDIA_MODES)
    sticker: str | None = setting(None, choices=MEDIA_MODES)
    document: str | None = setting(None, choices=MEDIA_MODES)


@dataclass(frozen=True)
class AutoReplyConfig:
    enabled: bool = True
    model: str = setting("", max_length=MODEL_COLUMN)       # empty: client.default_model
    models: list[str] = list_setting(max_length=MODEL_COLUMN, non_empty=True)   # a fallback chain; overrides `model`
    system_prompt: str = setting("You are a friendly assistant replying on the owner's behalf. Keep answers short.",
                                 max_length=20_000)
    context_messages: int = setting(12, low=0, high=1_000)
    cooldown_seconds: int = setting(30, low=0, high=7 * DAY)
    mode: str = setting("all", choices=AUTOREPLY_MODES)     # "all", "allow" (only allow-listed chats) or "deny"
    contacts_only: bool = False
    working_hours: str = setting("", max_length=11)          # e.g. "09:00-18:00" (UTC); empty means always
    max_message_age_minutes: int = setting(720, low=0, high=YEAR_DAYS * 24 * 60)
    fallback_text: str = setting("", max_length=4_096)       # one Telegram message
    max_output_tokens: int = setting(400, low=1, high=1_000_000)
    skip_muted: bool = True                                  # no replies in chats the owner muted
    loop_fast_reply_seconds: float = setting(5.0, low=0, high=HOUR)  # an answer faster than this looks automated
    loop_max_fast_exchanges: int = setting(3, low=1, high=1_000)     # that many in a row: we stop replying ...
    loop_pause_minutes: int = setting(360, low=0, high=YEAR_DAYS * 24 * 60)   # ... for this long
    loop_typing_chars_per_second: float = setting(10.0, low=0, above=True, high=10_000)   # ... or than a person types
    # hard cap per chat (0: none); later messages wait
    max_replies_per_chat_per_hour: int = setting(20, low=0, high=100_000)
    # across all chats (0: none); later messages wait
    max_replies_per_minute: int = setting(10, low=0, high=100_000)
    # answer a burst once the contact paused this long
    reply_after_quiet_seconds: float = setting(3.0, low=0, high=HOUR)
    # the owner wrote in a chat: hands off this long
    owner_pause_minutes: int = setting(30, low=0, high=YEAR_DAYS * 24 * 60)
    # reply only when the owner has been away ...
    only_when_away: bool = False
    # ... this long (no message, not seen online)
    away_after_minutes: int = setting(10, low=0, high=YEAR_DAYS * 24 * 60)
    # post the away digest on the owner's return
    digest_on_return: bool = True
    recipients: RecipientsConfig = field(default_factory=RecipientsConfig)
    # wait as if reading, then "typing…" as long as typing takes
    human_pacing: bool = False
    read_delay_seconds: float = setting(2.0, low=0, high=HOUR)
    typing_chars_per_second: float = setting(12.0, low=0, above=True, high=10_000)
    max_typing_seconds: float = setting(8.0, low=0, high=HOUR)
    mark_read: bool = True                                   # mark a chat read once its messages were answered
    media: str = setting("ignore", choices=MEDIA_MODES)      # voice notes, photos, stickers, files: "ignore" or "text"
    media_text: str = setting("I can't open this here; I'll look at it later.", max_length=4_096)
    media_by_kind: MediaByKindConfig = field(default_factory=MediaByKindConfig)
    # photos sent to the model ("vision"): which model (empty: the auto-reply model), how closely it looks,
    # and the largest photo downloaded
    vision_model: str = setting("", max_length=MODEL_COLUMN)
    image_detail: str = setting("low", choices=IMAGE_DETAILS)
    max_image_bytes: int = setting(5_000_000, low=1, high=20_000_000)


@dataclass(frozen=True)
class WorkerConfig:
    name: str = setting("", max_length=WORKER_NAME_MAX)     # empty: hostname:pid
    tick_seconds: float = setting(2.0, low=0, above=True, high=HOUR)
    lease_seconds: float = setting(10.0, low=0, above=True, high=DAY)
    policy: str = setting("sticky", choices=POLICIES)       # "sticky", "round-robin" or "most-remaining"
    headroom_tokens: int = setting(4_000, low=0, high=TOKENS_MAX)
    retention_days: int = setting(90, low=1, high=100 * YEAR_DAYS)
    rate_limit_alert_hits: int = setting(3, low=0, high=1_000_000)  # 429s in one window before the alert; 0: never


@dataclass(frozen=True)
class KeyBudget:
    """Limits for one key (by label), under [budgets.keys."<label>"]."""
    daily_cost_usd: Decimal | None = setting(None, low=0, above=True, high=USD_MAX)
    monthly_cost_usd: Decimal | None = setting(None, low=0, above=True, high=USD_MAX)
    daily_tokens: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    monthly_tokens: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)


@dataclass(frozen=True)
class BudgetConfig:
    daily_cost_usd: Decimal | None = setting(None, low=0, above=True, high=USD_MAX)
    monthly_cost_usd: Decimal | None = setting(None, low=0, above=True, high=USD_MAX)
    daily_tokens: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    monthly_tokens: int | None = setting(None, low=0, above=True, high=TOKENS_MAX)
    keys: dict[str, KeyBudget] = field(default_factory=dict)
    # Refuse calls whose worst case would cross a budget (auto-replies send the fallback text)
    # until the period ends or the owner lifts it (`.budget lift`, `tokenpool budget lift`).
    enforce: bool = False


@dataclass(frozen=True)
class DashboardConfig:
    host: str = setting("127.0.0.1", max_length=253)   # "" or "0.0.0.0": every interface
    port: int = setting(8765, low=1, high=65_535)
    token: str = secret_setting("", max_length=1_000)
    refresh_seconds: int = setting(5, low=0, above=True, high=DAY)
    session_hours: int = setting(12, low=1, high=24 * 90)      # a login lasts this long
    # Behind a TLS-terminating reverse proxy that sets X-Forwarded-Proto: trust it (only then)
    # to mark the session cookie Secure. Off: only a TLS socket of our own counts.
    trust_forwarded_proto: bool = False


@dataclass(frozen=True)
class Config:
    path: str = ""
    data_dir: str = setting("data", max_length=4_096, non_empty=True)
    log_level: str = setting("INFO", choices=LOG_LEVELS, ignore_case=True)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    keys: list[KeyConfig] = field(default_factory=list)
    allowances: list[AllowanceConfig] = field(default_factory=list)
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
    def models_in_use(self) -> list[str]:
        """The models this config asks for by name (the client's default, the auto-reply
        chain, the vision model), each once, in that order."""
        names = [self.client.default_model, self.autoreply.model, *self.autoreply.models, self.autoreply.vision_model]
        return list(dict.fromkeys(name for name in names if name))

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


def load_config(path: str | os.PathLike | None = None, *, env: typing.Mapping[str, str] | None = None,
                required: bool = False) -> Config:
    """Load and validate the config file.

    With no path, `$TOKENPOOL_CONFIG` or ./config.toml is used; when that file does not
    exist and `required` is false, the defaults are returned with a warning, their data in
    the per-user folder (`user_data_dir`), not in the current directory.
    """
    env = os.environ if env is None else env
    explicit = path is not None or CONFIG_ENV in env
    path = Path(path if path is not None else env.get(CONFIG_ENV, DEFAULT_CONFIG_PATH))
    if not path.exists():
        if required or explicit:
            raise ConfigError(f"{path}: config file not found (create one with `tokenpool init`)")
        config = _with_env_overrides(Config(data_dir=str(user_data_dir(env))), env)
        where = "the database " + (f"at {DATABASE_ENV}" if env.get(DATABASE_ENV)
                                   else f"in {config.data_dir}/ (read-only commands create nothing)")
        log.warning("no config file: %s not found (name one with -c PATH or $%s; `tokenpool init` writes one); "
                    "using the defaults, %s", path, CONFIG_ENV, where)
        return config
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML for tokenpool: tables or arrays nested far too deeply") from None
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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in data.items():
        dotted = f"{where}.{name}" if where else name
        if name not in hints:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{path}: unknown key '{_shown(dotted)}'{hint}")
        values[name] = _convert(hints[name], value, path, dotted)
        limit = limit_of(fields[name])
        items = values[name] if isinstance(values[name], list) else [values[name]]
        problem = next((p for p in map(limit.problem, items) if p), None)
        if problem:
            shown = f", not {_shown(repr(value))}" if fields[name].repr else ""   # a secret is never shown
            raise ConfigError(f"{path}: '{_shown(dotted)}' must be {problem}{shown}")
    return cls(**values)


def _shown(text: str, width: int = 60) -> str:
    """A user's value or key in an error message: never pages long."""
    return text if len(text) <= width else text[:width] + f"… ({len(text):,} characters)"


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
        return {k: _convert(item, v, path, f"{key}.{_shown(k)}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: '{key}' must be true or false, not {_shown(repr(value))}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: '{key}' must be a whole number, not {_shown(repr(value))}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: '{key}' must be a number, not {_shown(repr(value))}")
        try:
            return float(value)
        except OverflowError:           # an integer too large for a float
            raise ConfigError(f"{path}: '{key}' is far too large") from None
    if hint is Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: '{key}' must be a number, not {_shown(repr(value))}")
        try:
            number = Decimal(str(value)) if len(str(value)) <= 100 else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise ConfigError(f"{path}: '{key}' must be a finite number, not {_shown(repr(value))}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: '{key}' must be a string, not {_shown(repr(value))}")
        return value
    raise TypeError(f"unsupported config type {hint!r}")  # a bug in this module, not user input


# --- checks that span several keys ---------------------------------------------------------

def _resolve_keys(config: Config, raw: dict, path: str, env) -> Config:
    """Read each key's secret from its env var or inline value; every variable that is not
    set is named at once, not one per attempt."""
    resolved, unset = [], []
    for i, key in enumerate(config.keys):
        where = f"keys[{i}]" + (f" ('{key.label}')" if key.label else "")
        if key.api_key and key.api_key_env:
            raise ConfigError(f"{path}: {where}: give either 'api_key' or 'api_key_env', not both")
        if key.api_key_env:
            secret = env.get(key.api_key_env, "")
            if not secret:
                unset.append((where, key.api_key_env))
        elif key.api_key:
            secret = key.api_key
        else:
            raise ConfigError(f"{path}: {where}: missing 'api_key_env' (or inline 'api_key')")
        label = key.label or f"key{i + 1}"
        resolved.append(dataclasses.replace(key, api_key=secret.strip(), label=label))
    if len(unset) == 1:
        where, name = unset[0]
        raise ConfigError(f"{path}: {where}: environment variable '{name}' named by 'api_key_env' is not set")
    if unset:
        raise ConfigError(f"{path}: environment variables named by 'api_key_env' are not set: "
                          + ", ".join(f"'{name}' ({where})" for where, name in unset))
    return dataclasses.replace(config, keys=resolved)


def _validate(config: Config, path: str) -> None:
    """Checks that span several keys or need a format; single values are checked by their `Limit`."""
    labels: dict[str, int] = {}
    secrets: dict[str, int] = {}
    for i, key in enumerate(config.keys):
        where = f"keys[{i}]"
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
    _validate_allowances(config, path)
    _validate_budgets(config, path)
    _working_hours(path, "autoreply.working_hours", config.autoreply.working_hours)
    for model in config.pricing.overrides:
        if not model.strip() or len(model) > MODEL_COLUMN or "\x00" in model:
            raise ConfigError(f"{path}: 'pricing.overrides.{_shown(model)}': a model name must be 1 to "
                              f"{MODEL_COLUMN} characters")


WORKING_HOURS_FORMAT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _working_hours(path, key, value):
    if value and not WORKING_HOURS_FORMAT.match(value.strip()):
        raise ConfigError(f"{path}: '{key}' must look like \"09:00-18:00\" (UTC), not {value!r}")


def _validate_allowances(config: Config, path: str) -> None:
    names: dict[str, int] = {}
    for i, allowance in enumerate(config.allowances):
        where = f"allowances[{i}]"
        if not allowance.name.strip():
            raise ConfigError(f"{path}: '{where}.name' must not be empty")
        if allowance.name in names:
            raise ConfigError(f"{path}: {where}: duplicate allowance name '{_shown(allowance.name)}' "
                              f"(also allowances[{names[allowance.name]}])")
        names[allowance.name] = i
        if allowance.tokens is None and allowance.requests is None:
            raise ConfigError(f"{path}: {where} ('{_shown(allowance.name)}'): give 'tokens' or 'requests' (or both)")
    for i, key in enumerate(config.keys):
        for name in key.allowances:
            if name not in names:
                raise ConfigError(f"{path}: 'keys[{i}].allowances' names no allowance '{_shown(name)}' "
                                  f"(allowances: {', '.join(sorted(names)) or 'none'})")


def _validate_budgets(config: Config, path: str) -> None:
    labels = {key.label for key in config.keys}
    for label in config.budgets.keys:
        if label not in labels:
            raise ConfigError(f"{path}: 'budgets.keys.{_shown(label)}' names no key "
                              f"(labels: {', '.join(sorted(labels)) or 'none'})")
