"""Reports as data: JSON-ready dicts (the CLI's --json and the dashboard's /api/*) and CSV.

Field names are stable and the same everywhere; docs/reports.md lists them. Conventions:
- times are ISO 8601 UTC strings ending in "Z"; days are "YYYY-MM-DD" (UTC days);
- money is exact: `*_nanousd` integers (1e-9 USD) plus `*_usd` decimal strings, beside
  `unpriced` (a flag) and `unpriced_tokens`: tokens of models without a known price.
  Both money fields are null when every token was unpriced (unknown, not free);
- durations are whole seconds (`*_seconds`) or milliseconds (`*_ms`);
- rates are fractions in 0..1, or null when there were no calls.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any, TextIO

from shared.reports.allowance_views import allowance_json
from shared.reports.budgets import Amount, BudgetReport
from shared.reports.forecast import KeyForecast, PoolForecast
from shared.reports.money import money_json, pricing_hint, usd
from shared.reports.queries import (
    CallView,
    KeyView,
    ProcessHealth,
    RollupView,
    StatsSnapshot,
    Totals,
    UsageReport,
    UsageRow,
)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.removesuffix("Z"))


__all__ = ["usd"]     # re-exported for the dashboard


def seconds(delta: dt.timedelta) -> int:
    return int(delta.total_seconds())


# --- builders ----------------------------------------------------------------------------------

def key_json(view: KeyView) -> dict:
    usage = view.usage
    return {
        "label": view.label, "masked": view.masked, "number": view.number, "status": view.status.value,
        "used": usage.used, "limit": usage.limit, "left": usage.left, "calls": usage.calls,
        "rate_hits": usage.rate_hits, "errors": usage.errors,
        **money_json(view.cost_today_nanousd, view.unpriced_today),
        "window_start": iso(usage.window_start), "resets_in_seconds": seconds(usage.resets_in),
        "frees_up_at": iso(view.frees_up_at),
        "lifetime_tokens": view.total_tokens, "lifetime_calls": view.total_calls,
        **money_json(view.total_cost_nanousd, view.total_unpriced, "lifetime_cost"),
        "last_used_at": iso(view.last_used_at), "last_error": view.last_error,
        "invalid_reason": view.invalid_reason,
        "rl_remaining_requests": view.rl_remaining_requests, "rl_remaining_tokens": view.rl_remaining_tokens,
        "in_config": view.in_config,
    }


def process_json(process: ProcessHealth) -> dict:
    return {"kind": process.kind, "name": process.name, "host": process.host, "pid": process.pid,
            "started_at": iso(process.started_at), "last_seen": iso(process.last_seen),
            "seconds_since_seen": seconds(process.since_seen), "alive": process.alive,
            "state": process.state}


def stats_json(snapshot: StatsSnapshot) -> dict:
    today = snapshot.today
    return {
        "generated_at": iso(snapshot.now),
        "keys_total": len(snapshot.keys),
        "key_in_use": snapshot.in_use.label if snapshot.in_use else None,
        "daily_limit_per_key": snapshot.daily_limit,
        "ranking_generation": snapshot.ranking_generation,
        "today": {
            "used": today.used, "left": today.left, "limit": today.limit, "calls": today.calls,
            "errors": today.errors, "rate_hits": today.rate_hits, "success_rate": today.success_rate,
            **money_json(today.cost_nanousd, today.unpriced_tokens),
            "lifetime_tokens": today.lifetime_tokens, "lifetime_calls": today.lifetime_calls,
            **money_json(today.lifetime_cost_nanousd, today.lifetime_unpriced_tokens, "lifetime_cost"),
        },
        "forecast": pool_forecast_json(snapshot.pool_forecast),
        "keys": [{**key_json(view), "forecast": key_forecast_json(snapshot.forecasts[view.id])}
                 for view in snapshot.keys],
        "processes": [process_json(p) for p in snapshot.processes],
        "allowances": [allowance_json(a) for a in snapshot.allowances],
        "pricing_hint": pricing_hint(snapshot.unpriced_models),
    }


def totals_json(totals: Totals) -> dict:
    return {**dataclasses.asdict(totals), **money_json(totals.cost_nanousd, totals.unpriced_tokens),
            "success_rate": totals.success_rate, "avg_ms": totals.avg_ms}


def usage_row_json(row: UsageRow) -> dict:
    return {"group": row.group, "detail": row.detail, **totals_json(row.totals)}


def usage_json(report: UsageReport) -> dict:
    return {"by": report.by, "days": report.days, "start_day": report.start.isoformat(),
            "end_day": report.end.isoformat(), "rows": [usage_row_json(r) for r in report.rows],
            "more": report.more, "total": totals_json(report.total),
            "pricing_hint": pricing_hint(report.unpriced_models)}


def call_json(call: CallView) -> dict:
    return {
        "id": call.id, "call_id": call.call_id, "at": iso(call.at), "bot": call.bot,
        "operation": call.operation, "model": call.model, "key_label": call.key_label,
        "key_masked": call.key_masked, "input_tokens": call.input_tokens,
        "cached_tokens": call.cached_tokens, "output_tokens": call.output_tokens,
        "reasoning_tokens": call.reasoning_tokens, "total_tokens": call.total_tokens,
        **money_json(call.cost_nanousd, call.unpriced_tokens),
        "duration_ms": call.duration_ms, "outcome": call.outcome, "error_code": call.error_code,
        "chat_id": call.chat_id, "chat_name": call.chat_name, "estimated": call.estimated,
    }


def rollup_json(row: RollupView) -> dict:
    return {"day": row.day.isoformat(), "key_label": row.key_label, "key_masked": row.key_masked,
            "bot": row.bot, "model": row.model, "operation": row.operation, **totals_json(row.totals)}


def amount_json(amount: Amount) -> dict:
    return {"tokens": amount.tokens, **money_json(amount.cost_nanousd, amount.unpriced_tokens)}


def budget_json(report: BudgetReport) -> dict:
    p = report.projection
    return {
        "generated_at": iso(report.now),
        "projection": {"day_so_far": amount_json(p.day_so_far), "day_projected": amount_json(p.day_projected),
                       "week_daily_average": amount_json(p.week_daily_average),
                       "month_so_far": amount_json(p.month_so_far),
                       "month_projected": amount_json(p.month_projected)},
        "budgets": [{"scope": c.scope, "period": c.period, "metric": c.metric,
                     "unit": "nanousd" if c.metric == "cost" else "tokens",
                     "period_start": c.period_start.isoformat(), "limit": c.limit, "used": c.used,
                     "projected": c.projected, "fraction": c.fraction, "state": c.state}
                    for c in report.checks],
        "pricing_hint": pricing_hint(report.unpriced_models),
    }


def dumps(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- CSV ---------------------------------------------------------------------------------------
#
# Exports are "calls" (one row per call, from the events) or "daily" (one row per rollup:
# UTC day x key x bot x model x operation). Columns are the JSON fields, in this order.

def usd_text(text: str) -> str:
    """The cost_usd column's type: text, but an empty cell is null (unpriced), not ''."""
    return text


