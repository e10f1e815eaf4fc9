"""The report commands in Saved Messages, through the bot's real handlers."""
from __future__ import annotations

import json
import os

import pytest

from shared.reports.budgets import budget_report
from shared.reports.queries import recent_calls, usage_report
from shared.reports.render_telegram import render_budget, render_recent, render_usage
from tests.shared.report_fixtures import NOW, history_config, record_history
from tests.shared.reports.test_charts import png_size
from tests.userbot.conftest import Clock
from tests.userbot.recording import Call, saved
from userbot.app import BotApp
from userbot.commands import default_registry
from userbot.report_commands import COMMANDS


@pytest.fixture
async def bot(make_bot, sqlite_url):
    config = history_config(sqlite_url, budgets={"daily_tokens": 10_000})
    record_history(config)
    harness = await make_bot(config=config, clock=Clock(NOW))
    registry = default_registry()
    for command in COMMANDS:          # unless default_registry has them already
        if registry.get(command.name) is None:
            registry.add(command)
    app = BotApp(config, harness.replier, registry, run_blocking=harness.accountant.run, clock=harness.clock)
    harness.handlers = app.handlers()
    return harness


async def answer(bot, text: str) -> str:
    message = saved(bot.client, text)
    await bot.send(message)
    (edit,) = [c for c in bot.client.sent("edit_message_text") if c.args[1] == message.id]
    return edit.args[2]


@pytest.mark.parametrize("text, days, by", [(".usage", 30, "day"), (".usage 7 by model", 7, "model"),
                                            (".usage chat 90", 90, "chat"), (".usage 365 by op", 365, "operation")])
async def test_usage(bot, text, days, by):
    assert await answer(bot, text) == render_usage(usage_report(NOW, days, by))


async def test_recent(bot):
    no_messages = "\n\n💬 <b>Recent messages</b> (0)\nNo messages yet."
    assert await answer(bot, ".recent") == render_recent(recent_calls(20), NOW) + no_messages
    assert await answer(bot, ".recent 3") == render_recent(recent_calls(3), NOW) + no_messages


async def test_budget(bot):
    text = await answer(bot, ".budget")
    assert text == render_budget(budget_report(NOW, bot.config))
    assert "🔴 pool · daily tokens: 17,114 tokens of 10,000 tokens (171%) · crossed" in text


async def test_export_sends_the_days_calls_as_a_document(bot):
    assert await answer(bot, ".export json 2") == "📎 <b>Export</b>: 16 calls, 2026-03-09 → 2026-03-10 (UTC days), JSON"
    (sent,) = bot.client.sent("send_document")
    _chat, name, data = sent.args
    assert name == "tokenpool-calls-2026-03-09-to-2026-03-10.json"
    assert len(json.loads(data)) == 16


async def test_chart_sends_a_png(bot):
    text = await answer(bot, ".chart 14")
    assert text.startswith("📊 <b>Tokens per UTC day</b>, last 14 days")
    (sent,) = bot.client.sent("send_photo")
    assert png_size(sent.args[2]) == (1200, 600)


@pytest.mark.parametrize("text, problem", [
    (".usage 0", "days must be a whole number from 1 to 3660, not &#x27;0&#x27;"),
    (".usage by colour", "cannot group by &#x27;colour&#x27;"),
    (".recent lots", "n must be a whole number from 1 to 1000"),
    (".usage ²", "days must be a whole number from 1 to 3660, not &#x27;²&#x27;"),
    (".usage 7 by ²", "cannot group by &#x27;²&#x27;"),
    (".usage " + "9" * 5000, "days must be a whole number from 1 to 3660"),
    (".recent ²", "n must be a whole number from 1 to 1000, not &#x27;²&#x27;"),
    (".recent " + "9" * 5000, "n must be a whole number from 1 to 1000"),
    (".recent ٣", "n must be a whole number from 1 to 1000"),
    (".chart ²", "days must be a whole number from 2 to 366"),
    (".chart " + "9" * 5000, "days must be a whole number from 2 to 366"),
    (".export csv ²", "days must be a whole number from 1 to 92"),
    (".export xml", "say which format: csv or json"),
    (".export csv 400", "days must be a whole number from 1 to 92"),
    (".chart 1", "days must be a whole number from 2 to 366"),
    (".budget now", "unexpected &#x27;now&#x27;"),
])
async def test_bad_arguments_get_the_reason_and_the_usage_line(bot, text, problem):
    reply = await answer(bot, text)
    assert reply.startswith("⚠️ ") and problem in reply and "Usage: <code>." in reply
    assert len(reply) < 300 and "failed" not in reply


@pytest.mark.parametrize("text, method", [(".export csv 2", "send_document"), (".chart 14", "send_photo")])
async def test_reports_are_sent_by_path_from_a_private_file_that_is_gone_afterwards(bot, text, method):
    await answer(bot, text)
    (sent,) = bot.client.sent(method)
    assert sent.path and sent.args[2]                       # sent by its path; the file had the report
    assert (sent.mode, sent.dir_mode) == (0o600, 0o700)     # only the bot's user could read it
    assert not os.path.exists(sent.path) and not os.path.exists(os.path.dirname(sent.path))


async def test_a_report_file_is_deleted_when_sending_it_fails(bot):
    async def fails(*args, **kwargs):
        bot.client.calls.append(Call("send_document", args, {**kwargs, "path": args[1]}))
        raise ValueError("Telegram refused the file")      # not retried: raised to the handler
    bot.client.send_document = fails
    with pytest.raises(ValueError):
        await bot.send(saved(bot.client, ".export json 2"))
    (call,) = bot.client.sent("send_document")
    path = call.kwargs["path"]
    assert path.endswith(".json") and not os.path.exists(os.path.dirname(path))
