"""Allowances and reservations (DESIGN invariant 9).

An allowance is what a provider grants an organization or account: tokens and/or
requests per window (the UTC day, a rolling 24 h from its first registration, or the
minute), for the models matching its patterns, shared by every key that joins it.

Going past a free allowance is billed, not refused, so nothing may be sent on hope.
Before a call, `reserve` holds its worst case (prompt estimate + max output) against
every allowance the call draws on, in one transaction: each allowance's window row is
locked, its used tokens plus the live holds plus this call must fit, else nothing is
held and `AllowanceFull` says which allowance and when it frees up. The accountant
settles the hold in the same transaction that records the call (`settle`): the real
tokens are added and the hold deleted. A hold its process never settled (a crash)
stops counting at `expires_at`, so no sweeper is needed for correctness.

A key's own `daily_token_limit` is the one-allowance case: `reserve` given the key's id
locks the key's row first (the order the accountant locks in: key, then allowance windows)
and holds the tokens in `KeyHold`, against the key's counters of its current window.

Reserving and settling run before and after every call that holds: their statements are
compiled once per backend (shared/core/hold_statements.py), not built by peewee each time.
They run on the connection given as `db` (by default this thread's): on SQLite the bot runs
them on the event loop's own connection when nothing waits (DatabaseExecutor.run_inline),
in the same transactions as on the database thread.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import uuid
from dataclasses import dataclass

import peewee as pw

from shared.core import hold_statements as statements
from shared.core import windows
from shared.core.budget_holds import BudgetLimit, check_budgets, drop_holds, insert_holds
from shared.core.config import Config
from shared.core.db import database, write_transaction
from shared.core.models import Allowance, AllowanceWindow, KeyAllowance, utcnow
from shared.core.query_rows import tuple_rows

MINUTE = dt.timedelta(minutes=1)


def matches(patterns: tuple[str, ...] | list[str], model: str) -> bool:
    """Whether `model` matches one of the shell-style `patterns` (`gpt-4o*`); none: any model."""
    return not patterns or any(fnmatch.fnmatchcase(model, p) for p in patterns)


@dataclass(frozen=True)
class AllowanceRef:
    """An allowance as the client needs it to reserve: identity, window and limits."""
    id: int
    name: str
    window: str
    anchor: dt.datetime
    token_limit: int | None
    request_limit: int | None
    models: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        """"allowance 'org'", or "the daily limit of key 'k1'" for a key's own (see key_ref)."""
        return f"the daily limit of key '{self.name[4:]}'" if self.id < 0 else f"allowance '{self.name}'"

    def covers(self, model: str) -> bool:
        return matches(self.models, model)

    def window_start(self, now: dt.datetime) -> dt.datetime:
        if self.window == "minute":
            return now.replace(second=0, microsecond=0)
        return windows.window_start(self.anchor, now)

    def window_end(self, now: dt.datetime) -> dt.datetime:
        return self.window_start(now) + (MINUTE if self.window == "minute" else windows.WINDOW)


@dataclass(frozen=True)
class Hold:
    """A reservation to settle: its id, the (allowance id, window start) it holds, and
    whether it holds tokens against its key's own limit too."""
    hold_id: str
    entries: tuple[tuple[int, dt.datetime], ...]
    on_key: bool = False
    on_budgets: bool = False


class AllowanceFull(Exception):
    """An allowance cannot take a call now; `frees_up_at` is when its window ends."""

    def __init__(self, allowance: AllowanceRef, frees_up_at: dt.datetime, what: str):
        super().__init__(f"{allowance.described} has no room for this call ({what})")
        self.allowance = allowance
        self.frees_up_at = frees_up_at


@dataclass(frozen=True)
class AllowanceUsage:
    """One allowance in its current window, for status, reports and forecasts."""
    ref: AllowanceRef
    window_start: dt.datetime
    resets_at: dt.datetime
    tokens_used: int
    requests_used: int
    tokens_held: int
    requests_held: int

    @property
    def tokens_left(self) -> int | None:
        if self.ref.token_limit is None:
            return None
        return max(0, self.ref.token_limit - self.tokens_used - self.tokens_held)

    @property
    def requests_left(self) -> int | None:
        if self.ref.request_limit is None:
            return None
        return max(0, self.ref.request_limit - self.requests_used - self.requests_held)

    @property
    def used_up(self) -> bool:
        return self.tokens_left == 0 or self.requests_left == 0


# --- registration -------------------------------------------------------------------------------

