"""The OpenAI-compatible dialect: OpenAI itself and every server that copies its API
(proxies, local LLM servers, other providers' compatibility endpoints).

Sent through the official `openai` package with its own retries off (`max_retries=0`, so
no 429 is hidden from us). What the servers of this family really answer, classified:

- quota or budget used up, in any spelling (`insufficient_quota`, `budget_exceeded`,
  `quota_exceeded`, status 402, whatever the status beside it): QUOTA_EXHAUSTED;
- 429 otherwise: RATE_LIMITED (cool down until the headers say);
- 401/403: INVALID_KEY;
- 404/405 that is not about the model (a wrong path in base_url, JSON or not): MISCONFIGURED;
- an unknown or unserved model (404 `model_not_found`, or a 400/404/422 that says the model
  does not exist): BAD_REQUEST that another key, behind another provider, may still serve;
- other 4xx: BAD_REQUEST (the request's fault); 408/5xx, timeouts, connection errors:
  retried. A timeout after the request went out may have been billed: `charged`.

Usage that is absent, non-integer, negative or beyond any model's reach is not believed:
the answer says why and the loop records an estimate flagged `estimated`. A stream
request answered with a plain JSON body is read as that body.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TypeGuard

import anyio
import openai

from shared.ai.dialect import Answer, Failure, ProviderFailure, Sent, StreamCut
from shared.ai.rate_limits import rate_limit_ends_at, rate_limit_snapshot
from shared.ai.rehearsal import canned_client, canned_server, rehearse_chat
from shared.core.accounting import Outcome, RateLimitSnapshot
from shared.core.keys import MISCONFIGURED_PREFIX, HeldKey
from shared.core.usage import Usage

log = logging.getLogger("tokenpool.client")

MAX_TOKENS_PER_CALL = 50_000_000      # beyond any model's context: a number this big is not a count
QUOTA_CODES = frozenset({"insufficient_quota", "budget_exceeded", "quota_exceeded", "billing_hard_limit_reached",
                         "insufficient_credits", "insufficient_balance", "credit_limit_exceeded"})
QUOTA_PHRASES = ("exceeded your current quota", "budget has been exceeded", "budget exceeded",
                 "insufficient credits", "insufficient balance", "out of credits")
MODEL_PHRASES = ("does not exist", "not found", "not supported", "unknown model", "invalid model",
                 "no such model", "not available")
STATUS_NAMES = {400: "bad_request", 401: "unauthorized", 402: "payment_required", 403: "forbidden",
                404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 409: "conflict",
                422: "unprocessable_entity", 429: "too_many_requests"}


class OpenAICompatible:
    """The Dialect for OpenAI-compatible chat completions (see the module docstring)."""

    name = "openai"

    def __init__(self, timeout_seconds: float):
        self.timeout_seconds = timeout_seconds
        self._clients: dict[int, openai.AsyncOpenAI] = {}
        # One HTTP connection pool for every key's client: each pool of its own would load the
        # CA bundle into a TLS context of its own (~0.9 MB per key).
        self._http: openai.DefaultAsyncHttpxClient | None = None

    def prepare(self, keys: list[HeldKey]) -> None:
        """Build every key's client now, so the first message does not pay for it."""
        for key in keys:
            self._client(key)

    async def warm_up(self) -> None:
        """Do what the first request would: import openai's chat resources (loaded on first
        use) and anyio's asyncio backend (loaded when httpx first takes a lock), find the
        platform for the request headers (openai does it on a thread of its own at the first
        request: ~13 ms with the thread's start) and build the request body's type-hint
        caches (~5 ms); then rehearse a whole request against a local canned server
        (shared/ai/rehearsal.py). Sends nothing to any provider. The platform and the caches
        use openai internals, so they are skipped if a version does not have them."""
        for client in self._clients.values():
            client.chat.completions.with_raw_response  # noqa: B018  (a cached property that imports)
        anyio.Event()
        await self._warm_openai_internals()
        try:
            await rehearse_chat(self)
        except (OSError, openai.APIError, ProviderFailure) as exc:   # TimeoutError is an OSError
            log.info("warm-up: the local rehearsal of a request was skipped (%s)", exc)

    @contextlib.asynccontextmanager
    async def rehearsing(self) -> AsyncIterator[OpenAICompatible]:
        """A dialect like this one whose every request, whatever the key, goes to a canned
        server of our own on 127.0.0.1 with a throwaway secret (shared/ai/rehearsal.py): for
        rehearsing whole calls at start. No key's secret or provider is used."""
        async with canned_server() as base_url:
            dialect = _Rehearsing(self.timeout_seconds, canned_client(base_url))
            try:
                yield dialect
            finally:
                await dialect.aclose()

    async def _warm_openai_internals(self) -> None:
        try:
            from openai._base_client import get_platform
            from openai._utils import async_maybe_transform
            from openai.types.chat import completion_create_params
        except ImportError:
            return
        unknown = [client for client in self._clients.values() if getattr(client, "_platform", "") is None]
        if unknown:
            platform = await asyncio.to_thread(get_platform)
            for client in unknown:
                client._platform = platform
        with contextlib.suppress(Exception):
            await async_maybe_transform({"messages": [{"role": "user", "content": "warm-up"}], "model": "warm-up"},
                                        completion_create_params.CompletionCreateParamsNonStreaming)

    def _client(self, key: HeldKey) -> openai.AsyncOpenAI:
        client = self._clients.get(key.id)
        if client is None:
            if self._http is None:
                self._http = openai.DefaultAsyncHttpxClient()
            client = self._clients[key.id] = openai.AsyncOpenAI(
                api_key=key.secret, base_url=key.base_url or None, max_retries=0,
                timeout=self.timeout_seconds, http_client=self._http)
        return client

    async def send(self, key: HeldKey, model: str, messages: list, params: dict, *, stream: bool) -> Sent:
        try:
            raw = await self._client(key).chat.completions.with_raw_response.create(
                model=model, messages=messages, **params)
        except openai.APIStatusError as exc:
            raise ProviderFailure(classify_status(exc.status_code, dict(exc.response.headers), exc.body,
                                                  exc.message)) from exc
        except openai.APITimeoutError as exc:
            raise ProviderFailure(_timeout(exc)) from exc
        except openai.APIConnectionError as exc:
            raise ProviderFailure(Failure(Outcome.CONNECTION_ERROR, "connection error",
                                          f"Could not reach the AI service at {key.base_url or 'api.openai.com'}: "
                                          f"{_cause(exc)}")) from exc
        # .items() reads the headers once; dict(headers) looks each name up again (~25 µs a call)
        return Sent(key, model, dict(raw.headers.items()), raw)

    async def answer(self, sent: Sent) -> Answer:
        try:
            body = await sent.handle.http_response.aread()
            return answer_from_json(json.loads(body))
        except Exception as exc:  # a 2xx body we cannot read, or cannot finish reading: the provider's fault
            raise ProviderFailure(Failure(Outcome.SERVER_ERROR, f"unreadable response: {type(exc).__name__}",
                                          "The AI service sent an answer that could not be read.")) from exc

    async def stream(self, sent: Sent) -> AsyncGenerator[str | Answer, None]:
        raw = sent.handle
        if "text/event-stream" not in raw.http_response.headers.get("content-type", ""):
            # A server that ignores `stream: true` and answers with one JSON body.
            try:
                answer = await self.answer(sent)
            except ProviderFailure as exc:
                raise StreamCut(f"not a stream: {exc.failure.error_code}") from exc
            finally:
                await raw.http_response.aclose()
            if answer.text:
                yield answer.text
            yield answer
            return
        stream = raw.parse()
        parts: list[str] = []
        usage_seen, finish = None, ""
        try:
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage_seen = chunk.usage
                for choice in chunk.choices or ():
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                        yield choice.delta.content
        except openai.APIError as exc:
            raise StreamCut(f"stream cut: {_cause(exc)}") from exc
        finally:
            await stream.close()
        usage, problem = read_usage(usage_seen)
        yield Answer("".join(parts), finish, usage, problem)

    def rate_limits(self, headers: Mapping[str, str], now: dt.datetime) -> RateLimitSnapshot | None:
        return rate_limit_snapshot(headers, now)

    def cooldown_ends_at(self, headers: Mapping[str, str], now: dt.datetime) -> dt.datetime | None:
        return rate_limit_ends_at(headers, now)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._http = None
        for client in clients:
            await client.close()       # the shared pool: closing it again is a no-op


