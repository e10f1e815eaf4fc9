"""Conversations a person trusts: bursts answered once, nothing dropped by a cooldown or a
switch, the owner first, exactly once across crashes and duplicate updates, loops stopped at
any AI latency, caps, recipients, the digest and names. All through the real handlers."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from pyrogram import enums
from pyrogram.errors import MessageNotModified
from pyrogram.types import Voice

from shared.core.models import ChatState, HandledMessage, utcnow
from shared.reports.queries import usage_report
from tests.userbot.conftest import Clock
from tests.userbot.recording import ALICE_ID, OWNER_ID, incoming, make_user, owner_in_chat, saved
from tests.userbot.scripted import scripted_config, scripted_openai

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
BOB = make_user(1002, "Bob", is_contact=True)
STRANGER = make_user(2002, "Stranger")


def fates(chat_id: int = ALICE_ID) -> list[tuple[str, int | None]]:
    rows = (HandledMessage.select().where((HandledMessage.chat_id == chat_id) & (HandledMessage.kind != "command"))
            .order_by(HandledMessage.message_id))
    return [(row.outcome, row.reply_id) for row in rows]


async def say(bot, sender, text: str, **kwargs):
    message = incoming(sender, text, date=bot.clock.now, client=bot.client, **kwargs)
    await bot.send(message)
    return message


async def test_a_burst_is_answered_once_with_every_message_in_the_prompt(make_bot, sqlite_url):
    received = []
    async with scripted_openai(received, "Yes, dinner tonight works.") as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url, reply_after_quiet_seconds=3))
        for text in ("hi", "are you free tonight?", "for dinner I mean"):
            await say(bot, ALICE, text)
            bot.clock.advance(seconds=0.3)
        assert await bot.tick() == 0                  # the contact may still be typing
        bot.clock.advance(seconds=3)
        assert await bot.tick() == 1
        assert await bot.tick() == 0
    assert bot.client.texts(ALICE_ID) == ["Yes, dinner tonight works."]
    (request,) = received
    assert [m["content"] for m in request["messages"] if m["role"] == "user"] == \
        ["hi", "are you free tonight?", "for dinner I mean"]
    ((_, reply_id), _, _) = fates()
    assert fates() == [("merged", reply_id), ("merged", reply_id), ("replied", reply_id)]
    await bot.send(saved(bot.client, ".recent 5"))
    shown = bot.client.edits()[-1]
    assert f"Alice: “hi” — merged into reply {reply_id}" in shown
    assert "Alice: “for dinner I mean” — answered" in shown


async def test_messages_during_a_cooldown_are_answered_when_it_ends(make_bot):
    bot = await make_bot(autoreply={"cooldown_seconds": 60})
    await say(bot, ALICE, "one")
    bot.clock.advance(seconds=20)
    await say(bot, ALICE, "two")
    await say(bot, BOB, "other chat")
    assert len(bot.client.texts(ALICE_ID)) == 1 and len(bot.client.texts(BOB.id)) == 1
    assert fates()[1] == ("pending", None)
    assert HandledMessage.get(HandledMessage.text == "two").detail == "cooldown"
    bot.clock.advance(seconds=39)
    assert await bot.tick() == 0
    bot.clock.advance(seconds=2)
    assert await bot.tick() == 1
    assert len(bot.client.texts(ALICE_ID)) == 2
    assert [outcome for outcome, _ in fates()] == ["replied", "replied"]


async def test_messages_while_switched_off_are_answered_after_on_within_the_age_limit(make_bot):
    bot = await make_bot(autoreply={"max_message_age_minutes": 60})
    await bot.send(saved(bot.client, ".autoreply off"))
    await say(bot, ALICE, "anyone there?")
    bot.clock.advance(minutes=30)
    await say(bot, BOB, "hello?")
    await say(bot, BOB, "hello??")
    assert bot.client.texts() == [] and await bot.tick() == 0
    bot.clock.advance(minutes=31)                    # Alice's message is now 61 minutes old
    await bot.send(saved(bot.client, ".autoreply on"))
    assert await bot.tick() == 1
    assert bot.client.texts(ALICE_ID) == [] and len(bot.client.texts(BOB.id)) == 1
    assert fates() == [("too_old", None)]
    assert [outcome for outcome, _ in fates(BOB.id)] == ["merged", "replied"]


async def test_the_owner_comes_first_and_auto_replies_resume_by_themselves(make_bot):
    bot = await make_bot(autoreply={"reply_after_quiet_seconds": 3, "owner_pause_minutes": 30})
    await say(bot, ALICE, "are you there?")
    bot.clock.advance(seconds=1)
    await bot.send(owner_in_chat(bot.client, ALICE, "yes, here!", date=bot.clock.now))
    bot.clock.advance(seconds=5)
    assert await bot.tick() == 0
    assert fates() == [("owner_replied", None)]
    await say(bot, ALICE, "great, so about tomorrow")
    bot.clock.advance(minutes=10)
    assert await bot.tick() == 0                     # hands off while the owner is in the chat
    bot.clock.advance(minutes=21)
    assert await bot.tick() == 1                     # the pause ended by itself
    assert [outcome for outcome, _ in fates()] == ["owner_replied", "replied"]


async def test_pause_and_resume_by_hand_inside_a_chat_and_everywhere(make_bot):
    bot = await make_bot()
    await bot.send(owner_in_chat(bot.client, ALICE, ".pause 2h"))
    assert "No auto-replies in <b>@alice_w" in bot.client.texts("me")[-1]
    await say(bot, ALICE, "ping")
    await say(bot, BOB, "ping")
    assert bot.client.texts(ALICE_ID) == [] and len(bot.client.texts(BOB.id)) == 1
    await bot.send(owner_in_chat(bot.client, ALICE, ".resume"))
    assert await bot.tick() == 1
    await bot.send(saved(bot.client, ".pause 1h"))
    await say(bot, BOB, "and now?")
    assert await bot.tick() == 0
    await bot.send(saved(bot.client, ".resume"))
    assert await bot.tick() == 1
    assert len(bot.client.texts(BOB.id)) == 2


async def test_a_message_delivered_twice_is_answered_once(make_bot):
    bot = await make_bot()
    message = await say(bot, ALICE, "ping")
    await bot.send(message)
    await bot.tick()
    assert len(bot.client.texts(ALICE_ID)) == 1 and HandledMessage.select().count() == 1


async def test_a_command_delivered_twice_runs_once(make_bot, caplog):
    bot = await make_bot()
    command = saved(bot.client, ".cooldown 5")
    await bot.send(command)
    await bot.send(command)                           # the same update again (pyrogram issue 1419)
    assert len(bot.client.edits()) == 1
    deny = owner_in_chat(bot.client, ALICE, ".deny")
    await bot.send(deny)
    await bot.send(deny)
    assert len(bot.client.sent("delete_messages")) == 1 and len(bot.client.texts("me")) == 1
    # Telegram's "not modified" (an edit that changes nothing) is no error worth a traceback.
    bot.client.edit_errors.append(MessageNotModified())
    with caplog.at_level(logging.INFO):
        await bot.send(saved(bot.client, ".help"))
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("MessageNotModified" in r.getMessage() for r in caplog.records)


class Killed(BaseException):
    """The process dies here (kill -9): nothing after this point runs, no finally settles anything."""


class DyingTransport:
    """The bot's transport until the moment its process is killed, right after claiming."""

    def __init__(self, app, client):
        self.inner = app.transport(client)

    def typing(self, chat_id):
        raise Killed()

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def _claimed_by_a_dead_process(make_bot):
    bot = await make_bot()
    message = incoming(ALICE, "are you coming tonight?", date=bot.clock.now, client=bot.client)
    from userbot.app import incoming_from
    with pytest.raises(Killed):
        await bot.replier.handle(incoming_from(message), DyingTransport(bot.app, bot.client))
    assert fates() == [("claimed", None)]
    return bot, message


