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
from shared.core.models import ApiKey, utcnow
from shared.core.schema import SchemaError, migrate, schema_status
from shared.core.startup import open_runtime
from shared.core.systemd import setup_logging
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
    print(f"wrote {target}: add your keys (api_key_env = \"VAR\"), then run `tokenpool keys`")
    return 0


def cmd_migrate(args) -> int:
    config = load_config(args.config)
    db = connect_database(config.database_url)
    done = migrate(db)
    applied, _pending, _unknown = schema_status(db)
    if args.json:
        print(json.dumps({"applied_now": done, "schema": applied}))
    else:
        print(f"applied {len(done)} migration(s); schema at {applied[-1] if applied else 'nothing'}")
    return 0


def cmd_keys(args) -> int:
    runtime = open_runtime(config_path=args.config)
    if args.action in ("enable", "disable"):
        return _set_key_enabled(args.label, args.action == "enable", args.json)
    views = queries.key_views(utcnow(), runtime.config.pool.low_threshold, include_removed=args.all)
    if args.json:
        print(json.dumps([render_json_csv.key_json(v) for v in views], indent=2))
    else:
        Console().print(keys_table(views))
    return 0


def _set_key_enabled(label: str | None, enable: bool, as_json: bool) -> int:
    """The operator's word on a key, kept in the database: no process's config overrides it."""
    action = "enable" if enable else "disable"
    if not label:
        print(f"usage: tokenpool keys {action} LABEL", file=sys.stderr)
        return 2
    if enable:
        update = ApiKey.update(operator_disabled=False, disabled=ApiKey.config_disabled, invalid=False,
                               invalid_reason="", cooldown_until=None)
    else:
        update = ApiKey.update(operator_disabled=True, disabled=True)
    if not update.where(ApiKey.label == label).execute():
        print(f"no key labelled '{label}'", file=sys.stderr)
        return 1
    still_off = enable and ApiKey.select().where((ApiKey.label == label) & ApiKey.config_disabled).exists()
    if as_json:
        print(json.dumps({"enabled" if enable else "disabled": label, "disabled_by_config": bool(still_off)}))
    elif still_off:
        print(f"key '{label}' re-enabled by you, but the pool's config (the worker's) has `enabled = false`")
    else:
        print(f"key '{label}' {action}d")
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
    command("migrate", cmd_migrate, "apply pending database migrations")
    sub = command("keys", cmd_keys, "list keys with status, usage and resets-in; disable or re-enable a key")
    sub.add_argument("action", nargs="?", choices=["list", "enable", "disable"], default="list")
    sub.add_argument("label", nargs="?", help="the key's label (for enable and disable)")
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
