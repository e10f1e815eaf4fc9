"""Models without a known price read "unpriced" (with their tokens) in every report, never $0."""
import datetime as dt
import importlib.util
import io
import json

import pytest
from rich.console import Console

from shared.core.accounting import CallRecord, record_call
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, DailyRollup, UsageEvent
from shared.core.pricing import Pricer
from shared.core.schema import MIGRATIONS_DIR
from shared.dashboard.payloads import stats_payload
from shared.reports import render_json_csv, render_telegram, render_terminal
from shared.reports.budgets import budget_report
from shared.reports.exports import export
from shared.reports.money import money_json, money_text, pricing_hint
from shared.reports.queries import recent_calls, stats_snapshot, usage_report
from tests.conftest import make_config
from tests.shared.report_fixtures import ANCHOR, NOW, PRICES

UNKNOWN = "local-llama-unpriced"


def test_money_text_never_shows_zero_dollars_for_unpriced_tokens():
    assert money_text(0, 1_200) == "unpriced (1,200 tokens)"
    assert money_text(12_300_000, 1_200) == "$0.0123 + unpriced (1,200 tokens)"
    assert money_text(0) == "$0.0000"
    assert money_json(0, 5) == {"cost_nanousd": None, "cost_usd": None, "unpriced": True, "unpriced_tokens": 5}
    assert money_json(7, 0, "lifetime_cost")["lifetime_unpriced"] is False
    assert 'add [pricing.overrides."m1"]' in pricing_hint(["m1", "m2"])
    assert pricing_hint([]) == ""


def test_pricer_tells_unpriced_from_free():
    pricer = Pricer()
    assert pricer.price(UNKNOWN, 100, 0, 20) is None
    assert pricer.price(UNKNOWN, 0, 0, 0) == 0
    assert pricer.price("gpt-4o-mini", 100, 0, 20) > 0


def _record(config, calls):
    ring = sync_keys(config)
    ApiKey.update(window_anchor=ANCHOR).execute()
    ids = ring.ids()
    pricer = Pricer(config.pricing)
    for i, (model, tokens, chat) in enumerate(calls):
        record_call(CallRecord(key_id=ids[i % 2], bot="main", operation="autoreply", model=model,
                               input_tokens=tokens, output_tokens=tokens // 10, chat_id=chat,
                               at=NOW - dt.timedelta(minutes=10 + i), call_id=f"u{i}"),
                    anchor=ANCHOR, pricer=pricer)


@pytest.fixture
def mixed(db, db_url):
    """Two calls of a priced model and three of a model nobody priced."""
    config = make_config(2, url=db_url, pricing={"overrides": PRICES})
    _record(config, [("gpt-4o-mini", 1_000, 1001), (UNKNOWN, 2_000, 1001), (UNKNOWN, 3_000, None),
                     ("gpt-4o-mini", 500, None), (UNKNOWN, 1_000, 1002)])
    return config


UNPRICED_TOKENS = 2_200 + 3_300 + 1_100


def test_accounting_counts_unpriced_tokens_everywhere(mixed):
    assert sum(e.unpriced_tokens for e in UsageEvent.select()) == UNPRICED_TOKENS
    assert sum(r.unpriced_tokens for r in DailyRollup.select()) == UNPRICED_TOKENS
    assert sum(k.unpriced_today for k in ApiKey.select()) == UNPRICED_TOKENS
    assert sum(k.total_unpriced for k in ApiKey.select()) == UNPRICED_TOKENS
    assert all(e.cost_nanousd > 0 for e in UsageEvent.select().where(UsageEvent.model == "gpt-4o-mini"))


def test_stats_in_telegram_terminal_and_json_say_unpriced(mixed):
    snapshot = stats_snapshot(NOW, mixed)
    assert snapshot.unpriced_models == [UNKNOWN]
    telegram = render_telegram.render_stats(snapshot)
    assert f"+ unpriced ({UNPRICED_TOKENS:,} tokens)" in telegram
    assert f'[pricing.overrides."{UNKNOWN}"]' in telegram
    console = Console(file=io.StringIO(), width=200)
    console.print(render_terminal.stats_view(snapshot))
    terminal = console.file.getvalue()
    assert f"unpriced ({UNPRICED_TOKENS:,} tokens)" in terminal and "pricing.overrides" in terminal
    data = render_json_csv.stats_json(snapshot)
    assert data["today"]["unpriced"] is True and data["today"]["unpriced_tokens"] == UNPRICED_TOKENS
    assert data["today"]["cost_nanousd"] > 0
    assert UNKNOWN in data["pricing_hint"]


