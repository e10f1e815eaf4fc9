"""Several Telegram accounts served by one bot process (`tokenpool-bot run -c main.toml --account bob.toml`).

Each account has its own session, bot name and settings: its config file's `[bot]`,
`[autoreply]` and `data_dir` (where its session file and call journal live). What the
accounts share comes from the first config (`-c`): the database (one database thread),
the keys, pool and allowances, the AI client settings (one HTTP connection pool), pricing,
budgets and the log level. An account's file may leave those out; if it sets one, it must
be the same as the first config's, so that nobody is surprised by keys that are not used.

One config and no `--account`: exactly the one-account process it always was. Separate
processes per account (one config each) keep working as before.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

from shared.core.config import Config, ConfigError, load_config
from userbot.session import TelegramCredentials, session_path

SHARED_SECTIONS = ("database", "pool", "keys", "allowances", "pricing", "client", "budgets")


def account_configs(first: Config, account_paths: list[str] | tuple[str, ...] = ()) -> list[Config]:
    """The first config, then one config per account file: its own `[bot]`, `[autoreply]`,
    `data_dir` and path over the first config's shared sections."""
    if not account_paths:
        return [first]
    defaults = Config()
    shared_database = dataclasses.replace(first.database, url=first.database_url)   # one database for all
    configs = [dataclasses.replace(first, database=shared_database)]
    for path in account_paths:
        own = load_config(path, required=True)
        for section in SHARED_SECTIONS:
            value = getattr(own, section)
            if value != getattr(defaults, section) and value != getattr(first, section):
                raise ConfigError(f"{own.path}: [{section}] differs from {first.path or 'the first config'}'s; the "
                                  "accounts of one process share its database, keys, pool, allowances, client, "
                                  f"pricing and budgets: leave [{section}] out of an account's file")
        configs.append(dataclasses.replace(first, path=own.path, data_dir=own.data_dir, bot=own.bot,
                                           autoreply=own.autoreply, database=shared_database))
    twice = [name for name, count in Counter(c.bot.name for c in configs).items() if count > 1]
    if twice:
        raise ConfigError(f"two accounts are named '{twice[0]}' ([bot] name): each account of a process needs "
                          "a name of its own (its usage rows, session file and state are kept under it)")
    return configs


def check_sessions(accounts: list[tuple[Config, TelegramCredentials]]) -> None:
    """Refuse two accounts on one Telegram session (a session string or a session file):
    Telegram would deliver each update to only one of them."""
    seen: dict[str, str] = {}
    for config, credentials in accounts:
        session = (f"string:{credentials.session_string}" if credentials.session_string
                   else f"file:{session_path(config).resolve()}")
        if session in seen:
            raise ConfigError(f"accounts '{seen[session]}' and '{config.bot.name}' use the same Telegram session; "
                              "give each its own ([bot] session_string_env, or a session file from "
                              "`tokenpool-bot login` with its config)")
        seen[session] = config.bot.name