class _Rehearsing(OpenAICompatible):
    """OpenAICompatible sending through one client, whatever the key (see `rehearsing`)."""

    def __init__(self, timeout_seconds: float, client: openai.AsyncOpenAI):
        super().__init__(timeout_seconds)
        self._only = client

    def _client(self, key: HeldKey) -> openai.AsyncOpenAI:
        return self._only

    async def aclose(self) -> None:
        await self._only.close()


# --- pure readers -----------------------------------------------------------------------------

def classify_status(status: int, headers: dict, body, message: str = "") -> Failure:
    """A non-2xx answer as a Failure. `body` is the error object (or whatever the server sent)."""
    error = body if isinstance(body, dict) else {}
    code, type_ = _text(error.get("code")), _text(error.get("type"))
    detail = _text(error.get("message")) or (body if isinstance(body, str) else "") or message or f"HTTP {status}"
    name = next((n for n in (code, type_) if n and not n.isdigit()), "") or STATUS_NAMES.get(status, "http_error")
    label = f"{status} {name}"
    lowered = detail.lower()
    if status == 402 or code in QUOTA_CODES or type_ in QUOTA_CODES or any(p in lowered for p in QUOTA_PHRASES):
        return Failure(Outcome.QUOTA_EXHAUSTED, label, "The key's quota or budget is used up.", status, headers)
    if status == 429:
        return Failure(Outcome.RATE_LIMITED, label, "The key hit its rate limit.", status, headers)
    if status in (401, 403):
        return Failure(Outcome.INVALID_KEY, label, "The API key was refused.", status, headers)
    if status == 408:
        return Failure(Outcome.TIMEOUT, label, "The AI service timed out.", status, headers)
    if status >= 500:
        return Failure(Outcome.SERVER_ERROR, label, "The AI service had an error.", status, headers)
    about_model = code == "model_not_found" or ("model" in lowered and any(p in lowered for p in MODEL_PHRASES))
    if about_model and status in (400, 404, 422):
        return Failure(Outcome.BAD_REQUEST, label, f"The AI service rejected the request: {detail}", status,
                       headers, other_keys_may_serve=True)
    if status in (404, 405):
        return Failure(Outcome.MISCONFIGURED, f"{MISCONFIGURED_PREFIX}: {status} {name} at the base_url",
                       "The key's base_url does not lead to an OpenAI-compatible chat API.", status, headers)
    return Failure(Outcome.BAD_REQUEST, label, f"The AI service rejected the request: {detail}", status, headers)


