"""Budgets and projections: spending against `[budgets]`, and where the pace leads.

Days and months here are UTC calendar days and months, summed from the daily rollups
(not the keys' rolling windows). Two paces:
- today's pace -> the day: today so far, scaled to the whole day (at least one hour of the
  day counts as elapsed, so the first minutes do not extrapolate wildly);
- the month: the month so far, the rest of today at today's pace, and every later day of
  the month at the daily pace of the last 7 days *and today* (days before the first day
  with any usage are not counted as zeros), so a busy first day projects a month that
  agrees with it.

The worker calls `enqueue_budget_alerts` on its ticks; each crossing is alerted once (the
alert's dedupe key names the scope, period, metric and the period's first day).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shared.core.config import Config
from shared.core.models import ApiKey
from shared.core.outbox import enqueue_alert
from shared.core.pricing import format_usd, usd_to_nano
from shared.core.query_rows import tuple_rows
from shared.reports.queries import (
    Totals,
    day_totals,
    first_usage_day,
    key_day_totals,
    unpriced_models,
    utc_day,
)

DAY = dt.timedelta(days=1)
MIN_ELAPSED = dt.timedelta(hours=1)
WEEK_DAYS = 7
PERIODS = ("day", "month")


@dataclass(frozen=True)
class Amount:
    tokens: int = 0
    cost_nanousd: int = 0
    unpriced_tokens: int = 0     # tokens of models without a known price (not in cost_nanousd)

    @classmethod
    def of(cls, totals: Totals) -> Amount:
        return cls(totals.total_tokens, totals.cost_nanousd, totals.unpriced_tokens)

    def values(self) -> tuple[int, int, int]:
        return self.tokens, self.cost_nanousd, self.unpriced_tokens

    def get(self, metric: str) -> int:
        return self.cost_nanousd if metric == "cost" else self.tokens


@dataclass(frozen=True)
class Projection:
    """Spending so far and where it is heading, for the pool or one key."""
    day_so_far: Amount
    day_projected: Amount
    week_daily_average: Amount
    month_so_far: Amount
    month_projected: Amount

    def so_far(self, period: str) -> Amount:
        return self.day_so_far if period == "day" else self.month_so_far

    def projected(self, period: str) -> Amount:
        return self.day_projected if period == "day" else self.month_projected


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month_start(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def project(now: dt.datetime, today: Amount, week: Amount, month: Amount,
            week_days: int = WEEK_DAYS) -> Projection:
    """The pure part: `week` is the sum of the last 7 complete UTC days, of which `week_days`
    came after the first day with any usage; `month` is the month so far, today included."""
    midnight = dt.datetime.combine(utc_day(now), dt.time())
    elapsed = max(now - midnight, MIN_ELAPSED)
    day_scale = (DAY / elapsed)
    day_projected = Amount(*(round(v * day_scale) for v in today.values()))
    days_after_today = (next_month_start(now.date()) - now.date()).days - 1
    pace_days = week_days + 1                       # today counts as one (projected) day
    daily = [(w + d) / pace_days for w, d in zip(week.values(), day_projected.values(), strict=True)]
    month_projected = Amount(*(m + (d - t) + round(pace * days_after_today) for m, d, t, pace in
                               zip(month.values(), day_projected.values(), today.values(), daily, strict=True)))
    return Projection(day_so_far=today, day_projected=day_projected,
                      week_daily_average=Amount(*(round(v) for v in daily)),
                      month_so_far=month, month_projected=month_projected)


def _week_days(now: dt.datetime) -> int:
    """How many of the last 7 complete UTC days came on or after the first day with usage."""
    first = first_usage_day()
    if first is None:
        return 0
    return max(0, min(WEEK_DAYS, (utc_day(now) - first).days))


def _ranges(now: dt.datetime) -> dict[str, tuple[dt.date, dt.date]]:
    today = utc_day(now)
    return {"today": (today, today), "week": (today - WEEK_DAYS * DAY, today - DAY),
            "month": (month_start(today), today)}


def pool_projection(now: dt.datetime) -> Projection:
    amounts = {name: Amount.of(day_totals(*span)) for name, span in _ranges(now).items()}
    return project(now, amounts["today"], amounts["week"], amounts["month"], _week_days(now))


def key_projections(now: dt.datetime) -> dict[int, Projection]:
    """Projections by key id, for every key with any usage this month or last week."""
    sums = {name: key_day_totals(*span) for name, span in _ranges(now).items()}
    ids = set().union(*sums.values())
    week_days = _week_days(now)
    def amount(name: str, key_id: int) -> Amount:
        return Amount.of(sums[name].get(key_id, Totals()))
    return {key_id: project(now, amount("today", key_id), amount("week", key_id), amount("month", key_id), week_days)
            for key_id in ids}


# --- checks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetCheck:
    """One limit of `[budgets]` against the spending of its period."""
    scope: str              # "pool", or the key's label
    period: str             # "day" or "month"
    metric: str             # "cost" (nano-USD) or "tokens"
    period_start: dt.date
    limit: int
    used: int
    projected: int

    @property
    def state(self) -> str:
        """'over' (crossed), 'heading_over' (the projection crosses it) or 'ok'."""
        if self.used >= self.limit:
            return "over"
        return "heading_over" if self.projected > self.limit else "ok"

    @property
    def fraction(self) -> float:
        return self.used / self.limit

    def show(self, value: int) -> str:
        return format_usd(value) if self.metric == "cost" else f"{value:,} tokens"

    @property
    def dedupe_key(self) -> str:
        return f"budget:{self.scope}:{self.period}:{self.metric}:{self.period_start.isoformat()}"


@dataclass(frozen=True)
class BudgetReport:
    now: dt.datetime
    projection: Projection       # the pool's, shown even when no budget is set
    checks: list[BudgetCheck]
    unpriced_models: list[str] = field(default_factory=list)   # this month's models without a price

    @property
    def crossed(self) -> list[BudgetCheck]:
        return [c for c in self.checks if c.state == "over"]


def _limits(budget) -> list[tuple[str, str, int]]:
    """(period, metric, limit) for each limit set; costs in nano-USD."""
    found = []
    for period in PERIODS:
        cost = getattr(budget, f"{'daily' if period == 'day' else 'monthly'}_cost_usd")
        tokens = getattr(budget, f"{'daily' if period == 'day' else 'monthly'}_tokens")
        if cost is not None:
            found.append((period, "cost", usd_to_nano(cost)))
        if tokens is not None:
            found.append((period, "tokens", tokens))
    return found


def _checks(scope: str, budget, projection: Projection, now: dt.datetime) -> list[BudgetCheck]:
    today = utc_day(now)
    return [BudgetCheck(scope=scope, period=period, metric=metric,
                        period_start=today if period == "day" else month_start(today), limit=limit,
                        used=projection.so_far(period).get(metric),
                        projected=projection.projected(period).get(metric))
            for period, metric, limit in _limits(budget)]


def budget_report(now: dt.datetime, config: Config) -> BudgetReport:
    projection = pool_projection(now)
    checks = _checks("pool", config.budgets, projection, now)
    if config.budgets.keys:
        ids = dict(tuple_rows(ApiKey.select(ApiKey.label, ApiKey.id)
                              .where(ApiKey.label.in_(list(config.budgets.keys)))))
        by_key = key_projections(now)
        empty = project(now, Amount(), Amount(), Amount())
        for label, budget in config.budgets.keys.items():
            if label in ids:
                checks += _checks(label, budget, by_key.get(ids[label], empty), now)
    models = unpriced_models(month_start(utc_day(now)), utc_day(now)) if projection.month_so_far.unpriced_tokens else []
    return BudgetReport(now=now, projection=projection, checks=checks, unpriced_models=models)


def alert_text(check: BudgetCheck) -> str:
    """Plain text for the alert outbox."""
    period = "Daily" if check.period == "day" else "Monthly"
    scope = "the pool" if check.scope == "pool" else f"key {check.scope}"
    return (f"💸 {period} {check.metric} budget crossed for {scope}: {check.show(check.used)} "
            f"of {check.show(check.limit)} ({check.period_start.isoformat()}, UTC). "
            f"Projected: {check.show(check.projected)}.")


def enqueue_budget_alerts(now: dt.datetime, config: Config) -> int:
    """Write an alert for each budget crossed (once per crossing); returns how many were new."""
    report = budget_report(now, config)
    return sum(enqueue_alert("budget", check.dedupe_key, alert_text(check), now=now) for check in report.crossed)
