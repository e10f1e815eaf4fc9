"""Terminal rendering with rich: tables for people (the --json forms are for scripts)."""
from __future__ import annotations

from rich.table import Table

from .reports import KeyView
from .status import Status
from .windows import format_duration

STATUS_STYLE = {
    Status.FRESH: "green", Status.ACTIVE: "green", Status.LOW: "yellow", Status.EXHAUSTED: "red",
    Status.RATE_LIMITED: "magenta", Status.INVALID: "bold red", Status.DISABLED: "dim",
}


def keys_table(views: list[KeyView]) -> Table:
    table = Table(title="API keys", title_justify="left")
    for name, justify in (("#", "right"), ("label", "left"), ("key", "left"), ("status", "left"),
                          ("used / limit", "right"), ("left", "right"), ("calls", "right"),
                          ("rate hits", "right"), ("resets in", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for view in views:
        usage = view.usage
        table.add_row(str(view.position + 1), view.label, view.masked,
                      f"[{STATUS_STYLE[view.status]}]{view.status}[/]",
                      f"{usage.used:,} / {usage.limit:,}", f"{usage.left:,}", f"{usage.calls:,}",
                      f"{usage.rate_hits:,}", format_duration(usage.resets_in))
    return table
