"""Allowances forecast at the pace of the last hour ("allowance org runs out ~HH:MM"), shown
in .stats, JSON and the dashboard, and alerted once per window when nearly used (every backend)."""
from __future__ import annotations

import datetime as dt

import time_machine

from shared.core.accounting import CallRecord, record_call
from shared.core.allowances import allowance_usage, reserve
from shared.core.keys import sync_keys
from shared.core.models import Alert, ApiKey, utcnow
from shared.core.pricing import Pricer
from shared.dashboard.payloads import page_payload
from shared.dashboard.templating import environment
from shared.reports.allowance_views import allowance_views, enqueue_allowance_alerts
from shared.reports.forecast import Outlook
from shared.reports.queries import stats_snapshot
from shared.reports.render_json_csv import stats_json
from shared.reports.render_telegram import render_stats
from tests.conftest import make_config
from worker.tick import Ticker

NOW = dt.datetime(2026, 3, 10, 12, 0)
TTL = dt.timedelta(minutes=10)


def _config(url: str):
    keys = [{"label": f"k{i}", "api_key": f"sk-fc-{i}-" + "x" * 24, "daily_token_limit": 1_000_000,
             "allowances": ["org"]} for i in (1, 2)]
    return make_config(keys, url=url, allowances=[{"name": "org", "tokens": 10_000, "window": "utc-day",
                                                   "models": ["gpt-4o-mini"]}])


def _spend(ring, tokens: int, at: dt.datetime, model: str = "gpt-4o-mini") -> None:
    """A call of `tokens` tokens, reserved and settled as the client does."""
    key_id = ring.ids()[0]
    (usage,) = allowance_usage(at, ["org"])
    hold = reserve([usage.ref] if usage.ref.covers(model) else [], tokens, at, TTL, key_id)
    record_call(CallRecord(key_id=key_id, bot="b", operation="op", model=model, input_tokens=tokens, at=at,
                           hold=hold), anchor=ApiKey.get_by_id(key_id).window_anchor, pricer=Pricer())


def test_an_allowance_running_out_is_forecast_and_shown(db, db_url):
    config = _config(db_url)
    ring = sync_keys(config)
    _spend(ring, 8_000, NOW - dt.timedelta(minutes=30))           # 8,000 tokens an hour: 2,000 left
    _spend(ring, 50_000, NOW - dt.timedelta(minutes=20), "gpt-4o")   # not in the allowance: no pace
    (view,) = allowance_views(NOW)
    assert view.forecast.outlook is Outlook.RUNS_OUT
    assert view.forecast.runs_out_at == NOW + dt.timedelta(minutes=15)
    assert view.forecast_text == "allowance org runs out ~12:15 UTC"
    assert not view.nearly_used
    snapshot = stats_snapshot(NOW, config)
    assert "At this pace it runs out ~12:15 UTC" in render_stats(snapshot)
    (data,) = stats_json(snapshot)["allowances"]
    assert data["forecast"]["outlook"] == "runs_out" and data["forecast"]["text"] == view.forecast_text
    context = page_payload(NOW, config)
    assert context["stats"]["allowances"][0]["usage_text"] == "8,000 / 10,000 tokens"
    html = environment().get_template("index.html").render(**context, refresh_seconds=5, token_required=False)
    assert "allowance org runs out ~12:15 UTC" in html and 'data-items="allowances"' in html


def test_a_nearly_used_allowance_is_alerted_once_per_window(db, db_url):
    ring = sync_keys(_config(db_url))
    _spend(ring, 8_500, NOW - dt.timedelta(minutes=30))
    assert enqueue_allowance_alerts(NOW) == 0                     # 85%: not yet
    _spend(ring, 600, NOW - dt.timedelta(minutes=5))
    assert enqueue_allowance_alerts(NOW) == 1                     # 91%
    assert enqueue_allowance_alerts(NOW + dt.timedelta(minutes=1)) == 0
    (alert,) = Alert.select()
    assert alert.kind == "allowance_low" and "Allowance 'org' is nearly used: 9,100 / 10,000 tokens" in alert.text
    assert "runs out" in alert.text


def test_the_worker_alerts_a_nearly_used_allowance(db, db_url):
    config = _config(db_url)
    with time_machine.travel(NOW, tick=False) as clock:
        ticker = Ticker(config, name="w1", holder="w1")
        ticker.tick()
        ring = sync_keys(config)
        _spend(ring, 9_500, utcnow())
        for _ in range(3):
            clock.shift(dt.timedelta(seconds=1))
            ticker.tick()
    assert [a.kind for a in Alert.select()] == ["allowance_low"]
