"""Command-line conventions shared by `tokenpool`, `tokenpool-bot` and `tokenpool-worker`:
`--version`, `-c/--config` accepted before or after the sub-command, and "did you mean"
for a misspelt sub-command or choice."""
from __future__ import annotations

import argparse
import difflib
import re
from importlib import metadata

CONFIG_HELP = "config file (default: $TOKENPOOL_CONFIG or ./config.toml)"


def version() -> str:
    try:
        return metadata.version("tokenpool")
    except metadata.PackageNotFoundError:      # run from a checkout that was never installed
        return "unknown"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose "invalid choice" errors suggest the closest valid one."""

    def error(self, message: str):
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2)) or [c.strip() for c in found.group(2).split(",")]
            close = difflib.get_close_matches(found.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def config_options() -> Parser:
    """A parent parser for sub-commands: `-c/--config` after the sub-command too.

    Its default is SUPPRESS so that a value given before the sub-command is not overwritten."""
    parent = Parser(add_help=False)
    parent.add_argument("--config", "-c", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parent


def add_common(parser: argparse.ArgumentParser) -> None:
    """`-c/--config` and `--version` on the program itself."""
    parser.add_argument("--config", "-c", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
