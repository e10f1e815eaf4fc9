"""The failover loop: pick a key, send, classify, record, move on (docs/design.md invariants 4 and 12).

The loop knows nothing of a provider's dialect: the `Dialect` sends and classifies, the
loop acts on the neutral `Failure`:

- RATE_LIMITED: the key cools down until the headers say (else exponential backoff);
  next key at once.
- QUOTA_EXHAUSTED: the key is exhausted for its window; next key at once.
- INVALID_KEY / MISCONFIGURED: the key is unusable until fixed (the worker alerts once,
  `doctor` names it); next key at once.
- BAD_REQUEST: the request's fault; raised as `RequestRejected` without rotation, unless
  it says the key does not serve the model: then the next key (another provider) is tried.
- SERVER_ERROR, TIMEOUT, CONNECTION_ERROR: retried on the same key with backoff, then the
  next key. A timeout after sending is recorded with an estimated prompt charge.

Each model of the request's chain is tried in turn: when no key can serve the first, the
next is used. At most `client.max_attempts` keys are tried per model. Every attempt is
recorded through the Accountant with the model actually used; the steps are kept on the
request for `tokenpool ask`.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from shared.ai.dialect import Answer, Dialect, Failure, ProviderFailure, Sent
from shared.ai.errors import (
    BookingPaused,
    BudgetExceeded,
    NoKeyAvailable,
    ProviderUnavailable,
    RequestRejected,
)
from shared.ai.rate_limits import paced_until
from shared.ai.selection import Pick, Selector
from shared.ai.token_estimates import estimate_text_tokens
from shared.core.accounting import (
    Accountant,
    CallRecord,
    Outcome,
    RateLimitSnapshot,
    Recorded,
)
from shared.core.allowances import AllowanceFull, AllowanceRef, Hold, reserve
from shared.core.backoff import backoff_delay
from shared.core.budget_holds import BudgetFull, BudgetLimit, enforced_limits
from shared.core.config import Config
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import HeldKey, KeyRing
from shared.core.models import utcnow
from shared.core.pricing import format_usd, nano_to_usd
from shared.core.usage import NO_USAGE, Usage
from shared.core.windows import format_duration
from shared.core.worker_nudge import notify_worker

log = logging.getLogger("tokenpool.client")
calls_log = logging.getLogger("tokenpool.calls")

MAX_COOLDOWN = dt.timedelta(minutes=10)   # cap of the exponential cooldown (headers may say longer)
MAX_RETRY_BACKOFF_SECONDS = 60.0          # cap of the wait between retries of a 5xx on one key
ROTATING = frozenset({Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED, Outcome.INVALID_KEY, Outcome.MISCONFIGURED})
RETRYING = frozenset({Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.CONNECTION_ERROR})


@dataclass(frozen=True)
class Step:
    """One attempt of a request, as `tokenpool ask` shows it."""
    key_label: str
    model: str
    outcome: str
    error_code: str = ""


@dataclass
class Request:
    """One logical call: what the caller asked for, and what its attempts did."""
    messages: list
    operation: str
    models: tuple[str, ...]        # the fallback chain, first choice first
    chat_id: int | None
    params: dict
    stream: bool = False
    prompt_estimate: int = 0
    steps: list[Step] = field(default_factory=list)


@dataclass
class Attempt:
    """A request accepted by one key: the key, the model, when it went out, the reply."""
    key: HeldKey
    model: str
    at: dt.datetime
    started: float
    sent: Sent | None = None
    answer: Answer | None = None     # None for a stream until it ends
    hold: Hold | None = None         # its reservation against the key's allowances
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)   # the one it is booked under


@dataclass(frozen=True)
class Holding:
    """What one call holds before it is sent: `reserve`'s arguments but the moment."""
    refs: list[AllowanceRef]
    tokens: int
    ttl: dt.timedelta
    key_id: int | None
    budgets: list[BudgetLimit]
    cost_nanousd: int

    def arguments(self, now: dt.datetime) -> tuple[list[AllowanceRef], int, dt.datetime, dt.timedelta, int | None,
                                                   list[BudgetLimit], int]:
        return self.refs, self.tokens, now, self.ttl, self.key_id, self.budgets, self.cost_nanousd


