"""A minimal OpenAI-compatible server that records each request and answers a fixed text.

For what the simulator does not do: show the prompts it was sent, and answer at length."""
from __future__ import annotations

import contextlib
import inspect

from aiohttp import web

from tests.conftest import make_config
from tests.shared.client_fixtures import secret


@contextlib.asynccontextmanager
async def scripted_openai(received: list, answer, on_request=None):
    """Serve on 127.0.0.1; yields the base_url. Request bodies are appended to `received`;
    `answer` is a text, or a function of the request body giving one; `on_request(body)`,
    when given, runs before answering (e.g. to move a test clock: AI latency)."""
    async def completions(request):
        body = await request.json()
        received.append(body)
        if on_request is not None:
            result = on_request(body)
            if inspect.isawaitable(result):
                await result
        text = answer(body) if callable(answer) else answer
        return web.json_response({
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1_700_000_000,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": len(text) // 4,
                      "total_tokens": 50 + len(text) // 4}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def scripted_config(url: str, base_url: str, **autoreply):
    """One key pointed at a scripted server; no cooldown, quiet period or caps unless given."""
    return make_config([{"label": "scripted", "api_key": secret(9), "base_url": base_url,
                         "daily_token_limit": 10_000_000}], url=url,
                       autoreply={"cooldown_seconds": 0, "reply_after_quiet_seconds": 0, "max_replies_per_minute": 0,
                                  "max_replies_per_chat_per_hour": 0, **autoreply},
                       client={"timeout_seconds": 300.0})
