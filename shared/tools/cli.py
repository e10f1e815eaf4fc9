"""`tokenpool`: the admin CLI. Every command prints for people, or JSON with --json."""
from __future__ import annotations

import difflib
import json
import shutil
import sys
from pathlib import Path

from shared.core.command_line import Parser, add_common, config_options
from shared.core.config import EXAMPLE_CONFIG, ConfigError, load_config
from shared.core.db import DatabaseUnavailable, DatabaseUrlError, connect_database
from shared.core.keys import sync_keys
from shared.core.logs import setup_logging
from shared.core.models import ApiKey, utcnow
from shared.core.schema import SchemaError, migrate, revert_to, schema_status
from shared.core.startup import open_readonly, open_runtime
from shared.core.status import Status
from shared.dashboard import command as dashboard_command
from shared.reports import queries, render_json_csv
from shared.reports.allowance_views import allowance_json, allowance_views, allowances_table
from shared.reports.render_terminal import keys_table
from shared.tools import ask, cli_reports, demo, doctor, simulator
from shared.tools.terminal import show

USER_ERRORS = (ConfigError, SchemaError, DatabaseUnavailable, DatabaseUrlError)


def cmd_init(args) -> int:
    target = Path(args.config or "config.toml")
    if target.exists() and not args.force:
        print(f"{target} already exists (use --force to overwrite)", file=sys.stderr)
        return 1
    shutil.copyfile(EXAMPLE_CONFIG, target)
    target.chmod(0o600)
    if args.json:
        print(json.dumps({"wrote": str(target)}))
    else:
        print(f"wrote {target}: add your keys (api_key_env = \"VAR\"), "
              "then run `tokenpool migrate` and `tokenpool keys`")
    return 0


def cmd_migrate(args) -> int:
    config = load_config(args.config)
    db = connect_database(config.database_url)
    if args.to:
        return _migrate_back(db, args.to, args.json)
    done = migrate(db)
    sync_keys(config)                   # the keys of the config, registered for the reports
    applied, _pending, _unknown = schema_status(db)
    if args.json:
        print(json.dumps({"applied_now": done, "schema": applied}))
    else:
        print(f"applied {len(done)} migration(s); schema at {applied[-1] if applied else 'nothing'}")
    return 0


def _migrate_back(db, name: str, as_json: bool) -> int:
    """`migrate --to NAME`: before installing an older tokenpool (keys are not registered:
    the older schema may lack what this version's key rows hold)."""
    reverted = revert_to(db, name)
    applied, _pending, _unknown = schema_status(db)
    if as_json:
        print(json.dumps({"reverted_now": reverted, "schema": applied}))
    else:
        print(f"reverted {len(reverted)} migration(s){': ' + ', '.join(reverted) if reverted else ''}; "
              f"schema at {applied[-1]}")
    return 0


def cmd_keys(args) -> int:
    if args.action in ("enable", "disable"):
        low = open_runtime(config_path=args.config).config.pool.low_threshold
        return _switch_key(args.action, args.label, low, args.json)
    runtime = open_readonly(config_path=args.config)
    now = utcnow()
    views = queries.key_views(now, runtime.config.pool.low_threshold, include_removed=args.all)
    if args.json:
        print(json.dumps([render_json_csv.key_json(v) for v in views], indent=2))
    else:
        show(keys_table(views))
        shared_pools = allowance_views(now)
        if shared_pools:
            show(allowances_table(shared_pools, now))
    return 0


def cmd_allowances(args) -> int:
    """A report: read-only, as `keys` (the allowances shown are those the pool has registered)."""
    runtime = open_readonly(config_path=args.config)
    now = utcnow()
    views = allowance_views(now)
    shown = {v.name for v in views}
    unregistered = [a.name for a in runtime.config.allowances if a.name not in shown]
    if unregistered:
        print(f"not registered yet: {', '.join(unregistered)} (run `tokenpool migrate`, or start the worker "
              "or a bot, to register the config's allowances)", file=sys.stderr)
    if args.json:
        print(json.dumps([allowance_json(v) for v in views], indent=2))
    elif views:
        show(allowances_table(views, now))
    elif not unregistered:
        print("no [[allowances]] in config (keys are limited by their own daily_token_limit)")
    return 0