async def test_a_claim_left_by_a_killed_process_is_answered_after_restart(make_bot):
    bot, message = await _claimed_by_a_dead_process(make_bot)
    restarted = await make_bot(config=bot.config)
    restarted.client.histories[ALICE_ID] = [message]              # Telegram: no answer after it
    recovered = await restarted.app.recover(restarted.client)
    assert (recovered.answered_before, recovered.taken_up) == (0, 1)
    assert len(restarted.client.texts(ALICE_ID)) == 1
    assert [outcome for outcome, _ in fates()] == ["replied"]
    assert (await restarted.app.recover(restarted.client)).taken_up == 0


async def test_a_reply_sent_just_before_the_kill_is_never_sent_again(make_bot):
    bot, message = await _claimed_by_a_dead_process(make_bot)
    # The dead process had sent its reply; the kill came before the database heard of it.
    sent = await bot.client.send_message(ALICE_ID, "Yes, see you at 8!")
    restarted = await make_bot(config=bot.config)
    restarted.client.histories[ALICE_ID] = [message, sent]
    recovered = await restarted.app.recover(restarted.client)
    assert (recovered.answered_before, recovered.taken_up) == (1, 0)
    assert restarted.client.texts(ALICE_ID) == []
    assert fates() == [("replied", sent.id)]


