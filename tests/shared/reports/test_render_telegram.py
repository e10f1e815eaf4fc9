"""Telegram renderers: golden outputs on fixed fixtures, the 4096 limit, escaping."""
import pytest

from shared.core.keys import sync_keys
from shared.reports.budgets import budget_report
from shared.reports.queries import recent_calls, stats_snapshot, usage_report
from shared.reports.render_telegram import (
    MAX_LENGTH,
    fit,
    render_budget,
    render_recent,
    render_stats,
    render_usage,
    telegram_length,
)
from tests.conftest import make_config
from tests.shared.golden import assert_golden
from tests.shared.report_fixtures import (
    NOW,
    build_panel,
    history_config,
    record_history,
)

BUDGETS = {"daily_cost_usd": 0.02, "monthly_tokens": 100_000, "monthly_cost_usd": 5,
           "keys": {"k1": {"daily_tokens": 5_000}, "k3": {"monthly_cost_usd": 1}}}

GOLDEN_STATS = """🔑 <b>API Key &amp; Token Statistics</b>

📊 Total API Keys: 18
🔄 Currently Using: Key #1 <code>main</code>
💎 Daily Limit Per Key: 2.5M tokens

📈 <b>Overall Today:</b>
🔥 Total Used: 6,322,687 tokens
✅ Total Left: 33,677,313 tokens
🌟 Lifetime Total: 50,178,837 tokens
📞 Calls: 7,754 · ❌ Errors: 2 · ✔️ 99.8% ok
💵 Cost: $0.9484 · lifetime $7.53
🔮 today's allowance lasts until the next reset at 15:05 UTC

━━━━━━━━━━━━━━━━━

🔑 <b>Individual Keys:</b>

Key #1 <code>main</code> 🟢 ACTIVE
  📊 Used: 45,231 / 2,500,000
  💚 Left: 2,454,769 tokens
  📞 API Calls: 156
  ⏰ Resets in: 18h 45m

Key #2 <code>backup</code> 🟡 LOW
  📊 Used: 2,123,456 / 2,500,000
  💚 Left: 376,544 tokens
  📞 API Calls: 2,456
  ⚠️ Rate Hits: 3
  ⏰ Resets in: 12h 30m

Key #3 <code>ops&amp;dev</code> 🔴 EXHAUSTED
  📊 Used: 2,500,000 / 2,500,000
  💚 Left: 0 tokens
  📞 API Calls: 3,789
  ⏰ Resets in: 6h 15m

Key #4 <code>burst</code> ⏸ RATE_LIMITED
  📊 Used: 1,000,000 / 2,500,000
  💚 Left: 1,500,000 tokens
  📞 API Calls: 812
  ⚠️ Rate Hits: 14
  ⏸ Cooling down: 45s
  ⏰ Resets in: 3h 5m

Key #5 <code>old-trial</code> ⛔ INVALID
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 1
  ⛔ 401 &lt;invalid_api_key&gt;
  ⏰ Resets in: 23h 59m

Key #6 <code>spare</code> ⚪ DISABLED
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 9h 0m

Key #7 <code>pool-07</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 7h 14m

Key #8 <code>pool-08</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 8h 16m

Key #9 <code>pool-09</code> 🟢 ACTIVE
  📊 Used: 159,000 / 2,500,000
  💚 Left: 2,341,000 tokens
  📞 API Calls: 90
  ⏰ Resets in: 9h 18m

Key #10 <code>pool-10</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 10h 20m

Key #11 <code>pool-11</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 11h 22m

Key #12 <code>pool-12</code> 🟢 ACTIVE
  📊 Used: 162,000 / 2,500,000
  💚 Left: 2,338,000 tokens
  📞 API Calls: 120
  ⏰ Resets in: 12h 24m

Key #13 <code>pool-13</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 13h 26m

Key #14 <code>pool-14</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 14h 28m

Key #15 <code>pool-15</code> 🟢 ACTIVE
  📊 Used: 165,000 / 2,500,000
  💚 Left: 2,335,000 tokens
  📞 API Calls: 150
  ⏰ Resets in: 15h 30m

Key #16 <code>pool-16</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 16h 32m

Key #17 <code>pool-17</code> 🟢 FRESH
  📊 Used: 0 / 2,500,000
  💚 Left: 2,500,000 tokens
  📞 API Calls: 0
  ⏰ Resets in: 17h 34m

Key #18 <code>pool-18</code> 🟢 ACTIVE
  📊 Used: 168,000 / 2,500,000
  💚 Left: 2,332,000 tokens
  📞 API Calls: 180
  ⏰ Resets in: 18h 36m

━━━━━━━━━━━━━━━━━
🩺 <b>Health</b>
⚙️ worker <code>w1</code>: 🟢 seen 3s ago
🤖 bot <code>alt&lt;b&gt;</code>: 🔴 down, last seen 2h 5m ago
🤖 bot <code>main</code>: 🟢 seen 12s ago"""


