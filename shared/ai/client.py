"""The tracked client: the one path every AI call in tokenpool takes.

`TrackedClient.chat` and `.stream` build a request and hand it to the failover loop
(failover.py), which picks keys, speaks the provider's dialect (openai_dialect.py) and
records every attempt through the Accountant. Errors never count tokens unless the
provider may have billed them (then they are estimated and flagged); a response that
carried usage is recorded before anything else is done with it.

Every key's HTTP client is built when the TrackedClient is, so the first message pays
no set-up and `duration_ms` measures from the request's sending.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

from shared.ai.dialect import Answer, Dialect, StreamCut
from shared.ai.errors import (  # noqa: F401  (re-exported: callers import errors from here)
    BookingPaused,
    BudgetExceeded,
    ClientError,
    NoKeyAvailable,
    ProviderUnavailable,
    RequestRejected,
    StreamInterrupted,
)
from shared.ai.failover import Attempt, Failover, Request, Settled, Step
from shared.ai.openai_dialect import OpenAICompatible
from shared.ai.rehearsal import REHEARSALS, OnConnection
from shared.ai.selection import Pick
from shared.ai.token_estimates import estimate_prompt_tokens
from shared.core.accounting import Accountant, Outcome, prepare_statements, rehearse_booking, rehearse_holding_call
from shared.core.allowances import reserve
from shared.core.budget_holds import cost_budgets_enforced
from shared.core.config import Config
from shared.core.db import TRANSIENT_ERRORS, DatabaseUnavailable, database, first_line, inline_twin, rolled_back
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import KeyRing
from shared.core.models import utcnow
from shared.core.pricing import override_hint
from shared.core.usage import Usage

log = logging.getLogger("tokenpool.client")

# A call shaped as an auto-reply's (a system prompt, a chat's turn, a chat id, an output cap),
# so the whole-call rehearsal at start runs the same paths (_rehearse_whole_calls).
_REHEARSED_PROMPT = [{"role": "system", "content": "warm-up"}, {"role": "user", "content": "warm-up"}]


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str                 # the model that answered (a fallback of the chain, maybe)
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
    steps: tuple[Step, ...] = ()     # every attempt on the way, the answering one last

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.cached_tokens, self.output_tokens, self.reasoning_tokens)


class TrackedClient:
    """Chat completions across the key pool, every attempt accounted."""

    def __init__(self, config: Config, keyring: KeyRing, accountant: Accountant, dialect: Dialect | None = None,
                 *, database: DatabaseExecutor | None = None):
        self.config = config
        self.keyring = keyring
        self.accountant = accountant
        if dialect is None:
            dialect = OpenAICompatible(config.client.timeout_seconds)
            dialect.prepare(keyring.held())
        self.failover = Failover(config, keyring, accountant, dialect, database=database)

    @property
    def selector(self):
        return self.failover.selector

    async def warm_up(self) -> None:
        """Do now, at start, what the first message would otherwise wait for: openai's and
        anyio's lazily imported request code (~1 s on a loaded machine), the database thread's
        connection, the selection statements run once, the keys' window anchors read, an
        ordinary booking rehearsed and rolled back (its statements compiled by peewee and the
        driver), the configured models' prices looked up, on SQLite whole calls rehearsed
        against a canned local server (`_rehearse_whole_calls`), the in-flight file opened.
        Sends nothing to any provider and leaves the books as they were. Never raises: what it
        could not do, the first call does."""
        warm = getattr(self.failover.dialect, "warm_up", None)
        for step in ([warm] if warm is not None else []) + [self._warm_database_thread, self._warm_inline,
                                                             self._rehearse_whole_calls, self._open_inflight]:
            try:
                await step()
            except (DatabaseUnavailable, *TRANSIENT_ERRORS) as exc:
                log.info("warm-up at start cut short (%s): the first call does the rest", first_line(exc))
            except Exception:
                log.warning("warm-up at start failed: the first call does the rest", exc_info=True)

    async def _warm_database_thread(self) -> None:
        await self.failover.database.run_once(self._warm_database)

    async def _warm_inline(self) -> None:
        """On SQLite, picks and bookings are done on the loop's thread, on a connection of
        their own (DatabaseExecutor.run_inline): open it and compile its statements too
        (if it cannot be done now, the database thread's warm-up stands for it)."""
        await self.failover.database.run_inline(self._warm_connection, fallback=False)

    def _warm_connection(self, db=None) -> None:
        """The pick and the booking rehearsed REHEARSALS times (rolled back), so that their
        Python runs specialized at the first call, as the request's does (rehearsal.py); and
        so are a reservation and a booking that settles it when the call would hold."""
        model = self.config.client.default_model
        for _ in range(REHEARSALS):
            pick = self.selector.pick(utcnow(), model=model, db=db)
        if pick.key is not None:
            rehearse_booking(pick.key.id, self.accountant.anchor(pick.key.id, db), self.accountant.pricer, db,
                             model=model, times=REHEARSALS)
            self._rehearse_holding(pick, db)

    def _rehearse_holding(self, pick: Pick, db=None) -> None:
        """When a call of the default model on the picked key holds (allowances, enforced budgets,
        the key's own limit), its reservation and its booking with the settling, rehearsed in
        transactions rolled back (nothing kept, nothing written to the in-flight file)."""
        model = self.config.client.default_model
        if pick.key is None:
            return
        holding = self.failover.holding(1, {}, pick.key, model, pick.left)
        if holding is None:
            return
        rehearse_holding_call(pick.key.id, self.accountant.anchor(pick.key.id, db), self.accountant.pricer,
                              lambda conn: reserve(*holding.arguments(utcnow()), db=conn), db, model=model,
                              times=REHEARSALS)

    async def _rehearse_whole_calls(self) -> None:
        """On SQLite, `chat` rehearsed REHEARSALS times from end to end, so that the first
        message runs this module's, the failover loop's and the booking's Python specialized
        (the steps rehearsed apart above leave the code that joins them cold). Every key is
        redirected to a canned server of our own (the dialect's `rehearsing`: no provider sees
        a request), and the picks, holds and bookings run on a connection of the rehearsal's
        own, in one transaction rolled back at the end (nothing is kept, nothing is written
        to the in-flight file, no console line is logged). Not done on PostgreSQL or MySQL,
        whose work runs on the database thread (a rehearsal there would commit)."""
        rehearsing = getattr(self.failover.dialect, "rehearsing", None)
        connection = inline_twin(database.obj) if database.obj is not None else None
        if rehearsing is None or connection is None:
            return
        quiet = logging.getLogger("tokenpool.calls.rehearsal")
        quiet.disabled = True
        executor = OnConnection(connection)
        accountant = Accountant(self.accountant.bot, self.accountant.pricer, executor=executor)
        # One attempt, no retry: were the canned server to fail, the rehearsal ends at once.
        config = replace(self.config, client=replace(self.config.client, max_attempts=1, server_error_retries=0))
        try:
            async with rehearsing() as dialect:
                client = TrackedClient(config, self.keyring, accountant, dialect, database=executor)
                client.failover.selector, client.failover.calls_log = self.selector, quiet
                with rolled_back(connection):
                    for _ in range(REHEARSALS):
                        await client.chat(_REHEARSED_PROMPT, operation="warm-up", chat_id=0, max_tokens=16)
            log.debug("warm-up: %d whole calls rehearsed against a local canned server, rolled back", REHEARSALS)
        except ClientError as exc:      # no key can take a call now: nothing to rehearse
            log.info("warm-up: no whole call rehearsed (%s)", exc)
        finally:
            connection.close()

    async def _open_inflight(self) -> None:
        if self.accountant.inflight is not None:
            self.accountant.inflight.open(rehearsals=REHEARSALS)

    def _warm_database(self) -> None:
        pick = self.selector.pick(utcnow(), model=self.config.client.default_model)
        key_ids = self.keyring.ids()
        self.accountant.load_anchors(key_ids)
        key_id = pick.key.id if pick.key is not None else (key_ids[0] if key_ids else None)
        if key_id is not None:
            rehearse_booking(key_id, self.accountant.anchor(key_id), self.accountant.pricer,
                             model=self.config.client.default_model)
        else:
            prepare_statements(database.obj)
        pricer = self.accountant.pricer
        pricer.prefetch(self.config.models_in_use)
        pricer.cost_nanousd(self.config.client.default_model, 1, 0, 1)
        if cost_budgets_enforced(self.config):
            for model in self.config.models_in_use:
                if not pricer.is_priced(model):
                    log.warning("enforced cost budgets hold calls of %s at $0 (no price known), so cannot stop "
                                "them: %s", model, override_hint(model))
        self._rehearse_holding(pick)

    async def chat(self, messages: list[dict], *, operation: str, model: str | None = None,
                   models: list[str] | tuple[str, ...] | None = None, chat_id: int | None = None,
                   max_tokens: int | None = None, **extra) -> ChatResult:
        """One chat completion; returns its text and accounting. Raises a ClientError subclass.

        `models` is a fallback chain (used when no key can serve the first); `model` one model."""
        request = self._request(messages, operation, model, models, chat_id, max_tokens, extra, stream=False)
        try:
            attempt = await self.failover.send(request)
        except ClientError as exc:
            exc.steps = tuple(request.steps)      # what was tried, for `tokenpool ask`
            raise
        if attempt.answer is None:
            raise RuntimeError("a chat attempt without its answer")    # send() reads it for non-streams
        settled = await self.failover.settle(request, attempt, attempt.answer)
        return _result(request, attempt, attempt.answer, settled)

    def stream(self, messages: list[dict], *, operation: str, model: str | None = None,
               models: list[str] | tuple[str, ...] | None = None, chat_id: int | None = None,
               max_tokens: int | None = None, **extra) -> ChatStream:
        """Stream a chat completion: `async with client.stream(...) as s: async for text in s`.

        Usage comes from the final chunk; a stream that ends without it (cut, or the
        consumer stopped early) is recorded with an estimate flagged `estimated`.
        `s.result` holds the ChatResult once the stream has ended."""
        request = self._request(messages, operation, model, models, chat_id, max_tokens, extra, stream=True)
        return ChatStream(self.failover, request)

    async def aclose(self) -> None:
        await self.failover.dialect.aclose()

    def _request(self, messages, operation, model, models, chat_id, max_tokens, extra, *, stream) -> Request:
        params = dict(extra)
        if max_tokens is not None:
            params["max_completion_tokens"] = max_tokens
        if stream:
            params["stream"] = True
            params["stream_options"] = {**params.get("stream_options", {}), "include_usage": True}
        chain = tuple(dict.fromkeys(models or ())) or (model or self.config.client.default_model,)
        return Request(messages=messages, operation=operation, models=chain, chat_id=chat_id, params=params,
                       stream=stream,
                       prompt_estimate=estimate_prompt_tokens(messages if isinstance(messages, list) else [],
                                                              chain))


class ChatStream:
    """An async iterator of text deltas; records the call when it ends (see TrackedClient.stream)."""

    def __init__(self, failover: Failover, request: Request):
        self._failover = failover
        self._request = request
        self._deltas: AsyncGenerator[str, None] | None = None
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

    async def _run(self) -> AsyncGenerator[str, None]:
        failover, request = self._failover, self._request
        attempt = await failover.send(request)
        parts: list[str] = []
        answer: Answer | None = None
        outcome, error = Outcome.INTERRUPTED, None
        try:
            async with contextlib.aclosing(failover.stream(attempt)) as items:
                async for item in items:
                    if isinstance(item, Answer):
                        answer = item
                    else:
                        parts.append(item)
                        yield item
            outcome = Outcome.OK
        except StreamCut as exc:
            error = exc
        finally:
            if answer is None:
                answer = Answer("".join(parts))
            if outcome is Outcome.OK:
                error_code = ""
            elif error is not None:
                error_code = str(error)
            else:
                error_code = "stream closed early by the caller"
            settled = await asyncio.shield(failover.settle(request, attempt, answer, outcome=outcome,
                                                           error_code=error_code))
            self.result = _result(request, attempt, answer, settled)
        if error is not None:
            raise StreamInterrupted("The answer was cut off before it finished.", "".join(parts)) from error


def _result(request: Request, attempt: Attempt, answer: Answer, settled: Settled) -> ChatResult:
    usage = settled.usage
    return ChatResult(text=answer.text, model=attempt.model, key_label=attempt.key.label,
                      input_tokens=usage.input, cached_tokens=usage.cached, output_tokens=usage.output,
                      reasoning_tokens=usage.reasoning, duration_ms=settled.duration_ms,
                      call_id=settled.recorded.call_id, estimated=settled.estimated,
                      cost_nanousd=settled.recorded.cost_nanousd, finish_reason=answer.finish_reason,
                      steps=tuple(request.steps))
