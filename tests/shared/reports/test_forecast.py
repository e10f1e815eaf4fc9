import datetime as dt

from shared.core.accounting import Accountant, CallRecord, Outcome
from shared.core.models import ApiKey, utcnow
from shared.core.status import Status
from shared.reports.forecast import (
    Outlook,
    forecast_key,
    forecast_pool,
    forecast_views,
    recent_tokens_by_key,
)
from shared.reports.queries import key_views, stats_snapshot
from shared.reports.render_json_csv import (
    key_forecast_json,
    pool_forecast_json,
    stats_json,
)
from shared.reports.render_telegram import render_stats

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
HOUR = dt.timedelta(hours=1)


def test_steady_pace_runs_out_before_the_window_ends():
    # 100,000 tokens in the last hour, 230,000 left: 2.3 hours from noon.
    forecast = forecast_key(status=Status.LOW, left=230_000, window_end=NOW + 10 * HOUR,
                            tokens_last_period=100_000, now=NOW)
    assert forecast.outlook is Outlook.RUNS_OUT
    assert forecast.runs_out_at == dt.datetime(2026, 3, 1, 14, 18)
    assert forecast.tokens_per_hour == 100_000
    assert forecast.text == "runs out ~14:18 UTC"


def test_steady_pace_that_outlasts_the_window_lasts_the_window():
    forecast = forecast_key(status=Status.ACTIVE, left=900_000, window_end=NOW + 2 * HOUR,
                            tokens_last_period=100_000, now=NOW)
    assert forecast.outlook is Outlook.LASTS
    assert forecast.runs_out_at is None
    assert forecast.text == "lasts the window"


def test_window_ending_exactly_when_the_key_would_run_out_lasts_the_window():
    forecast = forecast_key(status=Status.ACTIVE, left=200_000, window_end=NOW + 2 * HOUR,
                            tokens_last_period=100_000, now=NOW)
    assert forecast.outlook is Outlook.LASTS
    one_token_less = forecast_key(status=Status.ACTIVE, left=200_000, window_end=NOW + 2 * HOUR,
                                  tokens_last_period=100_001, now=NOW)
    assert one_token_less.outlook is Outlook.RUNS_OUT
    assert one_token_less.runs_out_at < NOW + 2 * HOUR


def test_idle_key_lasts_the_window():
    forecast = forecast_key(status=Status.FRESH, left=1_000_000, window_end=NOW + HOUR,
                            tokens_last_period=0, now=NOW)
    assert forecast.outlook is Outlook.IDLE
    assert forecast.tokens_per_hour == 0
    assert "lasts the window" in forecast.text


def test_exhausted_key_says_until_when():
    end = dt.datetime(2026, 3, 1, 17, 45)
    by_counter = forecast_key(status=Status.EXHAUSTED, left=0, window_end=end, tokens_last_period=5_000, now=NOW)
    by_provider = forecast_key(status=Status.EXHAUSTED, left=400_000, window_end=end, tokens_last_period=0,
                               now=NOW)
    for forecast in (by_counter, by_provider):
        assert forecast.outlook is Outlook.EXHAUSTED
        assert forecast.text == "exhausted until 17:45 UTC"


def test_disabled_and_invalid_keys_get_no_forecast():
    for status in (Status.DISABLED, Status.INVALID):
        forecast = forecast_key(status=status, left=1_000_000, window_end=NOW + HOUR,
                                tokens_last_period=10_000, now=NOW)
        assert forecast.outlook is Outlook.UNUSABLE


def test_shorter_pace_period_scales_to_the_hour():
    forecast = forecast_key(status=Status.ACTIVE, left=60_000, window_end=NOW + 5 * HOUR,
                            tokens_last_period=1_000, now=NOW, period=dt.timedelta(minutes=1))
    assert forecast.tokens_per_hour == 60_000
    assert forecast.runs_out_at == NOW + HOUR


def test_pool_lasts_until_the_next_reset_of_any_key():
    keys = [(Status.ACTIVE, 500_000, NOW + 3 * HOUR, 100_000),
            (Status.FRESH, 1_000_000, NOW + 20 * HOUR, 0)]
    forecast = forecast_pool(keys, now=NOW)
    # 1.5M left at 100k/hour = 15 h; the first key resets in 3 h.
    assert forecast.outlook is Outlook.LASTS
    assert forecast.next_reset_at == NOW + 3 * HOUR
    assert forecast.left == 1_500_000
    assert forecast.text == "today's allowance lasts until the next reset at 15:00 UTC"


def test_pool_runs_out_before_the_next_reset():
    keys = [(Status.LOW, 100_000, NOW + 5 * HOUR, 150_000),
            (Status.ACTIVE, 200_000, NOW + 6 * HOUR, 50_000)]
    forecast = forecast_pool(keys, now=NOW)
    # 300k left at 200k/hour: 1.5 h, before the first reset at 17:00.
    assert forecast.outlook is Outlook.RUNS_OUT
    assert forecast.runs_out_at == NOW + dt.timedelta(hours=1, minutes=30)
    assert forecast.text == "pool runs out ~13:30 UTC, before the next reset at 17:00 UTC"


def test_pool_counts_nothing_left_on_exhausted_keys_and_ignores_unusable_ones_resets():
    keys = [(Status.EXHAUSTED, 300_000, NOW + 2 * HOUR, 0),      # provider said quota gone
            (Status.INVALID, 2_000_000, NOW + HOUR, 40_000),      # its reset brings nothing
            (Status.ACTIVE, 100_000, NOW + 8 * HOUR, 0)]
    forecast = forecast_pool(keys, now=NOW)
    assert forecast.left == 100_000
    assert forecast.next_reset_at == NOW + 2 * HOUR
    # The invalid key's pace moved to the pool: 40k/hour, 100k lasts 2.5 h > 2 h.
    assert forecast.tokens_per_hour == 40_000
    assert forecast.outlook is Outlook.LASTS