AUTOMATED = "Hello! I'm an assistant too, replying for my owner. Message {} received."


@pytest.mark.parametrize("latency", [0, 10])
async def test_two_auto_repliers_stop_after_three_exchanges_whatever_the_ai_latency(make_bot, sqlite_url, latency):
    """Both sides' AI take `latency` seconds (a test clock moves; nobody sleeps)."""
    clock = Clock()
    answer = "Thanks for your message! I'm replying for my owner; they will get back to you soon."
    async with scripted_openai([], answer, on_request=lambda _body: clock.advance(seconds=latency)) as base_url:
        bot = await make_bot(clock=clock, config=scripted_config(sqlite_url, base_url, loop_max_fast_exchanges=3,
                                                                 loop_pause_minutes=60))
        other = make_user(4004, "Echo", username="echo_assistant")
        for i in range(10):
            clock.advance(seconds=latency)            # the other side's AI answers our last reply
            await say(bot, other, AUTOMATED.format(i))
        assert len(bot.client.texts(other.id)) == 3
        outcomes = [outcome for outcome, _ in fates(other.id)]
        assert outcomes == ["replied"] * 3 + ["loop_detected"] + ["loop_paused"] * 6
        await bot.send(saved(bot.client, f".resume {other.id}"))
        clock.advance(minutes=2)
        await say(bot, other, "sorry, that was my bot. Me now.")
        assert len(bot.client.texts(other.id)) == 4


async def test_the_per_chat_hourly_cap_delays_and_never_drops(make_bot):
    bot = await make_bot(autoreply={"max_replies_per_chat_per_hour": 2})
    for i in range(3):
        await say(bot, ALICE, f"message {i}")
        bot.clock.advance(minutes=1)
    assert len(bot.client.texts(ALICE_ID)) == 2
    assert HandledMessage.get(HandledMessage.text == "message 2").detail == "chat_hourly_cap"
    bot.clock.advance(minutes=58)                     # the first reply leaves the last hour
    assert await bot.tick() == 1
    assert [outcome for outcome, _ in fates()] == ["replied"] * 3


async def test_the_global_cap_per_minute_spans_chats(make_bot):
    bot = await make_bot(autoreply={"max_replies_per_minute": 2})
    for person in (ALICE, BOB, STRANGER):
        await say(bot, person, "hi")
    assert len(bot.client.texts()) == 2
    assert fates(STRANGER.id) == [("pending", None)]
    bot.clock.advance(seconds=61)
    assert await bot.tick() == 1
    assert len(bot.client.texts(STRANGER.id)) == 1


