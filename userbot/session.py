"""Telegram credentials, the session, and the Pyrogram client built from them.

The session is a file `<data_dir>/<bot name>.session` made by `tokenpool-bot login`
(owner-only permissions: it is as good as the account's password), or a session string
from an environment variable. `api_id` / `api_hash` come from the `[bot]` section or the
environment; a missing one is a `SetupError` that says where to put it.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyrogram import Client

from shared.core.config import API_HASH_ENV, API_ID_ENV, SESSION_STRING_ENV, Config

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class SetupError(Exception):
    """Something the owner must set up before the bot can run; the message says what."""


@dataclass(frozen=True)
class TelegramCredentials:
    api_id: int
    api_hash: str = field(repr=False)
    session_string: str = field(default="", repr=False)


def telegram_credentials(config: Config, env: Mapping[str, str] | None = None, *,
                         need_session_string: bool = True) -> TelegramCredentials:
    """api_id, api_hash and (when one is configured) the session string, or a SetupError."""
    env = os.environ if env is None else env
    where = config.path or "config.toml"
    api_id = config.bot.api_id
    if not api_id and env.get(API_ID_ENV):
        try:
            api_id = int(env[API_ID_ENV].strip())
        except ValueError:
            raise SetupError(f"{API_ID_ENV} must be a number (your api_id from https://my.telegram.org)") from None
    api_hash = config.bot.api_hash
    if config.bot.api_hash_env:
        api_hash = env.get(config.bot.api_hash_env, "").strip()
        if not api_hash:
            raise SetupError(f"{where}: environment variable '{config.bot.api_hash_env}' named by "
                             "'bot.api_hash_env' is not set")
    api_hash = api_hash or env.get(API_HASH_ENV, "").strip()
    missing = [name for name, value in (("api_id", api_id), ("api_hash", api_hash)) if not value]
    if missing:
        raise SetupError(
            f"Telegram {' and '.join(missing)} missing: get them at https://my.telegram.org, then set "
            f"[bot] api_id and api_hash_env in {where}, or the environment variables "
            f"{API_ID_ENV} and {API_HASH_ENV}")
    session_string = ""
    if need_session_string:
        if config.bot.session_string_env:
            session_string = env.get(config.bot.session_string_env, "").strip()
            if not session_string:
                raise SetupError(f"{where}: environment variable '{config.bot.session_string_env}' named by "
                                 "'bot.session_string_env' is not set")
        else:
            session_string = env.get(SESSION_STRING_ENV, "").strip()
    return TelegramCredentials(api_id=api_id, api_hash=api_hash, session_string=session_string)


def session_name(config: Config) -> str:
    name = config.bot.name
    if not SAFE_NAME.match(name):
        raise SetupError(f"{config.path or 'config.toml'}: 'bot.name' is used as the session file name; "
                         "use letters, digits, '_', '-' and '.' only")
    return name


def session_path(config: Config) -> Path:
    session_name(config)            # the name must be safe as a file name
    return config.session_file


def make_client(config: Config, credentials: TelegramCredentials, client_class: type[Client] = Client,
                **extra) -> Client:
    """The Pyrogram client: persistent session, updates missed while offline delivered.

    `skip_updates=False` is passed where the Pyrogram in use knows it (kurigram);
    upstream Pyrogram 2.0 has no such switch and the bot's catch-up scan covers it."""
    options = dict(name=session_name(config), api_id=credentials.api_id, api_hash=credentials.api_hash,
                   workdir=str(Path(config.data_dir)), **extra)
    if credentials.session_string:
        options.update(session_string=credentials.session_string, in_memory=True)
    if "skip_updates" in inspect.signature(client_class.__init__).parameters:
        options["skip_updates"] = False
    return client_class(**options)


def require_session(config: Config, credentials: TelegramCredentials) -> None:
    """Refuse to start without a session: the bot must never stop to ask for a phone number."""
    if not credentials.session_string and not session_path(config).exists():
        raise SetupError(f"no Telegram session at {session_path(config)}: run `tokenpool-bot login` first "
                         f"(or set {SESSION_STRING_ENV})")


def secure_session(config: Config) -> None:
    """Owner-only permissions for the data dir's session files."""
    base = session_path(config)
    for path in (base, base.with_name(base.name + "-journal"), base.with_name(base.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o600)


async def login(config: Config, credentials: TelegramCredentials, *, print_session_string: bool = False,
                client_class: type[Client] = Client) -> str:
    """Log in interactively (phone, code, 2FA password) and keep the session file; returns
    a line to show the owner."""
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = os.umask(0o077)          # the session file is created owner-only from the start
    try:
        client = make_client(config, TelegramCredentials(credentials.api_id, credentials.api_hash),
                             client_class)
        async with client:
            me = client.me or await client.get_me()
            exported = await client.export_session_string() if print_session_string else ""
    finally:
        os.umask(previous)
    secure_session(config)
    who = f"@{me.username}" if me.username else (me.first_name or str(me.id))
    line = f"logged in as {who} (id {me.id}); session saved to {session_path(config)} (mode 0600)"
    if exported:
        line += f"\nsession string (keep it secret; put it in {SESSION_STRING_ENV}):\n{exported}"
    return line
