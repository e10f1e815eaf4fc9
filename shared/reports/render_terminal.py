"""Terminal rendering with rich: tables for people (the --json forms are for scripts)."""
from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from shared.core.status import Status
from shared.core.windows import format_duration
from shared.reports.allowance_views import allowances_table
from shared.reports.budgets import BudgetReport
from shared.reports.forecast import KeyForecast, Outlook
from shared.reports.humanize import ago, percent
from shared.reports.money import money_text, pricing_hint
from shared.reports.queries import (
    CallView,
    KeyView,
    ProcessHealth,
    StatsSnapshot,
    UsageReport,
)

STATUS_STYLE = {
    Status.FRESH: "green", Status.ACTIVE: "green", Status.LOW: "yellow", Status.EXHAUSTED: "red",
    Status.RATE_LIMITED: "magenta", Status.INVALID: "bold red", Status.DISABLED: "dim",
}
OUTCOME_STYLE = {"ok": "green", "rate_limited": "magenta", "interrupted": "yellow"}
STATE_STYLE = {"ok": "green", "heading_over": "yellow", "over": "bold red"}


class FittedTable(Table):
    """A table that knows which columns may go on a narrow terminal, least important first."""
    drop_order: tuple[str, ...] = ()


def _table(title: str, columns, drop_order: tuple[str, ...] = ()) -> FittedTable:
    """Cells wrap (fold) rather than being cut to "…": data is never lost, only re-flowed."""
    table = FittedTable(title=title, title_justify="left")
    table.drop_order = drop_order
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    return table


def fit_to_width(renderable: RenderableType, console: Console) -> RenderableType:
    """Drop the least important columns of each table until it fits `console.width`, and say
    which were left out. What still does not fit wraps; nothing is cut."""
    if isinstance(renderable, Group):
        return Group(*(fit_to_width(part, console) for part in renderable.renderables))
    if not isinstance(renderable, FittedTable):
        return renderable
    dropped = []
    for header in renderable.drop_order:
        if _natural_width(renderable, console) <= console.width:
            break
        index = next((i for i, c in enumerate(renderable.columns) if c.header == header), None)
        if index is not None:
            renderable.columns.pop(index)
            dropped.append(header)
    for i, column in enumerate(renderable.columns):
        column._index = i
    if dropped:
        renderable.caption = (f"not shown at {console.width} columns: {', '.join(dropped)} "
                              "(widen the terminal, or pipe the output or use --json for everything)")
        renderable.caption_justify = "left"
    return renderable


def _natural_width(table: Table, console: Console) -> int:
    """The width the table takes with no cell wrapped."""
    wide = console.options.update_width(10**6)
    return Measurement.get(console, wide, table).maximum


def natural_width(renderable: RenderableType, console: Console) -> int:
    """The width `renderable` needs so that no table cell wraps (for output into pipes and files)."""
    parts = renderable.renderables if isinstance(renderable, Group) else [renderable]
    return max((_natural_width(p, console) for p in parts if isinstance(p, Table)), default=80)


def usage_bar(used: int, limit: int, width: int = 20) -> Text:
    """A bar of `width` cells, filled in proportion to used / limit."""
    filled = min(width, round(width * used / limit)) if limit else width
    style = "red" if used >= limit else "yellow" if filled > width * 0.8 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def keys_table(views: list[KeyView], *, bars: bool = False,
               forecasts: dict[int, KeyForecast] | None = None) -> Table:
    columns = [("#", "right"), ("label", "left"), ("key", "left"), ("status", "left"),
               ("used / limit", "right"), ("left", "right"), ("calls", "right"), ("rate hits", "right"),
               ("resets in", "right")]
    if bars:
        columns.insert(5, ("", "left"))
    if forecasts is not None:
        columns.append(("forecast", "left"))
    table = _table("API keys", columns, drop_order=("", "rate hits", "calls", "key", "forecast", "#", "resets in"))
    for view in views:
        usage = view.usage
        cells: list[RenderableType] = [
            str(view.number), Text(view.label), view.masked, f"[{STATUS_STYLE[view.status]}]{view.status}[/]",
            f"{usage.used:,} / {usage.limit:,}", f"{usage.left:,}", f"{usage.calls:,}",
            f"{usage.rate_hits:,}", format_duration(usage.resets_in)]
        if bars:
            cells.insert(5, usage_bar(usage.used, usage.limit))
        if forecasts is not None:
            forecast = forecasts.get(view.id)
            cells.append(forecast.text if forecast and forecast.outlook is not Outlook.UNUSABLE else "")
        table.add_row(*cells)
    return table


def health_table(processes: list[ProcessHealth]) -> Table:
    table = _table("Processes", [("kind", "left"), ("name", "left"), ("host", "left"), ("pid", "right"),
                                 ("state", "left"), ("last seen", "right")], drop_order=("pid", "host"))
    for p in processes:
        state = {"up": "[green]up[/]", "stopped": "[dim]stopped[/]", "down": "[bold red]down[/]"}[p.state]
        table.add_row(p.kind, Text(p.name), Text(p.host), str(p.pid), state, f"{ago(p.since_seen)} ago")
    return table


