"""The tracked OpenAI client: the one path every AI call in tokenpool takes.

A call goes to the first usable key (selection.py), through the official `openai`
package with its own retries off (`max_retries=0`, so no 429 is hidden from us), and
every attempt is recorded through the Accountant with the caller's operation label,
its duration, outcome, usage and the rate-limit headers. On failure:

- 429 rate_limit_exceeded: the key cools down until the headers say (retry-after,
  else the reset of the limit that ran out, else exponential backoff); next key at once.
- 429 insufficient_quota: the key is exhausted for its window; next key at once.
- 401: the key is INVALID until re-enabled; next key at once.
- 400/403/404/409/422 with an API error body: the request's fault, not the key's:
  recorded, no rotation, `RequestRejected` raised.
- 5xx, timeouts, connection errors (and a base_url that is no OpenAI endpoint): retried
  on the same key with backoff (`client.server_error_retries`), then the next key.

At most `client.max_attempts` keys are tried per request. Errors never count tokens; a
response that carried usage is recorded before anything else is done with it.
"""
from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import openai

from shared.ai.rate_limits import rate_limit_ends_at, rate_limit_snapshot
from shared.ai.selection import Pick, Selector
from shared.ai.token_estimates import estimate_prompt_tokens, estimate_text_tokens
from shared.core.accounting import (
    Accountant,
    CallRecord,
    Outcome,
    RateLimitSnapshot,
    Recorded,
)
from shared.core.backoff import backoff_delay
from shared.core.config import Config
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import HeldKey, KeyRing
from shared.core.models import utcnow
from shared.core.pricing import format_usd, nano_to_usd
from shared.core.windows import format_duration
from shared.core.worker_nudge import notify_worker

log = logging.getLogger("tokenpool.client")
calls_log = logging.getLogger("tokenpool.calls")

MAX_COOLDOWN = dt.timedelta(minutes=10)   # cap of the exponential cooldown (headers may say longer)
MAX_RETRY_BACKOFF_SECONDS = 60.0          # cap of the wait between retries of a 5xx on one key
ROTATING = frozenset({Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED, Outcome.INVALID_KEY})
RETRYING = frozenset({Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.CONNECTION_ERROR})


class ClientError(Exception):
    """A call could not be answered; the message is written for the user."""


class NoKeyAvailable(ClientError):
    """No key can take a call now. `frees_up_at` (naive UTC) is when the first one can,
    or None when none will by itself (all invalid or disabled)."""

    def __init__(self, message: str, frees_up_at: dt.datetime | None = None):
        super().__init__(message)
        self.frees_up_at = frees_up_at


class ProviderUnavailable(NoKeyAvailable):
    """Every key tried failed with server errors, timeouts or connection errors.

    A NoKeyAvailable, so callers that fall back when no key can serve handle this too."""


class RequestRejected(ClientError):
    """The API refused the request itself (bad model, bad input); another key would not help."""

    def __init__(self, message: str, status: int, code: str):
        super().__init__(message)
        self.status = status
        self.code = code


class StreamInterrupted(ClientError):
    """A stream broke off before it finished; `partial_text` is what arrived."""

    def __init__(self, message: str, partial_text: str):
        super().__init__(message)
        self.partial_text = partial_text


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    key_label: str
    input_tokens: int          # includes cached tokens
    cached_tokens: int
    output_tokens: int         # includes reasoning tokens
    duration_ms: int
    call_id: str
    estimated: bool
    reasoning_tokens: int = 0
    cost_nanousd: int = 0
    finish_reason: str = ""


@dataclass
class _Request:
    """One logical call: what the caller asked for, and what each attempt needs."""
    messages: list
    operation: str
    model: str
    chat_id: int | None
    params: dict
    stream: bool = False
    prompt_estimate: int = 0
    tried: set = field(default_factory=set)


@dataclass
class _Attempt:
    key: HeldKey
    at: dt.datetime
    started: float
    raw: object


@dataclass(frozen=True)
class _Failure:
    outcome: Outcome
    error_code: str
    message: str
    status: int | None = None
    headers: dict | None = None


