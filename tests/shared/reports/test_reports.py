"""Report queries agree with the raw events (hypothesis, SQLite and PostgreSQL)."""
import collections
import datetime as dt
import importlib.util

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playhouse.migrations import SchemaMigrator

from shared.core.accounting import ERROR_OUTCOMES, CallRecord, Outcome, record_call
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, ChatRollup, DailyRollup, KeyRanking, UsageEvent
from shared.core.pricing import Pricer
from shared.core.schema import MIGRATIONS_DIR
from shared.reports.budgets import pool_projection
from shared.reports.queries import (
    GROUPINGS,
    ReportError,
    Totals,
    calls_between,
    day_totals,
    recent_calls,
    stats_snapshot,
    usage_report,
)
from tests.backends import fresh_database_url
from tests.conftest import open_test_db
from tests.shared.report_fixtures import ANCHOR, NOW, history_config, record_history


@pytest.fixture(params=("sqlite", "postgres"))
def report_url(request, tmp_path):
    """A migrated, empty database on SQLite and on PostgreSQL."""
    with fresh_database_url(request.param, tmp_path) as url:
        db = open_test_db(url)
        yield url
        db.close()


def totals_of(events) -> Totals:
    return Totals(
        calls=len(events), ok_calls=sum(e.outcome == "ok" for e in events),
        error_calls=sum(e.outcome in {o.value for o in ERROR_OUTCOMES} for e in events),
        rate_hits=sum(e.outcome == "rate_limited" for e in events),
        input_tokens=sum(e.input_tokens for e in events), cached_tokens=sum(e.cached_tokens for e in events),
        output_tokens=sum(e.output_tokens for e in events),
        reasoning_tokens=sum(e.reasoning_tokens for e in events),
        total_tokens=sum(e.total_tokens for e in events), cost_nanousd=sum(e.cost_nanousd for e in events),
        unpriced_tokens=sum(e.unpriced_tokens for e in events), duration_ms=sum(e.duration_ms for e in events))


def group_of(by, event, labels):
    return {"day": lambda: event.at.date().isoformat(), "key": lambda: labels[event.key_id],
            "model": lambda: event.model, "operation": lambda: event.operation, "bot": lambda: event.bot,
            "chat": lambda: None if event.chat_id is None else str(event.chat_id)}[by]()


def expected_groups(events, by, labels):
    groups = collections.defaultdict(list)
    for e in events:
        group = group_of(by, e, labels)
        if group is not None:
            groups[group].append(e)
    return {group: totals_of(members) for group, members in groups.items()}


calls_strategy = st.lists(st.fixed_dictionaries({
    "key": st.integers(0, 2), "bot": st.sampled_from(["main", "alt", "b<&>"]),
    "operation": st.sampled_from(["autoreply", "summary"]), "model": st.sampled_from(["gpt-4o-mini", "gpt-4o"]),
    "outcome": st.sampled_from(list(Outcome)), "input": st.integers(0, 5_000), "cached": st.integers(0, 50),
    "output": st.integers(0, 900), "seconds_ago": st.integers(0, 9 * 86_400), "duration": st.integers(0, 9_000),
    "chat": st.one_of(st.none(), st.integers(-2, 2)),
}), max_size=40)