def sync_allowances(config: Config, now: dt.datetime | None = None) -> dict[str, AllowanceRef]:
    """Register the config's allowances (new ones, changed limits); returns them by name.
    Run inside the caller's transaction (sync_keys) or alone. When calls will hold (against
    allowances or enforced budgets), the statements that hold are compiled here, at start."""
    now = now or utcnow()
    if config.allowances or config.budgets.enforce:
        statements.prepare(database.obj, 2 * (1 + len(config.budgets.keys)))
    refs = {}
    for allowance in config.allowances:
        mode = "utc-day" if allowance.window == "utc-day" else "rolling"
        fields: dict[str, object] = {"window": allowance.window, "token_limit": allowance.tokens,
                                     "request_limit": allowance.requests, "models": " ".join(allowance.models),
                                     "in_config": True}
        Allowance.insert(name=allowance.name, anchor=windows.anchor_for(mode, now), **fields) \
            .on_conflict_ignore().execute()
        row = Allowance.get(Allowance.name == allowance.name)
        if row.window != allowance.window:
            fields["anchor"] = windows.anchor_for(mode, now)
        if any(getattr(row, name) != value for name, value in fields.items()):
            Allowance.update(**fields).where(Allowance.id == row.id).execute()
            row = Allowance.get_by_id(row.id)
        refs[row.name] = _ref(row)
    return refs


def join(key_id: int, refs: list[AllowanceRef]) -> None:
    """Record which allowances a key draws on (for reports); leaves others' memberships alone."""
    ids = {r.id for r in refs}
    KeyAllowance.delete().where((KeyAllowance.key == key_id) & KeyAllowance.allowance.not_in(ids or {0})).execute()
    for ref in refs:
        KeyAllowance.insert(key=key_id, allowance=ref.id).on_conflict_ignore().execute()


def _ref(row: Allowance) -> AllowanceRef:
    return AllowanceRef(row.id, row.name, row.window, row.anchor, row.token_limit, row.request_limit,
                        tuple(row.models.split()))


# --- reserving and settling ---------------------------------------------------------------------

def reserve(refs: list[AllowanceRef], tokens: int, now: dt.datetime, ttl: dt.timedelta,
            key_id: int | None = None, budgets: list[BudgetLimit] | None = None, cost_nanousd: int = 0,
            db: pw.Database | None = None) -> Hold:
    """Hold `tokens` and one request against every allowance of `refs`, the tokens against
    the own daily limit of the key `key_id` (when given), and the tokens and `cost_nanousd`
    against the enforced `budgets` (BudgetFull when one has no room), all or none: in one
    write transaction on `db` (default: this thread's connection), which on SQLite takes the
    write lock at BEGIN."""
    db = database.obj if db is None else db
    hold_id = uuid.uuid4().hex
    entries = []
    with write_transaction(db):
        key_start = None if key_id is None else _check_key(key_id, tokens, now, db)
        budget_rows = check_budgets(budgets, tokens, cost_nanousd, now, db) if budgets else []
        for ref in sorted(refs, key=lambda r: r.id):      # one lock order: no deadlocks between reservers
            start = ref.window_start(now)
            slots = {"allowance": ref.id, "start": start, "now": now}
            used_tokens, used_requests = _locked_window(slots, db)
            held_tokens, held_requests = _live_holds(slots, db)
            if ref.token_limit is not None and used_tokens + held_tokens + tokens > ref.token_limit:
                raise AllowanceFull(ref, ref.window_end(now), f"{used_tokens + held_tokens:,} of "
                                                              f"{ref.token_limit:,} tokens used or reserved")
            if ref.request_limit is not None and used_requests + held_requests + 1 > ref.request_limit:
                raise AllowanceFull(ref, ref.window_end(now), f"{used_requests + held_requests:,} of "
                                                              f"{ref.request_limit:,} requests used or reserved")
            statements.execute("allowance hold insert", {"hold": hold_id, "allowance": ref.id, "start": start,
                                                         "tokens": tokens, "requests": 1, "expires": now + ttl}, db)
            entries.append((ref.id, start))
        if key_start is not None:   # inserted last, with every lock held (no lock waits inside)
            statements.execute("key hold insert", {"hold": hold_id, "key": key_id, "start": key_start,
                                                   "tokens": tokens, "expires": now + ttl}, db)
        insert_holds(budget_rows, hold_id, now + ttl, db)
    return Hold(hold_id, tuple(entries), on_key=key_id is not None, on_budgets=bool(budget_rows))


