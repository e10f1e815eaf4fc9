"""`tokenpool-bot simulate`: the bot's auto-reply logic fed by simulated private messages.

Only the Telegram transport is replaced: messages are made up from a few personas, replies
are logged instead of sent. Everything else (guards, context, the tracked client, key
rotation, accounting, alert delivery) is the real bot's. `tokenpool demo` runs two of these.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random

from shared.core.config import Config
from shared.core.db import BOT_CACHE_KIB
from shared.core.liveness import beat, sign_off
from shared.core.models import utcnow
from shared.core.startup import open_runtime
from userbot.alert_delivery import claimer_name, deliver_forever
from userbot.autoreply import NO_KEY, no_typing
from userbot.core import BotCore, build_cores, close_cores
from userbot.incoming import IncomingMessage

log = logging.getLogger("tokenpool.simulate")

PERSONAS = [
    ("Asha", ["Hey! Are you free this evening?", "Did you see the match yesterday?",
              "Can you send me the address again?", "Thanks, see you there 🙂"]),
    ("Bilal", ["Salam, quick question about the invoice", "Is the meeting still at 3?",
               "Could you review my draft when you have a minute?", "Great, thank you!"]),
    ("Chen", ["hi", "what time does the shop close on Sundays?", "ok and on holidays?", "cool thx"]),
    ("Dana", ["Long time no see! How have you been?", "We should catch up soon",
              "I'm in town next week, lunch on Tuesday?", "Perfect, I'll book a table"]),
    ("Emre", ["Bro the deploy failed again", "logs say connection refused on 5432",
              "restarted postgres, works now", "you're a lifesaver"]),
    ("Farah", ["Happy birthday!!! 🎉", "Any plans for the weekend?", "Send pics!", "Miss you"]),
]


class LoggingTransport:
    """Replies go to the log, not to Telegram; message ids are made up."""

    def __init__(self, bot: str):
        self.bot = bot
        self._ids = itertools.count(1_000_000)
        self.sent = 0
        self._one_more = asyncio.Event()

    async def send_text(self, chat_id: int, text: str) -> int:
        self.sent += 1
        self._one_more.set()
        log.info("%s → chat %s: %s", self.bot, chat_id, text[:70].replace("\n", " "))
        return next(self._ids)

    async def sent_at_least(self, count: int) -> None:
        """Return once `count` messages have been sent (however long a busy machine takes)."""
        while self.sent < count:
            self._one_more.clear()
            await self._one_more.wait()

    def typing(self, chat_id: int):
        return no_typing(chat_id)

    async def mark_read(self, chat_id: int, max_id: int) -> None:
        return None

    async def replied_after(self, chat_id: int, message_id: int) -> int | None:
        return None                 # nothing was sent anywhere: a dead run's claim is answered again

    async def is_new_chat(self, chat_id: int, message_id: int) -> bool | None:
        return None

    async def download_photo(self, chat_id: int, message_id: int, max_bytes: int) -> bytes | None:
        return None                 # the made-up contacts send text only


async def simulate(config: Config, *, seconds: float, seed: int, rate: float = 4.0, min_messages: int = 0) -> dict:
    """About `rate` messages a second from people who take 5-15 s to answer (faster looks like
    another bot to the loop guard), for `seconds` and until the bot has sent `min_messages`
    replies (or no key can pay for one), so that a slow machine shows as much as a fast one;
    returns counts of what happened."""
    (counts,) = await simulate_accounts([config], seconds=seconds, seed=seed, rate=rate, min_messages=min_messages)
    return counts


async def simulate_accounts(configs: list[Config], *, seconds: float, seed: int, rate: float = 4.0,
                            min_messages: int = 0) -> list[dict]:
    """`simulate` for several accounts in one process (configs from `userbot.accounts`),
    side by side over one database thread, HTTP pool and pricer; counts per account."""
    # Hundreds of made-up chats at once: the account-wide per-minute cap would only queue them.
    configs = [dataclasses.replace(c, autoreply=dataclasses.replace(c.autoreply, max_replies_per_minute=0))
               for c in configs]
    runtime = open_runtime(configs[0], cache_kib=BOT_CACHE_KIB)
    cores = build_cores(configs, runtime.keyring, commands=False, journal=True)     # no one types commands here
    try:
        for core in cores:
            await core.accountant.settle_journal()
            await core.ai.warm_up()
        return list(await asyncio.gather(*(_converse(core, seconds=seconds, seed=seed + i, rate=rate,
                                                     min_messages=min_messages) for i, core in enumerate(cores))))
    finally:
        await close_cores(cores)


async def _converse(core: BotCore, *, seconds: float, seed: int, rate: float, min_messages: int) -> dict:
    """One simulated account's chats (see `simulate`)."""
    config, run_blocking, replier = core.config, core.run_blocking, core.replier
    rng = random.Random(seed)
    transport = LoggingTransport(config.bot.name)
    stop, chat_over, pool_dry = asyncio.Event(), asyncio.Event(), asyncio.Event()
    counts: dict[str, int] = {}
    message_ids = itertools.count(1)

    async def pause(seconds: float) -> None:
        """A person's think time, cut short when the chat is over."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(chat_over.wait(), seconds)

    async def end_of_chat():
        await pause(seconds)
        enough = [asyncio.create_task(transport.sent_at_least(min_messages)), asyncio.create_task(pool_dry.wait())]
        await asyncio.wait(enough, return_when=asyncio.FIRST_COMPLETED)
        for task in enough:
            task.cancel()
        chat_over.set()

    waiting_chats: set[int] = set()          # chats with a message the bot has not answered yet
    looks = 0                                 # how often waiting_chats was read from the database
    looked = asyncio.Condition()

    async def watch_waiting():
        nonlocal looks
        while not stop.is_set():
            found = set(await run_blocking(replier.store.chats_with_pending))
            async with looked:
                waiting_chats.clear()
                waiting_chats.update(found)
                looks += 1
                looked.notify_all()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def answered(chat_id: int) -> None:
        """A person waits for the answer before writing again: a slow machine gets fewer
        messages, not a flood it cannot answer (the chat also ends meanwhile)."""
        after = looks
        async with looked:
            await looked.wait_for(lambda: chat_over.is_set() or (looks > after and chat_id not in waiting_chats))

    async def person(index: int):
        name, lines = PERSONAS[index % len(PERSONAS)]
        chat_id = 10_000 * (seed + 1) + index
        await pause(rng.uniform(0, min(10, seconds)))
        while not chat_over.is_set():
            msg = IncomingMessage(chat_id=chat_id, message_id=next(message_ids), sender_id=chat_id,
                                  date=utcnow(), text=rng.choice(lines), is_contact=rng.random() < 0.7,
                                  sender_name=name)
            handled = await replier.handle(msg, transport)
            outcome = handled.outcome or str(handled.reason)
            if outcome != "pending":
                counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == NO_KEY:
                pool_dry.set()
            if outcome == "pending":
                await answered(chat_id)
            await pause(rng.uniform(5.5, 15))

    async def heartbeats():
        while not stop.is_set():
            await run_blocking(beat, "bot", config.bot.name, {"mode": "simulate"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)

    async def answer_waiting():
        """Bursts are answered once the contact paused (`reply_after_quiet_seconds`)."""
        while not stop.is_set():
            replied = await replier.run_due(transport)
            if replied:
                counts["replied"] = counts.get("replied", 0) + replied
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    background = [asyncio.create_task(heartbeats()), asyncio.create_task(answer_waiting()),
                  asyncio.create_task(watch_waiting()),
                  asyncio.create_task(deliver_forever(_log_alert, claimer_name(config.bot.name), interval=0.5,
                                                      stop=stop, run_blocking=run_blocking))]

    async def last_wave_answered():
        """The last messages wait out their contact's quiet period: answer them before leaving."""
        while await run_blocking(replier.store.chats_with_pending):
            await asyncio.sleep(0.2)        # answer_waiting() answers them as they come due

    try:
        await asyncio.gather(end_of_chat(), *(person(i) for i in range(max(1, round(rate * 10)))))
        await last_wave_answered()
    finally:
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await run_blocking(sign_off, "bot", config.bot.name)
    return counts


async def _log_alert(text: str):
    log.warning("alert for Saved Messages: %s", text.replace("\n", " "))
    return True
