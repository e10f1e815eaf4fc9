"""Budgets that hold (`[budgets] enforce = true`, docs/design.md invariant 9's reservations).

A budget (pool or one key; tokens or cost; UTC day or month) is enforced like an allowance:
before a call, its worst case (prompt estimate + max output, and that priced) is held
against every enforced budget it counts in, inside the reservation's transaction. The
scope's gate row is locked, the period's recorded usage (daily rollups) plus the live holds
plus this call must stay within the limit, else `BudgetFull`. The hold is dropped in the
transaction that records the call (its usage is then in the rollups). A crashed process's
hold stops counting at `expires_at`.

A crossed budget stops calls until its period ends or the owner lifts it (`lift`): a lift
lasts until the periods current at that moment end.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import peewee as pw

from shared.core import hold_statements as statements
from shared.core.config import Config
from shared.core.db import conflict_target, database
from shared.core.models import Setting
from shared.core.pricing import format_usd, usd_to_nano

PERIODS = ("day", "month")
LIFT_SCOPE = "global"
_LIFT_SLOTS = {"scope": LIFT_SCOPE, "day": "budget_lift_day", "month": "budget_lift_month"}


@dataclass(frozen=True)
class BudgetLimit:
    """One enforced limit: a scope ("pool" or "key:<label>"), a period and a metric."""
    scope: str
    key_id: int | None           # the key whose usage counts (None: the whole pool)
    period: str                  # "day" or "month"
    metric: str                  # "tokens" or "cost" (nano-USD)
    limit: int

    @property
    def name(self) -> str:
        who = "pool" if self.key_id is None else f"key {self.scope.removeprefix('key:')}"
        return f"{'daily' if self.period == 'day' else 'monthly'} {self.metric} budget of the {who}"

    def show(self, value: int) -> str:
        return format_usd(value) if self.metric == "cost" else f"{value:,} tokens"


class BudgetFull(Exception):
    """An enforced budget cannot take a call; `frees_up_at` is when its period ends."""

    def __init__(self, budget: BudgetLimit, used: int, period_start: dt.date, frees_up_at: dt.datetime):
        super().__init__(f"the {budget.name} is used up ({budget.show(used)} of {budget.show(budget.limit)} "
                         f"used or reserved); calls stop until {frees_up_at:%Y-%m-%d %H:%M} UTC "
                         "or the owner lifts it (.budget lift)")
        self.budget = budget
        self.period_start = period_start
        self.frees_up_at = frees_up_at

    @property
    def pool_wide(self) -> bool:
        return self.budget.key_id is None

    @property
    def dedupe_key(self) -> str:
        b = self.budget
        return f"budget_enforced:{b.scope}:{b.period}:{b.metric}:{self.period_start.isoformat()}"


def enforced_limits(config: Config, key_id: int, label: str) -> list[BudgetLimit]:
    """The enforced limits a call with this key counts in: the pool's and the key's own."""
    if not config.budgets.enforce:
        return []
    found = _limits("pool", None, config.budgets)
    budget = config.budgets.keys.get(label)
    if budget is not None:
        found += _limits(f"key:{label}", key_id, budget)
    return found


def cost_budgets_enforced(config: Config) -> bool:
    """Whether some enforced budget is in money (a model with no known price is held at $0
    against it: see `doctor`'s pricing check)."""
    budgets = config.budgets
    costs = [(budgets.daily_cost_usd, budgets.monthly_cost_usd)]
    costs += [(key.daily_cost_usd, key.monthly_cost_usd) for key in budgets.keys.values()]
    return budgets.enforce and any(cost is not None for pair in costs for cost in pair)


def _limits(scope: str, key_id: int | None, budget) -> list[BudgetLimit]:
    found = []
    for period in PERIODS:
        prefix = "daily" if period == "day" else "monthly"
        cost, tokens = getattr(budget, f"{prefix}_cost_usd"), getattr(budget, f"{prefix}_tokens")
        if tokens is not None:
            found.append(BudgetLimit(scope, key_id, period, "tokens", tokens))
        if cost is not None:
            found.append(BudgetLimit(scope, key_id, period, "cost", usd_to_nano(cost)))
    return found


def period_bounds(period: str, now: dt.datetime) -> tuple[dt.date, dt.datetime]:
    """The period's first UTC day and the moment it ends."""
    today = now.date()
    if period == "day":
        return today, dt.datetime.combine(today + dt.timedelta(days=1), dt.time())
    start = today.replace(day=1)
    following = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, dt.datetime.combine(following, dt.time())


# --- checking and holding (inside allowances.reserve's transaction) ------------------------------

def check_budgets(limits: list[BudgetLimit], tokens: int, cost_nanousd: int, now: dt.datetime,
                  db: pw.Database | None = None) -> list[tuple]:
    """Lock each scope's gate; BudgetFull unless every limit has room for the call (a lifted
    period does not count). Returns the hold rows to insert (`insert_holds`). On `db`
    (default: this thread's connection), inside its open transaction."""
    db = database.obj if db is None else db
    lifted = lifted_periods(now, db)
    rows = {}
    for scope in sorted({b.scope for b in limits}):        # one lock order for every reserver
        _lock_gate({"scope": scope}, db)
    for budget in limits:
        start, ends = period_bounds(budget.period, now)
        if (budget.period, start) in lifted:
            continue
        used_tokens, used_cost = _used(budget, start, now, db)
        used, wanted = (used_cost, cost_nanousd) if budget.metric == "cost" else (used_tokens, tokens)
        if used + wanted > budget.limit:
            raise BudgetFull(budget, used, start, ends)
        rows[(budget.scope, budget.period, start)] = (budget.scope, budget.period, start, tokens, cost_nanousd)
    return list(rows.values())


def insert_holds(rows: list[tuple], hold_id: str, expires_at: dt.datetime, db: pw.Database | None = None) -> None:
    """Insert the hold rows `check_budgets` returned, in one statement."""
    if rows:
        values: dict = {"hold": hold_id, "expires": expires_at}
        for i, (scope, period, start, tokens, cost) in enumerate(rows):
            values.update({f"scope{i}": scope, f"period{i}": period, f"start{i}": start, f"tokens{i}": tokens,
                           f"cost{i}": cost})
        statements.insert_budget_holds(values, len(rows), db)


def drop_holds(hold_id: str, db: pw.Database | None = None) -> None:
    statements.execute("budget holds delete", {"hold": hold_id}, db)


def _lock_gate(slots: dict, db: pw.Database) -> None:
    """Lock the scope's gate row (created if new) until the transaction ends."""
    if not statements.rows("gate row", slots, db):
        statements.execute("gate insert", slots, db)
        statements.rows("gate row", slots, db)


def _used(budget: BudgetLimit, start: dt.date, now: dt.datetime, db: pw.Database) -> tuple[int, int]:
    """Recorded tokens and cost of the period plus live holds, read in one statement (one
    snapshot: a call recorded meanwhile moves from the holds to the rollups atomically)."""
    slots = {"scope": budget.scope, "period": budget.period, "start": start, "today": now.date(), "now": now}
    if budget.key_id is None:
        row = statements.rows("pool budget used", slots, db)[0]
    else:
        row = statements.rows("key budget used", {**slots, "key": budget.key_id}, db)[0]
    return int(row[0]) + int(row[2]), int(row[1]) + int(row[3])


# --- lifting ------------------------------------------------------------------------------------

def lift(now: dt.datetime) -> list[tuple[str, dt.date]]:
    """Lift every enforced budget until the periods current now end; returns (period, start)."""
    lifted = []
    for period in PERIODS:
        start, _ends = period_bounds(period, now)
        (Setting.insert(scope=LIFT_SCOPE, name=f"budget_lift_{period}", value=start.isoformat(), updated_at=now)
         .on_conflict(update={Setting.value: start.isoformat(), Setting.updated_at: now},
                      **conflict_target(database.obj, [Setting.scope, Setting.name]))
         .execute())
        lifted.append((period, start))
    return lifted


def lifted_periods(now: dt.datetime, db: pw.Database | None = None) -> set[tuple[str, dt.date]]:
    """The (period, start) pairs lifted by the owner that are still current."""
    rows = statements.rows("lifts", _LIFT_SLOTS, db)
    current = {period: period_bounds(period, now)[0] for period in PERIODS}
    found = set()
    for name, value in rows:
        period = str(name).removeprefix("budget_lift_")
        if value == current[period].isoformat():
            found.add((period, current[period]))
    return found