def key_ref(key_id: int, label: str, anchor: dt.datetime, limit: int) -> AllowanceRef:
    """A key's own daily limit as an allowance (for AllowanceFull and reports)."""
    return AllowanceRef(-key_id, f"key {label}", "rolling", anchor, limit, None)


def _check_key(key_id: int, tokens: int, now: dt.datetime, db: pw.Database) -> dt.datetime:
    """Lock the key's row; AllowanceFull unless its window's used + live holds leave room for
    `tokens`. Returns the window's start."""
    rows = statements.key_row(key_id, db)
    if not rows:
        raise LookupError(f"no key with id {key_id}")
    label, anchor, stored_start, used_today, limit = rows[0]
    start = windows.window_start(anchor, now)
    used = int(used_today) if stored_start == start else 0
    held = int(statements.rows("key held", {"key": key_id, "start": start, "now": now}, db)[0][0] or 0)
    if used + held + tokens > limit:
        raise AllowanceFull(key_ref(key_id, label, anchor, limit), start + windows.WINDOW,
                            f"{used + held:,} of {limit:,} tokens used or reserved")
    return start


def settle(hold: Hold, tokens: int, requests: int, db: pw.Database | None = None) -> None:
    """Add a recorded call's real usage to the windows it held, and drop the hold.
    Called inside the accountant's transaction on `db` (default: this thread's connection),
    so the usage moves with the event."""
    db = database.obj if db is None else db
    for allowance_id, start in sorted(hold.entries):
        statements.execute("window settle", {"allowance": allowance_id, "start": start, "tokens": tokens,
                                             "requests": requests}, db)
    _drop(hold, db)


def release(hold: Hold, db: pw.Database | None = None) -> None:
    """Drop a hold whose call was never sent (on `db`, default: this thread's connection)."""
    db = database.obj if db is None else db
    with write_transaction(db):
        _drop(hold, db)


def _drop(hold: Hold, db: pw.Database) -> None:
    slots = {"hold": hold.hold_id}
    if hold.entries:
        statements.execute("allowance holds delete", slots, db)
    if hold.on_key:     # the key's counters moved with the call's record, in the same transaction
        statements.execute("key holds delete", slots, db)
    if hold.on_budgets:     # as did the rollups the budgets are read from
        drop_holds(hold.hold_id, db)


def _locked_window(slots: dict, db: pw.Database) -> tuple[int, int]:
    """The window's row (allowance, start; created if new), locked until the transaction ends.

    The row is looked for before it is inserted: on InnoDB, an INSERT IGNORE that meets an
    existing row takes a shared lock on it, and two reservers upgrading that lock deadlock."""
    rows = statements.rows("window row", slots, db)
    if not rows:
        statements.execute("window insert", slots, db)
        rows = statements.rows("window row", slots, db)
    return int(rows[0][0]), int(rows[0][1])


def _live_holds(slots: dict, db: pw.Database | None = None) -> tuple[int, int]:
    """The tokens and requests held against the window (allowance, start) that live at `now`."""
    tokens, requests = statements.rows("allowance held", slots, db)[0]
    return int(tokens), int(requests)


# --- reading ------------------------------------------------------------------------------------

def allowance_usage(now: dt.datetime, names: list[str] | None = None) -> list[AllowanceUsage]:
    """Every allowance in config (or those named) in its current window."""
    query = Allowance.select().where(Allowance.in_config == True).order_by(Allowance.name)  # noqa: E712
    if names is not None:
        query = query.where(Allowance.name.in_(names))
    result = []
    for row in query:
        ref = _ref(row)
        start = ref.window_start(now)
        used = next(tuple_rows(AllowanceWindow.select(AllowanceWindow.tokens_used, AllowanceWindow.requests_used)
                               .where((AllowanceWindow.allowance == ref.id)
                                      & (AllowanceWindow.window_start == start))), (0, 0))
        held = _live_holds({"allowance": ref.id, "start": start, "now": now})
        result.append(AllowanceUsage(ref, start, ref.window_end(now), int(used[0]), int(used[1]), *held))
    return result


def members(allowance_ids: list[int] | None = None) -> dict[int, list[int]]:
    """Key ids by allowance id."""
    result: dict[int, list[int]] = {}
    for allowance_id, key_id in tuple_rows(KeyAllowance.select(KeyAllowance.allowance, KeyAllowance.key)):
        if allowance_ids is None or allowance_id in allowance_ids:
            result.setdefault(allowance_id, []).append(key_id)
    return result