def stats_view(snapshot: StatsSnapshot) -> Group:
    """The `.stats` panel for terminals: pool summary, keys, processes."""
    today = snapshot.today
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    in_use = snapshot.in_use
    limit = snapshot.daily_limit
    for name, value in (
            ("keys", f"{len(snapshot.keys)}"),
            ("in use", f"#{in_use.number} {in_use.label}" if in_use else "none (no usable key)"),
            ("daily limit per key", f"{limit:,}" if limit is not None else "varies by key"),
            ("used today", f"{today.used:,} tokens"),
            ("left today", f"{today.left:,} tokens"),
            ("lifetime", f"{today.lifetime_tokens:,} tokens, "
                         f"{money_text(today.lifetime_cost_nanousd, today.lifetime_unpriced_tokens)}"),
            ("calls today", f"{today.calls:,} ({today.errors:,} errors, {today.rate_hits:,} rate hits, "
                            f"{percent(today.success_rate)} ok)"),
            ("cost today", money_text(today.cost_nanousd, today.unpriced_tokens)),
            ("forecast", snapshot.pool_forecast.text)):
        summary.add_row(name, Text(value))
    parts: list[RenderableType] = [summary, *hint(snapshot.unpriced_models),
                                   keys_table(snapshot.keys, forecasts=snapshot.forecasts)]
    if snapshot.allowances:
        parts.append(allowances_table(snapshot.allowances, snapshot.now))
    parts.append(health_table(snapshot.processes) if snapshot.processes
                 else Text("No worker or bot has reported yet.", style="dim"))
    return Group(*parts)


def hint(models: list[str]) -> list[Text]:
    """The `[pricing]` hint as a line, when some tokens were unpriced."""
    line = pricing_hint(models)
    return [Text(line, style="yellow")] if line else []


TOTAL_COLUMNS = [("calls", "right"), ("ok", "right"), ("errors", "right"), ("rate hits", "right"),
                 ("input", "right"), ("cached", "right"), ("output", "right"), ("tokens", "right"),
                 ("cost", "right"), ("avg ms", "right")]


def _total_cells(t) -> list[str]:
    return [f"{t.calls:,}", percent(t.success_rate), f"{t.error_calls:,}", f"{t.rate_hits:,}",
            f"{t.input_tokens:,}", f"{t.cached_tokens:,}", f"{t.output_tokens:,}", f"{t.total_tokens:,}",
            money_text(t.cost_nanousd, t.unpriced_tokens), "–" if t.avg_ms is None else f"{t.avg_ms:,}"]


def usage_table(report: UsageReport) -> Table:
    title = (f"Usage by {report.by}, {report.start.isoformat()} → {report.end.isoformat()} "
             f"({report.days} UTC day{'s' if report.days != 1 else ''})")
    table = _table(title, [(report.by, "left")] + TOTAL_COLUMNS,
                   drop_order=("avg ms", "cached", "rate hits", "input", "output", "ok", "errors"))
    table.show_footer = True
    for row in report.rows:
        name = f"{row.group} ({row.detail})" if row.detail else row.group
        table.add_row(Text(name), *_total_cells(row.totals))
    if report.more:
        table.add_row(Text(f"…and {report.more:,} more", style="dim"), *[""] * len(TOTAL_COLUMNS))
    for column, cell in zip(table.columns, ["total"] + _total_cells(report.total)):
        column.footer = cell
    return table


def usage_view(report: UsageReport) -> Group:
    """The usage table, and the `[pricing]` hint when some of its tokens were unpriced."""
    return Group(usage_table(report), *hint(report.unpriced_models))


def recent_table(calls: list[CallView], title: str = "Recent calls") -> Table:
    table = _table(title, [("time (UTC)", "left"), ("bot", "left"), ("operation", "left"), ("chat", "left"),
                           ("model", "left"), ("key", "left"), ("tokens", "right"), ("ms", "right"),
                           ("outcome", "left")],
                   drop_order=("ms", "operation", "key", "bot", "model"))
    for call in calls:
        outcome = Text(call.outcome + (f" {call.error_code}" if call.error_code else ""),
                       style=OUTCOME_STYLE.get(call.outcome, "red"))
        tokens = f"{call.total_tokens:,}" + ("~" if call.estimated else "")
        table.add_row(call.at.strftime("%Y-%m-%d %H:%M:%S"), Text(call.bot), Text(call.operation),
                      Text(chat_cell(call)), Text(call.model), call.key_masked, tokens, f"{call.duration_ms:,}",
                      outcome)
    return table


def chat_cell(call: CallView) -> str:
    """The chat by the name the bots learnt ("Alice (@alice_w)"), else its id; "–" for calls without a chat."""
    if call.chat_id is None:
        return "–"
    return call.chat_name or str(call.chat_id)


def budget_view(report: BudgetReport) -> Group:
    p = report.projection
    pace = _table("Pace (UTC days)", [("", "left"), ("tokens", "right"), ("cost", "right")])
    for name, amount in (("today so far", p.day_so_far), ("today, projected", p.day_projected),
                         ("daily pace (last 7 days and today)", p.week_daily_average),
                         ("month so far", p.month_so_far), ("month, projected", p.month_projected)):
        pace.add_row(name, f"{amount.tokens:,}", money_text(amount.cost_nanousd, amount.unpriced_tokens))
    if not report.checks:
        return Group(pace, *hint(report.unpriced_models),
                     Text("No budgets set: add a [budgets] section to the config.", style="dim"))
    budgets = _table("Budgets", [("scope", "left"), ("period", "left"), ("metric", "left"), ("used", "right"),
                                 ("limit", "right"), ("%", "right"), ("projected", "right"), ("state", "left")],
                     drop_order=("metric", "%"))
    for c in report.checks:
        budgets.add_row(Text(c.scope), c.period, c.metric, c.show(c.used), c.show(c.limit),
                        f"{c.fraction * 100:.0f}%", c.show(c.projected),
                        f"[{STATE_STYLE[c.state]}]{c.state}[/]")
    return Group(pace, *hint(report.unpriced_models), budgets)
