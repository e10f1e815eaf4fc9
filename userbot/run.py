"""`tokenpool-bot`'s commands, once the config is read (see `userbot.__main__` for why they
are loaded only then): run the bots, log in, or simulate."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from pyrogram.errors import Unauthorized

from shared.core.config import Config, ConfigError
from shared.core.db import DatabaseUnavailable, DatabaseUrlError
from shared.core.logs import setup_logging
from shared.core.schema import SchemaError
from userbot.accounts import account_configs
from userbot.app import run_bots
from userbot.core import keep_trio_out
from userbot.session import SetupError, login, telegram_credentials
from userbot.simulate import simulate

log = logging.getLogger("tokenpool.bot")
USER_ERRORS = (ConfigError, SchemaError, DatabaseUnavailable, DatabaseUrlError, SetupError)


def run_command(args: argparse.Namespace, config: Config) -> int:
    """Run the parsed command over `config` (the first config file, already read)."""
    try:
        setup_logging(config.log_level)
        if args.command == "login":
            credentials = telegram_credentials(config, need_session_string=False)
            print(asyncio.run(login(config, credentials, print_session_string=args.print_session_string)))
            return 0
        if args.command == "simulate":
            if args.name:
                config = dataclasses.replace(config, bot=dataclasses.replace(config.bot, name=args.name))
            keep_trio_out()
            counts = asyncio.run(simulate(config, seconds=args.seconds, seed=args.seed, rate=args.rate,
                                          min_messages=args.min_messages))
            log.info("simulated bot %s done: %s", config.bot.name, counts)
            return 0
        configs = account_configs(config, getattr(args, "account", None) or [])
        keep_trio_out()
        return asyncio.run(_run(configs))
    except USER_ERRORS as exc:
        print(f"tokenpool-bot: {exc}", file=sys.stderr)
        return 2
    except Unauthorized as exc:
        print(f"tokenpool-bot: Telegram no longer accepts this session ({exc.__class__.__name__}); "
              "run `tokenpool-bot login` again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _run(configs) -> int:
    accounts = [(config, telegram_credentials(config)) for config in configs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_bots(accounts, stop=stop)
    return 0