def test_stats_panel_for_eighteen_keys_matches_golden(sqlite_db, sqlite_url):
    config = build_panel(sqlite_url)
    text = render_stats(stats_snapshot(NOW, config))
    assert text == GOLDEN_STATS
    assert telegram_length(text) <= MAX_LENGTH


def test_stats_panel_with_many_keys_says_how_many_more(sqlite_db, sqlite_url):
    config = make_config(80, url=sqlite_url)
    sync_keys(config)
    text = render_stats(stats_snapshot(NOW, config))
    assert telegram_length(text) <= MAX_LENGTH
    shown = text.count("📊 Used:")
    assert 10 < shown < 80
    assert f"<i>…and {80 - shown} more keys</i>" in text
    assert text.rstrip().endswith("No worker or bot has reported yet.")


def test_stats_panel_escapes_labels(sqlite_db, sqlite_url):
    config = make_config([{"label": "<script>&", "api_key": "sk-esc-" + "q" * 30}], url=sqlite_url)
    sync_keys(config)
    text = render_stats(stats_snapshot(NOW, config))
    assert "&lt;script&gt;&amp;" in text and "<script>" not in text


def test_stats_panel_with_no_keys(sqlite_db, sqlite_url):
    text = render_stats(stats_snapshot(NOW, make_config(0, url=sqlite_url)))
    assert "📊 Total API Keys: 0" in text
    assert "Currently Using: none (no usable key)" in text
    assert "No keys configured." in text


@pytest.fixture
def history(sqlite_db, sqlite_url):
    config = history_config(sqlite_url, budgets=BUDGETS)
    record_history(config)
    return config


@pytest.mark.parametrize("days, by", [(7, "day"), (30, "model"), (30, "chat"), (30, "key")])
def test_usage_matches_golden(history, days, by):
    assert_golden(f"telegram_usage_{days}_{by}.html", render_usage(usage_report(NOW, days, by)))


def test_recent_matches_golden(history):
    assert_golden("telegram_recent_12.html", render_recent(recent_calls(12), NOW))


def test_budget_matches_golden(history):
    assert_golden("telegram_budget.html", render_budget(budget_report(NOW, history)))


def test_year_of_days_fits_and_says_how_many_more(history):
    text = render_usage(usage_report(NOW, 365))
    assert telegram_length(text) <= MAX_LENGTH
    assert "more rows</i>" in text and text.rstrip().splitlines()[-2].startswith("Σ <b>Total</b>")


def test_a_thousand_recent_calls_fit(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url), calls=300)
    text = render_recent(recent_calls(300), NOW)
    assert telegram_length(text) <= MAX_LENGTH
    shown = text.count(" tok · ")
    assert f"…and {300 - shown} more calls" in text


def test_fit_counts_utf16_units():
    text = fit(["h"], ["🔑" * 100] * 30, [], "things")     # each 🔑 is 2 UTF-16 units
    assert telegram_length(text) <= MAX_LENGTH
    assert text.count("🔑" * 100) == 20 and text.endswith("<i>…and 10 more things</i>")
