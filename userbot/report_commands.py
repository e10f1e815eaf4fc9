"""The report commands of Saved Messages: `.usage`, `.recent`, `.export`, `.chart`, `.budget`.

Each handler parses its words with `shared.reports.arguments`, asks the reporting core and
returns what the renderers made; a bad argument raises UsageError with the reason.
"""
from __future__ import annotations

from html import escape

from shared.core.budget_holds import lift
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
    """The newest calls, then the newest messages and what became of each."""
    count = _words(ctx, parse_recent)
    fates = ctx.store.fates(limit=min(count, MAX_FATES_SHOWN))
    return Reply(render_recent(recent_calls(count), ctx.now) + "\n\n" + render_fates(fates))


MAX_FATES_SHOWN = 20


def render_fates(fates) -> str:
    lines = [f"💬 <b>Recent messages</b> ({len(fates)})"]
    for fate in fates:
        text = " ".join(fate.text.split())
        text = text if len(text) <= 40 else text[:39] + "…"
        lines.append(f"<b>{fate.at:%H:%M:%S}</b> {escape(fate.name)}: “{escape(text)}” — {escape(fate.describe())}")
    if not fates:
        lines.append("No messages yet.")
    return "\n".join(lines)


def export(ctx: CommandContext) -> Reply:
    args = _words(ctx, parse_export)
    # Made in a short-lived helper process into a private temporary file, sent by its path
    # and then deleted: the document's bytes never pass through the bot.
    made = offload.export_file(ctx.config.database_url, ctx.now, args.format, args.days)
    start, end = made.start, made.end
    period = f"{start}" + (f" → {end}" if end != start else "")
    return Reply(f"📎 <b>Export</b>: {made.rows:,} calls, {period} (UTC days), {args.format.upper()}",
                 document=Attachment.from_file(made))


def chart(ctx: CommandContext) -> Reply:
    days = _words(ctx, parse_chart)
    made = offload.chart_file(ctx.config.database_url, ctx.now, days)     # matplotlib never loads in the bot
    return Reply(f"📊 <b>Tokens per UTC day</b>, last {days} days, stacked by key (dashed: daily limits)",
                 photo=Attachment.from_file(made))


def budget(ctx: CommandContext) -> Reply:
    if ctx.args[:1] == ("lift",) and len(ctx.args) == 1:
        return Reply(lifted_text(lift(ctx.now)))
    if ctx.args:
        raise UsageError(f"unexpected '{ctx.args[0]}' (only `budget lift`)")
    return Reply(render_budget(budget_report(ctx.now, ctx.config)))


def lifted_text(lifted) -> str:
    periods = ", ".join(f"the {'UTC day' if period == 'day' else 'month'} from {start}" for period, start in lifted)
    return f"💸 Budgets lifted: calls go on until the end of {periods}."


COMMANDS = (
    Command("usage", "usage [days] [by day|key|model|op|bot|chat]",
            "tokens, calls and cost of the last N UTC days (default 30, by day)", usage, example="usage 7 by key"),
    Command("recent", "recent [n]", "the newest calls (default 20)", recent, example="recent 5"),
    Command("export", "export csv|json [days]", "the calls of the last N UTC days as a file (default 1)", export,
            example="export csv 7"),
    Command("chart", "chart [days]", "a chart of tokens per day by key (default 30 days)", chart, example="chart 14"),
    Command("budget", "budget [lift]", "budgets and where the pace leads; `lift`: let calls go on past an "
            "enforced budget until the period ends", budget),
)
