"""The report commands of Saved Messages: `.usage`, `.recent`, `.export`, `.chart`, `.budget`.

Each handler parses its words with `shared.reports.arguments`, asks the reporting core and
returns what the renderers made; a bad argument raises UsageError with the reason.
"""
from __future__ import annotations

from shared.reports import offload
from shared.reports.arguments import (
    parse_chart,
    parse_export,
    parse_recent,
    parse_usage,
)
from shared.reports.budgets import budget_report
from shared.reports.queries import ReportError, recent_calls, usage_report
from shared.reports.render_telegram import render_budget, render_recent, render_usage
from userbot.commands import Attachment, Command, CommandContext, Reply, UsageError


def _words(ctx: CommandContext, parse):
    try:
        return parse(list(ctx.args))
    except ReportError as exc:
        raise UsageError(str(exc)) from None


def usage(ctx: CommandContext) -> Reply:
    args = _words(ctx, parse_usage)
    return Reply(render_usage(usage_report(ctx.now, args.days, args.by)))


def recent(ctx: CommandContext) -> Reply:
    return Reply(render_recent(recent_calls(_words(ctx, parse_recent)), ctx.now))


def export(ctx: CommandContext) -> Reply:
    args = _words(ctx, parse_export)
    # Made in a short-lived helper process: the document's buffers never stay in the bot.
    document = offload.export_document(ctx.config.database_url, ctx.now, args.format, args.days)
    period = document.start.isoformat() + (f" → {document.end.isoformat()}" if document.end != document.start else "")
    return Reply(f"📎 <b>Export</b>: {document.rows:,} calls, {period} (UTC days), {args.format.upper()}",
                 document=Attachment(document.data, document.filename))


def chart(ctx: CommandContext) -> Reply:
    days = _words(ctx, parse_chart)
    png = offload.chart_png(ctx.config.database_url, ctx.now, days)     # matplotlib never loads in the bot
    return Reply(f"📊 <b>Tokens per UTC day</b>, last {days} days, stacked by key (dashed: daily limits)",
                 photo=Attachment(png, f"tokenpool-usage-{days}d.png"))


def budget(ctx: CommandContext) -> Reply:
    if ctx.args:
        raise UsageError(f"unexpected '{ctx.args[0]}'")
    return Reply(render_budget(budget_report(ctx.now, ctx.config)))


COMMANDS = (
    Command("usage", "usage [days] [by day|key|model|op|bot|chat]",
            "tokens, calls and cost of the last N UTC days (default 30, by day)", usage, example="usage 7 by key"),
    Command("recent", "recent [n]", "the newest calls (default 20)", recent, example="recent 5"),
    Command("export", "export csv|json [days]", "the calls of the last N UTC days as a file (default 1)", export,
            example="export csv 7"),
    Command("chart", "chart [days]", "a chart of tokens per day by key (default 30 days)", chart, example="chart 14"),
    Command("budget", "budget", "budgets and where today's and this week's pace lead", budget),
)
