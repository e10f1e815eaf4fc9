"""Terminal renderers (rich): golden text on the fixed fixtures."""
import pytest
from rich.console import Console

from shared.reports.budgets import budget_report
from shared.reports.queries import key_views, recent_calls, stats_snapshot, usage_report
from shared.reports.render_terminal import (
    budget_view,
    keys_table,
    recent_table,
    stats_view,
    usage_bar,
    usage_table,
)
from tests.shared.golden import assert_golden
from tests.shared.report_fixtures import (
    NOW,
    build_panel,
    history_config,
    record_history,
)


def text_of(renderable, width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


def test_stats_view_for_eighteen_keys_matches_golden(sqlite_db, sqlite_url):
    config = build_panel(sqlite_url)
    assert_golden("terminal_stats_18.txt", text_of(stats_view(stats_snapshot(NOW, config))))


@pytest.fixture
def history(sqlite_db, sqlite_url):
    config = history_config(sqlite_url, budgets={"daily_cost_usd": 0.02, "keys": {"k2": {"monthly_tokens": 30_000}}})
    record_history(config)
    return config


@pytest.mark.parametrize("by", ["day", "operation", "bot"])
def test_usage_table_matches_golden(history, by):
    assert_golden(f"terminal_usage_7_{by}.txt", text_of(usage_table(usage_report(NOW, 7, by))))


def test_recent_table_matches_golden(history):
    assert_golden("terminal_recent_8.txt", text_of(recent_table(recent_calls(8))))


def test_budget_view_matches_golden(history):
    assert_golden("terminal_budget.txt", text_of(budget_view(budget_report(NOW, history))))


def test_keys_table_with_bars_shows_how_full_each_key_is(sqlite_db, sqlite_url):
    config = build_panel(sqlite_url)
    lines = text_of(keys_table(key_views(NOW, config.pool.low_threshold), bars=True), width=160).splitlines()
    row = {line.split("│")[2].strip(): line for line in lines if line.startswith("│")}
    assert "█" * 20 in row["ops&dev"]                       # exhausted: full
    assert "█" * 17 + "░" * 3 in row["backup"]              # 2,123,456 of 2.5M
    assert "░" * 20 in row["pool-07"]                       # fresh: empty
    assert usage_bar(500, 1_000, width=10).plain == "█" * 5 + "░" * 5
    assert usage_bar(2_000, 1_000, width=10).plain == "█" * 10


def test_labels_are_not_read_as_markup(sqlite_db, sqlite_url):
    from shared.core.keys import sync_keys
    from tests.conftest import make_config
    config = make_config([{"label": "[bold]x[/bold]", "api_key": "sk-markup-" + "m" * 30}], url=sqlite_url)
    sync_keys(config)
    assert "[bold]x[/bold]" in text_of(stats_view(stats_snapshot(NOW, config)))