def answer_from_json(data) -> Answer:
    """A chat.completion body as an Answer (raises ValueError when it is no such body)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    choices = data.get("choices") or []
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = m if isinstance(m := first.get("message"), dict) else {}
    text = t if isinstance(t := message.get("content"), str) else ""
    finish = f if isinstance(f := first.get("finish_reason"), str) else ""
    usage, problem = read_usage(data.get("usage"))
    return Answer(text, finish, usage, problem)


def read_usage(raw) -> tuple[Usage | None, str]:
    """(Usage, "") when the numbers are believable, else (None, why): absent, non-integer,
    negative or impossibly large counts are not recorded as given."""
    if raw is None:
        return None, ""
    get = raw.get if isinstance(raw, Mapping) else (lambda name: getattr(raw, name, None))
    prompt, completion = get("prompt_tokens"), get("completion_tokens")
    if not (_count(prompt) and _count(completion)):
        bad = [f"{name}={value!r}" for name, value in (("prompt_tokens", prompt), ("completion_tokens", completion))
               if not _count(value)]
        return None, "impossible usage: " + ", ".join(bad)[:80]
    cached = _detail(get("prompt_tokens_details"), "cached_tokens")
    reasoning = _detail(get("completion_tokens_details"), "reasoning_tokens")
    return Usage(prompt, min(cached, prompt), completion, min(reasoning, completion)), ""


def _count(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_PER_CALL


def _detail(details, name: str) -> int:
    if details is None:
        return 0
    value = details.get(name) if isinstance(details, Mapping) else getattr(details, name, None)
    return value if _count(value) else 0


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else (str(value) if isinstance(value, int) else "")


def _timeout(exc: openai.APITimeoutError) -> Failure:
    """A timeout while connecting cost nothing; one after the request went out may be billed."""
    not_sent = type(exc.__cause__).__name__ in ("ConnectTimeout", "PoolTimeout")   # httpx's own types
    return Failure(Outcome.TIMEOUT, "timeout", "The AI service did not answer in time.", charged=not not_sent)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{exc}" + (f" ({type(cause).__name__}: {cause})" if cause and str(cause) else "")
