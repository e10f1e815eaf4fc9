"""The report commands of `tokenpool`: stats, usage, recent, export, budget, chart, monitor.

Each prints rich tables for people, or with --json the same dicts the dashboard serves
(shared.reports.render_json_csv). `register` adds them to the CLI's parser.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import sys
from pathlib import Path

from shared.core.models import utcnow
from shared.core.startup import open_readonly, open_runtime
from shared.reports import render_json_csv as render_data
from shared.reports import render_terminal
from shared.reports.budgets import budget_report
from shared.reports.exports import KINDS, export, last_days
from shared.reports.queries import (
    GROUPINGS,
    MAX_RECENT,
    ReportError,
    recent_calls,
    stats_snapshot,
    usage_report,
)
from shared.tools.monitor import run_monitor
from shared.tools.terminal import show


def _reporting(fn):
    """Open the database read-only first; a bad argument is a short message and exit status 2."""
    @functools.wraps(fn)
    def run(args) -> int:
        runtime = open_readonly(config_path=args.config)
        try:
            return fn(args, runtime.config, utcnow())
        except ReportError as exc:
            print(f"tokenpool {args.command}: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:     # the reader went away (`... | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    return run


def _print_json(value) -> None:
    print(render_data.dumps(value))


@_reporting
def cmd_stats(args, config, now) -> int:
    snapshot = stats_snapshot(now, config)
    if args.json:
        _print_json(render_data.stats_json(snapshot))
    else:
        show(render_terminal.stats_view(snapshot))
    return 0


@_reporting
def cmd_usage(args, config, now) -> int:
    report = usage_report(now, args.days, args.by, top=args.top)
    if args.json:
        _print_json(render_data.usage_json(report))
    else:
        show(render_terminal.usage_view(report))
    return 0


@_reporting
def cmd_recent(args, config, now) -> int:
    calls = recent_calls(args.n)
    if args.json:
        _print_json([render_data.call_json(c) for c in calls])
    else:
        show(render_terminal.recent_table(calls))
    return 0


def cmd_budget(args) -> int:
    if args.action == "lift":
        return _lift_budgets(args)
    return _show_budget(args)


def _lift_budgets(args) -> int:
    """`tokenpool budget lift`: calls go on past an enforced budget until its period ends."""
    from shared.core.budget_holds import lift
    from shared.core.db import write_transaction
    runtime = open_runtime(config_path=args.config, sync=False)
    with write_transaction():
        lifted = lift(utcnow())
    if args.json:
        _print_json({"lifted": [{"period": period, "period_start": start.isoformat()} for period, start in lifted]})
    else:
        periods = ", ".join(f"the {'UTC day' if p == 'day' else 'month'} from {start}" for p, start in lifted)
        print(f"budgets lifted until the end of {periods}" +
              ("" if runtime.config.budgets.enforce else " (note: [budgets] enforce is off in this config)"))
    return 0


@_reporting
def _show_budget(args, config, now) -> int:
    report = budget_report(now, config)
    if args.json:
        _print_json(render_data.budget_json(report))
    else:
        show(render_terminal.budget_view(report))
    return 0


@_reporting
def cmd_export(args, config, now) -> int:
    if args.day:
        start = end = _day(args.day)
    else:
        start, end = last_days(now, args.days)
    if args.output in (None, "-"):
        count = export(sys.stdout, args.format, args.kind, start, end)
    else:
        # Owner-only from the start: exports hold chat ids and usage.
        descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "w", encoding="utf-8", newline="") as out:
            count = export(out, args.format, args.kind, start, end)
        print(f"wrote {count:,} {args.kind} rows ({start} to {end}, UTC) to {args.output}", file=sys.stderr)
    return 0


@_reporting
def cmd_chart(args, config, now) -> int:
    from shared.reports.charts import (
        usage_chart,  # matplotlib takes ~0.4 s to import: only here
    )
    png = usage_chart(now, args.days)
    Path(args.output).write_bytes(png)
    if args.json:
        _print_json({"wrote": args.output, "bytes": len(png)})
    else:
        print(f"wrote {args.output} ({len(png):,} bytes)", file=sys.stderr)
    return 0


def cmd_monitor(args) -> int:
    runtime = open_readonly(config_path=args.config)
    return run_monitor(runtime.config, interval=args.interval, calls=args.calls)


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--day must be a date like 2026-03-01, not '{text}'") from None


def register(command) -> None:
    """Add the report commands; `command(name, fn, help)` is the CLI's sub-command factory."""
    command("stats", cmd_stats, "the pool today: keys, usage, cost, key in use, worker and bots")
    sub = command("usage", cmd_usage, "usage over the last N UTC days, by day, key, model, op, bot or chat")
    sub.add_argument("days", nargs="?", type=int, default=30, help="days, today included (default 30)")
    sub.add_argument("--by", default="day", help=f"one of {', '.join(GROUPINGS)} (default day)")
    sub.add_argument("--top", type=int, help="at most this many groups (not with --by day)")
    sub = command("recent", cmd_recent, "the newest calls")
    sub.add_argument("n", nargs="?", type=int, default=20, help=f"how many, up to {MAX_RECENT} (default 20)")
    sub = command("export", cmd_export, "calls (or daily rollups) of the last N UTC days as CSV or JSON", json=False)
    sub.add_argument("format", choices=["csv", "json"])
    sub.add_argument("days", nargs="?", type=int, default=1, help="days, today included (default 1)")
    sub.add_argument("--day", help="export this one UTC day instead (YYYY-MM-DD)")
    sub.add_argument("--kind", choices=KINDS, default="calls", help="calls (events) or daily (rollups)")
    sub.add_argument("--output", "-o", help="file to write (default: standard output)")
    sub = command("budget", cmd_budget, "budgets from [budgets] against spending, with projections; "
                  "`budget lift`: calls go on past an enforced budget until its period ends")
    sub.add_argument("action", nargs="?", choices=["lift"], help="lift the enforced budgets")
    sub = command("chart", cmd_chart, "PNG of tokens per UTC day stacked by key, limits marked")
    sub.add_argument("days", nargs="?", type=int, default=30, help="days, today included (default 30)")
    sub.add_argument("--output", "-o", default="tokenpool-usage.png", help="PNG file to write")
    sub = command("monitor", cmd_monitor, "live view: keys, calls per minute, newest calls, health", json=False)
    sub.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    sub.add_argument("--calls", type=int, default=10, help="newest calls shown (default 10)")
