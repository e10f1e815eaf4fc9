"""What the dashboard's page and JSON endpoints show, as JSON-ready dicts.

Every payload is the reporting core's JSON form (`shared.reports.render_json_csv`, the same dicts the
CLI prints with --json) of the reporting core's queries (`shared.reports.queries`,
`shared.reports.budgets`). The dashboard only adds what it alone shows, under new names: the
status counts, the pace forecasts, each key's successes, and costs as text (`cost_text`:
"$0.0123", or "unpriced (1,200 tokens)" for models without a known price).
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from shared.core.status import Status, WindowUsage
from shared.reports import queries, render_json_csv
from shared.reports.allowance_views import limit_texts
from shared.reports.budgets import pool_projection
from shared.reports.charts import PHONE_HEIGHT, PHONE_WIDTH, usage_chart
from shared.reports.forecast import KeyForecast, forecast_views, recent_tokens_by_key
from shared.reports.money import money_text
from shared.reports.render_json_csv import key_forecast_json

RECENT_CALLS = 20
MAX_RECENT = queries.MAX_RECENT
MAX_DAYS = queries.MAX_DAYS
CHART_DAYS = 30
TOP_PER_KEY = 3           # top operations and top chats shown on each key's card
MAX_CHART_DAYS = 366


def stats_payload(now: dt.datetime, config) -> dict:
    """`tokenpool stats --json`, plus status counts, projections and forecasts."""
    snapshot = queries.stats_snapshot(now, config)
    stats = render_json_csv.stats_json(snapshot)
    tops = {by: queries.key_top_groups(now, by, TOP_PER_KEY) for by in ("operation", "chat")}
    stats["keys"] = [{**key, "successes": _successes(view), "cost_text": _cost_text(view),
                      "top_operations": [render_json_csv.usage_row_json(r) for r in tops["operation"].get(view.id, [])],
                      "top_chats": [render_json_csv.usage_row_json(r) for r in tops["chat"].get(view.id, [])]}
                     for key, view in zip(stats["keys"], snapshot.keys)]
    counts = {status.value: 0 for status in Status}
    for view in snapshot.keys:
        counts[view.status.value] += 1
    stats["status_counts"] = counts
    stats["allowances"] = [{**data, "usage_text": "; ".join(limit_texts(view.usage))}
                           for data, view in zip(stats["allowances"], snapshot.allowances)]
    stats["today"]["successes"] = snapshot.today.calls - snapshot.today.errors - snapshot.today.rate_hits
    stats["today"]["cost_text"] = money_text(snapshot.today.cost_nanousd, snapshot.today.unpriced_tokens)
    stats["projection"] = projection_json(pool_projection(now))
    return stats


def keys_payload(now: dt.datetime, config) -> list[dict]:
    """`tokenpool keys --json` (each key as render_json_csv.key_json), plus forecasts."""
    views = queries.key_views(now, config.pool.low_threshold)
    by_key, _pool = forecast_views(views, recent_tokens_by_key(now), now)
    return [_with_extras(render_json_csv.key_json(view), view, by_key[view.id]) for view in views]


def recent_payload(limit: int = RECENT_CALLS) -> list[dict]:
    """`tokenpool recent N --json`."""
    return [render_json_csv.call_json(call) for call in queries.recent_calls(limit)]


def usage_payload(now: dt.datetime, days: int, by: str) -> dict:
    """`tokenpool usage DAYS --by BY --json`."""
    return render_json_csv.usage_json(queries.usage_report(now, days, by))


def page_payload(now: dt.datetime, config) -> dict:
    """Everything the page shows at first: the stats and the newest calls."""
    return {"stats": stats_payload(now, config), "recent": recent_payload(RECENT_CALLS), "blank": blanks(now)}


def chart_png(now: dt.datetime, days: int, metric: str = "tokens", phone: bool = False) -> bytes:
    """The `.chart` PNG (daily tokens, or cost, stacked by key); phone-sized on request."""
    size = {"width": PHONE_WIDTH, "height": PHONE_HEIGHT} if phone else {}
    return usage_chart(now, days, metric=metric, **size)


def blanks(now: dt.datetime) -> dict:
    """An empty key, call and process in their JSON shapes: the page's templates for new items."""
    usage = WindowUsage(used=0, calls=0, rate_hits=0, errors=0, limit=0, window_start=now, resets_in=dt.timedelta(0))
    key = queries.KeyView(id=0, position=0, label="", masked="", status=Status.FRESH, usage=usage, total_tokens=0,
                          last_used_at=None, last_error="", in_config=True)
    forecast = forecast_views([key], {}, now)[0][0]
    call = queries.CallView(0, "", now, "", "", "", "", "", 0, 0, 0, 0, 0, 0, 0, 0, "ok", "", None, False)
    process = queries.ProcessHealth("", "", "", 0, now, now, True, dt.timedelta(0))
    return {"key": {**_with_extras(render_json_csv.key_json(key), key, forecast),
                    "top_operations": [], "top_chats": []},
            "allowance": {"name": "", "usage_text": "", "nearly_used": False, "used_up": False,
                          "forecast": {"text": ""}},
            "call": render_json_csv.call_json(call),
            "process": render_json_csv.process_json(process)}


# --- the dashboard's additions -------------------------------------------------------------------

def _successes(view: queries.KeyView) -> int:
    usage = view.usage
    return usage.calls - usage.errors - usage.rate_hits


def _cost_text(view: queries.KeyView) -> str:
    return money_text(view.cost_today_nanousd, view.unpriced_today)


def _with_extras(key: dict, view: queries.KeyView, forecast: KeyForecast) -> dict:
    return {**key, "successes": _successes(view), "cost_text": _cost_text(view),
            "forecast": key_forecast_json(forecast)}


def projection_json(projection) -> dict:
    """budgets.Projection as {"day_so_far": {"tokens", "cost_nanousd"}, ... "month_projected": ...}."""
    amounts = {f.name: getattr(projection, f.name) for f in dataclasses.fields(projection)}
    return {name: {**render_json_csv.amount_json(amount),
                   "cost_text": money_text(amount.cost_nanousd, amount.unpriced_tokens)}
            for name, amount in amounts.items()}