@dataclass(frozen=True)
class Settled:
    """What a finished attempt was recorded as."""
    usage: Usage
    estimated: bool
    duration_ms: int
    recorded: Recorded


class Failover:
    """Sends requests across the key pool through one dialect; see the module docstring."""

    def __init__(self, config: Config, keyring: KeyRing, accountant: Accountant, dialect: Dialect,
                 *, database: DatabaseExecutor | None = None):
        self.config = config
        self.keyring = keyring
        self.accountant = accountant
        # The process's database thread: picks and records go through it in order (see _pick).
        self.database = database or accountant.executor
        self.dialect = dialect
        self.selector = Selector(config, keyring)
        self._rate_hits: dict[int, int] = {}     # consecutive 429s per key, for the backoff
        # Keys whose 429/401 is being recorded right now: concurrent requests skip them at once,
        # rather than picking them from rows that do not show the failure yet.
        self._failing: collections.Counter = collections.Counter()
        self.calls_log = calls_log               # each attempt's console line (a rehearsal's: none)

    async def send(self, request: Request) -> Attempt:
        """The first attempt some key accepts, trying each model of the chain in turn.
        Non-streamed answers are read here, so an unreadable one fails over too. Nothing is
        sent while served calls cannot be booked anywhere (BookingPaused)."""
        if not await self.accountant.can_book():
            raise BookingPaused("no call is sent while served calls cannot be booked anywhere (the database "
                                "and the call journal both refuse writes); sending resumes once one takes writes")
        errors: list[NoKeyAvailable | RequestRejected] = []
        for i, model in enumerate(request.models):
            try:
                return await self._send_model(request, model)
            except BudgetExceeded:
                raise                   # a cheaper model would cross the same budget
            except NoKeyAvailable as exc:
                errors.append(exc)
            except RequestRejected as exc:
                if not exc.model_unserved:
                    raise
                errors.append(exc)
            if i + 1 < len(request.models):
                log.info("%s: no key can serve %s now (%s); falling back to %s", request.operation, model,
                         errors[-1], request.models[i + 1])
        raise _combined(request.models, errors)

    def stream(self, attempt: Attempt) -> AsyncGenerator[str | Answer, None]:
        """The text deltas of a streamed attempt, then its Answer (see Dialect.stream)."""
        if attempt.sent is None:
            raise RuntimeError("streaming an attempt that was never sent")   # send() always sets it
        return self.dialect.stream(attempt.sent)

    async def settle(self, request: Request, attempt: Attempt, answer: Answer, *, outcome: Outcome = Outcome.OK,
                     error_code: str = "") -> Settled:
        """Record a finished attempt with the answer's usage, or an estimate when it has none
        that can be believed (flagged `estimated`, with the reason in error_code)."""
        duration_ms = _ms_since(attempt.started)
        usage, estimated = answer.usage, answer.usage is None
        if usage is None:
            usage = Usage(request.prompt_estimate, 0, estimate_text_tokens(answer.text), 0)
        if answer.usage_problem and not error_code:
            error_code = answer.usage_problem
        headers = attempt.sent.headers if attempt.sent is not None else {}
        limits = self.dialect.rate_limits(headers, attempt.at)
        # Pacing counts the reset from now, when the response came (read again only if it applies).
        paced = paced_until(self.dialect.rate_limits(headers, utcnow())) if paced_until(limits) else None
        recorded = await self.record(request, attempt, outcome, usage=usage, estimated=estimated,
                                     error_code=error_code, duration_ms=duration_ms, rate_limits=limits,
                                     cooldown_until=paced)
        if outcome is Outcome.OK:
            self._rate_hits.pop(attempt.key.id, None)
        return Settled(usage, estimated, duration_ms, recorded)

    async def record(self, request: Request, attempt: Attempt, outcome: Outcome, *, usage: Usage = NO_USAGE,
                     estimated: bool = False, error_code: str = "", cooldown_until: dt.datetime | None = None,
                     rate_limits: RateLimitSnapshot | None = None, duration_ms: int | None = None) -> Recorded:
        if duration_ms is None:
            duration_ms = _ms_since(attempt.started)
        call = CallRecord(key_id=attempt.key.id, bot=self.config.bot.name, operation=request.operation,
                          model=attempt.model, outcome=outcome, input_tokens=usage.input,
                          cached_tokens=usage.cached, output_tokens=usage.output, reasoning_tokens=usage.reasoning,
                          duration_ms=duration_ms, error_code=error_code, chat_id=request.chat_id,
                          estimated=estimated, at=attempt.at, cooldown_until=cooldown_until,
                          rate_limits=rate_limits, hold=attempt.hold, call_id=attempt.call_id)
        recorded = await self.accountant.arecord(call)
        request.steps.append(Step(attempt.key.label, attempt.model, outcome.value, error_code))
        _log_call(self.calls_log, call, attempt.key, recorded.cost_nanousd)
        return recorded

    # --- one model ------------------------------------------------------------------------------

    async def _send_model(self, request: Request, model: str) -> Attempt:
        """Send to one key after another until one answers; record every failure."""
        tried: set[int] = set()
        last: Failure | None = None
        full: list[AllowanceFull] = []
        budget_full: list[BudgetFull] = []
        for _ in range(self.config.client.max_attempts):
            pick = await self._pick(model, tried)
            if pick.key is None:
                raise _no_key_error(pick, last, full)
            key = pick.key
            tried.add(key.id)
            for retry in range(self.config.client.server_error_retries + 1):
                if retry:
                    await asyncio.sleep(backoff_delay(retry, self.config.client.retry_backoff_seconds,
                                                      MAX_RETRY_BACKOFF_SECONDS))
                    if not await self.database.run(self.selector.still_usable, key.id, utcnow(),
                                                   what="checking a key"):
                        break
                try:
                    hold = await self._reserve(request, key, model, pick.left)
                except BudgetFull as exc:
                    request.steps.append(Step(key.label, model, "budget_full", exc.budget.scope))
                    if exc.pool_wide:       # no other key can help
                        raise BudgetExceeded(str(exc), exc.frees_up_at, exc.dedupe_key) from None
                    budget_full.append(exc)
                    break
                except AllowanceFull as exc:
                    full.append(exc)
                    request.steps.append(Step(key.label, model, "allowance_full", exc.allowance.name))
                    break
                answer = await self._attempt(request, key, model, hold)
                if isinstance(answer, Attempt):
                    return answer
                last = answer
                if answer.outcome not in RETRYING:
                    break
            if last is not None and last.outcome is Outcome.BAD_REQUEST and not last.other_keys_may_serve:
                raise RequestRejected(last.message, last.status or 0, last.error_code)
        pick = await self._pick(model, tried)
        if budget_full and last is None and not full:
            first = budget_full[0]
            raise BudgetExceeded(str(first), first.frees_up_at, first.dedupe_key)
        raise _no_key_error(Pick(None, frees_up_at=pick.frees_up_at, reason=f"{len(tried)} keys tried, "
                                                                             "none answered"), last, full)

    async def _reserve(self, request: Request, key: HeldKey, model: str, left: int | None = None) -> Hold | None:
        """Hold the call's worst case against the allowances it draws on and the key's own
        daily limit (AllowanceFull if one has no room); None when there is nothing to hold.
        On SQLite done at once on the loop's thread when nothing waits (run_inline: a write
        lock held elsewhere sends it to the database thread, which waits for it)."""
        holding = self.holding(request.prompt_estimate, request.params, key, model, left)
        if holding is None:
            return None
        return await self.database.run_inline(reserve, *holding.arguments(utcnow()),
                                              what="reserving against an allowance")

    def holding(self, prompt_estimate: int, params: dict, key: HeldKey, model: str,
                left: int | None = None) -> Holding | None:
        """What a call of `model` on `key` holds (see `_reserve`), or None when nothing. The key's
        limit is held only once fewer than `pool.low_threshold` tokens are left: further from
        it, no burst of calls in flight can pass it, and the hold's extra write is saved."""
        refs = key.allowances_for(model)
        on_key = self.config.client.reserve_key_limits and (left is None or left < self.config.pool.low_threshold)
        budgets = enforced_limits(self.config, key.id, key.label)
        if not refs and not on_key and not budgets:
            return None
        output = params.get("max_completion_tokens") or self.config.client.reserve_output_tokens
        cost = self.accountant.pricer.cost_nanousd(model, prompt_estimate, 0, output) if budgets else 0
        return Holding(refs, prompt_estimate + output, dt.timedelta(seconds=self.config.client.reservation_ttl_seconds),
                       key.id if on_key else None, budgets, cost)

    async def _pick(self, model: str, tried: set[int]) -> Pick:
        """The next key for `model`: not tried yet, not blocked here, usable by its row."""
        while True:
            pick = await self.database.run_inline(self.selector.pick, utcnow(), tried | set(self._failing), model,
                                                 what="choosing a key")
            # A failure may have come in while the pick waited its turn on the database thread.
            # (Picks and records share that thread in order, so once a failure's record is done,
            # every later pick reads the row that shows it.)
            if pick.key is None or pick.key.id not in self._failing:
                return pick

    async def _attempt(self, request: Request, key: HeldKey, model: str,
                       hold: Hold | None = None) -> Attempt | Failure:
        """One request to one key: the accepted attempt, or the failure (already recorded)."""
        attempt = Attempt(key, model, utcnow(), time.perf_counter(), hold=hold)
        # Written down before it goes: a crash before it is booked leaves an estimated charge.
        self.accountant.intend(CallRecord(key_id=key.id, bot=self.config.bot.name, operation=request.operation,
                                          model=model, outcome=Outcome.INTERRUPTED,
                                          input_tokens=request.prompt_estimate, estimated=True,
                                          error_code="process_died", chat_id=request.chat_id, at=attempt.at,
                                          hold=hold, call_id=attempt.call_id))
        try:
            attempt.sent = await self.dialect.send(key, model, request.messages, request.params,
                                                   stream=request.stream)
            if not request.stream:
                attempt.answer = await self.dialect.answer(attempt.sent)
        except ProviderFailure as exc:
            failure = exc.failure
        except asyncio.CancelledError:
            # The caller gave up mid-request; the provider may have billed the prompt.
            await asyncio.shield(self.record(request, attempt, Outcome.INTERRUPTED,
                                             usage=Usage(request.prompt_estimate), estimated=True,
                                             error_code="cancelled"))
            raise
        else:
            return attempt
        await self._record_failure(request, attempt, failure)
        return failure

    async def _record_failure(self, request: Request, attempt: Attempt, failure: Failure) -> None:
        key, headers = attempt.key, failure.headers
        cooldown = None
        if failure.outcome is Outcome.RATE_LIMITED:
            cooldown = self.dialect.cooldown_ends_at(headers, attempt.at) or self._backoff_cooldown(key.id,
                                                                                                    attempt.at)
            self._rate_hits[key.id] = self._rate_hits.get(key.id, 0) + 1
        rotating = failure.outcome in ROTATING
        if rotating:
            self._failing[key.id] += 1
        try:
            await self.record(request, attempt, failure.outcome,
                              usage=Usage(request.prompt_estimate) if failure.charged else NO_USAGE,
                              estimated=failure.charged, error_code=failure.error_code, cooldown_until=cooldown,
                              rate_limits=self.dialect.rate_limits(headers, attempt.at))
            if rotating:
                await self._wake_worker()
        finally:
            if rotating:
                self._failing[key.id] -= 1
                if self._failing[key.id] <= 0:
                    del self._failing[key.id]

    async def _wake_worker(self) -> None:
        """The key's state changed: let the worker re-rank now, not at its next tick."""
        try:
            await self.database.run_once(notify_worker)
        except Exception as exc:  # a wake-up is an optimisation; the tick catches up anyway
            log.debug("could not wake the worker: %s", exc)

    def _backoff_cooldown(self, key_id: int, at: dt.datetime) -> dt.datetime:
        seconds = backoff_delay(self._rate_hits.get(key_id, 0) + 1, self.config.client.rate_limit_cooldown_seconds,
                                MAX_COOLDOWN.total_seconds())
        return at + dt.timedelta(seconds=seconds)