def test_pool_exhausted_and_pool_without_usable_keys():
    exhausted = forecast_pool([(Status.EXHAUSTED, 0, NOW + 4 * HOUR, 9_000)], now=NOW)
    assert exhausted.outlook is Outlook.EXHAUSTED
    assert exhausted.text == "pool exhausted until the next reset at 16:00 UTC"
    nothing = forecast_pool([(Status.DISABLED, 1_000, NOW + HOUR, 0)], now=NOW)
    assert nothing.outlook is Outlook.UNUSABLE and nothing.next_reset_at is None
    assert forecast_pool([], now=NOW).outlook is Outlook.UNUSABLE


def test_idle_pool():
    forecast = forecast_pool([(Status.FRESH, 1_000, NOW + HOUR, 0)], now=NOW)
    assert forecast.outlook is Outlook.IDLE and forecast.left == 1_000


def test_recent_tokens_come_from_the_last_hours_events(pool):
    config, ring = pool
    k1, k2, k3 = ring.ids()
    now = ApiKey.get_by_id(k1).window_anchor + 5 * HOUR
    acc = Accountant("b1")
    for key_id, at, tokens in ((k1, now - dt.timedelta(minutes=59), 1_000),
                               (k1, now - dt.timedelta(minutes=1), 3_000),
                               (k1, now - dt.timedelta(minutes=61), 50_000),   # before the hour
                               (k1, now + dt.timedelta(seconds=1), 70_000),   # after now
                               (k2, now, 500)):
        acc.record(CallRecord(key_id=key_id, bot="b1", operation="autoreply", model="gpt-4o-mini",
                              at=at, input_tokens=tokens, outcome=Outcome.OK))
    assert recent_tokens_by_key(now) == {k1: 4_000, k2: 500}

    views = key_views(now, config.pool.low_threshold)
    by_key, pool_forecast = forecast_views(views, recent_tokens_by_key(now), now)
    assert by_key[k3].outlook is Outlook.IDLE
    assert by_key[k1].tokens_per_hour == 4_000
    assert by_key[k1].window_end == next(v for v in views if v.id == k1).usage.window_start + 24 * HOUR
    assert pool_forecast.tokens_per_hour == 4_500


def test_forecasts_as_data():
    key = forecast_key(status=Status.LOW, left=230_000, window_end=NOW + 10 * HOUR, tokens_last_period=100_000,
                       now=NOW)
    assert key_forecast_json(key) == {"outlook": "runs_out", "text": "runs out ~14:18 UTC", "tokens_per_hour": 100_000,
                                      "window_end": "2026-03-01T22:00:00.000000Z",
                                      "runs_out_at": "2026-03-01T14:18:00.000000Z"}
    pool = forecast_pool([(Status.FRESH, 1_000, NOW + HOUR, 0)], now=NOW)
    assert pool_forecast_json(pool) == {"outlook": "idle", "text": "today's allowance lasts until the next reset at "
                                        "13:00 UTC", "tokens_per_hour": 0, "left": 1_000,
                                        "next_reset_at": "2026-03-01T13:00:00.000000Z", "runs_out_at": None}


def test_stats_panel_and_json_carry_the_forecasts(pool):
    config, ring = pool
    accountant = Accountant("b")
    now = utcnow()
    for minutes in (50, 30, 10):     # 300,000 tokens in the last hour on a 1,000,000 key
        accountant.record(CallRecord(key_id=ring.ids()[0], bot="b", operation="op", model="m",
                                     input_tokens=100_000, at=now - dt.timedelta(minutes=minutes)))
    snapshot = stats_snapshot(now, config)
    panel = render_stats(snapshot)
    runs_out = snapshot.forecasts[ring.ids()[0]]
    assert runs_out.outlook is Outlook.RUNS_OUT
    assert f"🔮 At this pace it {runs_out.text}" in panel
    assert panel.count("🔮") == 2            # the pool's line and the one key that runs out
    data = stats_json(snapshot)
    assert data["keys"][0]["forecast"]["outlook"] == "runs_out"
    assert data["forecast"]["outlook"] in ("lasts", "runs_out")


def test_a_reset_on_the_next_day_is_dated_so_the_sentence_reads_true():
    now = dt.datetime(2026, 3, 10, 7, 30)
    tomorrow_reset = dt.datetime(2026, 3, 11, 7, 15)
    pool = forecast_pool([(Status.ACTIVE, 50_000, tomorrow_reset, 10_000)], now=now)
    assert pool.outlook is Outlook.RUNS_OUT
    assert pool.text == "pool runs out ~12:30 UTC, before the next reset at tomorrow 07:15 UTC"


def test_a_time_already_past_today_is_said_to_be_tomorrow():
    """Printed at 10:49: "until 10:46" would name a time already past."""
    now = dt.datetime(2026, 3, 10, 10, 49)
    window_end = dt.datetime(2026, 3, 11, 10, 46)
    exhausted = forecast_key(status=Status.EXHAUSTED, left=0, window_end=window_end, tokens_last_period=0, now=now)
    assert exhausted.text == "exhausted until tomorrow 10:46 UTC"
    pool = forecast_pool([(Status.ACTIVE, 10**9, window_end, 10)], now=now)
    assert pool.text == "today's allowance lasts until the next reset at tomorrow 10:46 UTC"
    later = forecast_pool([(Status.ACTIVE, 10**9, window_end + dt.timedelta(days=2), 10)], now=now)
    assert later.text.endswith("at 03-13 10:46 UTC")
