"""`tokenpool-bot`: run the bot named in config; `tokenpool-bot login` creates its session."""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from pyrogram.errors import Unauthorized

from shared.core.command_line import Parser, add_common, config_options
from shared.core.config import ConfigError, load_config
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tokenpool-bot", description=__doc__)
    add_common(parser)
    sub = parser.add_subparsers(dest="command")
    config_option = config_options()
    run = sub.add_parser("run", help="run the bot (the default)", parents=[config_option])
    run.set_defaults(command="run")
    run.add_argument("--account", action="append", default=[], metavar="PATH",
                     help="serve another Telegram account in this process: its config file gives its [bot] "
                          "(name, session) and [autoreply] settings and its data_dir; the database, keys, pool, "
                          "client and pricing are the first config's (-c). Repeat for more accounts")
    log_in = sub.add_parser("login", help="log in to Telegram interactively and save the session",
                            parents=[config_option])
    log_in.add_argument("--print-session-string", action="store_true",
                        help="also print a session string, for running with TOKENPOOL_SESSION_STRING")
    sim = sub.add_parser("simulate", help="offline: feed simulated private messages to the auto-reply logic "
                                          "(what `tokenpool demo` runs); no Telegram account needed",
                         parents=[config_option])
    sim.add_argument("--name", help="bot name for the usage rows (default: [bot] name)")
    sim.add_argument("--seconds", type=float, default=20.0, help="how long the people chat at least (default 20)")
    sim.add_argument("--min-messages", type=int, default=0, metavar="N",
                     help="and until the bot has sent N replies, however slow the machine (default 0)")
    sim.add_argument("--seed", type=int, default=0, help="random seed: which chats and messages")
    sim.add_argument("--rate", type=float, default=4.0, help="messages per second (default 4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
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


if __name__ == "__main__":
    sys.exit(main())
