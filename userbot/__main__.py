"""`tokenpool-bot`: run the bot named in config; `tokenpool-bot login` creates its session."""
from __future__ import annotations

import argparse
import sys

from shared.core.command_line import Parser, add_common, config_options
from shared.core.config import ConfigError, load_config
from shared.core.db_drivers import keep_unused_drivers_out


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
    except ConfigError as exc:
        print(f"tokenpool-bot: {exc}", file=sys.stderr)
        return 2
    # The bot's parts import peewee, and peewee every database driver it finds: they load
    # only now, so that a bot on SQLite never loads psycopg2 or pymysql (~5 MB resident).
    keep_unused_drivers_out(config.database_url)
    from userbot.run import run_command
    return run_command(args, config)


if __name__ == "__main__":
    sys.exit(main())
