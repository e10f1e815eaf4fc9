"""Auto-replies through the real handlers: Pyrogram messages in, the simulator's answer out,
every guard holding, each message answered at most once."""
from __future__ import annotations

import datetime as dt

import openai
import pytest
from pyrogram import enums

from shared.core.models import Alert, ApiKey, ChatMessage, ChatState, HandledMessage, UsageEvent
from tests.userbot.conftest import Clock
from tests.userbot.recording import (
    ALICE_ID,
    dialog,
    in_group,
    incoming,
    make_user,
    owner_in_chat,
    saved,
)
from tests.userbot.scripted import scripted_config, scripted_openai
from userbot.app import incoming_from
from userbot.autoreply import no_typing

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
STRANGER = make_user(2002, "Stranger")
SOME_BOT = make_user(3003, "Helper", is_bot=True, username="helper_bot")
TELEGRAM = make_user(777000, "Telegram")


async def simulator_answer(sim, text: str, model: str = "gpt-4o-mini") -> str:
    """What the simulator answers to `text` as the last user message, asked with the bare openai client."""
    spare = "sk-spare-" + "s" * 30
    sim.add_key(spare, label="spare")
    async with openai.AsyncOpenAI(api_key=spare, base_url=sim.base_url, max_retries=0) as client:
        completion = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_completion_tokens=400)
    return completion.choices[0].message.content


async def test_private_message_gets_the_simulators_answer_and_a_usage_row(make_bot, simulator):
    bot = await make_bot()
    message = incoming(ALICE, "Are we still meeting tomorrow?", client=bot.client)

    assert await bot.send(message)

    expected = await simulator_answer(simulator, "Are we still meeting tomorrow?")
    assert bot.client.texts(ALICE_ID) == [expected]
    (call,) = bot.client.sent("send_message", ALICE_ID)
    assert call.kwargs["parse_mode"] == enums.ParseMode.DISABLED
    actions = [c.args[1] for c in bot.client.sent("send_chat_action", ALICE_ID)]
    assert actions[0] == enums.ChatAction.TYPING and actions[-1] == enums.ChatAction.CANCEL
    (event,) = UsageEvent.select()
    assert (event.operation, event.chat_id, event.bot, event.outcome) == ("autoreply", ALICE_ID, "main", "ok")
    assert event.output_tokens > 0
    assert HandledMessage.get(HandledMessage.message_id == message.id).outcome == "replied"


async def test_the_same_message_is_answered_once_even_after_a_restart(make_bot):
    bot = await make_bot()
    message = incoming(ALICE, "ping", client=bot.client)
    await bot.send(message)
    await bot.send(message)                       # Telegram delivers it again
    restarted = await make_bot(config=bot.config)  # a new process over the same database
    await restarted.send(message)

    assert len(bot.client.texts(ALICE_ID)) == 1
    assert restarted.client.texts(ALICE_ID) == []
    assert UsageEvent.select().count() == 1


async def test_same_message_once_on_every_backend(any_bot):
    message = incoming(ALICE, "hello on any database", client=any_bot.client)
    for _ in range(3):
        await any_bot.send(message)
    assert len(any_bot.client.texts(ALICE_ID)) == 1
    assert HandledMessage.select().count() == 1
    assert UsageEvent.get().chat_id == ALICE_ID


@pytest.mark.parametrize("sender, why", [
    (SOME_BOT, "bot"),
    (TELEGRAM, "telegram_service"),
])
async def test_no_reply_to_bots_or_telegram(make_bot, sender, why):
    bot = await make_bot()
    await bot.send(incoming(sender, "Your login code is 12345", client=bot.client))
    assert bot.client.texts() == []
    assert UsageEvent.select().count() == 0


async def test_no_reply_to_telegram_even_from_a_plain_user_object(make_bot):
    bot = await make_bot()
    await bot.send(incoming(make_user(777000, "Telegram", is_contact=True), "Login code: 55555", client=bot.client))
    assert bot.client.texts() == []


async def test_no_reply_to_service_messages_or_media_without_text(make_bot):
    bot = await make_bot()
    await bot.send(incoming(ALICE, None, service=enums.MessageServiceType.CONTACT_REGISTERED
                            if hasattr(enums.MessageServiceType, "CONTACT_REGISTERED")
                            else enums.MessageServiceType.PINNED_MESSAGE, client=bot.client))
    await bot.send(incoming(ALICE, None, client=bot.client))
    assert bot.client.texts() == []


