"""`tokenpool dashboard`: its arguments and the command (the web stack is imported only when it runs)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from shared.core.config import load_config
from shared.core.logs import setup_logging
from shared.core.numbers import whole_number


def register(command) -> None:
    """Add the command; `command(name, fn, help)` is the CLI's sub-command factory."""
    sub = command("dashboard", cmd_dashboard,
                  "serve the read-only web dashboard (default http://127.0.0.1:8765/, [dashboard] in config)",
                  json=False)
    sub.add_argument("--host", help="address to listen on (default: dashboard.host); beyond loopback "
                                    "dashboard.token must be set")
    sub.add_argument("--port", type=_port, help="port to listen on (default: dashboard.port)")


def _port(text: str) -> int:
    port = whole_number(text, 1, 65535)
    if port is None:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {text[:20]!r}")
    return port


def cmd_dashboard(args) -> int:
    from shared.dashboard.server import PortUnavailable, run_dashboard

    config = load_config(args.config)
    changes = {name: value for name, value in (("host", args.host), ("port", args.port)) if value is not None}
    if changes:
        config = dataclasses.replace(config, dashboard=dataclasses.replace(config.dashboard, **changes))
    setup_logging(config.log_level)
    try:
        run_dashboard(config)
    except PortUnavailable as exc:
        print(f"tokenpool dashboard: {exc}", file=sys.stderr)
        return 2
    return 0
