"""Budgets and projections: the pure pace arithmetic with fixed clocks, and alerts once per crossing."""
import datetime as dt

from shared.core.models import Alert
from shared.reports.budgets import (
    Amount,
    BudgetCheck,
    budget_report,
    enqueue_budget_alerts,
    project,
)
from tests.shared.report_fixtures import NOW, history_config, record_history


def test_todays_pace_scales_to_the_whole_day():
    p = project(dt.datetime(2026, 3, 10, 6, 0), Amount(1_000, 40), Amount(), Amount(1_000, 40))
    assert p.day_projected == Amount(4_000, 160)


def test_first_hour_of_the_day_is_not_extrapolated_wildly():
    p = project(dt.datetime(2026, 3, 10, 0, 6), Amount(100, 1), Amount(), Amount(100, 1))
    assert p.day_projected == Amount(2_400, 24)


def test_month_projection_adds_the_pace_of_the_week_and_today_for_the_rest_of_the_month():
    # 2026-02-21 12:00: 1,000 tokens so far today (2,000 projected); the last 7 days 4,900;
    # the pace is (4,900 + 2,000) / 8 days; 7 whole days (22nd-28th) follow today.
    p = project(dt.datetime(2026, 2, 21, 12, 0), Amount(1_000, 10), Amount(4_900, 7_000), Amount(10_000, 100))
    assert p.day_projected == Amount(2_000, 20)
    assert p.week_daily_average == Amount(round(6_900 / 8), round(7_020 / 8))
    assert p.month_projected == Amount(10_000 + 1_000 + round(6_900 / 8 * 7), 100 + 10 + round(7_020 / 8 * 7))


def test_a_busy_first_day_projects_a_month_that_agrees_with_it():
    """No history (a first day): the month is not today's projection beside a smaller month."""
    p = project(dt.datetime(2026, 3, 10, 12, 0), Amount(14_394, 0), Amount(), Amount(14_394, 0), week_days=0)
    assert p.day_projected.tokens == 28_788
    assert p.week_daily_average.tokens == 28_788
    assert p.month_projected.tokens == 28_788 * 22          # today and the 21 days after it
    assert p.month_projected.tokens >= p.day_projected.tokens


def test_december_rolls_into_january():
    p = project(dt.datetime(2026, 12, 31, 0, 0), Amount(), Amount(7, 0), Amount(5, 0))
    assert p.month_projected == Amount(5, 0)        # the last day: nothing after it


def test_budget_states():
    check = BudgetCheck("pool", "day", "tokens", NOW.date(), limit=100, used=50, projected=90)
    assert check.state == "ok"
    assert BudgetCheck("pool", "day", "tokens", NOW.date(), 100, 50, 101).state == "heading_over"
    assert BudgetCheck("pool", "day", "tokens", NOW.date(), 100, 100, 100).state == "over"


def test_report_checks_pool_and_key_budgets(sqlite_db, sqlite_url):
    config = history_config(sqlite_url, budgets={"daily_tokens": 20_000, "monthly_cost_usd": "0.10",
                                                 "keys": {"k2": {"daily_cost_usd": 1}}})
    record_history(config)
    report = budget_report(NOW, config)
    by_name = {(c.scope, c.period, c.metric): c for c in report.checks}
    assert set(by_name) == {("pool", "day", "tokens"), ("pool", "month", "cost"), ("k2", "day", "cost")}
    assert by_name["pool", "day", "tokens"].used == 17_114
    assert by_name["pool", "day", "tokens"].state == "heading_over"
    assert by_name["pool", "month", "cost"].state == "over"
    assert by_name["pool", "month", "cost"].limit == 100_000_000
    assert by_name["k2", "day", "cost"].state == "ok"


def test_each_crossing_is_alerted_once(sqlite_db, sqlite_url):
    config = history_config(sqlite_url, budgets={"daily_tokens": 10_000, "monthly_tokens": 10**9})
    record_history(config)
    assert enqueue_budget_alerts(NOW, config) == 1
    assert enqueue_budget_alerts(NOW + dt.timedelta(minutes=5), config) == 0
    (alert,) = Alert.select()
    assert alert.kind == "budget" and alert.dedupe_key == "budget:pool:day:tokens:2026-03-10"
    assert "Daily tokens budget crossed for the pool: 17,114 tokens of 10,000 tokens" in alert.text
    # The next UTC day is a new period: nothing spent yet, nothing to alert.
    assert enqueue_budget_alerts(NOW + dt.timedelta(days=1), config) == 0