# --- pure helpers ---------------------------------------------------------------------------

def _no_key_error(pick: Pick, last: Failure | None,
                  full: list[AllowanceFull] | None = None) -> NoKeyAvailable | RequestRejected:
    if full and (last is None or last.outcome not in RETRYING):
        names = ", ".join(dict.fromkeys(f.allowance.described for f in full))
        frees = min([f.frees_up_at for f in full] + ([pick.frees_up_at] if pick.frees_up_at else []))
        return NoKeyAvailable(f"No API key can take this call now: {names} is used up for its window "
                              f"(frees up in {format_duration(frees - utcnow())}, at {frees:%H:%M} UTC).", frees)
    if last is not None and last.other_keys_may_serve:
        return RequestRejected(last.message, last.status or 0, last.error_code, model_unserved=True)
    if last is not None and last.outcome in RETRYING:
        return ProviderUnavailable(f"The AI service is not answering right now ({last.error_code}); "
                                   "try again later.", pick.frees_up_at)
    message = f"No API key can take this call now: {pick.reason}."
    if pick.frees_up_at is not None:
        wait = format_duration(pick.frees_up_at - utcnow())
        message += f" The first one frees up in {wait} (at {pick.frees_up_at:%H:%M} UTC)."
    return NoKeyAvailable(message, pick.frees_up_at)


