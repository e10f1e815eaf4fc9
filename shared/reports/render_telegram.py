"""Telegram rendering: reports as Telegram HTML messages (parse mode HTML).

Every renderer returns one message that fits Telegram's 4096-character limit: when the
items do not all fit, it shows as many as fit and says "…and N more". Lengths are counted
on the HTML source in UTF-16 units (what Telegram counts), which over-counts the visible
text, so the limit holds after parsing too. Anything a user or a config file controls
(labels, bot names, models, operations, error text) is escaped with `html.escape`.
"""
from __future__ import annotations

import datetime as dt
from html import escape

from shared.core.status import Status
from shared.core.windows import format_duration
from shared.reports.allowance_views import telegram_block
from shared.reports.budgets import Amount, BudgetCheck, BudgetReport
from shared.reports.forecast import KeyForecast, Outlook
from shared.reports.humanize import ago, compact, percent
from shared.reports.money import money_text, pricing_hint
from shared.reports.queries import (
    CallView,
    KeyView,
    ProcessHealth,
    StatsSnapshot,
    Totals,
    UsageReport,
)

MAX_LENGTH = 4096
RULE = "━━━━━━━━━━━━━━━━━"

BADGES = {
    Status.FRESH: "🟢 FRESH", Status.ACTIVE: "🟢 ACTIVE", Status.LOW: "🟡 LOW",
    Status.EXHAUSTED: "🔴 EXHAUSTED", Status.RATE_LIMITED: "⏸ RATE_LIMITED",
    Status.INVALID: "⛔ INVALID", Status.DISABLED: "⚪ DISABLED",
}
OUTCOME_MARKS = {"ok": "✅", "rate_limited": "⏸", "quota_exhausted": "🔴", "invalid_key": "⛔",
                 "interrupted": "✂️"}


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji may count 2)."""
    return len(text.encode("utf-16-le")) // 2


def fit(head: list[str], items: list[str], tail: list[str], noun: str) -> str:
    """Join head, as many items as fit, a "…and N more <noun>" line, and tail."""
    def more_line(more: int) -> list[str]:
        return [f"<i>…and {more:,} more {escape(noun)}</i>"] if more else []

    lengths = [telegram_length(item) + 1 for item in items]    # + 1 for the joining newline
    size = telegram_length("\n".join(head + tail)) + sum(lengths)
    shown = len(items)
    while shown and size + sum(telegram_length(line) + 1 for line in more_line(len(items) - shown)) > MAX_LENGTH:
        shown -= 1
        size -= lengths[shown]
    return "\n".join(head + items[:shown] + more_line(len(items) - shown) + tail)


def key_name(view: KeyView) -> str:
    return f"Key #{view.number} <code>{escape(view.label)}</code>"


# --- .stats ------------------------------------------------------------------------------------

def render_stats(snapshot: StatsSnapshot) -> str:
    """The `.stats` panel: the pool today, each key, then the health of worker and bots."""
    today = snapshot.today
    limit = snapshot.daily_limit
    head = [
        "🔑 <b>API Key &amp; Token Statistics</b>",
        "",
        f"📊 Total API Keys: {len(snapshot.keys)}",
        f"🔄 Currently Using: {key_name(snapshot.in_use) if snapshot.in_use else 'none (no usable key)'}",
        f"💎 Daily Limit Per Key: {compact(limit) + ' tokens' if limit is not None else 'varies by key'}",
        "",
        "📈 <b>Overall Today:</b>",
        f"🔥 Total Used: {today.used:,} tokens",
        f"✅ Total Left: {today.left:,} tokens",
        f"🌟 Lifetime Total: {today.lifetime_tokens:,} tokens",
        f"📞 Calls: {today.calls:,} · ❌ Errors: {today.errors:,} · ✔️ {percent(today.success_rate)} ok",
        f"💵 Cost: {money_text(today.cost_nanousd, today.unpriced_tokens)} · lifetime "
        f"{money_text(today.lifetime_cost_nanousd, today.lifetime_unpriced_tokens)}",
        *_hint_lines(snapshot.unpriced_models),
        f"🔮 {escape(snapshot.pool_forecast.text, quote=False)}",
        "",
        RULE,
        "",
        "🔑 <b>Individual Keys:</b>",
    ]
    items = ["\n" + _key_block(view, snapshot.now, snapshot.forecasts.get(view.id))
             for view in snapshot.keys] or ["\nNo keys configured."]
    if snapshot.allowances:     # keys that share a provider's allowance, grouped under it
        items = ["\n🏢 <b>Shared allowances:</b>"] + ["\n" + telegram_block(a, snapshot.now)
                                                     for a in snapshot.allowances] + items
    tail = ["", RULE, "🩺 <b>Health</b>"] + _health_lines(snapshot.processes)
    return fit(head, items, tail, "keys")


def _hint_lines(models: list[str]) -> list[str]:
    """The `[pricing]` hint, when some tokens were unpriced."""
    hint = pricing_hint(models)
    return [f"ℹ️ <i>{escape(hint, quote=False)}</i>"] if hint else []


def _key_block(view: KeyView, now: dt.datetime, forecast: KeyForecast | None = None) -> str:
    usage = view.usage
    lines = [f"{key_name(view)} {BADGES[view.status]}",
             f"  📊 Used: {usage.used:,} / {usage.limit:,}",
             f"  💚 Left: {usage.left:,} tokens",
             f"  📞 API Calls: {usage.calls:,}"]
    if usage.rate_hits:
        lines.append(f"  ⚠️ Rate Hits: {usage.rate_hits:,}")
    if view.status is Status.RATE_LIMITED and view.frees_up_at is not None:
        lines.append(f"  ⏸ Cooling down: {ago(view.frees_up_at - now)}")
    if view.status is Status.INVALID and view.invalid_reason:
        lines.append(f"  ⛔ {escape(view.invalid_reason)}")
    lines.append(f"  ⏰ Resets in: {format_duration(usage.resets_in)}")
    if forecast is not None and forecast.outlook is Outlook.RUNS_OUT:
        lines.append(f"  🔮 At this pace it {forecast.text}")
    return "\n".join(lines)


def _health_lines(processes: list[ProcessHealth]) -> list[str]:
    if not processes:
        return ["No worker or bot has reported yet."]
    lines = []
    for p in processes:
        icon = "⚙️" if p.kind == "worker" else "🤖"
        state = (f"🟢 seen {ago(p.since_seen)} ago" if p.alive
                 else f"⚪ stopped {ago(p.since_seen)} ago" if p.stopped
                 else f"🔴 down, last seen {ago(p.since_seen)} ago")
        lines.append(f"{icon} {escape(p.kind)} <code>{escape(p.name)}</code>: {state}")
    return lines


# --- .usage ------------------------------------------------------------------------------------

def totals_line(totals: Totals) -> str:
    return (f"{totals.total_tokens:,} tok · {totals.calls:,} calls · {percent(totals.success_rate)} ok"
            f" · {money_text(totals.cost_nanousd, totals.unpriced_tokens)}")


def render_usage(report: UsageReport) -> str:
    """Usage over the last N UTC days, one line per group, with the totals."""
    period = "today" if report.days == 1 else f"last {report.days} days"
    head = [f"📈 <b>Usage · {period} · by {report.by}</b>",
            f"<i>{report.start.isoformat()} → {report.end.isoformat()} (UTC days)</i>", ""]
    items = [_usage_line(row.group, row.detail, row.totals) for row in report.rows]
    if not items:
        items = ["No usage in this period."]
    tail = []
    if report.more:
        tail.append(f"<i>…and {report.more:,} more {report.by}s</i>")
    tail += ["", RULE, f"Σ <b>Total</b>: {totals_line(report.total)}",
             f"📥 in {report.total.input_tokens:,} (cached {report.total.cached_tokens:,}) · "
             f"📤 out {report.total.output_tokens:,}", *_hint_lines(report.unpriced_models)]
    return fit(head, items, tail, "rows")


def _usage_line(group: str, detail: str, totals: Totals) -> str:
    name = f"<code>{escape(group)}</code>" + (f" {escape(detail)}" if detail else "")
    if not totals.calls:
        return f"{name}: –"
    return f"{name}\n  {totals_line(totals)}"


# --- .recent -----------------------------------------------------------------------------------

def render_recent(calls: list[CallView], now: dt.datetime | None = None) -> str:
    """The newest calls, newest first: time, operation, model, key, tokens, ms, outcome."""
    head = [f"🕒 <b>Recent calls</b> ({len(calls)})", ""]
    items = [_call_lines(call, now) for call in calls] or ["No calls yet."]
    return fit(head, items, [], "calls")


def _call_lines(call: CallView, now: dt.datetime | None) -> str:
    when = call.at.strftime("%H:%M:%S") if now is None or call.at.date() == now.date() \
        else call.at.strftime("%m-%d %H:%M")
    mark = OUTCOME_MARKS.get(call.outcome, "❌")
    outcome = escape(call.outcome) + (f" {escape(call.error_code)}" if call.error_code else "")
    estimated = " (est.)" if call.estimated else ""
    chat = f" · 💬 {escape(call.chat_name)}" if call.chat_name else ""
    return (f"<b>{when}</b> {mark} {escape(call.operation)} · {escape(call.model)}{chat}\n"
            f"  {escape(call.key_masked)} · {call.total_tokens:,} tok{estimated} · {call.duration_ms:,} ms"
            f" · {outcome}")


# --- .budget -----------------------------------------------------------------------------------

STATE_MARKS = {"ok": "🟢", "heading_over": "🟡", "over": "🔴"}
STATE_WORDS = {"ok": "", "heading_over": " · heading over", "over": " · crossed"}


def amount_text(amount: Amount) -> str:
    return f"{amount.tokens:,} tokens · {money_text(amount.cost_nanousd, amount.unpriced_tokens)}"


def render_budget(report: BudgetReport) -> str:
    """The pool's pace (today -> day, last 7 days -> month), then each budget's state."""
    p = report.projection
    head = ["💸 <b>Budgets &amp; projections</b> <i>(UTC days)</i>", "",
            f"📅 Today so far: {amount_text(p.day_so_far)}",
            f"  ↳ at today's pace: {amount_text(p.day_projected)}",
            f"🗓 This month so far: {amount_text(p.month_so_far)}",
            f"  ↳ at the pace of the last 7 days and today: {amount_text(p.month_projected)}",
            f"  <i>(daily pace, last 7 days and today: {amount_text(p.week_daily_average)})</i>",
            "", RULE]
    items = [_budget_line(check) for check in report.checks]
    if not items:
        items = ["No budgets set: add a <code>[budgets]</code> section to the config."]
    return fit(head, items, _hint_lines(report.unpriced_models), "budgets")


def _budget_line(check: BudgetCheck) -> str:
    period = "daily" if check.period == "day" else "monthly"
    scope = "pool" if check.scope == "pool" else f"key <code>{escape(check.scope)}</code>"
    return (f"{STATE_MARKS[check.state]} {scope} · {period} {check.metric}: {check.show(check.used)} of "
            f"{check.show(check.limit)} ({check.fraction * 100:.0f}%){STATE_WORDS[check.state]}\n"
            f"  ↳ projected {check.show(check.projected)}")
