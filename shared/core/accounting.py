"""Exact accounting of every call (docs/design.md invariants 1, 2 and 6).

`record_call` writes the event, the key's counters and the daily rollup (and, for a call
made for a chat, the chat's rollup) in ONE transaction, with atomic SQL increments (no
read-modify-write in Python), so any number of processes can record at once and every counter still equals the sum of
the events behind it. Recording is idempotent per `call_id`: a retry after a lost
acknowledgement changes nothing.
"""
from __future__ import annotations

import datetime as dt
import enum
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import peewee as pw

from shared.core import windows
from shared.core.allowances import AllowanceFull, Hold, settle
from shared.core.budget_holds import BudgetFull
from shared.core.db import (
    TRANSIENT_ERRORS,
    DatabaseUnavailable,
    conflict_target,
    database,
    drop_connection,
    first_line,
    retrying,
    rolled_back,
    write_transaction,
)
from shared.core.db_executor import DatabaseExecutor
from shared.core.models import ApiKey, ChatRollup, DailyRollup, UsageEvent, utcnow
from shared.core.outbox import enqueue_alert
from shared.core.prepared import Prepared, Statements, execute_all, rehearse, slot
from shared.core.pricing import Pricer
from shared.core.usage import Usage

if TYPE_CHECKING:
    from shared.core.inflight import InFlight
    from shared.core.journal import CallJournal

log = logging.getLogger("tokenpool.accounting")

HELD_PROBE_SECONDS = 1.0      # how often a paused process tries to book its held calls again


class JournalUnwritable(Exception):
    """Neither the database nor the local journal could keep a served call."""


