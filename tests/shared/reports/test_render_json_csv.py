"""JSON and CSV: stable field names, exact money, and round trips."""
import datetime as dt
import io
import json
from decimal import Decimal

from shared.core.keys import fingerprint
from shared.reports import render_json_csv
from shared.reports.budgets import budget_report
from shared.reports.exports import export, export_document
from shared.reports.queries import (
    calls_between,
    rollups_between,
    stats_snapshot,
    usage_report,
)
from shared.reports.render_json_csv import (
    CALL_COLUMNS,
    DAILY_COLUMNS,
    call_json,
    read_csv,
    rollup_json,
    stats_json,
)
from tests.shared.report_fixtures import (
    NOW,
    build_panel,
    history_config,
    record_history,
)

START, END = NOW.date() - dt.timedelta(days=5), NOW.date()   # the whole history


def test_calls_csv_round_trips_to_the_json_rows(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url))
    out = io.StringIO()
    assert export(out, "csv", "calls", START, END) == 60
    as_json = [call_json(c) for c in calls_between(dt.datetime.combine(START, dt.time()), NOW + dt.timedelta(1))]
    assert read_csv(out.getvalue(), "calls") == as_json
    assert out.getvalue().splitlines()[0] == ",".join(CALL_COLUMNS)


def test_daily_csv_round_trips_to_the_json_rows(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url))
    out = io.StringIO()
    count = export(out, "csv", "daily", START, END)
    rows = [rollup_json(r) for r in rollups_between(START, END)]
    assert count == len(rows) > 10
    assert read_csv(out.getvalue(), "daily") == rows
    assert list(rows[0]) == list(DAILY_COLUMNS)


def test_json_export_parses_back_and_sums_exactly(sqlite_db, sqlite_url):
    config = history_config(sqlite_url)
    record_history(config)
    document = export_document(NOW, "json", days=5)
    assert document.filename == "tokenpool-calls-2026-03-06-to-2026-03-10.json"
    rows = json.loads(document.data)
    assert document.rows == len(rows)
    report = usage_report(NOW, 5)
    assert len(rows) == report.total.calls
    assert sum(r["cost_nanousd"] for r in rows) == report.total.cost_nanousd
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(report.total.cost_nanousd) / 10 ** 9
    assert all(r["at"].endswith("Z") and render_json_csv.parse_iso(r["at"]).date() >= START for r in rows)


def test_empty_exports_are_valid(sqlite_db):
    out = io.StringIO()
    assert export(out, "json", "calls", START, END) == 0
    assert json.loads(out.getvalue()) == []
    out = io.StringIO()
    export(out, "csv", "calls", START, END)
    assert read_csv(out.getvalue(), "calls") == []


def test_stats_json_field_names_are_stable_and_hold_no_secret(sqlite_db, sqlite_url):
    config = build_panel(sqlite_url)
    data = stats_json(stats_snapshot(NOW, config))
    assert list(data) == ["generated_at", "keys_total", "key_in_use", "daily_limit_per_key",
                          "ranking_generation", "today", "forecast", "keys", "processes", "allowances",
                          "pricing_hint"]
    assert list(data["today"]) == ["used", "left", "limit", "calls", "errors", "rate_hits", "success_rate",
                                   "cost_nanousd", "cost_usd", "unpriced", "unpriced_tokens", "lifetime_tokens",
                                   "lifetime_calls", "lifetime_cost_nanousd", "lifetime_cost_usd",
                                   "lifetime_unpriced", "lifetime_unpriced_tokens"]
    assert data["keys"][2]["label"] == "ops&dev" and data["keys"][2]["status"] == "EXHAUSTED"
    assert data["keys"][2]["forecast"]["outlook"] == "exhausted"
    assert list(data["forecast"]) == ["outlook", "text", "tokens_per_hour", "left", "next_reset_at", "runs_out_at"]
    assert data["key_in_use"] == "main" and data["ranking_generation"] == 42
    assert data["generated_at"] == "2026-03-10T12:00:00.000000Z"
    text = json.dumps(data)
    for key in config.keys:
        assert key.secret not in text and fingerprint(key.secret) not in text
    assert json.loads(text) == data


def test_budget_json(sqlite_db, sqlite_url):
    config = history_config(sqlite_url, budgets={"daily_tokens": 10_000})
    record_history(config)
    data = render_json_csv.budget_json(budget_report(NOW, config))
    (check,) = data["budgets"]
    assert check == {"scope": "pool", "period": "day", "metric": "tokens", "unit": "tokens",
                     "period_start": "2026-03-10", "limit": 10_000, "used": 17_114, "projected": 34_228,
                     "fraction": 1.7114, "state": "over"}
    assert data["projection"]["month_projected"]["tokens"] == 604_836   # 117,294 + 17,114 + 21 days × 22,401
