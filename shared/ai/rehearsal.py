"""Chat completions rehearsed at start against a server of our own on 127.0.0.1.

The first request of a process runs code no warm-up by parts reaches: openai's request and
raw-response path, httpx, httpcore's pool and connection, h11's state machine, anyio's
connect (and its lazily imported names), the dialect reading the answer and the rate-limit
headers. Run once, it costs the first real call ~2 ms of CPU (bench/client_overhead.py),
~4x the steady tracking overhead. So the bot rehearses whole exchanges at start, with a
throwaway client (no proxy from the environment, no TLS) against a canned answer that
never leaves the machine: no provider sees a request, nothing is billed or booked.

`rehearse_chat` rehearses the request and the dialect's reading of it; on SQLite the
TrackedClient also rehearses whole calls (`TrackedClient._rehearse_whole_calls`) through a
dialect that sends every key's requests here, with its database work on a connection of its
own (`OnConnection`) inside a transaction that is rolled back.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import openai
import peewee

from shared.ai.dialect import Answer, Sent
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import HeldKey
from shared.core.models import utcnow

TIMEOUT_SECONDS = 5.0
# Python specializes a function's bytecode only after it has run several times (8 calls in
# CPython 3.11): rehearsed once, the request code would still run unspecialized at the first call.
REHEARSALS = 10
_BODY = json.dumps({
    "id": "chatcmpl-warm-up", "object": "chat.completion", "created": 0, "model": "warm-up",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
_HEAD = ("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
         "x-ratelimit-limit-requests: 1\r\nx-ratelimit-remaining-requests: 1\r\nx-ratelimit-reset-requests: 1s\r\n"
         "x-ratelimit-limit-tokens: 1\r\nx-ratelimit-remaining-tokens: 1\r\nx-ratelimit-reset-tokens: 1s\r\n"
         f"content-length: {len(_BODY)}\r\n\r\n").encode()


async def rehearse_chat(dialect, times: int = REHEARSALS) -> Answer:
    """Send `times` chat completions through openai to a local canned server, each on a new
    connection, and read them with `dialect` (an OpenAICompatible: `answer`, `rate_limits`).
    Raises what a failure raises."""
    async with canned_server() as base_url:
        client = canned_client(base_url)
        key = HeldKey(id=0, fingerprint="", label="warm-up", masked="", base_url=base_url, secret="")
        try:
            for _ in range(times):
                raw = await client.chat.completions.with_raw_response.create(
                    model="warm-up", messages=[{"role": "user", "content": "warm-up"}])
                sent = Sent(key, "warm-up", dict(raw.headers.items()), raw)
                answer = await dialect.answer(sent)
                dialect.rate_limits(sent.headers, utcnow())
        finally:
            await client.close()
    return answer


@contextlib.asynccontextmanager
async def canned_server() -> AsyncIterator[str]:
    """A server of our own on 127.0.0.1 that answers every request with the canned chat
    completion, each on its connection (closed after it); yields its base URL."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def canned_client(base_url: str) -> openai.AsyncOpenAI:
    """A throwaway client for the canned server: no key's secret, no proxy from the environment, no TLS."""
    return openai.AsyncOpenAI(api_key="warm-up", base_url=base_url, max_retries=0, timeout=TIMEOUT_SECONDS,
                              http_client=openai.DefaultAsyncHttpxClient(trust_env=False, verify=False))


class OnConnection(DatabaseExecutor):
    """The DatabaseExecutor of a rehearsal of whole calls: each piece of work that would run
    inline runs at once on `db` (a connection of the rehearsal's own, inside its rolled-back
    transaction). Nothing of a rehearsal may go to the database thread, whose connection
    would commit it: `run` and `run_once` refuse."""

    def __init__(self, db: peewee.Database):
        super().__init__(name="rehearsal", inline=False)
        self.db = db

    async def run_inline(self, fn, *args, what: str | None = None, retry_locked: bool = True, fallback: bool = True,
                         **kwargs):
        return fn(*args, db=self.db, **kwargs)

    async def run(self, fn, *args, **kwargs):
        raise RuntimeError("a rehearsal does no work on the database thread")

    run_once = run


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_SECONDS)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await asyncio.wait_for(reader.readexactly(length), TIMEOUT_SECONDS)
        writer.write(_HEAD + _BODY)
        await writer.drain()
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass                            # the client gives up on its own; the rehearsal is skipped
    finally:
        writer.close()