class Outcome(str, enum.Enum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"          # 429 rate_limit_exceeded: the key cools down
    QUOTA_EXHAUSTED = "quota_exhausted"    # insufficient_quota, budget_exceeded, 402: done for this window
    INVALID_KEY = "invalid_key"            # 401/403: the key is unusable until re-enabled
    MISCONFIGURED = "misconfigured"        # a JSON 404/405 at the endpoint: the key's base_url is wrong
    BAD_REQUEST = "bad_request"            # 400/404/422: the request's fault, not the key's
    SERVER_ERROR = "server_error"          # 5xx
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INTERRUPTED = "interrupted"            # a stream cut before its usage arrived (tokens estimated)

    def __str__(self) -> str:
        return self.value


ERROR_OUTCOMES = frozenset(Outcome) - {Outcome.OK, Outcome.RATE_LIMITED, Outcome.INTERRUPTED}


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What the provider's x-ratelimit-* headers said on the last response."""
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None
    reset_requests_at: dt.datetime | None = None
    reset_tokens_at: dt.datetime | None = None


@dataclass
class CallRecord:
    """Everything known about one call to one key."""
    key_id: int
    bot: str
    operation: str
    model: str
    outcome: Outcome = Outcome.OK
    input_tokens: int = 0          # includes cached tokens
    cached_tokens: int = 0
    output_tokens: int = 0         # includes reasoning tokens
    reasoning_tokens: int = 0
    duration_ms: int = 0
    error_code: str = ""
    chat_id: int | None = None
    estimated: bool = False
    at: dt.datetime = field(default_factory=utcnow)
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cooldown_until: dt.datetime | None = None
    rate_limits: RateLimitSnapshot | None = None
    hold: Hold | None = None       # the allowance reservation this call settles

    @property
    def counts_as_request(self) -> bool:
        """Whether the provider counted the call against a requests-per-window limit."""
        return self.outcome in (Outcome.OK, Outcome.INTERRUPTED) or self.usage.total > 0

    @property
    def total_tokens(self) -> int:
        return self.usage.total

    @property
    def usage(self) -> Usage:
        """The token counts as one value, never negative (whatever the fields were set to)."""
        return Usage(self.input_tokens, self.cached_tokens, self.output_tokens, self.reasoning_tokens)


@dataclass(frozen=True)
class Recorded:
    """The result of recording: the cost charged, whether it was a duplicate, and whether it
    waits in the local journal for the database (`journaled`)."""
    call_id: str
    cost_nanousd: int
    duplicate: bool = False
    journaled: bool = False
    held: bool = False          # neither the database nor the journal took it: kept in memory


def record_call(call: CallRecord, *, anchor: dt.datetime, pricer: Pricer, db: pw.Database | None = None) -> Recorded:
    """Record one call atomically on `db` (default: this thread's connection). `anchor` is
    the key's window anchor (from its row)."""
    db = database.obj if db is None else db
    statements, values, cost = _booking(call, anchor, pricer, db)
    try:
        if call.hold is None:
            execute_all(db, statements, values)
        else:   # the allowance reservation is settled in the same transaction as the call
            with write_transaction(db):
                execute_all(db, statements, values)
                settle(call.hold, call.usage.total, int(call.counts_as_request), db=db)
    except pw.IntegrityError:
        if UsageEvent.select().where(UsageEvent.call_id == call.call_id).exists(db):
            return Recorded(call.call_id, cost, duplicate=True)
        raise
    return Recorded(call.call_id, cost)


def _booking(call: CallRecord, anchor: dt.datetime, pricer: Pricer,
             db: pw.Database) -> tuple[tuple[Prepared, ...], dict, int]:
    """What booking `call` runs on `db`: the statements, their slots' values, and the cost."""
    outcome = Outcome(call.outcome)
    usage = call.usage
    price = pricer.price(call.model, usage.input, usage.cached, usage.output)
    cost = price or 0
    values = _slot_values(call, usage, outcome, cost, windows.window_start(anchor, call.at))
    values["unpriced"] = usage.input + usage.output if price is None else 0
    return _statements_for(db, outcome, call.rate_limits is not None, call.chat_id is not None), values, cost


def _slot_values(call: CallRecord, usage: Usage, outcome: Outcome, cost: int, start: dt.datetime) -> dict:
    """The values of the statements' slots (only those the chosen statement variants use)."""
    at = call.at
    values = {
        "call_id": call.call_id, "at": at, "day": at.date(), "key": call.key_id,
        "window_start": start, "bot": call.bot, "operation": call.operation, "model": call.model,
        "input": usage.input, "cached": usage.cached, "output": usage.output,
        "reasoning": usage.reasoning, "total": usage.input + usage.output, "cost": max(0, cost),
        "duration": call.duration_ms, "outcome": outcome.value, "error_code": call.error_code[:100],
        "chat_id": call.chat_id, "estimated": call.estimated, "one": 1,
        "ok": 1, "error": 0, "rate_hit": 0,
    }
    if outcome is not Outcome.OK:
        values.update(ok=0, error=int(outcome in ERROR_OUTCOMES), rate_hit=int(outcome is Outcome.RATE_LIMITED),
                      last_error=(call.error_code or outcome.value)[:200], invalid=True,
                      invalid_reason=(call.error_code or "invalid api key")[:200],
                      cooldown_until=call.cooldown_until)
    limits = call.rate_limits
    if limits is not None:
        values.setdefault("cooldown_until", call.cooldown_until)     # pacing: none left until a reset
        values.update(rl_remaining_requests=limits.remaining_requests, rl_remaining_tokens=limits.remaining_tokens,
                      rl_limit_requests=limits.limit_requests, rl_limit_tokens=limits.limit_tokens,
                      rl_reset_requests_at=limits.reset_requests_at, rl_reset_tokens_at=limits.reset_tokens_at)
    return values


# --- statements, compiled once per backend (shared.core.prepared) -----------------------------

_statements = Statements()


def prepare_statements(db) -> None:
    """Compile the statements of an ordinary call now (at start), not on the first call."""
    _statements_for(db, Outcome.OK, True, True)


def rehearse_booking(key_id: int, anchor: dt.datetime, pricer: Pricer, db: pw.Database | None = None, *,
                     model: str = "warm-up", times: int = 1) -> None:
    """Book an ordinary call of `model` (answered, with rate-limit headers, for a chat) on key
    `key_id` and roll it back, `times` over, at start: the statements are compiled by peewee
    and by the driver (SQLite ~0.8 ms on the first call otherwise), a server opens the
    tables, indexes and foreign-key checks they touch, and the booking's own Python runs
    through `record_call`'s steps often enough to be specialized (see REHEARSALS in
    shared/ai/rehearsal.py). Nothing is kept: the books are as they were (`prepared.rehearse`)."""
    db = database.obj if db is None else db
    for _ in range(times):
        call = CallRecord(key_id=key_id, bot="warm-up", operation="warm-up", model=model, chat_id=0,
                          input_tokens=1, output_tokens=1, rate_limits=RateLimitSnapshot())
        statements, values, _cost = _booking(call, anchor, pricer, db)
        rehearse(db, statements, values)


def rehearse_holding_call(key_id: int, anchor: dt.datetime, pricer: Pricer, reserve_hold: Callable[[pw.Database], Hold],
                          db: pw.Database | None = None, *, model: str = "warm-up", times: int = 1) -> bool:
    """A call that holds, rehearsed at start `times` over and rolled back each time: its
    reservation (`reserve_hold(db)`, e.g. `allowances.reserve` with the call's arguments) and
    its booking with the hold settled, each as the real call runs it (`record_call`), both
    inside one transaction on `db` (default: this thread's connection) that is then rolled
    back, so their statements are compiled by the driver and their Python specialized, as
    `rehearse_booking` does for the booking alone. Nothing is kept. False when the call could
    not be held now (a used-up allowance or budget: nothing to rehearse)."""
    db = database.obj if db is None else db
    for _ in range(times):
        with rolled_back(db):
            try:
                hold = reserve_hold(db)
            except (AllowanceFull, BudgetFull):
                return False
            call = CallRecord(key_id=key_id, bot="warm-up", operation="warm-up", model=model, chat_id=0,
                              input_tokens=1, output_tokens=1, rate_limits=RateLimitSnapshot(), hold=hold)
            record_call(call, anchor=anchor, pricer=pricer, db=db)
    return True


def _statements_for(db, outcome: Outcome, has_limits: bool, for_chat: bool) -> tuple[Prepared, ...]:
    # The key row is locked first: InnoDB would otherwise take a shared lock on it for the
    # event's foreign key, and two writers upgrading that lock deadlock each other.
    statements: tuple[Prepared, ...] = (
        _statements.get(db, ("key", outcome, has_limits), lambda: _key_statement(outcome, has_limits)),
        _statements.get(db, "event", _event_statement),
        _statements.get(db, "rollup", _rollup_statement))
    if for_chat:
        statements += (_statements.get(db, "chat_rollup", _chat_rollup_statement),)
    return statements


def _event_statement() -> Prepared:
    return Prepared(UsageEvent.insert({
        UsageEvent.call_id: slot("call_id"), UsageEvent.at: slot("at"), UsageEvent.key: slot("key"),
        UsageEvent.window_start: slot("window_start"), UsageEvent.bot: slot("bot"),
        UsageEvent.operation: slot("operation"), UsageEvent.model: slot("model"),
        UsageEvent.input_tokens: slot("input"), UsageEvent.cached_tokens: slot("cached"),
        UsageEvent.output_tokens: slot("output"), UsageEvent.reasoning_tokens: slot("reasoning"),
        UsageEvent.total_tokens: slot("total"), UsageEvent.cost_nanousd: slot("cost"),
        UsageEvent.unpriced_tokens: slot("unpriced"),
        UsageEvent.duration_ms: slot("duration"), UsageEvent.outcome: slot("outcome"),
        UsageEvent.error_code: slot("error_code"), UsageEvent.chat_id: slot("chat_id"),
        UsageEvent.estimated: slot("estimated"),
    }).returning())


def _key_statement(outcome: Outcome, has_limits: bool) -> Prepared:
    start = slot("window_start")
    same = ApiKey.window_start == start
    newer = ApiKey.window_start > start   # a later call already opened the next window

    def today(column, amount):
        # Same window: add. Stored window newer: this call belongs to an older window and
        # leaves today's counters alone. Otherwise (older or none): the window starts now.
        return pw.Case(None, [(same, column + amount), (newer, column)], amount)

    updates = {
        ApiKey.used_today: today(ApiKey.used_today, slot("total")),
        ApiKey.input_today: today(ApiKey.input_today, slot("input")),
        ApiKey.cached_today: today(ApiKey.cached_today, slot("cached")),
        ApiKey.output_today: today(ApiKey.output_today, slot("output")),
        ApiKey.calls_today: today(ApiKey.calls_today, slot("one")),
        ApiKey.rate_hits_today: today(ApiKey.rate_hits_today, slot("rate_hit")),
        ApiKey.errors_today: today(ApiKey.errors_today, slot("error")),
        ApiKey.cost_today_nanousd: today(ApiKey.cost_today_nanousd, slot("cost")),
        ApiKey.unpriced_today: today(ApiKey.unpriced_today, slot("unpriced")),
        ApiKey.window_start: pw.Case(None, [(newer, ApiKey.window_start)], start),
        ApiKey.total_tokens: ApiKey.total_tokens + slot("total"),
        ApiKey.total_input: ApiKey.total_input + slot("input"),
        ApiKey.total_cached: ApiKey.total_cached + slot("cached"),
        ApiKey.total_output: ApiKey.total_output + slot("output"),
        ApiKey.total_calls: ApiKey.total_calls + slot("one"),
        ApiKey.total_rate_hits: ApiKey.total_rate_hits + slot("rate_hit"),
        ApiKey.total_errors: ApiKey.total_errors + slot("error"),
        ApiKey.total_cost_nanousd: ApiKey.total_cost_nanousd + slot("cost"),
        ApiKey.total_unpriced: ApiKey.total_unpriced + slot("unpriced"),
        ApiKey.last_used_at: slot("at"),
    }
    if outcome is not Outcome.OK:
        updates[ApiKey.last_error] = slot("last_error")
        updates[ApiKey.last_error_at] = slot("at")
    if outcome is Outcome.RATE_LIMITED or has_limits:     # a 429, or headers saying none is left
        updates[ApiKey.cooldown_until] = pw.fn.COALESCE(slot("cooldown_until"), ApiKey.cooldown_until)
    elif outcome is Outcome.QUOTA_EXHAUSTED:
        updates[ApiKey.exhausted_window] = start
    elif outcome in (Outcome.INVALID_KEY, Outcome.MISCONFIGURED):
        updates[ApiKey.invalid] = slot("invalid")
        updates[ApiKey.invalid_reason] = slot("invalid_reason")
    if has_limits:
        for name in ("rl_remaining_requests", "rl_remaining_tokens", "rl_limit_requests", "rl_limit_tokens",
                     "rl_reset_requests_at", "rl_reset_tokens_at"):
            updates[getattr(ApiKey, name)] = slot(name)
        updates[ApiKey.rl_updated_at] = slot("at")
    return Prepared(ApiKey.update(updates).where(ApiKey.id == slot("key")))


_ROLLUP_SUMS = {"calls": "one", "ok_calls": "ok", "error_calls": "error", "rate_hits": "rate_hit",
                "input_tokens": "input", "cached_tokens": "cached", "output_tokens": "output",
                "reasoning_tokens": "reasoning", "total_tokens": "total", "cost_nanousd": "cost",
                "unpriced_tokens": "unpriced", "duration_ms": "duration"}


def _rollup_statement() -> Prepared:
    return _rollup_upsert(DailyRollup, {DailyRollup.day: slot("day"), DailyRollup.key: slot("key"),
                                        DailyRollup.bot: slot("bot"), DailyRollup.model: slot("model"),
                                        DailyRollup.operation: slot("operation")})


def _chat_rollup_statement() -> Prepared:
    return _rollup_upsert(ChatRollup, {ChatRollup.day: slot("day"), ChatRollup.key: slot("key"),
                                       ChatRollup.bot: slot("bot"), ChatRollup.chat_id: slot("chat_id")})


def _rollup_upsert(model, identity: dict) -> Prepared:
    sums = {getattr(model, column): slot(name) for column, name in _ROLLUP_SUMS.items()}
    return Prepared(model.insert({**identity, **sums})
                    .on_conflict(update={column: column + value for column, value in sums.items()},
                                 **conflict_target(database.obj, list(identity)))
                    .returning())


class Accountant:
    """Records calls for one process: knows its bot name, prices and the keys' anchors.

    `record` is for blocking callers and retries by itself; `arecord` runs one attempt at a
    time on the process's `DatabaseExecutor`, which owns the retry policy, so the bot's
    event loop never waits on the database and no retries are stacked inside one another.
    Without an executor given, the Accountant makes one of its own (and closes it).
    """

    def __init__(self, bot: str, pricer: Pricer | None = None, *, executor: DatabaseExecutor | None = None,
                 retry_attempts: int = 8, journal: CallJournal | None = None, inflight: InFlight | None = None):
        self.bot = bot
        self.pricer = pricer or Pricer()
        self.retry_attempts = retry_attempts
        self._anchors: dict[int, dt.datetime] = {}
        self._owns_executor = executor is None
        self.executor = executor or DatabaseExecutor(attempts=retry_attempts)
        # Served calls the database could not book wait here (see shared.core.journal).
        self.journal = journal
        self._journal_pending = journal is not None and journal.path.exists()
        # Calls neither the database nor the journal would take: kept here, and while there
        # are any, no new call is sent (see `can_book`).
        self._held: list[CallRecord] = []
        self._next_probe = 0.0
        self._paused_at: dt.datetime | None = None
        # Calls written down before they are sent (see shared.core.inflight).
        self.inflight = inflight
        self._orphans_settled = inflight is None

    def anchor(self, key_id: int, db: pw.Database | None = None) -> dt.datetime:
        anchor = self._anchors.get(key_id)
        if anchor is None:
            anchor = ApiKey.select(ApiKey.window_anchor).where(ApiKey.id == key_id).scalar(db)
            if anchor is None:
                raise LookupError(f"no key with id {key_id}")
            self._anchors[key_id] = anchor
        return anchor

    def load_anchors(self, key_ids: list[int]) -> None:
        """Read the window anchors of `key_ids` now, in one query (at start), so the first call
        of each key does not build and run its own lookup (`anchor`)."""
        missing = [i for i in key_ids if i not in self._anchors]
        if missing:
            query = ApiKey.select(ApiKey.id, ApiKey.window_anchor).where(ApiKey.id.in_(missing))
            self._anchors.update((row.id, row.window_anchor) for row in query)

    def record_once(self, call: CallRecord, db: pw.Database | None = None) -> Recorded:
        """One attempt at recording `call` on `db` (default: this thread's connection);
        transient errors are the caller's to retry."""
        return record_call(call, anchor=self.anchor(call.key_id, db), pricer=self.pricer, db=db)

    def record(self, call: CallRecord) -> Recorded:
        return retrying(self.record_once, call, attempts=self.retry_attempts, what="recording a call")

    def intend(self, call: CallRecord) -> None:
        """Before `call` is sent: write down its estimated charge, booked by the next start if
        this process dies before `arecord` has it (needs an InFlight; else nothing)."""
        if self.inflight is not None:
            self.inflight.intend(call)

    async def arecord(self, call: CallRecord) -> Recorded:
        """Book `call`; when the database cannot take it after every retry, keep it in the
        journal (if this Accountant has one) and book it once the database is back."""
        recorded = await self._arecord(call)
        if self.inflight is not None:
            self.inflight.done(call.call_id)
        return recorded

    async def _arecord(self, call: CallRecord) -> Recorded:
        try:
            # With a journal, a database locked past its busy timeout (a frozen writer) sends
            # the call to the journal at once instead of holding it for every retry.
            # On SQLite the booking (and the settling of its hold, in the same transaction)
            # may be done at once on the loop's thread (run_inline).
            recorded = await self.executor.run_inline(self.record_once, call, what="recording a call",
                                                      retry_locked=self.journal is None)
        except (DatabaseUnavailable, *TRANSIENT_ERRORS) as exc:
            if self.journal is None:
                raise
            usage = call.usage
            cost = self.pricer.cost_nanousd(call.model, usage.input, usage.cached, usage.output)
            try:
                self.journal.append(call)
            except JournalUnwritable as unwritable:
                self._hold(call, exc, unwritable)
                return Recorded(call.call_id, cost, held=True)
            if not self._journal_pending:
                log.warning("the database cannot book calls (%s); keeping them in %s until it can",
                            first_line(exc), self.journal.path)
            self._journal_pending = True
            return Recorded(call.call_id, cost, journaled=True)
        if self._journal_pending or not self._orphans_settled:
            await self.settle_journal()
        return recorded

    def _hold(self, call: CallRecord, db_error: BaseException, journal_error: BaseException) -> None:
        if not self._held:
            log.error("calls cannot be booked anywhere: the database (%s) and the call journal (%s) both refuse "
                      "writes; no new calls are sent until one of them takes writes again",
                      first_line(db_error), journal_error)
            self._paused_at = utcnow()
        self._held.append(call)
        self._next_probe = time.monotonic() + HELD_PROBE_SECONDS

    def _alert_pause(self, resumed_at: dt.datetime) -> None:
        """The owner's one alert about the pause, once the database can hold it again."""
        since = self._paused_at or resumed_at
        text = (f"⏸ {self.bot}: served calls could be booked neither in the database nor in the local journal "
                f"from {since:%H:%M:%S} to {resumed_at:%H:%M:%S} UTC; no new calls (and no auto-replies) were sent "
                "meanwhile. Booking works again and sending has resumed.")
        enqueue_alert("booking_paused", f"booking_paused:{self.bot}:{since.isoformat()}", text)

    @property
    def booking_paused(self) -> bool:
        """True while served calls wait in memory because nothing would take them."""
        return bool(self._held)

    async def can_book(self) -> bool:
        """Whether a new call may be sent: nothing waits in memory, or (tried at most once every
        HELD_PROBE_SECONDS) what waited went to the database or the journal just now."""
        if not self._held:
            return True
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + HELD_PROBE_SECONDS
        while self._held:
            call = self._held[0]
            try:
                await self.executor.run_once(self.record_once, call)
            except TRANSIENT_ERRORS:
                await self.executor.run_once(drop_connection)
                try:
                    if self.journal is None:
                        return False
                    self.journal.append(call)
                    self._journal_pending = True
                except JournalUnwritable:
                    return False
            self._held.pop(0)
        log.warning("calls can be booked again; sending resumes")
        try:
            await self.executor.run_once(self._alert_pause, utcnow())
        except TRANSIENT_ERRORS as exc:          # the journal took the calls; the database is still away
            log.info("the alert about the pause waits for the database (%s)", first_line(exc))
        else:
            self._paused_at = None
        return True

    async def settle_journal(self) -> int:
        """Book the journaled calls now (idempotently); returns how many were booked. Then, once,
        what dead processes of this bot left in flight (see shared.core.inflight): after the
        journal, so a call journaled with its real usage is never booked as an estimate first."""
        booked = 0
        if self.journal is not None:
            try:
                booked = await self.executor.run_once(self.journal.replay, self.record_once)
            except (DatabaseUnavailable, *TRANSIENT_ERRORS) as exc:
                log.info("the journaled calls wait for the database (%s)", first_line(exc))
                return 0
            self._journal_pending = bool(self.journal.pending())
        if self.inflight is not None and not self._orphans_settled and not self._journal_pending:
            from shared.core.inflight import settle_orphans
            try:
                await self.executor.run(settle_orphans, self.inflight.folder, self.bot, self.record_once,
                                        what="booking calls a dead process left in flight")
                self._orphans_settled = True
            except DatabaseUnavailable as exc:
                log.info("the calls a dead process left in flight wait for the database (%s)", first_line(exc))
        return booked

    async def run(self, fn, *args):
        """Run any other blocking database function on the executor's thread."""
        return await self.executor.run(fn, *args)

    def close(self) -> None:
        if self._owns_executor:
            self.executor.close()