def test_usage_by_model_shows_the_unpriced_model_without_a_price(mixed):
    report = usage_report(NOW, 1, "model")
    row = next(r for r in report.rows if r.group == UNKNOWN)
    data = render_json_csv.usage_row_json(row)
    assert data["cost_nanousd"] is None and data["cost_usd"] is None and data["unpriced"] is True
    telegram = render_telegram.render_usage(report)
    assert f"unpriced ({UNPRICED_TOKENS:,} tokens)" in telegram and "$0.0000" not in telegram
    console = Console(file=io.StringIO(), width=250)
    console.print(render_terminal.usage_view(report))
    assert "unpriced (6,600 tokens)" in console.file.getvalue()
    assert "pricing.overrides" in console.file.getvalue()
    assert UNKNOWN in render_json_csv.usage_json(report)["pricing_hint"]


def test_recent_and_exports_carry_null_cost_and_the_flag(mixed):
    calls = {c.call_id: render_json_csv.call_json(c) for c in recent_calls(10)}
    assert calls["u1"]["cost_usd"] is None and calls["u1"]["unpriced"] is True
    assert calls["u1"]["unpriced_tokens"] == 2_200
    assert calls["u0"]["unpriced"] is False and calls["u0"]["cost_nanousd"] > 0
    for kind in ("calls", "daily"):
        out = io.StringIO()
        export(out, "csv", kind, NOW.date(), NOW.date())
        rows = render_json_csv.read_csv(out.getvalue(), kind)
        unpriced = [r for r in rows if r["model"] == UNKNOWN]
        assert unpriced and all(r["cost_usd"] is None and r["cost_nanousd"] is None and r["unpriced"]
                                for r in unpriced)
        out = io.StringIO()
        export(out, "json", kind, NOW.date(), NOW.date())
        assert [r for r in json.loads(out.getvalue()) if r["model"] == UNKNOWN] == unpriced


def test_budget_dashboard_and_digest_say_unpriced(mixed):
    report = budget_report(NOW, mixed)
    assert report.projection.day_so_far.unpriced_tokens == UNPRICED_TOKENS
    assert "unpriced (" in render_telegram.render_budget(report)
    assert render_json_csv.budget_json(report)["projection"]["day_so_far"]["unpriced"] is True
    stats = stats_payload(NOW, mixed)
    assert stats["today"]["cost_text"].endswith(f"unpriced ({UNPRICED_TOKENS:,} tokens)")
    assert "unpriced" in stats["projection"]["day_so_far"]["cost_text"]
    assert any("unpriced" in k["cost_text"] for k in stats["keys"])
    from userbot.digest import Conversation, render_digest
    chat = Conversation(1002, "Bob", "bob", tokens=1_100, cost_nanousd=0, unpriced_tokens=1_100)
    text = render_digest([chat], NOW - dt.timedelta(hours=1), NOW)
    assert "unpriced (1,100 tokens)" in text and "$0.0000" not in text and "pricing.overrides" in text


def test_migration_marks_earlier_calls_of_unknown_models(db, db_url):
    config = make_config(2, url=db_url, pricing={"overrides": PRICES})
    _record(config, [(UNKNOWN, 2_000, 1001), ("gpt-4o-mini", 1_000, None)])
    spec = importlib.util.spec_from_file_location("m0030", MIGRATIONS_DIR / "0030_unpriced_tokens.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for model in (UsageEvent, DailyRollup):       # as a database migrated before 0030 holds them
        model.update(unpriced_tokens=0).execute()
    ApiKey.update(unpriced_today=0, total_unpriced=0).execute()
    with db.atomic():
        module.backfill(db)
    assert {e.model: e.unpriced_tokens for e in UsageEvent.select()} == {UNKNOWN: 2_200, "gpt-4o-mini": 0}
    assert sum(r.unpriced_tokens for r in DailyRollup.select()) == 2_200
    assert sum(k.total_unpriced for k in ApiKey.select()) == 2_200
    assert sum(k.unpriced_today for k in ApiKey.select()) == 2_200