# What `keys enable` clears: an operator's disable, a key marked invalid, a cooldown.
BLOCKED = (Status.DISABLED, Status.INVALID, Status.RATE_LIMITED)


def _switch_key(action: str, label: str | None, low_threshold: int, as_json: bool) -> int:
    """`keys enable|disable LABEL`: say what changed, and say so when nothing needed to."""
    if not label:
        print(f"usage: tokenpool keys {action} LABEL", file=sys.stderr)
        return 2
    now = utcnow()
    view = next((v for v in queries.key_views(now, low_threshold, include_removed=True) if v.label == label), None)
    if view is None:
        labels = [v.label for v in queries.key_views(now, low_threshold)]
        close = difflib.get_close_matches(label, labels, n=1)
        print(f"no key labelled '{label}'" + (f"; did you mean '{close[0]}'?" if close else ""), file=sys.stderr)
        return 1
    before = view.status.value
    if action == "disable":
        changed = view.status is not Status.DISABLED
        # Kept as the operator's word: no process's config re-enables the key (see sync_keys).
        ApiKey.update(operator_disabled=True, disabled=True).where(ApiKey.label == label).execute()
        text = (f"key '{label}' disabled (was {before}): no bot sends it requests until `tokenpool keys enable "
                f"{label}`" if changed else f"key '{label}' was already disabled; nothing changed")
    else:
        changed = view.status in BLOCKED
        # The pool's config (the worker's) may still disable it: `enabled = false` there wins.
        ApiKey.update(operator_disabled=False, disabled=ApiKey.config_disabled, invalid=False, invalid_reason="",
                      cooldown_until=None).where(ApiKey.label == label).execute()
        text = (f"key '{label}' enabled (was {before}{': ' + view.invalid_reason if view.invalid_reason else ''})"
                if changed else f"key '{label}' was not disabled, invalid or cooling down ({before}); nothing changed")
        if ApiKey.select().where((ApiKey.label == label) & ApiKey.config_disabled).exists():
            changed = False
            text = (f"key '{label}' stays disabled: the pool's config (the worker's) says `enabled = false`; "
                    "change it there")
    print(json.dumps({"key": label, "action": action, "was": before, "changed": changed}) if as_json else text)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="tokenpool", description=__doc__)
    add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_option = config_options()

    def command(name, fn, help, *, json=True):
        """A sub-command; `json=False` for the ones with no machine-readable form (no --json offered)."""
        sub = commands.add_parser(name, help=help, description=help, parents=[config_option])
        if json:
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(fn=fn)
        return sub

    sub = command("init", cmd_init, "write config.toml from the commented example")
    sub.add_argument("--force", action="store_true", help="overwrite an existing file")
    sub = command("migrate", cmd_migrate, "apply pending database migrations and register the config's keys")
    sub.add_argument("--to", metavar="MIGRATION",
                     help="go back instead: revert the migrations after this one (e.g. 0030), keeping every row, "
                          "before installing an older tokenpool whose newest migration it is")
    sub = command("keys", cmd_keys, "list keys with status, usage and resets-in; enable or disable a key")
    sub.add_argument("action", nargs="?", choices=["list", "enable", "disable"], default="list",
                     help="list (default); enable: clear a disable, an invalid mark or a cooldown; disable")
    sub.add_argument("label", nargs="?", help="the key's label (for enable / disable)")
    sub.add_argument("--all", action="store_true", help="include keys removed from config")
    command("allowances", cmd_allowances, "list the allowances keys share: used, held, limit and resets-in per window")
    cli_reports.register(command)
    dashboard_command.register(command)
    simulator.register(command)
    doctor.register(command)
    ask.register(command)
    demo.register(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:             # bare `tokenpool`: the list of commands
        parser.print_help()
        return 0
    setup_logging("WARNING")
    try:
        return args.fn(args)
    except USER_ERRORS as exc:
        hint = ("; is the database server running, and is [database] url (or $TOKENPOOL_DATABASE_URL) right?"
                if isinstance(exc, DatabaseUnavailable) else "")
        print(f"tokenpool: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
