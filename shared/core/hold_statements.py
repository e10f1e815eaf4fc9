"""The reservations' statements, compiled once per backend (shared/core/prepared.py).

A call that holds against a key's own limit, an allowance or an enforced budget runs these
before it is sent and again when it is recorded: building them with peewee at every call
cost several times what running them costs (on SQLite ~1.7 ms of CPU per call for one
allowance, ~3.4 ms for the pool's budgets). The logic that uses them, and the order it
locks in, stay in allowances.py and budget_holds.py; here is only what each statement is.

Every value that changes from call to call is a slot; the rows come back as the driver
gives them (only the key row, which carries datetimes, is converted by its fields). Each
runs on the connection it is given (`db`; by default this thread's): on SQLite a reservation
and its settling may run on the event loop's own connection (DatabaseExecutor.run_inline).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import peewee as pw

from shared.core.db import database, locking
from shared.core.models import (
    AllowanceHold,
    AllowanceWindow,
    ApiKey,
    BudgetGate,
    BudgetHold,
    DailyRollup,
    KeyHold,
    Setting,
)
from shared.core.prepared import Prepared, Statements, slot

_STATEMENTS = Statements()
KEY_FIELDS = (ApiKey.label, ApiKey.window_anchor, ApiKey.window_start, ApiKey.used_today, ApiKey.daily_token_limit)
ZERO = pw.SQL("0")      # in the SQL text, so the statements' parameters are all slots (named)


def rows(name: Any, values: Mapping[str, Any] | None = None, db: pw.Database | None = None) -> list[tuple]:
    """The raw rows of the statement `name` run with `values` on `db` (default: this thread's
    connection)."""
    db = database.obj if db is None else db
    return _STATEMENTS.get(db, name, _BUILDERS[name]).raw_rows(db, values)


def execute(name: Any, values: Mapping[str, Any] | None = None, db: pw.Database | None = None) -> None:
    """Run the statement `name` (one that returns no rows) on `db` (default: this thread's connection)."""
    db = database.obj if db is None else db
    _STATEMENTS.get(db, name, _BUILDERS[name]).execute(db, values)


def key_row(key_id: int, db: pw.Database | None = None) -> list[tuple]:
    """The key's row, locked, as KEY_FIELDS (converted)."""
    db = database.obj if db is None else db
    return _STATEMENTS.get(db, "key row", _key_row).rows(db, {"key": key_id})


def insert_budget_holds(values: Mapping[str, Any], count: int, db: pw.Database | None = None) -> None:
    """Insert `count` budget holds in one statement: slots hold, expires and scope<i>,
    period<i>, start<i>, tokens<i>, cost<i> for i in range(count)."""
    db = database.obj if db is None else db
    _STATEMENTS.get(db, ("budget holds insert", count), functools.partial(_budget_holds_insert, count)).execute(
        db, values)


def prepare(db: pw.Database, budget_holds: int = 2) -> None:
    """Compile every statement for `db`'s backend now (at start), so that the first call that
    holds does not build them (~10 ms of CPU): inserts of up to `budget_holds` budget holds."""
    for name, build in _BUILDERS.items():
        _STATEMENTS.get(db, name, build)
    _STATEMENTS.get(db, "key row", _key_row)
    for count in range(1, budget_holds + 1):
        _STATEMENTS.get(db, ("budget holds insert", count), functools.partial(_budget_holds_insert, count))


def _sum(column: pw.Field) -> pw.Function:
    return pw.fn.COALESCE(pw.fn.SUM(column), ZERO)


# --- a key's own daily limit --------------------------------------------------------------------

def _key_row() -> Prepared:
    return Prepared(locking(ApiKey.select(*KEY_FIELDS).where(ApiKey.id == slot("key")), database.obj), KEY_FIELDS)


def _key_held() -> Prepared:
    return Prepared(KeyHold.select(_sum(KeyHold.tokens))
                    .where((KeyHold.key == slot("key")) & (KeyHold.window_start == slot("start"))
                           & (KeyHold.expires_at > slot("now"))))


def _key_hold_insert() -> Prepared:
    return Prepared(KeyHold.insert(hold_id=slot("hold"), key=slot("key"), window_start=slot("start"),
                                   tokens=slot("tokens"), expires_at=slot("expires")))


def _key_holds_delete() -> Prepared:
    return Prepared(KeyHold.delete().where(KeyHold.hold_id == slot("hold")))


# --- allowances ---------------------------------------------------------------------------------

def _this_window() -> pw.Expression:
    return (AllowanceWindow.allowance == slot("allowance")) & (AllowanceWindow.window_start == slot("start"))


def _window_row() -> Prepared:
    return Prepared(locking(AllowanceWindow.select(AllowanceWindow.tokens_used, AllowanceWindow.requests_used)
                            .where(_this_window()), database.obj))


def _window_insert() -> Prepared:
    return Prepared(AllowanceWindow.insert(allowance=slot("allowance"), window_start=slot("start"),
                                           tokens_used=ZERO, requests_used=ZERO).on_conflict_ignore())


def _window_settle() -> Prepared:
    return Prepared(AllowanceWindow.update(tokens_used=AllowanceWindow.tokens_used + slot("tokens"),
                                           requests_used=AllowanceWindow.requests_used + slot("requests"))
                    .where(_this_window()))


def _allowance_held() -> Prepared:
    return Prepared(AllowanceHold.select(_sum(AllowanceHold.tokens), _sum(AllowanceHold.requests))
                    .where((AllowanceHold.allowance == slot("allowance"))
                           & (AllowanceHold.window_start == slot("start")) & (AllowanceHold.expires_at > slot("now"))))


def _allowance_hold_insert() -> Prepared:
    return Prepared(AllowanceHold.insert(hold_id=slot("hold"), allowance=slot("allowance"), window_start=slot("start"),
                                         tokens=slot("tokens"), requests=slot("requests"), expires_at=slot("expires")))


def _allowance_holds_delete() -> Prepared:
    return Prepared(AllowanceHold.delete().where(AllowanceHold.hold_id == slot("hold")))


# --- enforced budgets ---------------------------------------------------------------------------

def _lifts() -> Prepared:
    return Prepared(Setting.select(Setting.name, Setting.value)
                    .where((Setting.scope == slot("scope")) & Setting.name.in_([slot("day"), slot("month")])))


def _gate_row() -> Prepared:
    return Prepared(locking(BudgetGate.select(BudgetGate.id).where(BudgetGate.scope == slot("scope")), database.obj))


def _gate_insert() -> Prepared:
    return Prepared(BudgetGate.insert(scope=slot("scope")).on_conflict_ignore())


def _budget_used(of_key: bool) -> Prepared:
    """Recorded tokens and cost of the period (the pool's, or one key's) and the live holds'
    tokens and cost, in one statement: one snapshot, so a call recorded meanwhile moves from
    the holds to the rollups at once."""
    r, h = DailyRollup.alias(), BudgetHold.alias()
    in_period = r.day.between(slot("start"), slot("today"))
    if of_key:
        in_period &= r.key == slot("key")
    live = ((h.scope == slot("scope")) & (h.period == slot("period")) & (h.period_start == slot("start"))
            & (h.expires_at > slot("now")))

    def total(model, column, where):
        return model.select(_sum(column)).where(where)

    return Prepared(pw.Select(columns=[total(r, r.total_tokens, in_period), total(r, r.cost_nanousd, in_period),
                                       total(h, h.tokens, live), total(h, h.cost_nanousd, live)])
                    .bind(database.obj))


def _budget_holds_insert(count: int) -> Prepared:
    return Prepared(BudgetHold.insert_many([
        {BudgetHold.hold_id: slot("hold"), BudgetHold.scope: slot(f"scope{i}"), BudgetHold.period: slot(f"period{i}"),
         BudgetHold.period_start: slot(f"start{i}"), BudgetHold.tokens: slot(f"tokens{i}"),
         BudgetHold.cost_nanousd: slot(f"cost{i}"), BudgetHold.expires_at: slot("expires")}
        for i in range(count)]))


def _budget_holds_delete() -> Prepared:
    return Prepared(BudgetHold.delete().where(BudgetHold.hold_id == slot("hold")))


_BUILDERS = {
    "key held": _key_held, "key hold insert": _key_hold_insert, "key holds delete": _key_holds_delete,
    "window row": _window_row, "window insert": _window_insert, "window settle": _window_settle,
    "allowance held": _allowance_held, "allowance hold insert": _allowance_hold_insert,
    "allowance holds delete": _allowance_holds_delete,
    "lifts": _lifts, "gate row": _gate_row, "gate insert": _gate_insert,
    "pool budget used": lambda: _budget_used(False), "key budget used": lambda: _budget_used(True),
    "budget holds delete": _budget_holds_delete,
}