async def test_no_reply_in_groups_or_to_the_owners_own_messages(make_bot):
    bot = await make_bot()
    await bot.send(in_group(ALICE, "hi all", client=bot.client))
    await bot.send(owner_in_chat(bot.client, ALICE, "I'm writing this myself"))
    assert bot.client.texts() == []
    assert UsageEvent.select().count() == 0


async def test_global_switch_off_and_on(make_bot):
    bot = await make_bot()
    await bot.send(saved(bot.client, ".autoreply off"))
    await bot.send(incoming(ALICE, "anyone there?", client=bot.client))
    assert bot.client.texts(ALICE_ID) == []
    await bot.send(saved(bot.client, ".autoreply on"))
    await bot.send(incoming(ALICE, "hello?", client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_config_can_start_switched_off(make_bot):
    bot = await make_bot(autoreply={"enabled": False})
    await bot.send(incoming(ALICE, "hi", client=bot.client))
    assert bot.client.texts() == []


async def test_deny_list_and_allow_mode(make_bot):
    bot = await make_bot(autoreply={"mode": "allow"})
    await bot.send(incoming(ALICE, "first", client=bot.client))
    assert bot.client.texts(ALICE_ID) == []                   # allow mode, not allowed yet
    await bot.send(saved(bot.client, f".allow {ALICE_ID}"))
    await bot.send(incoming(ALICE, "second", client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1
    await bot.send(saved(bot.client, f".deny {ALICE_ID}"))
    await bot.send(incoming(ALICE, "third", client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_deny_from_inside_the_chat(make_bot):
    bot = await make_bot()
    command = owner_in_chat(bot.client, ALICE, ".deny")
    await bot.send(command)
    # The command leaves the conversation; the answer goes to Saved Messages.
    assert bot.client.sent("delete_messages") and bot.client.sent("delete_messages")[0].args == (ALICE_ID, command.id)
    assert "No auto-replies for" in bot.client.texts("me")[0]
    await bot.send(incoming(ALICE, "hello", client=bot.client))
    assert bot.client.texts(ALICE_ID) == []


async def test_contacts_only(make_bot):
    bot = await make_bot(autoreply={"contacts_only": True})
    await bot.send(incoming(STRANGER, "hi, we met yesterday", client=bot.client))
    await bot.send(incoming(ALICE, "hi, it's Alice", client=bot.client))
    assert bot.client.texts(STRANGER.id) == []
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_muted_chats_are_skipped(make_bot):
    bot = await make_bot(autoreply={"skip_muted": True})
    bot.client.muted.add(STRANGER.id)
    await bot.send(incoming(STRANGER, "spam spam", client=bot.client))
    await bot.send(incoming(ALICE, "not muted", client=bot.client))
    assert bot.client.texts(STRANGER.id) == []
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_working_hours(make_bot):
    clock = Clock(dt.datetime.combine(dt.date.today(), dt.time(20, 0)))
    bot = await make_bot(clock=clock, autoreply={"working_hours": "09:00-18:00"})
    await bot.send(incoming(ALICE, "evening!", date=clock.now, client=bot.client))
    assert bot.client.texts(ALICE_ID) == []
    clock.now = clock.now.replace(hour=10)
    await bot.send(incoming(ALICE, "morning!", date=clock.now, client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_messages_older_than_the_age_limit_are_skipped(make_bot):
    bot = await make_bot(autoreply={"max_message_age_minutes": 60})
    old = incoming(ALICE, "sent while the bot was down", date=bot.clock.now - dt.timedelta(hours=3),
                   client=bot.client)
    recent = incoming(ALICE, "sent a bit ago", date=bot.clock.now - dt.timedelta(minutes=30), client=bot.client)
    await bot.send(old)
    await bot.send(recent)
    assert len(bot.client.texts(ALICE_ID)) == 1
    assert HandledMessage.get(HandledMessage.message_id == old.id).outcome == "too_old"


async def test_cooldown_per_chat(make_bot):
    bot = await make_bot(autoreply={"cooldown_seconds": 60})
    await bot.send(incoming(ALICE, "one", client=bot.client))
    bot.clock.advance(seconds=20)
    await bot.send(incoming(ALICE, "two", date=bot.clock.now, client=bot.client))
    await bot.send(incoming(STRANGER, "other chat", date=bot.clock.now, client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1       # still cooling down
    assert len(bot.client.texts(STRANGER.id)) == 1    # the cooldown is per chat
    bot.clock.advance(seconds=60)
    await bot.send(incoming(ALICE, "three", date=bot.clock.now, client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 2


async def test_cooldown_set_by_command(make_bot):
    bot = await make_bot()
    await bot.send(saved(bot.client, ".cooldown 5"))
    await bot.send(incoming(ALICE, "one", client=bot.client))
    bot.clock.advance(minutes=4)
    await bot.send(incoming(ALICE, "two", date=bot.clock.now, client=bot.client))
    assert len(bot.client.texts(ALICE_ID)) == 1


async def test_another_auto_replier_is_not_answered_forever(make_bot):
    """The other side answers each of our replies within a second: after three such
    exchanges we stop, and stay stopped while the pause lasts."""
    bot = await make_bot(autoreply={"loop_fast_reply_seconds": 5, "loop_max_fast_exchanges": 3,
                                    "loop_pause_minutes": 60})
    other = make_user(4004, "Echo", username="echo_person")
    for _ in range(10):
        await bot.send(incoming(other, f"Auto-reply: got your message ({bot.clock.now})", date=bot.clock.now,
                                client=bot.client))
        bot.clock.advance(seconds=1)
    assert len(bot.client.texts(other.id)) == 3
    bot.clock.advance(minutes=61)
    await bot.send(incoming(other, "a human now", date=bot.clock.now, client=bot.client))
    assert len(bot.client.texts(other.id)) == 4


async def test_a_person_sending_bursts_is_not_a_loop(make_bot):
    """Quick follow-ups right after our reply, round after round, are no auto-replier:
    each round starts with a slow message, which ends any run of quick answers."""
    bot = await make_bot(autoreply={"cooldown_seconds": 30, "loop_fast_reply_seconds": 5,
                                    "loop_max_fast_exchanges": 2})
    for round_ in range(4):
        for part in range(3):
            await bot.send(incoming(ALICE, f"round {round_} part {part}", date=bot.clock.now, client=bot.client))
            bot.clock.advance(seconds=1)
        bot.clock.advance(minutes=2)
    assert len(bot.client.texts(ALICE_ID)) == 4
    assert not HandledMessage.select().where(HandledMessage.outcome.startswith("loop")).exists()


async def test_owner_replies_are_part_of_the_context(make_bot, sqlite_url):
    """The owner's own messages in the chat go to the model as the assistant's turns."""
    received = []
    async with scripted_openai(received, "Sure, see you at 5.") as base_url:
        config = scripted_config(sqlite_url, base_url)
        bot = await make_bot(config=config)
        await bot.send(incoming(ALICE, "Can we move the call?", client=bot.client))
        await bot.send(owner_in_chat(bot.client, ALICE, "Yes, to 5pm works for me"))
        await bot.send(incoming(ALICE, "Great, 5pm then?", client=bot.client))
        assert len(received) == 1                    # the owner is in the chat: hands off ...
        bot.clock.advance(minutes=31)
        await bot.tick()                             # ... until the owner's pause ends
    roles = [(m["role"], m["content"]) for m in received[-1]["messages"]]
    assert roles == [
        ("system", config.autoreply.system_prompt),
        ("user", "Can we move the call?"),
        ("assistant", "Sure, see you at 5."),
        ("assistant", "Yes, to 5pm works for me"),
        ("user", "Great, 5pm then?"),
    ]
    assert received[-1]["max_completion_tokens"] == config.autoreply.max_output_tokens


async def test_context_is_trimmed_to_the_last_messages(make_bot, sqlite_url):
    received = []
    async with scripted_openai(received, "ok") as base_url:
        config = scripted_config(sqlite_url, base_url, context_messages=4, loop_max_fast_exchanges=100)
        bot = await make_bot(config=config)
        for i in range(12):
            await bot.send(incoming(ALICE, f"message {i}", client=bot.client))
    prompt = [(m["role"], m["content"]) for m in received[-1]["messages"]]
    assert prompt == [("system", bot.config.autoreply.system_prompt), ("assistant", "ok"),
                      ("user", "message 10"), ("assistant", "ok"), ("user", "message 11")]
    kept = ChatMessage.select().where(ChatMessage.chat_id == ALICE_ID).count()
    assert kept == 4 + 8          # the context window and a little more, not all 23 messages


async def test_long_answers_are_split_at_the_telegram_limit(make_bot, sqlite_url):
    paragraph = "This is a fairly long sentence of an answer that goes on. " * 20
    answer = "\n\n".join(f"{i}: {paragraph.strip()}" for i in range(8))   # ~9,500 characters
    async with scripted_openai([], answer) as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url))
        await bot.send(incoming(ALICE, "tell me everything", client=bot.client))
    texts = bot.client.texts(ALICE_ID)
    assert len(texts) == 3
    assert all(len(t.encode("utf-16-le")) // 2 <= 4096 for t in texts)
    assert "\n\n".join(texts) == answer
    # Every piece is context, and the cooldown started once.
    assert ChatMessage.select().where(ChatMessage.role == "auto").count() == 3


async def test_no_eligible_key_means_no_reply_and_an_alert(make_bot):
    bot = await make_bot()
    ApiKey.update(invalid=True, invalid_reason="401").execute()
    await bot.send(incoming(ALICE, "hello?", client=bot.client))
    assert bot.client.texts(ALICE_ID) == []
    (alert,) = Alert.select()
    assert alert.kind == "no_key" and "No API key can pay for auto-replies" in alert.text
    assert HandledMessage.get().outcome == "no_key"
    await bot.send(incoming(ALICE, "hello again?", client=bot.client))
    assert Alert.select().count() == 1            # one alert, not one per message


async def test_no_eligible_key_sends_the_configured_fallback(make_bot):
    bot = await make_bot(autoreply={"fallback_text": "I'm away; I'll answer later."})
    ApiKey.update(exhausted_window=ApiKey.window_start, used_today=ApiKey.daily_token_limit,
                  window_start=ApiKey.window_anchor).execute()
    await bot.send(incoming(ALICE, "hello?", client=bot.client))
    assert bot.client.texts(ALICE_ID) == ["I'm away; I'll answer later."]
    assert Alert.select().count() == 1
    assert UsageEvent.select().count() == 0


async def test_messages_missed_while_offline_are_answered_once_at_start(make_bot):
    bot = await make_bot()
    missed = [incoming(ALICE, f"while you were away {i}", client=bot.client) for i in range(2)]
    bot.client.dialogs = [dialog(ALICE_ID, "Alice", 2, missed[-1])]
    bot.client.histories[ALICE_ID] = missed
    assert await bot.app.catch_up(bot.client) == 2
    await bot.send(missed[1])                      # Telegram also delivers one of them
    assert await bot.app.catch_up(bot.client) == 0  # the scan sees them again, but they are not new...
    assert len(bot.client.texts(ALICE_ID)) == 2     # ...and each was answered once
    # Answered chats are marked read, so the next start does not find them unread again.
    assert [c.args for c in bot.client.sent("read_chat_history")] == [(ALICE_ID, missed[0].id),
                                                                      (ALICE_ID, missed[1].id)]


class BrokenTransport:
    """A transport whose network is down."""

    typing = staticmethod(no_typing)

    async def send_text(self, chat_id, text):
        raise OSError("network is down")


async def test_a_failed_send_is_not_retried_into_a_double_answer(make_bot):
    bot = await make_bot()
    message = incoming(ALICE, "hello", client=bot.client)
    with pytest.raises(OSError):
        await bot.replier.handle(incoming_from(message), BrokenTransport())
    assert HandledMessage.get().outcome == "failed"
    await bot.send(message)
    assert bot.client.texts(ALICE_ID) == []


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])     # NUL: PostgreSQL refuses it; a lone surrogate: every driver
async def test_characters_a_backend_refuses_are_dropped_and_the_message_answered(any_bot, bad):
    sender = make_user(1003, f"Ca{bad}rol", username="carol_c")
    message = incoming(sender, f"hel{bad}lo", client=any_bot.client)
    await any_bot.send(message)
    assert len(any_bot.client.texts(1003)) == 1
    assert HandledMessage.get().text == "hello"
    assert ChatState.get(ChatState.chat_id == 1003).label == "Carol"
