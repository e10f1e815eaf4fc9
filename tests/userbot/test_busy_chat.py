"""The time line of one busy chat, checked in full: a contact writing in bursts, a cooldown,
the owner stepping in halfway from their phone, and the bot taking over again once the
owner's pause is over. 20 messages; every contact message ends with a stated fate."""
from __future__ import annotations

import datetime as dt

from shared.core.models import HandledMessage
from tests.userbot.conftest import Clock
from tests.userbot.recording import ALICE_ID, incoming, make_user, owner_in_chat
from tests.userbot.scripted import scripted_config, scripted_openai
from userbot.state import describe_outcome

ALICE = make_user(ALICE_ID, "Alice", is_contact=True, username="alice_w")
T0 = dt.datetime(2026, 3, 14, 9, 0, 0)

# (seconds after T0, who, text); the bot's replies are not scripted: they are what it does.
SCRIPT = [
    (0, "alice", "Hi! Are you around?"),
    (0.5, "alice", "Need to ask about Saturday"),
    (1, "alice", "It's about the venue"),
    (10, "alice", "Is the garden still booked?"),
    (20, "alice", "And how many guests?"),
    (50, "alice", "Great, thanks"),
    (60, "owner", "Hey Alice, it's me, I'll take it from here"),
    (70, "alice", "Oh hi! So the garden is ours?"),
    (80, "owner", "Yes, garden booked for 40 people"),
    (90, "alice", "Perfect"),
    (100, "owner", "See you Saturday!"),
    (110, "owner", "Bring an umbrella, just in case"),
    (40 * 60, "alice", "One more thing: parking?"),
    (40 * 60 + 10, "alice", "ok"),
    (40 * 60 + 11, "alice", "thanks!"),
    (40 * 60 + 12, "alice", "bye"),
]

EXPECTED = """\
00:00.0 Alice: Hi! Are you around?  [merged into reply 50000]
00:00.5 Alice: Need to ask about Saturday  [merged into reply 50000]
00:01.0 Alice: It's about the venue  [answered]
00:04.0 bot: Re: Hi! Are you around? / Need to ask about Saturday / It's about the venue
00:10.0 Alice: Is the garden still booked?  [merged into reply 50001]
00:20.0 Alice: And how many guests?  [answered]
00:34.0 bot: Re: Is the garden still booked? / And how many guests?
00:50.0 Alice: Great, thanks  [skipped: owner_replied]
01:00.0 owner: Hey Alice, it's me, I'll take it from here
01:10.0 Alice: Oh hi! So the garden is ours?  [skipped: owner_replied]
01:20.0 owner: Yes, garden booked for 40 people
01:30.0 Alice: Perfect  [skipped: owner_replied]
01:40.0 owner: See you Saturday!
01:50.0 owner: Bring an umbrella, just in case
40:00.0 Alice: One more thing: parking?  [answered]
40:03.0 bot: Re: One more thing: parking?
40:10.0 Alice: ok  [merged into reply 50003]
40:11.0 Alice: thanks!  [merged into reply 50003]
40:12.0 Alice: bye  [answered]
40:33.0 bot: Re: ok / thanks! / bye"""


def echo_the_burst(body: dict) -> str:
    """The scripted model answers with the contact's messages it was asked to answer."""
    burst = []
    for message in reversed(body["messages"]):
        if message["role"] != "user":
            break
        burst.insert(0, message["content"])
    return "Re: " + " / ".join(burst)


def stamp(clock: Clock) -> str:
    seconds = (clock.now - T0).total_seconds()
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


async def test_the_time_line_of_a_busy_chat_with_the_owner_stepping_in(make_bot, sqlite_url):
    received: list = []
    clock = Clock(T0)
    lines: list[tuple[str, str, str, int | None]] = []      # (time, who, text, contact message id)
    async with scripted_openai(received, echo_the_burst) as base_url:
        bot = await make_bot(clock=clock, config=scripted_config(
            sqlite_url, base_url, reply_after_quiet_seconds=3, cooldown_seconds=30, owner_pause_minutes=30))

        async def until(seconds: float) -> None:
            """Let time pass second by second, as the bot's conversation task does."""
            while (clock.now - T0).total_seconds() + 1 <= seconds:
                clock.advance(seconds=1)
                before = len(bot.client.texts(ALICE_ID))
                await bot.tick()
                for text in bot.client.texts(ALICE_ID)[before:]:
                    lines.append((stamp(clock), "bot", text, None))
            clock.now = T0 + dt.timedelta(seconds=seconds)

        for at, who, text in SCRIPT:
            await until(at)
            if who == "alice":
                message = incoming(ALICE, text, date=clock.now, client=bot.client)
                lines.append((stamp(clock), "Alice", text, message.id))
            else:
                message = owner_in_chat(bot.client, ALICE, text, date=clock.now)
                lines.append((stamp(clock), "owner", text, None))
            await bot.send(message)
        await until(40 * 60 + 60)

    fates = {row.message_id: describe_outcome(row.outcome, row.reply_id, "")
             for row in HandledMessage.select().where(HandledMessage.chat_id == ALICE_ID)}
    transcript = "\n".join(f"{at} {who}: {text}" + (f"  [{fates[mid]}]" if mid is not None else "")
                           for at, who, text, mid in lines)
    assert transcript == EXPECTED
    assert len(lines) == 20
    # The reply after the owner's pause knew what the owner had said (as the account's own turns).
    after_pause = [(m["role"], m["content"]) for m in received[2]["messages"]]
    assert ("assistant", "Yes, garden booked for 40 people") in after_pause
    assert after_pause[-1] == ("user", "One more thing: parking?")