async def test_recipients_like_telegram_business(make_bot):
    bot = await make_bot(autoreply={"recipients": {"non_contacts": False, "new_chats": False}})
    bot.client.histories[ALICE_ID] = [incoming(ALICE, "from last year", message_id=1, client=bot.client)]
    await say(bot, ALICE, "hi, it's Alice")           # a contact, an existing chat: answered
    await say(bot, BOB, "hi, Bob here, first time")   # a contact, but a new chat
    await say(bot, STRANGER, "hi, we met yesterday")  # not a contact
    assert len(bot.client.texts(ALICE_ID)) == 1
    assert bot.client.texts(BOB.id) == [] and bot.client.texts(STRANGER.id) == []
    assert fates(BOB.id) == [("not_recipient", None)] and fates(STRANGER.id) == [("not_recipient", None)]
    await bot.send(saved(bot.client, f".allow {STRANGER.id}"))   # the allow list wins
    await say(bot, STRANGER, "still there?")
    assert len(bot.client.texts(STRANGER.id)) == 1


async def test_media_gets_the_configured_behaviour_and_a_caption_is_text(make_bot):
    voice = Voice(file_id="v", file_unique_id="u", duration=3)
    quiet = await make_bot()
    await say(quiet, ALICE, None, voice=voice)
    assert quiet.client.texts() == [] and fates() == [("media", None)]
    bot = await make_bot(config=None, autoreply={"media": "text", "media_text": "Got it, I'll listen later."})
    await say(bot, BOB, None, voice=voice)
    assert bot.client.texts(BOB.id) == ["Got it, I'll listen later."]


async def test_per_chat_persona_and_daily_token_cap(make_bot, sqlite_url):
    received = []
    async with scripted_openai(received, "Certainly.") as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url))
        await bot.send(owner_in_chat(bot.client, ALICE, ".persona Answer formally, in French."))
        await bot.send(owner_in_chat(bot.client, ALICE, ".cap 100"))
        bot.clock.advance(minutes=31)                 # the owner's commands are no conversation: no pause
        await say(bot, ALICE, "bonjour")
        assert received[-1]["messages"][0] == {"role": "system", "content": "Answer formally, in French."}
        await say(bot, ALICE, "encore?")              # 50 + 2 tokens used of 100: one more
        await say(bot, ALICE, "et encore?")           # 104 of 100: held until the cap's day resets
        assert len(received) == 2
    assert [outcome for outcome, _ in fates()] == ["replied", "replied", "pending"]


async def test_a_message_over_the_daily_cap_is_held_until_the_next_utc_day(make_bot, sqlite_url):
    clock = Clock(dt.datetime.combine(utcnow().date(), dt.time(15, 0)))
    received = []
    async with scripted_openai(received, "Certainly.") as base_url:
        bot = await make_bot(clock=clock, config=scripted_config(sqlite_url, base_url, max_message_age_minutes=720))
        await bot.send(owner_in_chat(bot.client, ALICE, ".cap 50"))
        clock.advance(minutes=31)                      # past the owner's pause of the chat
        await say(bot, ALICE, "first question")       # 52 tokens of 50: the cap is reached
        clock.advance(minutes=1)
        await say(bot, ALICE, "second question")
        assert len(received) == 1 and fates()[1] == ("pending", None)
        held = "held until 00:00 UTC tomorrow (daily token cap: 52 of 50 tokens used today)"
        assert HandledMessage.get(HandledMessage.text == "second question").detail == held
        await bot.send(saved(bot.client, ".recent 5"))
        assert f"Alice: “second question” — {held}" in bot.client.edits()[-1]
        await bot.send(saved(bot.client, ".digest 3"))
        digest = bot.client.edits()[-1]
        assert "⚠️ <b>Needs you</b> (1)" in digest and f"“second question” — {held}" in digest
        clock.now = dt.datetime.combine(clock.now.date(), dt.time(23, 59, 59))
        assert await bot.tick() == 0                   # still the capped day
        clock.advance(seconds=1)                       # 00:00 UTC: the cap's day resets
        assert await bot.tick() == 1
        assert [m["content"] for m in received[-1]["messages"] if m["role"] == "user"][-1] == "second question"
    assert [outcome for outcome, _ in fates()] == ["replied", "replied"]
    assert len(bot.client.texts(ALICE_ID)) == 2


