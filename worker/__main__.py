"""`tokenpool-worker` / `python -m worker`: the rotation worker.

    tokenpool-worker [-c/--config PATH] [--once] [--version]

Run one per deployment (more are standbys). `--once` runs a single tick and exits, for cron.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from shared.core.command_line import Parser, add_common
from shared.core.config import ConfigError, load_config
from shared.core.db import connect_database
from shared.core.logs import setup_logging
from shared.core.systemd import Notifier
from worker.loop import EXIT_CONFIG, WorkerLoop
from worker.tick import Ticker


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tokenpool-worker",
                    description="Resets, statuses, key ranking, alerts and retention for a tokenpool database.")
    add_common(parser)
    parser.add_argument("--once", action="store_true", help="run one tick, then exit (for cron)")
    return parser


def identity(configured: str) -> tuple[str, str]:
    """(name for heartbeats, lease holder): the holder is unique to this process."""
    here = f"{socket.gethostname()}:{os.getpid()}"
    return (configured, f"{configured}@{here}") if configured else (here, here)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tokenpool-worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level)
    try:
        # A leader frozen inside a transaction is cut off by the server well before a standby
        # has waited two lease periods (PostgreSQL; see connect_database).
        connect_database(config.database_url, busy_timeout_seconds=config.database.busy_timeout_seconds,
                         idle_transaction_seconds=min(config.database.busy_timeout_seconds,
                                                      config.worker.lease_seconds / 2))
    except ValueError as exc:           # an unsupported URL: the user's to fix
        print(f"tokenpool-worker: {config.path or 'config'}: database.url: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    name, holder = identity(config.worker.name)
    ticker = Ticker(config, name=name, holder=holder)
    return WorkerLoop(ticker, tick_seconds=config.worker.tick_seconds, notifier=Notifier(),
                      once=args.once).run()


if __name__ == "__main__":
    sys.exit(main())