CALL_COLUMNS: dict[str, Callable[[str], Any]] = {
    "id": int, "call_id": str, "at": str, "bot": str, "operation": str, "model": str, "key_label": str,
    "key_masked": str, "input_tokens": int, "cached_tokens": int, "output_tokens": int,
    "reasoning_tokens": int, "total_tokens": int, "cost_nanousd": int, "cost_usd": usd_text,
    "unpriced": bool, "unpriced_tokens": int, "duration_ms": int, "outcome": str, "error_code": str,
    "chat_id": int, "chat_name": str, "estimated": bool,
}
DAILY_COLUMNS: dict[str, Callable[[str], Any]] = {
    "day": str, "key_label": str, "key_masked": str, "bot": str, "model": str, "operation": str,
    **{name: int for name in Totals.__dataclass_fields__}, "cost_usd": usd_text, "unpriced": bool,
    "success_rate": float,
    "avg_ms": int,
}
EXPORTS: dict[str, tuple[dict[str, Callable[[str], Any]], Callable[[Any], dict]]] = {
    "calls": (CALL_COLUMNS, call_json), "daily": (DAILY_COLUMNS, rollup_json)}


def write_csv(rows, kind: str, out: TextIO) -> int:
    """Write the header and one line per row (CallView or RollupView); returns the row count."""
    columns, to_json = EXPORTS[kind]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        data = to_json(row)
        writer.writerow([_csv_cell(data[name]) for name in columns])
        count += 1
    return count


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def read_csv(text: str, kind: str) -> list[dict]:
    """Parse an export back into the same dicts the JSON export holds (None for empty cells)."""
    columns, _ = EXPORTS[kind]
    parsed = []
    for record in csv.DictReader(io.StringIO(text)):
        parsed.append({name: _csv_value(columns[name], record[name]) for name in columns})
    return parsed


def _csv_value(kind, text: str):
    if text == "" and kind is not str:
        return None
    if kind is bool:
        return text == "true"
    return kind(text)


def write_json(rows, kind: str, out: TextIO) -> int:
    """Write a JSON array, one object per row, streamed (a day of calls may be large)."""
    _, to_json = EXPORTS[kind]
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps(to_json(row), ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def key_forecast_json(forecast: KeyForecast) -> dict:
    """A key's forecast as data (the dashboard's `forecast` field of each key)."""
    return {"outlook": forecast.outlook.value, "text": forecast.text, "tokens_per_hour": forecast.tokens_per_hour,
            "window_end": iso(forecast.window_end), "runs_out_at": iso(forecast.runs_out_at)}


def pool_forecast_json(forecast: PoolForecast) -> dict:
    """The pool's forecast as data (the dashboard's top-level `forecast` field)."""
    return {"outlook": forecast.outlook.value, "text": forecast.text, "tokens_per_hour": forecast.tokens_per_hour,
            "left": forecast.left, "next_reset_at": iso(forecast.next_reset_at),
            "runs_out_at": iso(forecast.runs_out_at)}