async def test_a_held_message_too_old_by_the_reset_says_it_waited_for_the_cap(make_bot, sqlite_url):
    clock = Clock(dt.datetime.combine(utcnow().date(), dt.time(8, 0)))
    async with scripted_openai([], "Certainly.") as base_url:
        bot = await make_bot(clock=clock, config=scripted_config(sqlite_url, base_url, max_message_age_minutes=120))
        await bot.run_blocking(bot.store.set_cap, ALICE_ID, 50)
        await say(bot, ALICE, "morning!")
        await say(bot, ALICE, "still there?")
        clock.advance(minutes=119)
        assert await bot.tick() == 0 and fates()[1] == ("pending", None)
        clock.advance(minutes=2)                       # two hours old, long before midnight
        assert await bot.tick() == 0
    row = HandledMessage.get(HandledMessage.text == "still there?")
    assert (row.outcome, row.detail) == ("too_old", "after waiting: held until 00:00 UTC tomorrow "
                                                    "(daily token cap: 52 of 50 tokens used today)")


async def test_the_digest_names_who_wrote_what_was_answered_and_what_needs_the_owner(make_bot):
    bot = await make_bot(autoreply={"away_after_minutes": 10})
    await bot.send(saved(bot.client, f".deny {STRANGER.id}"))
    await say(bot, ALICE, "Are we still on for Friday?")
    await say(bot, STRANGER, "Buy my course!")
    bot.clock.advance(hours=2)
    await bot.send(owner_in_chat(bot.client, BOB, "hey Bob, back from lunch"))   # the owner is back
    (digest,) = [t for t in bot.client.texts("me") if "While you were away" in t]
    assert '👤 <a href="https://t.me/alice_w">Alice</a>: 1 message(s), 1 answered · ' in digest
    assert "“Are we still on for Friday?” — answered" in digest
    assert "⚠️ <b>Needs you</b> (1)" in digest
    assert '<a href="tg://user?id=2002">Stranger</a>: “Buy my course!” — skipped: denied' in digest
    tokens = int(digest.split("Alice</a>: 1 message(s), 1 answered · ")[1].split(" tokens")[0].replace(",", ""))
    assert tokens > 0
    await bot.send(saved(bot.client, ".digest 3"))
    assert "“Are we still on for Friday?” — answered" in bot.client.edits()[-1]


async def test_names_not_numbers_in_reports(make_bot):
    bot = await make_bot()
    await say(bot, ALICE, "hello")
    (row,) = usage_report(bot.clock.now, 1, "chat").rows
    assert (row.group, row.detail) == ("Alice (@alice_w)", str(ALICE_ID))
    await bot.send(saved(bot.client, ".usage 1 by chat"))
    assert "Alice (@alice_w)" in bot.client.edits()[-1]
    await bot.send(saved(bot.client, ".recent 1"))
    assert "💬 Alice (@alice_w)" in bot.client.edits()[-1]
    # A new name is picked up with the next message.
    renamed = make_user(ALICE_ID, "Alice B.", is_contact=True, username="alice_b")
    await say(bot, renamed, "new name")
    assert ChatState.get(ChatState.chat_id == ALICE_ID).label == "Alice B."
    assert usage_report(bot.clock.now, 1, "chat").rows[0].group == "Alice B. (@alice_b)"


def account_status(status) -> object:
    me = make_user(OWNER_ID, "Owner", is_self=True, username="owner")
    me.status = status
    return me