def _combined(models: tuple[str, ...], errors: list) -> Exception:
    """One error for a chain whose every model failed: the first model's, unless a later one
    says more (a key that will free up)."""
    if len(errors) == 1:
        return errors[0]
    waits = [e.frees_up_at for e in errors if isinstance(e, NoKeyAvailable) and e.frees_up_at is not None]
    first = errors[0]
    detail = "; ".join(f"{m}: {e}" for m, e in zip(models, errors))
    if isinstance(first, RequestRejected):
        return RequestRejected(f"No model of the chain could be served. {detail}", first.status, first.code,
                               model_unserved=True)
    kind = ProviderUnavailable if all(isinstance(e, ProviderUnavailable) for e in errors) else NoKeyAvailable
    return kind(f"No model of the chain could be served now. {detail}", min(waits) if waits else None)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _log_call(calls_log: logging.Logger, call: CallRecord, key: HeldKey, cost_nanousd: int) -> None:
    """`operation | model | key | in X (cached Y) out Z | $cost | N ms | outcome`."""
    if not calls_log.isEnabledFor(logging.INFO):
        return
    approx = "~" if call.estimated else ""
    outcome = call.outcome.value + (f": {call.error_code}" if call.error_code else "")
    level = logging.INFO if call.outcome in (Outcome.OK, Outcome.INTERRUPTED) else logging.WARNING
    calls_log.log(level, "%s | %s | %s %s | in %s%d (cached %d) out %s%d | %s | %d ms | %s",
                  call.operation, call.model, key.label, key.masked, approx, call.input_tokens,
                  call.cached_tokens, approx, call.output_tokens, _call_cost(cost_nanousd), call.duration_ms,
                  outcome)


def _call_cost(nano: int) -> str:
    """One call's cost: cents are too coarse for a single call, so small sums get 6 decimals."""
    if nano >= 10_000_000:
        return format_usd(nano)
    return f"${nano_to_usd(nano):.6f}"