class TrackedClient:
    """Chat completions across the key pool, every attempt accounted."""

    def __init__(self, config: Config, keyring: KeyRing, accountant: Accountant,
                 database: DatabaseExecutor | None = None):
        self.config = config
        self.keyring = keyring
        self.accountant = accountant
        # Picks and records go through the same database thread, in order (see _pick).
        self.database = database or accountant.executor
        self.selector = Selector(config, keyring)
        self._clients: dict[int, openai.AsyncOpenAI] = {}
        # One HTTP connection pool for every key's client: each pool of its own would load the
        # CA bundle into a TLS context of its own (~0.9 MB per key).
        self._http: openai.DefaultAsyncHttpxClient | None = None
        self._rate_hits: dict[int, int] = {}     # consecutive 429s per key, for the backoff
        # Keys whose 429/401 is being recorded right now: concurrent requests skip them at once,
        # rather than picking them from rows that do not show the failure yet.
        self._failing: collections.Counter = collections.Counter()

    # --- public API ---------------------------------------------------------------------

    async def chat(self, messages: list[dict], *, operation: str, model: str | None = None,
                   chat_id: int | None = None, max_tokens: int | None = None, **extra) -> ChatResult:
        """One chat completion; returns its text and accounting. Raises a ClientError subclass."""
        request = self._request(messages, operation, model, chat_id, max_tokens, extra, stream=False)
        attempt = await self._send(request)
        duration_ms = _ms_since(attempt.started)
        try:
            completion = attempt.raw.parse()
        except Exception as exc:  # a 200 we cannot read: the provider's fault, treated like a 5xx
            await self._record(request, attempt.key, attempt.at, attempt.started, Outcome.SERVER_ERROR,
                               error_code=f"unreadable response: {type(exc).__name__}")
            raise ProviderUnavailable("The AI service sent an answer that could not be read.") from exc
        usage = _usage_numbers(completion.usage)
        estimated = usage is None
        if estimated:
            text = _completion_text(completion)
            usage = (request.prompt_estimate, 0, estimate_text_tokens(text), 0)
        recorded = await self._record(request, attempt.key, attempt.at, attempt.started, Outcome.OK,
                                      usage=usage, estimated=estimated, duration_ms=duration_ms,
                                      rate_limits=rate_limit_snapshot(attempt.raw.headers, attempt.at))
        self._rate_hits.pop(attempt.key.id, None)
        choice = completion.choices[0] if completion.choices else None
        return ChatResult(text=_completion_text(completion), model=request.model, key_label=attempt.key.label,
                          input_tokens=usage[0], cached_tokens=usage[1], output_tokens=usage[2],
                          reasoning_tokens=usage[3], duration_ms=duration_ms,
                          call_id=recorded.call_id, estimated=estimated, cost_nanousd=recorded.cost_nanousd,
                          finish_reason=(choice.finish_reason or "") if choice else "")

    def stream(self, messages: list[dict], *, operation: str, model: str | None = None,
               chat_id: int | None = None, max_tokens: int | None = None, **extra) -> ChatStream:
        """Stream a chat completion: `async with client.stream(...) as s: async for text in s`.

        Usage comes from the final chunk; a stream that ends without it (cut, or the
        consumer stopped early) is recorded with an estimate flagged `estimated`.
        `s.result` holds the ChatResult once the stream has ended."""
        request = self._request(messages, operation, model, chat_id, max_tokens, extra, stream=True)
        return ChatStream(self, request)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._http = None
        for client in clients:
            await client.close()       # the shared pool: closing it again is a no-op

    # --- sending with failover -------------------------------------------------------------

    def _request(self, messages, operation, model, chat_id, max_tokens, extra, *, stream) -> _Request:
        params = dict(extra)
        if max_tokens is not None:
            params["max_completion_tokens"] = max_tokens
        if stream:
            params["stream"] = True
            params["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
        return _Request(messages=messages, operation=operation, model=model or self.config.client.default_model,
                        chat_id=chat_id, params=params, stream=stream,
                        prompt_estimate=estimate_prompt_tokens(messages if isinstance(messages, list) else []))

    def _client(self, key: HeldKey) -> openai.AsyncOpenAI:
        client = self._clients.get(key.id)
        if client is None:
            if self._http is None:
                self._http = openai.DefaultAsyncHttpxClient()
            client = self._clients[key.id] = openai.AsyncOpenAI(
                api_key=key.secret, base_url=key.base_url or None, max_retries=0,
                timeout=self.config.client.timeout_seconds, http_client=self._http)
        return client

    async def _send(self, request: _Request) -> _Attempt:
        """Send to one key after another until one answers; record every failure."""
        last: _Failure | None = None
        for _ in range(self.config.client.max_attempts):
            pick = await self._pick(request)
            if pick.key is None:
                raise _no_key_error(pick, last)
            key = pick.key
            request.tried.add(key.id)
            for retry in range(self.config.client.server_error_retries + 1):
                if retry:
                    await asyncio.sleep(backoff_delay(retry, self.config.client.retry_backoff_seconds,
                                                      MAX_RETRY_BACKOFF_SECONDS))
                    if not await self.database.run(self.selector.still_usable, key.id, utcnow(),
                                                    what="checking a key"):
                        break
                attempt, failure = await self._attempt(request, key)
                if failure is None:
                    return attempt
                last = failure
                if failure.outcome not in RETRYING:
                    break
            if last.outcome is Outcome.BAD_REQUEST:
                raise RequestRejected(last.message, last.status or 0, last.error_code)
        pick = await self._pick(request)
        raise _no_key_error(Pick(None, frees_up_at=pick.frees_up_at, reason=f"{len(request.tried)} keys tried, "
                                                                             "none answered"), last)

    async def _pick(self, request: _Request) -> Pick:
        """The next key for `request`: not tried yet, not blocked here, usable by its row."""
        while True:
            pick = await self.database.run(self.selector.pick, utcnow(), request.tried | set(self._failing),
                                           what="choosing a key")
            # A failure may have come in while the pick waited its turn on the database thread.
            # (Picks and records share that thread in order, so once a failure's record is done,
            # every later pick reads the row that shows it.)
            if pick.key is None or pick.key.id not in self._failing:
                return pick

    async def _attempt(self, request: _Request, key: HeldKey) -> tuple[_Attempt | None, _Failure | None]:
        at, started = utcnow(), time.perf_counter()
        try:
            raw = await self._client(key).chat.completions.with_raw_response.create(
                model=request.model, messages=request.messages, **request.params)
        except openai.APIStatusError as exc:
            failure = _classify_status(exc)
        except openai.APITimeoutError:
            failure = _Failure(Outcome.TIMEOUT, "timeout", "The AI service did not answer in time.")
        except openai.APIConnectionError as exc:
            failure = _Failure(Outcome.CONNECTION_ERROR, "connection error",
                               f"Could not reach the AI service at {key.base_url or 'api.openai.com'}: "
                               f"{_cause(exc)}")
        except asyncio.CancelledError:
            # The caller gave up mid-request; the provider may have billed the prompt.
            await asyncio.shield(self._record(request, key, at, started, Outcome.INTERRUPTED,
                                              usage=(request.prompt_estimate, 0, 0, 0), estimated=True,
                                              error_code="cancelled"))
            raise
        else:
            return _Attempt(key, at, started, raw), None
        await self._record_failure(request, key, at, started, failure)
        return None, failure

    async def _record_failure(self, request, key, at, started, failure: _Failure) -> None:
        headers = failure.headers or {}
        cooldown = None
        if failure.outcome is Outcome.RATE_LIMITED:
            cooldown = rate_limit_ends_at(headers, at) or self._backoff_cooldown(key.id, at)
            self._rate_hits[key.id] = self._rate_hits.get(key.id, 0) + 1
        rotating = failure.outcome in ROTATING
        if rotating:
            self._failing[key.id] += 1
        try:
            await self._record(request, key, at, started, failure.outcome, error_code=failure.error_code,
                               cooldown_until=cooldown, rate_limits=rate_limit_snapshot(headers, at))
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

    async def _record(self, request: _Request, key: HeldKey, at: dt.datetime, started: float, outcome: Outcome,
                      *, usage: tuple[int, int, int, int] = (0, 0, 0, 0), estimated: bool = False,
                      error_code: str = "", cooldown_until: dt.datetime | None = None,
                      rate_limits: RateLimitSnapshot | None = None, duration_ms: int | None = None) -> Recorded:
        if duration_ms is None:
            duration_ms = _ms_since(started)
        call = CallRecord(key_id=key.id, bot=self.config.bot.name, operation=request.operation,
                          model=request.model, outcome=outcome, input_tokens=usage[0], cached_tokens=usage[1],
                          output_tokens=usage[2], reasoning_tokens=usage[3], duration_ms=duration_ms,
                          error_code=error_code, chat_id=request.chat_id, estimated=estimated, at=at,
                          cooldown_until=cooldown_until, rate_limits=rate_limits)
        recorded = await self.accountant.arecord(call)
        _log_call(call, key, recorded.cost_nanousd)
        return recorded


class ChatStream:
    """An async iterator of text deltas; records the call when it ends (see TrackedClient.stream)."""

    def __init__(self, client: TrackedClient, request: _Request):
        self._client = client
        self._request = request
        self._deltas = None
        self.result: ChatResult | None = None

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        if self._deltas is None:
            self._deltas = self._run()
        return await self._deltas.__anext__()

    async def aclose(self) -> None:
        if self._deltas is not None:
            await self._deltas.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _run(self):
        client, request = self._client, self._request
        attempt = await client._send(request)
        parts: list[str] = []
        usage = None
        finish = ""
        outcome, error = Outcome.INTERRUPTED, None
        stream = None
        try:
            stream = attempt.raw.parse()
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = _usage_numbers(chunk.usage)
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                        yield choice.delta.content
            outcome = Outcome.OK
        except openai.APIError as exc:
            error = exc
        finally:
            if stream is not None:
                await stream.close()
            duration_ms = _ms_since(attempt.started)
            text = "".join(parts)
            estimated = usage is None
            if estimated:
                usage = (request.prompt_estimate, 0, estimate_text_tokens(text), 0)
            if outcome is Outcome.OK:
                error_code = ""
            elif error is not None:
                error_code = f"stream cut: {_cause(error)}"
            else:
                error_code = "stream closed early by the caller"
            recorded = await asyncio.shield(client._record(
                request, attempt.key, attempt.at, attempt.started, outcome, usage=usage, estimated=estimated,
                error_code=error_code, duration_ms=duration_ms,
                rate_limits=rate_limit_snapshot(attempt.raw.headers, attempt.at)))
            if outcome is Outcome.OK:
                client._rate_hits.pop(attempt.key.id, None)
            self.result = ChatResult(text=text, model=request.model, key_label=attempt.key.label,
                                     input_tokens=usage[0], cached_tokens=usage[1], output_tokens=usage[2],
                                     reasoning_tokens=usage[3], duration_ms=duration_ms,
                                     call_id=recorded.call_id, estimated=estimated,
                                     cost_nanousd=recorded.cost_nanousd, finish_reason=finish)
        if error is not None:
            raise StreamInterrupted("The answer was cut off before it finished.", "".join(parts)) from error


# --- pure helpers ---------------------------------------------------------------------------

def _classify_status(exc: openai.APIStatusError) -> _Failure:
    status = exc.status_code
    headers = dict(exc.response.headers)
    api_error = isinstance(exc.body, dict)       # an OpenAI-style error body, not an HTML page
    code = (exc.code or exc.type or "") if api_error else ""
    label = f"{status} {code}".strip()
    detail = (exc.body.get("message") or exc.message) if api_error else f"HTTP {status}"
    if status == 429:
        if code == "insufficient_quota" or exc.type == "insufficient_quota":
            return _Failure(Outcome.QUOTA_EXHAUSTED, label, "The key's quota is used up.", status, headers)
        return _Failure(Outcome.RATE_LIMITED, label, "The key hit its rate limit.", status, headers)
    if status == 401:
        return _Failure(Outcome.INVALID_KEY, label, "The API key was refused.", status, headers)
    if status == 408:
        return _Failure(Outcome.TIMEOUT, label, "The AI service timed out.", status, headers)
    if status >= 500:
        return _Failure(Outcome.SERVER_ERROR, label, "The AI service had an error.", status, headers)
    if not api_error and status in (404, 405):
        # No OpenAI error body: the key's base_url does not point at a chat-completions API.
        return _Failure(Outcome.CONNECTION_ERROR, f"{status} not an OpenAI endpoint",
                        "The key's base_url does not lead to an OpenAI-compatible API.", status, headers)
    return _Failure(Outcome.BAD_REQUEST, label, f"The AI service rejected the request: {detail}", status, headers)


def _no_key_error(pick: Pick, last: _Failure | None) -> NoKeyAvailable:
    if last is not None and last.outcome in RETRYING:
        return ProviderUnavailable(f"The AI service is not answering right now ({last.error_code}); "
                                   "try again later.", pick.frees_up_at)
    message = f"No API key can take this call now: {pick.reason}."
    if pick.frees_up_at is not None:
        wait = format_duration(pick.frees_up_at - utcnow())
        message += f" The first one frees up in {wait} (at {pick.frees_up_at:%H:%M} UTC)."
    return NoKeyAvailable(message, pick.frees_up_at)


def _usage_numbers(usage) -> tuple[int, int, int, int] | None:
    """(input, cached, output, reasoning) from an openai usage object, None when absent."""
    if usage is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return (usage.prompt_tokens or 0,
            (getattr(prompt_details, "cached_tokens", None) or 0) if prompt_details else 0,
            usage.completion_tokens or 0,
            (getattr(completion_details, "reasoning_tokens", None) or 0) if completion_details else 0)


def _completion_text(completion) -> str:
    if not completion.choices:
        return ""
    return completion.choices[0].message.content or ""


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{exc}" + (f" ({type(cause).__name__}: {cause})" if cause and str(cause) else "")


def _log_call(call: CallRecord, key: HeldKey, cost_nanousd: int) -> None:
    """`operation | model | key | in X (cached Y) out Z | $cost | N ms | outcome` (seed 003)."""
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