async def test_only_when_away_waits_while_the_owner_is_around(make_bot):
    bot = await make_bot(autoreply={"only_when_away": True, "away_after_minutes": 10})
    await bot.app.on_user_status(bot.client, account_status(enums.UserStatus.ONLINE))   # the owner opened Telegram
    await say(bot, ALICE, "hello?")
    assert bot.client.texts(ALICE_ID) == [] and fates() == [("pending", None)]
    await bot.app.on_user_status(bot.client, account_status(enums.UserStatus.OFFLINE))
    bot.clock.advance(minutes=5)
    assert await bot.tick() == 0                      # offline, but only for 5 minutes
    bot.clock.advance(minutes=6)
    assert await bot.tick() == 1
    # Our own reply shows the account online to Telegram: that is not the owner coming back.
    await bot.app.on_user_status(bot.client, account_status(enums.UserStatus.ONLINE))
    await say(bot, ALICE, "thanks!")
    assert len(bot.client.texts(ALICE_ID)) == 2
    # The owner writing from the phone is presence too.
    await bot.send(owner_in_chat(bot.client, BOB, "hi Bob", date=bot.clock.now))
    await say(bot, ALICE, "one more")
    assert len(bot.client.texts(ALICE_ID)) == 2


async def test_an_answer_being_written_when_the_owner_steps_in_is_dropped(make_bot, sqlite_url):
    holder: list = []

    async def owner_types_meanwhile(_body):
        bot = holder[0]
        await bot.send(owner_in_chat(bot.client, ALICE, "I'm here, answering myself", date=bot.clock.now))

    async with scripted_openai([], "Sure!", on_request=owner_types_meanwhile) as base_url:
        bot = await make_bot(config=scripted_config(sqlite_url, base_url))
        holder.append(bot)
        await say(bot, ALICE, "can you send me the file?")
    assert bot.client.texts(ALICE_ID) == []
    assert fates() == [("owner_replied", None)]


async def test_held_messages_wait_for_the_reset_or_for_cap_off_on_every_backend(any_bot):
    bot = any_bot
    bot.clock.now = dt.datetime.combine(bot.clock.now.date(), dt.time(12, 0))
    await bot.send(owner_in_chat(bot.client, ALICE, ".cap 1"))
    bot.clock.advance(minutes=31)
    await say(bot, ALICE, "one")                      # answered: the cap is crossed by this reply
    await say(bot, ALICE, "two")
    await say(bot, BOB, "three")
    bot.clock.advance(minutes=1)
    assert await bot.tick() == 0
    assert len(bot.client.texts(ALICE_ID)) == 1 and len(bot.client.texts(BOB.id)) == 1
    assert fates()[1] == ("pending", None)
    assert HandledMessage.get(HandledMessage.text == "two").detail.startswith("held until 00:00 UTC tomorrow")
    await bot.send(owner_in_chat(bot.client, ALICE, ".cap off"))      # the owner lifts it: answered now
    assert await bot.tick() == 1
    assert [outcome for outcome, _ in fates()] == ["replied", "replied"]


async def test_a_bot_keeps_nothing_in_memory_about_chats_whose_messages_are_settled(make_bot):
    """A bot meets new chats for weeks: per-chat locks and wake-up times live only while a
    chat has something waiting (answered, or taken over by the owner)."""
    bot = await make_bot(autoreply={"reply_after_quiet_seconds": 3, "skip_muted": True})
    people = [make_user(5000 + i, f"Person {i}", is_contact=True) for i in range(30)]
    for person in people:
        await say(bot, person, "are you there?")
    assert bot.app.chats_in_memory() >= len(people)          # each waits for its quiet period
    await bot.send(owner_in_chat(bot.client, people[0], "yes, me", date=bot.clock.now))
    bot.clock.advance(seconds=4)
    assert await bot.tick() == len(people) - 1
    assert bot.app.chats_in_memory() == len(people)          # only the mute states, capped below
    bot.clock.advance(seconds=4)
    assert await bot.tick() == 0
    assert bot.replier.chats_in_memory() == 0


async def test_mute_states_are_remembered_for_a_bounded_number_of_chats(make_bot, monkeypatch):
    import userbot.app
    monkeypatch.setattr(userbot.app, "MUTE_CACHE_CHATS", 5)
    bot = await make_bot(autoreply={"skip_muted": True})
    for i in range(12):
        await say(bot, make_user(6000 + i, f"Person {i}", is_contact=True), "hello")
    assert len(bot.client.texts(6011)) == 1
    assert bot.app.chats_in_memory() == 5
