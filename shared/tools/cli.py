"""`tokenpool`: the admin CLI. Every command prints for people, or JSON with --json."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from rich.console import Console

from shared.core.config import ConfigError, load_config
from shared.core.db import DatabaseUnavailable, connect_database
from shared.core.keys import sync_keys
from shared.core.logs import setup_logging
from shared.core.models import ApiKey, utcnow
from shared.core.schema import SchemaError, migrate, schema_status
from shared.core.startup import open_readonly, open_runtime
from shared.dashboard import command as dashboard_command
from shared.reports import queries, render_json_csv
from shared.reports.render_terminal import keys_table
from shared.tools import cli_reports, demo, doctor, simulator

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
USER_ERRORS = (ConfigError, SchemaError, DatabaseUnavailable)


def cmd_init(args) -> int:
    target = Path(args.config or "config.toml")
    if target.exists() and not args.force:
        print(f"{target} already exists (use --force to overwrite)", file=sys.stderr)
        return 1
    shutil.copyfile(EXAMPLE_CONFIG, target)
    target.chmod(0o600)
    print(f"wrote {target}: add your keys (api_key_env = \"VAR\"), then run `tokenpool migrate` and `tokenpool keys`")
    return 0


def cmd_migrate(args) -> int:
    config = load_config(args.config)
    db = connect_database(config.database_url)
    done = migrate(db)
    sync_keys(config)                   # the keys of the config, registered for the reports
    applied, _pending, _unknown = schema_status(db)
    if args.json:
        print(json.dumps({"applied_now": done, "schema": applied}))
    else:
        print(f"applied {len(done)} migration(s); schema at {applied[-1] if applied else 'nothing'}")
    return 0


def cmd_keys(args) -> int:
    if args.action == "enable":
        open_runtime(config_path=args.config)
        return _enable_key(args.label, args.json)
    runtime = open_readonly(config_path=args.config)
    views = queries.key_views(utcnow(), runtime.config.pool.low_threshold, include_removed=args.all)
    if args.json:
        print(json.dumps([render_json_csv.key_json(v) for v in views], indent=2))
    else:
        Console().print(keys_table(views))
    return 0


def _enable_key(label: str | None, as_json: bool) -> int:
    if not label:
        print("usage: tokenpool keys enable LABEL", file=sys.stderr)
        return 2
    changed = (ApiKey.update(invalid=False, invalid_reason="", cooldown_until=None)
               .where(ApiKey.label == label).execute())
    if not changed:
        print(f"no key labelled '{label}'", file=sys.stderr)
        return 1
    print(json.dumps({"enabled": label}) if as_json else f"key '{label}' re-enabled")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenpool", description=__doc__)
    parser.add_argument("--config", "-c", help="config file (default: $TOKENPOOL_CONFIG or ./config.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, fn, help):
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(fn=fn)
        return sub

    sub = command("init", cmd_init, "write config.toml from the commented example")
    sub.add_argument("--force", action="store_true", help="overwrite an existing file")
    command("migrate", cmd_migrate, "apply pending database migrations and register the config's keys")
    sub = command("keys", cmd_keys, "list keys with status, usage and resets-in; re-enable a key")
    sub.add_argument("action", nargs="?", choices=["list", "enable"], default="list")
    sub.add_argument("label", nargs="?", help="the key's label (for enable)")
    sub.add_argument("--all", action="store_true", help="include keys removed from config")
    cli_reports.register(command)
    dashboard_command.register(command)
    simulator.register(command)
    doctor.register(command)
    demo.register(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("WARNING")
    try:
        return args.fn(args)
    except USER_ERRORS as exc:
        print(f"tokenpool: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
