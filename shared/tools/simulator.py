"""An offline OpenAI: a real HTTP server on 127.0.0.1 speaking the chat-completions API.

Tests, `tokenpool demo`, `tokenpool sim` and the benchmarks drive the real `openai`
client against it. It answers like the real service: `usage` with cached and reasoning
tokens, `x-ratelimit-*` headers, SSE streaming with `stream_options.include_usage`, and
the real error bodies. It enforces its own per-key token allowance (429
`insufficient_quota` once used up) and requests/tokens per minute (429
`rate_limit_exceeded`), and serves faults on demand per key: scripted one-shot faults
(`script`) or a standing one (`set_fault`).

Messages may carry content parts, images included (`sim_content`), counted in the usage
as the bot's estimate counts them.

It knows keys by fingerprint only; a secret is hashed on arrival and never stored or
logged.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from shared.ai.rate_limits import format_duration
from shared.ai.token_estimates import estimate_prompt_tokens, estimate_text_tokens
from shared.core.keys import fingerprint as fingerprint_of
from shared.core.keys import mask
from shared.tools.sim_content import ContentProblem, count_images

log = logging.getLogger("tokenpool.sim")

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
                  "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
CACHE_BLOCK = 128            # OpenAI caches prompt prefixes in 128-token steps...
CACHE_MINIMUM = 1024         # ...once a prefix is at least 1,024 tokens long
MINUTE = 60.0
_WORDS = ("sure", "thanks", "for", "the", "message", "I", "will", "get", "back", "to", "you", "soon",
          "that", "sounds", "good", "let", "me", "check", "and", "reply", "later", "today", "with",
          "details", "about", "it", "happy", "to", "help", "noted", "right", "away", "see", "then")


class SimulatorError(Exception):
    """A simulator setting the user gave is not usable (bad fault spec, unknown label)."""


@dataclass(frozen=True)
class Fault:
    """One way a request can go wrong.

    kinds: `ok` (none: a gap in a script), `rate_limit` (429 rate_limit_exceeded; `seconds` until it lifts, told by
    `hint`: "retry-after", "reset" (x-ratelimit-reset-* only) or "none"), `quota` (429
    insufficient_quota), `invalid` (401 invalid_api_key), `server_error` (`status`,
    default 500), `slow` (answer after `seconds`), `cut` (close the connection after
    `chunks` stream chunks; mid-body for a plain response).

    Other OpenAI-compatible servers' dialects: `budget` (a proxy's 422 budget_exceeded),
    `payment` (402 Payment Required), `bad_usage` (answer with impossible usage: `hint`
    "negative", "absent" or "text"), `no_sse` (answer a stream request with one JSON body).
    """
    kind: str
    seconds: float = 1.0
    status: int = 500
    chunks: int = 2
    hint: str = "retry-after"

    @classmethod
    def ok(cls) -> Fault:
        """No fault: lets a script serve some requests normally before a fault."""
        return cls("ok")

    @classmethod
    def rate_limit(cls, seconds: float = 1.0, hint: str = "retry-after") -> Fault:
        return cls("rate_limit", seconds=seconds, hint=hint)

    @classmethod
    def quota(cls) -> Fault:
        return cls("quota")

    @classmethod
    def invalid(cls) -> Fault:
        return cls("invalid")

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls("server_error", status=status)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def cut(cls, chunks: int = 2) -> Fault:
        return cls("cut", chunks=chunks)

    @classmethod
    def budget(cls) -> Fault:
        return cls("budget")

    @classmethod
    def payment(cls) -> Fault:
        return cls("payment")

    @classmethod
    def bad_usage(cls, how: str = "negative") -> Fault:
        return cls("bad_usage", hint=how)

    @classmethod
    def no_sse(cls) -> Fault:
        return cls("no_sse")


FAULT_KINDS = ("ok", "rate_limit", "quota", "invalid", "server_error", "slow", "cut", "budget", "payment",
               "bad_usage", "no_sse")
ANSWER_FAULTS = frozenset({"cut", "bad_usage", "no_sse"})     # faults in an answer, not instead of one


def parse_fault(text: str) -> Fault:
    """`"quota"`, `"rate_limit:2.5"`, `"server_error:503"`, `"slow:3"`, `"cut:2"`."""
    kind, _, arg = text.strip().partition(":")
    if kind not in FAULT_KINDS:
        raise SimulatorError(f"unknown fault '{kind}' (choose from {', '.join(FAULT_KINDS)})")
    if not arg:
        return Fault(kind)
    try:
        if kind == "server_error":
            return Fault.server_error(int(arg))
        if kind == "cut":
            return Fault.cut(int(arg))
        if kind in ("rate_limit", "slow"):
            return Fault(kind, seconds=float(arg))
        if kind == "bad_usage":
            return Fault.bad_usage(arg)
    except ValueError:
        raise SimulatorError(f"fault '{text}': '{arg}' is not a number") from None
    raise SimulatorError(f"fault '{kind}' takes no argument")


@dataclass
class SimKey:
    """What the simulator knows about one key: limits, usage, faults, counts."""
    fingerprint: str
    label: str = ""
    allowance: int | None = None          # tokens until insufficient_quota; None: unlimited
    rpm: int = 5_000
    tpm: int = 2_000_000
    rpd: int | None = None                # requests per UTC day (a free tier's limit); None: unlimited
    models: tuple[str, ...] | None = None  # the models this key may use; None: all the server's
    day: dt.date | None = None
    requests_today: int = 0
    used: int = 0
    requests: int = 0                     # every request received with this key
    ok: int = 0                           # requests answered 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0                       # image parts in admitted requests
    faults: collections.deque = field(default_factory=collections.deque)
    standing_fault: Fault | None = None
    recent: collections.deque = field(default_factory=collections.deque)   # (t, tokens) this minute


class Simulator:
    """The server. `async with Simulator() as sim:` or `sim.start_in_thread()` / `sim.stop()`."""

    def __init__(self, keys: dict[str, int | None] | None = None, *, accept_unknown_keys: bool = False,
                 default_allowance: int | None = None, rpm: int = 5_000, tpm: int = 2_000_000,
                 latency: float = 0.0, chunk_delay: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 models: tuple[str, ...] = DEFAULT_MODELS):
        self.host, self.port = host, port
        self.accept_unknown_keys = accept_unknown_keys
        self.default_allowance = default_allowance
        self.rpm, self.tpm = rpm, tpm
        self.latency, self.chunk_delay = latency, chunk_delay
        self.models = tuple(models)
        self._keys: dict[str, SimKey] = {}
        self._lock = threading.RLock()
        self._prefixes: collections.OrderedDict = collections.OrderedDict()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._answers_held = threading.Event()     # set: admitted requests wait for release_answers()
        for secret, allowance in (keys or {}).items():
            self.add_key(secret, allowance=allowance)

    # --- keys, faults and counts ------------------------------------------------------------

    def add_key(self, secret: str, *, label: str = "", allowance: int | None = None,
                rpm: int | None = None, tpm: int | None = None, rpd: int | None = None,
                models: tuple[str, ...] | None = None) -> str:
        """Register a key; returns its fingerprint. `rpd`: requests per UTC day before 429;
        `models`: the only models it may use (others answer 404 model_not_found)."""
        fp = fingerprint_of(secret)
        with self._lock:
            self._keys[fp] = SimKey(fp, label=label, allowance=allowance, rpm=rpm or self.rpm, tpm=tpm or self.tpm,
                                    rpd=rpd, models=tuple(models) if models is not None else None)
        return fp

    def _key(self, key: str) -> SimKey:
        with self._lock:
            found = self._keys.get(key) or self._keys.get(fingerprint_of(key))
            if found is None:
                found = next((k for k in self._keys.values() if k.label and k.label == key), None)
        if found is None:
            raise SimulatorError(f"the simulator knows no key '{key[:6]}…' (add it first)")
        return found

    def script(self, key: str, *faults: Fault) -> None:
        """Serve `faults` to the next requests with `key` (secret, fingerprint or label), in order."""
        state = self._key(key)
        with self._lock:
            state.faults.extend(faults)

    def set_fault(self, key: str, fault: Fault | None) -> None:
        """Serve `fault` to every request with `key` until cleared with None."""
        state = self._key(key)
        with self._lock:
            state.standing_fault = fault

    def set_allowance(self, key: str, allowance: int | None, *, used: int | None = None) -> None:
        state = self._key(key)
        with self._lock:
            state.allowance = allowance
            if used is not None:
                state.used = used

    def stats(self, key: str) -> SimKey:
        """A copy of one key's state and counts."""
        state = self._key(key)
        with self._lock:
            return dataclasses.replace(state, faults=collections.deque(state.faults),
                                       recent=collections.deque())

    def requests_for(self, key: str) -> int:
        return self.stats(key).requests

    @property
    def requests_by_fingerprint(self) -> dict[str, int]:
        with self._lock:
            return {fp: k.requests for fp, k in self._keys.items()}

    def hold_answers(self) -> None:
        """Requests are admitted (and counted) but not answered until `release_answers()`:
        for tests that need something to happen while a call is at the provider."""
        self._answers_held.set()

    def release_answers(self) -> None:
        self._answers_held.clear()

    # --- serving -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # Any other path: the JSON 404/405 of the FastAPI-style servers (vLLM, LiteLLM) that a
        # base_url with a wrong path reaches.
        app.router.add_route("*", "/{path:.*}", _not_found)
        return app

    async def start(self) -> Simulator:
        # Cancel a handler whose client hung up (a slow fault outlives its caller's timeout),
        # and do not wait long for stragglers on shutdown.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("OpenAI simulator listening on %s", self.base_url)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def start_in_thread(self) -> str:
        """Serve from a background thread (for synchronous callers); returns `base_url`."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread below
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-simulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    # --- handlers ----------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> SimKey | web.Response:
        """The request's key, or the refusal to send when it has none we know."""
        auth = request.headers.get("Authorization", "")
        secret = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not secret:
            return _error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth.", "invalid_request_error", None)
        fp = fingerprint_of(secret)
        with self._lock:
            key = self._keys.get(fp)
            if key is None:
                key = SimKey(fp, allowance=self.default_allowance, rpm=self.rpm, tpm=self.tpm)
                if self.accept_unknown_keys:
                    self._keys[fp] = key
            key.requests += 1
        if fp not in self._keys:
            log.debug("request with unknown key %s", fp)
            return _invalid_key(secret)
        return key

    async def _models(self, request: web.Request) -> web.Response:
        key = self._authenticate(request)
        if isinstance(key, web.Response):
            return key
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        key = self._authenticate(request)
        if isinstance(key, web.Response):
            return key
        secret = request.headers["Authorization"][7:].strip()
        with self._lock:
            fault = key.faults.popleft() if key.faults else key.standing_fault
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "ok":
            fault = None
        if fault is not None and fault.kind not in ANSWER_FAULTS:
            log.debug("key %s: serving fault %s", key.fingerprint, fault.kind)
            return _fault_response(fault, secret, key)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
        problem = self._validate(body)
        if problem is not None:
            return problem
        messages = body["messages"]
        try:
            images = count_images(messages, body["model"])
        except ContentProblem as exc:
            return _error(400, str(exc), "invalid_request_error", "invalid_value", param=exc.param)
        prompt_tokens = estimate_prompt_tokens(messages, (body["model"],))
        refusal = self._admit(key, body["model"], prompt_tokens)
        if refusal is not None:
            return refusal
        with self._lock:
            key.images += images
        bad_usage = fault.hint if fault is not None and fault.kind == "bad_usage" else None
        no_sse = fault is not None and fault.kind == "no_sse"
        fault = fault if fault is not None and fault.kind == "cut" else None
        if self.latency:
            await asyncio.sleep(self.latency)
        while self._answers_held.is_set():       # (the test's loop may be this one: no blocking wait)
            await asyncio.sleep(0.005)
        reply, finish = _reply(messages, _max_tokens(body))
        usage: dict | None = self._usage(key, body["model"], messages, prompt_tokens, reply)
        if bad_usage is not None and usage is not None:
            usage = _impossible_usage(usage, bad_usage)
        headers = self._rate_headers(key)
        headers["x-request-id"] = "req_" + uuid.uuid4().hex
        headers["openai-processing-ms"] = str(int(self.latency * 1000) + 1)
        if body.get("stream") and not no_sse:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, body["model"], reply, finish, usage, include_usage, headers,
                                      fault)
        completion = _completion(body["model"], reply, finish, usage)
        if usage is None:
            del completion["usage"]
        payload = json.dumps(completion).encode()
        if fault is not None:   # cut: a plain response that breaks off mid-body
            response = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            if request.transport is not None:
                request.transport.abort()
            return response
        return web.Response(body=payload, content_type="application/json", headers=headers)

    def _validate(self, body) -> web.Response | None:
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error", None)
        model = body.get("model")
        if not model or not isinstance(model, str):
            return _error(400, "you must provide a model parameter", "invalid_request_error", None)
        messages = body.get("messages")
        if messages is None:
            return _error(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                          "missing_required_parameter", param="messages")
        if not isinstance(messages, list):
            return _error(400, f"Invalid type for 'messages': expected an array, but got "
                               f"{type(messages).__name__} instead.", "invalid_request_error", "invalid_type",
                          param="messages")
        if not messages:
            return _error(400, "[] is too short - 'messages'", "invalid_request_error", None, param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return _error(400, f"Invalid value for 'messages[{i}].role': expected one of "
                                   f"{', '.join(sorted(ROLES))}.", "invalid_request_error", "invalid_value",
                              param=f"messages[{i}].role")
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                return _error(400, f"Invalid '{name}': expected an integer of at least 1, but got {value!r}.",
                              "invalid_request_error", "invalid_value", param=name)
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          "invalid_request_error", "model_not_found")
        return None

    def _admit(self, key: SimKey, model: str, prompt_tokens: int) -> web.Response | None:
        """Enforce the allowance and the per-minute limits; count the request in."""
        now = time.monotonic()
        with self._lock:
            if key.models is not None and model not in key.models:
                return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                              "invalid_request_error", "model_not_found")
            if key.allowance is not None and key.used >= key.allowance:
                return _quota_response()
            today = dt.datetime.now(dt.UTC).date()
            if key.day != today:
                key.day, key.requests_today = today, 0
            if key.rpd is not None and key.requests_today >= key.rpd:
                return _requests_per_day_response(key.rpd)
            while key.recent and key.recent[0][0] <= now - MINUTE:
                key.recent.popleft()
            requests = len(key.recent)
            tokens = sum(t for _, t in key.recent)
            if requests >= key.rpm or tokens + prompt_tokens > key.tpm:
                wait = max(0.001, key.recent[0][0] + MINUTE - now) if key.recent else 1.0
                what = ("requests per min (RPM)", key.rpm, requests, 1) if requests >= key.rpm else \
                    ("tokens per min (TPM)", key.tpm, tokens, prompt_tokens)
                message = (f"Rate limit reached for {model} in organization org-sim on {what[0]}: "
                           f"Limit {what[1]}, Used {what[2]}, Requested {what[3]}. Please try again in "
                           f"{format_duration_seconds(wait)}.")
                headers = {**self._rate_headers(key, now), "retry-after": str(max(1, round(wait))),
                           "retry-after-ms": str(int(wait * 1000))}
                return _error(429, message, "requests" if requests >= key.rpm else "tokens",
                              "rate_limit_exceeded", headers=headers)
            key.recent.append((now, prompt_tokens))
            key.requests_today += 1
        return None

    def _usage(self, key: SimKey, model: str, messages: list, prompt_tokens: int, reply: str) -> dict:
        cached = self._cached_tokens(messages)
        visible = estimate_text_tokens(reply)
        reasoning = _reasoning_tokens(model, messages)
        completion = visible + reasoning
        with self._lock:
            key.used += prompt_tokens + completion
            key.ok += 1
            key.prompt_tokens += prompt_tokens
            key.completion_tokens += completion
            if key.recent:
                t, tokens = key.recent[-1]
                key.recent[-1] = (t, tokens + completion)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def _cached_tokens(self, messages: list) -> int:
        """Prompt caching as OpenAI does it: a prefix seen before, of 1,024+ tokens, in 128s."""
        digest = hashlib.sha256()
        best, tokens = 0, 0
        prefixes = []
        for message in messages:
            digest.update(json.dumps(message, sort_keys=True).encode())
            tokens += estimate_prompt_tokens([message])
            prefixes.append((digest.hexdigest(), tokens))
        with self._lock:
            for prefix, count in prefixes:
                if prefix in self._prefixes:
                    best = count
                self._prefixes[prefix] = True
                self._prefixes.move_to_end(prefix)
            while len(self._prefixes) > 10_000:
                self._prefixes.popitem(last=False)
        return (best // CACHE_BLOCK) * CACHE_BLOCK if best >= CACHE_MINIMUM else 0

    def _rate_headers(self, key: SimKey, now: float | None = None) -> dict[str, str]:
        now = time.monotonic() if now is None else now
        with self._lock:
            requests = len(key.recent)
            tokens = sum(t for _, t in key.recent)
            oldest = key.recent[0][0] if key.recent else now
        # Limits refill continuously: one request's share of a minute, the used tokens' share.
        # With none left, the reset is when the window lets the next request in, as a
        # provider's is: a client that waits for it is not refused.
        reset_requests = MINUTE / key.rpm if requests else 0.0
        reset_tokens = MINUTE * tokens / key.tpm if tokens else 0.0
        reset_requests = min(reset_requests, max(0.0, oldest + MINUTE - now))
        if requests >= key.rpm:
            reset_requests = max(0.0, oldest + MINUTE - now)
        if tokens >= key.tpm:
            reset_tokens = max(0.0, oldest + MINUTE - now)
        return {"x-ratelimit-limit-requests": str(key.rpm), "x-ratelimit-limit-tokens": str(key.tpm),
                "x-ratelimit-remaining-requests": str(max(0, key.rpm - requests)),
                "x-ratelimit-remaining-tokens": str(max(0, key.tpm - tokens)),
                "x-ratelimit-reset-requests": format_duration_seconds(reset_requests),
                "x-ratelimit-reset-tokens": format_duration_seconds(reset_tokens)}

    async def _stream(self, request, model, reply, finish, usage, include_usage, headers, fault):
        response = web.StreamResponse(status=200, headers={
            **headers, "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
        await response.prepare(request)
        call_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        pieces = [{"role": "assistant", "content": ""}] + [{"content": p} for p in _pieces(reply)]
        chunks = [_chunk(call_id, created, model, delta, None, include_usage) for delta in pieces]
        chunks.append(_chunk(call_id, created, model, {}, finish, include_usage))
        if include_usage:
            chunks.append({"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "fp_sim", "choices": [], "usage": usage})
        for i, chunk in enumerate(chunks):
            if fault is not None and i >= fault.chunks:
                request.transport.abort()
                return response
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# --- response bodies ------------------------------------------------------------------------

def format_duration_seconds(seconds: float) -> str:
    return format_duration(dt.timedelta(seconds=seconds))


def _error(status: int, message: str, type_: str, code: str | None, *, param: str | None = None,
           headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                             status=status, headers=headers)


def _invalid_key(secret: str) -> web.Response:
    return _error(401, f"Incorrect API key provided: {mask(secret)}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")


def _quota_response() -> web.Response:
    return _error(429, "You exceeded your current quota, please check your plan and billing details. For more "
                       "information on this error, read the docs: "
                       "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                  "insufficient_quota", "insufficient_quota")


def _requests_per_day_response(limit: int) -> web.Response:
    """A free tier's daily request limit, as Gemini's OpenAI-compatible endpoint words it."""
    return _error(429, "You exceeded your current quota, please check your plan and billing details. Quota "
                       f"exceeded for metric: generate_requests_per_model_per_day, limit: {limit}",
                  "RESOURCE_EXHAUSTED", "429")


def _impossible_usage(usage: dict, how: str) -> dict | None:
    """Usage numbers real servers were seen to send: negative, absent, or not numbers at all."""
    if how == "absent":
        return None
    if how == "text":
        return {**usage, "prompt_tokens": "many", "completion_tokens": "12"}
    return {**usage, "prompt_tokens": -6_839_766, "total_tokens": usage["completion_tokens"] - 6_839_766}


async def _not_found(request: web.Request) -> web.Response:
    status = 405 if request.path == "/v1/chat/completions" else 404
    return web.json_response({"detail": "Method Not Allowed" if status == 405 else "Not Found"}, status=status)


def _fault_response(fault: Fault, secret: str, key: SimKey) -> web.Response:
    if fault.kind == "budget":
        # A proxy's (LiteLLM's) spend limit: its error type names the case; its code repeats the status.
        return _error(422, "Budget has been exceeded! Current cost: 10.02, Max budget: 10.0", "budget_exceeded",
                      "422")
    if fault.kind == "payment":
        return web.json_response({"error": {"message": "Insufficient credits. Add more using "
                                                       "https://example.invalid/credits", "code": 402}}, status=402)
    if fault.kind == "quota":
        return _quota_response()
    if fault.kind == "invalid":
        return _invalid_key(secret)
    if fault.kind == "server_error":
        return _error(fault.status, "The server had an error while processing your request. Sorry about that!",
                      "server_error", None)
    wait = format_duration_seconds(fault.seconds)
    headers = {"x-ratelimit-limit-requests": str(key.rpm), "x-ratelimit-limit-tokens": str(key.tpm),
               "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": str(key.tpm)}
    if fault.hint == "retry-after":
        headers.update({"retry-after": str(max(1, round(fault.seconds))),
                        "retry-after-ms": str(int(fault.seconds * 1000)),
                        "x-ratelimit-reset-requests": wait, "x-ratelimit-reset-tokens": "0s"})
    elif fault.hint == "reset":
        headers.update({"x-ratelimit-reset-requests": wait, "x-ratelimit-reset-tokens": "0s"})
    else:
        headers = {}
    return _error(429, f"Rate limit reached for requests in organization org-sim on requests per min (RPM): "
                       f"Limit {key.rpm}, Used {key.rpm}, Requested 1. Please try again in {wait}.",
                  "requests", "rate_limit_exceeded", headers=headers)


def _max_tokens(body: dict) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else None


def _reply(messages: list, max_tokens: int | None) -> tuple[str, str]:
    """A deterministic reply of 12-60 words, cut to `max_tokens` (finish_reason "length")."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
    seed = hashlib.sha256(json.dumps(last, sort_keys=True).encode()).digest()
    count = 12 + seed[0] % 49
    words = [_WORDS[(seed[i % len(seed)] + i) % len(_WORDS)] for i in range(count)]
    text = " ".join(words).capitalize() + "."
    if max_tokens is not None and estimate_text_tokens(text) > max_tokens:
        return text[: max_tokens * 4], "length"
    return text, "stop"


def _reasoning_tokens(model: str, messages: list) -> int:
    """Reasoning models think before answering; those tokens are billed as output."""
    if not (model.startswith(("o1", "o3", "o4")) or model.startswith("gpt-5")):
        return 0
    seed = hashlib.sha256(json.dumps(messages[-1], sort_keys=True).encode()).digest()
    return 64 * (1 + seed[1] % 8)


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _completion(model: str, reply: str, finish: str, usage: dict | None) -> dict:
    return {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_sim", "service_tier": "default",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": None,
                                                 "annotations": []},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage}


def _chunk(call_id, created, model, delta, finish, include_usage) -> dict:
    chunk = {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model,
             "system_fingerprint": "fp_sim",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if include_usage:
        chunk["usage"] = None
    return chunk


# --- `tokenpool sim` -------------------------------------------------------------------------

def register(command) -> None:
    """Add `tokenpool sim` to the CLI (`command` is cli.build_parser's helper)."""
    add_sim_arguments(command("sim", cmd_sim, "run the offline OpenAI simulator on 127.0.0.1 (for demos and "
                                              "tests; point a key's base_url at it)"))


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--allowance", type=int, default=None,
                        help="tokens each key may use before 429 insufficient_quota "
                             "(default: the key's daily_token_limit from config)")
    parser.add_argument("--rpm", type=int, default=5_000, help="requests per minute per key")
    parser.add_argument("--tpm", type=int, default=2_000_000, help="tokens per minute per key")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before each answer")
    parser.add_argument("--strict", action="store_true",
                        help="answer 401 to keys that are not in the config (default: accept any key)")
    parser.add_argument("--fault", action="append", default=[], metavar="LABEL=KIND[:ARG]",
                        help="a standing fault for a config key: " + ", ".join(FAULT_KINDS)
                             + " (e.g. k2=quota, k1=rate_limit:5, k3=slow:2)")


def simulator_from_args(args, config) -> Simulator:
    """A Simulator for the CLI: the config's keys with their limits, plus faults by label."""
    sim = Simulator(accept_unknown_keys=not args.strict, rpm=args.rpm, tpm=args.tpm,
                    latency=args.latency_ms / 1000, host=args.host, port=args.port,
                    default_allowance=args.allowance or config.pool.daily_token_limit)
    for key in config.keys:
        sim.add_key(key.secret, label=key.label, allowance=args.allowance or config.key_limit(key))
    for spec in args.fault:
        label, sep, kind = spec.partition("=")
        if not sep:
            raise SimulatorError(f"--fault '{spec}': expected LABEL=KIND, e.g. k2=quota")
        if label not in {k.label for k in config.keys}:
            raise SimulatorError(f"--fault '{spec}': no key labelled '{label}' in the config")
        sim.set_fault(label, parse_fault(kind))
    return sim


def cmd_sim(args) -> int:
    """`tokenpool sim`: serve until interrupted; prints the base URL first."""
    from shared.core.config import load_config
    try:
        sim = simulator_from_args(args, load_config(args.config))
    except SimulatorError as exc:
        print(f"tokenpool sim: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(sim, args.json))


async def _serve(sim: Simulator, as_json: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
    except OSError as exc:
        print(f"tokenpool sim: cannot listen on {sim.host}:{sim.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"base_url": sim.base_url}), flush=True)
    else:
        print(f"OpenAI simulator on {sim.base_url} (set base_url of your keys to it; Ctrl-C stops)", flush=True)
    await stop.wait()
    await sim.close()
    return 0
