"""Allowances in reports: each shared pool in its current window, with the keys that draw
on it and its forecast at the pace of the last hour, for `.stats`, `tokenpool keys`,
`tokenpool allowances`, the dashboard and JSON; and the worker's "nearly used" alert."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from shared.core.allowances import AllowanceUsage, allowance_usage, members
from shared.core.models import ApiKey
from shared.core.outbox import enqueue_alert
from shared.core.query_rows import tuple_rows
from shared.core.status import Status
from shared.core.windows import format_duration
from shared.reports.forecast import KeyForecast, Outlook, clock_time, forecast_key, recent_tokens_by_key_model

if TYPE_CHECKING:
    from rich.table import Table

WINDOW_NAMES = {"utc-day": "UTC day", "rolling": "rolling 24 h", "minute": "minute"}
NEARLY_USED = 0.9       # share of a limit used (or held) that alerts once per window


@dataclass(frozen=True)
class AllowanceView:
    usage: AllowanceUsage
    key_labels: tuple[str, ...]
    forecast: KeyForecast | None = None     # tokens at the pace of the last hour; None: no token limit

    @property
    def name(self) -> str:
        return self.usage.ref.name

    @property
    def forecast_text(self) -> str:
        """'allowance org runs out ~14:20 UTC', '… lasts the window', or ''."""
        return f"allowance {self.name} {self.forecast.text}" if self.forecast is not None else ""

    @property
    def nearly_used(self) -> bool:
        usage, ref = self.usage, self.usage.ref
        shares = [(usage.tokens_used + usage.tokens_held) / ref.token_limit if ref.token_limit else 0,
                  (usage.requests_used + usage.requests_held) / ref.request_limit if ref.request_limit else 0]
        return max(shares) >= NEARLY_USED


def allowance_views(now: dt.datetime) -> list[AllowanceView]:
    """Every allowance in config, by name, with the labels of its keys and its forecast."""
    usages = allowance_usage(now)
    if not usages:
        return []
    by_allowance = members([u.ref.id for u in usages])
    labels: dict[int, str] = dict(tuple_rows(ApiKey.select(ApiKey.id, ApiKey.label)
                                             .where(ApiKey.in_config == True)))  # noqa: E712
    recent = recent_tokens_by_key_model(now)
    views = []
    for u in usages:
        keys = by_allowance.get(u.ref.id, [])
        views.append(AllowanceView(u, tuple(sorted(labels[k] for k in keys if k in labels)),
                                   _forecast(u, set(keys), recent, now)))
    return views


def _forecast(usage: AllowanceUsage, keys: set[int], recent: dict[tuple[int, str], int],
              now: dt.datetime) -> KeyForecast | None:
    """The allowance's outlook for its window, from the recent tokens of its keys and models."""
    if usage.tokens_left is None or usage.ref.window == "minute":
        return None
    spent = sum(tokens for (key_id, model), tokens in recent.items() if key_id in keys and usage.ref.covers(model))
    return forecast_key(status=Status.EXHAUSTED if usage.used_up else Status.ACTIVE, left=usage.tokens_left,
                        window_end=usage.resets_at, tokens_last_period=spent, now=now)


def nearly_used_alerts(views: list[AllowanceView], now: dt.datetime) -> list[tuple[str, str]]:
    """(dedupe key, text) of each allowance nearly used in its window: one alert per window."""
    alerts = []
    for view in views:
        if view.usage.ref.window == "minute" or not view.nearly_used:
            continue
        usage = view.usage
        pace = f" At this pace it {view.forecast.text}." if view.forecast and view.forecast.outlook is \
            Outlook.RUNS_OUT else ""
        alerts.append((f"allowance_low:{view.name}:{usage.window_start:%Y%m%dT%H%M%S}",
                       f"🟡 Allowance '{view.name}' is nearly used: {'; '.join(limit_texts(usage))}.{pace} "
                       f"It resets at {clock_time(usage.resets_at, now)} "
                       f"(in {format_duration(usage.resets_at - now)})."))
    return alerts


def enqueue_allowance_alerts(now: dt.datetime) -> int:
    """Write the "nearly used" alert of each allowance (once per window); returns how many were new."""
    return sum(enqueue_alert("allowance_low", dedupe, text, now=now)
               for dedupe, text in nearly_used_alerts(allowance_views(now), now))


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
    if view.forecast is not None and view.forecast.outlook is Outlook.RUNS_OUT:
        lines.append(f"  🔮 At this pace it {view.forecast.text}")
    return "\n".join(lines)


def allowances_table(views: list[AllowanceView], now: dt.datetime) -> Table:
    from rich.table import Table  # here: the bot shows allowances in Telegram, never loads rich (~1 MB)

    table = Table(title="Allowances (shared by keys)", title_justify="left")
    for name in ("name", "window", "models", "used / limit", "state", "keys"):
        table.add_column(name, justify="right" if name == "used / limit" else "left")
    table.add_column("resets in", justify="right")
    table.add_column("forecast")
    for view in views:
        usage = view.usage
        table.add_row(view.name, WINDOW_NAMES[usage.ref.window], " ".join(usage.ref.models) or "any",
                      "\n".join(limit_texts(usage)), "[bold red]USED UP[/]" if usage.used_up else "[green]open[/]",
                      ", ".join(view.key_labels), format_duration(usage.resets_at - now),
                      view.forecast.text if view.forecast else "")
    return table


def allowance_json(view: AllowanceView) -> dict:
    usage, ref = view.usage, view.usage.ref
    return {"name": ref.name, "window": ref.window, "models": list(ref.models), "token_limit": ref.token_limit,
            "request_limit": ref.request_limit, "tokens_used": usage.tokens_used,
            "requests_used": usage.requests_used, "tokens_held": usage.tokens_held,
            "requests_held": usage.requests_held, "tokens_left": usage.tokens_left,
            "requests_left": usage.requests_left, "used_up": usage.used_up,
            "window_start": usage.window_start.isoformat(), "resets_at": usage.resets_at.isoformat(),
            "keys": list(view.key_labels), "nearly_used": view.nearly_used,
            "forecast": None if view.forecast is None else {
                "outlook": view.forecast.outlook.value, "text": view.forecast_text,
                "tokens_per_hour": view.forecast.tokens_per_hour,
                "runs_out_at": None if view.forecast.runs_out_at is None else view.forecast.runs_out_at.isoformat()}}
