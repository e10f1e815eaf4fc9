"""Allowances in reports: each shared pool in its current window, with the keys that draw
on it, for `.stats`, `tokenpool keys`, `tokenpool allowances` and JSON."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from shared.core.allowances import AllowanceUsage, allowance_usage, members
from shared.core.models import ApiKey
from shared.core.query_rows import tuple_rows
from shared.core.windows import format_duration

if TYPE_CHECKING:
    from rich.table import Table

WINDOW_NAMES = {"utc-day": "UTC day", "rolling": "rolling 24 h", "minute": "minute"}


@dataclass(frozen=True)
class AllowanceView:
    usage: AllowanceUsage
    key_labels: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.usage.ref.name


def allowance_views(now: dt.datetime) -> list[AllowanceView]:
    """Every allowance in config, by name, with the labels of its keys."""
    usages = allowance_usage(now)
    if not usages:
        return []
    by_allowance = members([u.ref.id for u in usages])
    labels: dict[int, str] = dict(tuple_rows(ApiKey.select(ApiKey.id, ApiKey.label)
                                             .where(ApiKey.in_config == True)))  # noqa: E712
    return [AllowanceView(u, tuple(sorted(labels[k] for k in by_allowance.get(u.ref.id, []) if k in labels)))
            for u in usages]


def limit_texts(usage: AllowanceUsage) -> list[str]:
    """`1,234 / 2,500,000 tokens`, `3 / 50 requests` (held = reserved by calls in flight)."""
    ref, parts = usage.ref, []
    if ref.token_limit is not None:
        held = f" (+{usage.tokens_held:,} held)" if usage.tokens_held else ""
        parts.append(f"{usage.tokens_used:,} / {ref.token_limit:,} tokens{held}")
    if ref.request_limit is not None:
        held = f" (+{usage.requests_held:,} held)" if usage.requests_held else ""
        parts.append(f"{usage.requests_used:,} / {ref.request_limit:,} requests{held}")
    return parts


def telegram_block(view: AllowanceView, now: dt.datetime) -> str:
    usage = view.usage
    badge = "🔴 USED UP" if usage.used_up else "🟢"
    models = ", ".join(usage.ref.models) or "any model"
    lines = [f"🏢 <b>{escape(view.name)}</b> {badge} ({WINDOW_NAMES[usage.ref.window]}; {escape(models)})"]
    lines += [f"  📊 {text}" for text in limit_texts(usage)]
    lines.append(f"  🔑 Keys: {escape(', '.join(view.key_labels)) or 'none'}")
    lines.append(f"  ⏰ Resets in: {format_duration(usage.resets_at - now)}")
    return "\n".join(lines)


def allowances_table(views: list[AllowanceView], now: dt.datetime) -> Table:
    from rich.table import Table  # here: the bot shows allowances in Telegram, never loads rich (~1 MB)

    table = Table(title="Allowances (shared by keys)", title_justify="left")
    for name in ("name", "window", "models", "used / limit", "state", "keys"):
        table.add_column(name, justify="right" if name == "used / limit" else "left")
    table.add_column("resets in", justify="right")
    for view in views:
        usage = view.usage
        table.add_row(view.name, WINDOW_NAMES[usage.ref.window], " ".join(usage.ref.models) or "any",
                      "\n".join(limit_texts(usage)), "[bold red]USED UP[/]" if usage.used_up else "[green]open[/]",
                      ", ".join(view.key_labels), format_duration(usage.resets_at - now))
    return table


def allowance_json(view: AllowanceView) -> dict:
    usage, ref = view.usage, view.usage.ref
    return {"name": ref.name, "window": ref.window, "models": list(ref.models), "token_limit": ref.token_limit,
            "request_limit": ref.request_limit, "tokens_used": usage.tokens_used,
            "requests_used": usage.requests_used, "tokens_held": usage.tokens_held,
            "requests_held": usage.requests_held, "tokens_left": usage.tokens_left,
            "requests_left": usage.requests_left, "used_up": usage.used_up,
            "window_start": usage.window_start.isoformat(), "resets_at": usage.resets_at.isoformat(),
            "keys": list(view.key_labels)}