def fresh_history(url, calls):
    for model in (ChatRollup, DailyRollup, UsageEvent, KeyRanking, ApiKey):
        model.delete().execute()
    config = history_config(url)
    ring = sync_keys(config)
    ApiKey.update(window_anchor=ANCHOR).execute()
    pricer = Pricer(config.pricing)
    ids = sorted(ring.ids())
    for i, c in enumerate(calls):
        record_call(CallRecord(key_id=ids[c["key"]], bot=c["bot"], operation=c["operation"], model=c["model"],
                               outcome=c["outcome"], input_tokens=c["input"] + c["cached"], cached_tokens=c["cached"],
                               output_tokens=c["output"], duration_ms=c["duration"], chat_id=c["chat"],
                               at=NOW - dt.timedelta(seconds=c["seconds_ago"]), call_id=f"c{i}"),
                    anchor=ANCHOR, pricer=pricer)
    return config


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=calls_strategy, days=st.integers(1, 10))
def test_reports_agree_with_raw_events(report_url, calls, days):
    config = fresh_history(report_url, calls)
    events = list(UsageEvent.select())
    labels = {k.id: k.label for k in ApiKey.select()}
    start = NOW.date() - dt.timedelta(days=days - 1)
    in_range = [e for e in events if e.at.date() >= start]

    for by in GROUPINGS:
        report = usage_report(NOW, days, by)
        assert {r.group: r.totals for r in report.rows if r.totals.calls} == expected_groups(in_range, by, labels)
        assert report.total == totals_of(in_range)
    assert [r.group for r in usage_report(NOW, days).rows] == \
        [(NOW.date() - dt.timedelta(days=i)).isoformat() for i in range(days)]

    snapshot = stats_snapshot(NOW, config)
    for view in snapshot.keys:
        current = [e for e in events if e.key_id == view.id and e.window_start == ANCHOR]
        assert (view.usage.used, view.usage.calls, view.cost_today_nanousd) == \
            (sum(e.total_tokens for e in current), len(current), sum(e.cost_nanousd for e in current))
    assert snapshot.today.lifetime_tokens == sum(e.total_tokens for e in events)
    assert snapshot.today.calls == sum(e.window_start == ANCHOR for e in events)

    newest = sorted(events, key=lambda e: (e.at, e.id), reverse=True)
    assert [c.call_id for c in recent_calls(7)] == [e.call_id for e in newest[:7]]
    day_start = dt.datetime.combine(start, dt.time())
    assert [c.call_id for c in calls_between(day_start, NOW + dt.timedelta(seconds=1), batch=4)] == \
        [e.call_id for e in reversed(newest) if e.at >= day_start]

    today = [e for e in events if e.at.date() == NOW.date()]
    month = [e for e in events if e.at.date() >= NOW.date().replace(day=1)]
    projection = pool_projection(NOW)
    assert (projection.day_so_far.tokens, projection.day_so_far.cost_nanousd) == \
        (sum(e.total_tokens for e in today), sum(e.cost_nanousd for e in today))
    assert projection.month_so_far.tokens == sum(e.total_tokens for e in month)


def test_usage_by_model_on_every_backend(db, db_url):
    record_history(history_config(db_url))
    report = usage_report(NOW, 30, "model")
    tokens = collections.Counter()
    for e in UsageEvent.select():
        tokens[e.model] += e.total_tokens
    assert [(r.group, r.totals.total_tokens) for r in report.rows] == tokens.most_common()
    assert sum((r.totals for r in report.rows), Totals()) == report.total == day_totals(report.start, report.end)


def test_top_groups_and_how_many_more(sqlite_db, sqlite_url):
    record_history(history_config(sqlite_url))
    full = usage_report(NOW, 30, "chat")
    assert [r.group for r in full.rows] == ["1001", "1002", "1003"]
    top = usage_report(NOW, 30, "chats", top=2)
    assert top.rows == full.rows[:2] and top.more == 1
    keyed = usage_report(NOW, 30, "key")
    assert {r.detail for r in keyed.rows} == {k.masked for k in ApiKey.select()}


@pytest.mark.parametrize("args, problem", [
    (dict(days=0), "days must be between 1"),
    (dict(days=5, by="colour"), "cannot group by 'colour'"),
    (dict(days=5, by="chat", top=0), "top must be 1 or more"),
])
def test_bad_report_arguments_are_report_errors(sqlite_db, args, problem):
    with pytest.raises(ReportError, match=problem):
        usage_report(NOW, **args)


def test_recent_refuses_silly_counts(sqlite_db):
    with pytest.raises(ReportError):
        recent_calls(0)


def test_key_in_use_without_ranking_is_first_eligible_key(sqlite_db, sqlite_url):
    config = history_config(sqlite_url)
    sync_keys(config)
    ApiKey.update(disabled=True).where(ApiKey.label == "k1").execute()
    assert stats_snapshot(NOW, config).in_use.label == "k2"


def test_chat_rollup_migration_backfills_from_events(db, db_url):
    record_history(history_config(db_url))
    written = sorted((r.day, r.key_id, r.bot, r.chat_id, r.calls, r.ok_calls, r.error_calls, r.rate_hits,
                      r.total_tokens, r.cost_nanousd, r.duration_ms) for r in ChatRollup.select())
    assert written and all(r[3] is not None for r in written)
    db.drop_tables([ChatRollup])
    path = MIGRATIONS_DIR / "0005_chat_rollup.py"
    spec = importlib.util.spec_from_file_location("m0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with db.atomic():
        module.up(SchemaMigrator.from_database(db), db)
    columns = [ChatRollup.day, ChatRollup.key, ChatRollup.bot, ChatRollup.chat_id, ChatRollup.calls,
               ChatRollup.ok_calls, ChatRollup.error_calls, ChatRollup.rate_hits, ChatRollup.total_tokens,
               ChatRollup.cost_nanousd, ChatRollup.duration_ms]     # those of 0005 (later ones add columns)
    rebuilt = sorted((r.day, r.key_id, r.bot, r.chat_id, r.calls, r.ok_calls, r.error_calls, r.rate_hits,
                      r.total_tokens, r.cost_nanousd, r.duration_ms) for r in ChatRollup.select(*columns))
    assert rebuilt == written
