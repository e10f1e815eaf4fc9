"""The bot's core objects, built in one place for the real bot, the simulated bot and tests.

Everything below Telegram: the accountant (and its database thread), the tracked AI
client, the auto-replier and the command registry. `userbot.app` puts Pyrogram on top;
`userbot.simulate` puts a logging transport on top.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Awaitable, Callable

from shared.ai.client import TrackedClient
from shared.core.accounting import Accountant
from shared.core.config import Config
from shared.core.db import retrying
from shared.core.keys import KeyRing
from shared.core.models import utcnow
from shared.core.pricing import Pricer
from userbot.autoreply import AutoReplier
from userbot.commands import Registry, default_registry


@dataclass
class BotCore:
    config: Config
    accountant: Accountant
    ai: TrackedClient
    run_blocking: Callable[..., Awaitable]
    replier: AutoReplier
    registry: Registry

    async def aclose(self) -> None:
        await self.ai.aclose()
        self.accountant.close()


def build_core(config: Config, keyring: KeyRing, *, clock: Callable[[], dt.datetime] = utcnow,
               sleep: Callable[[float], Awaitable] = asyncio.sleep) -> BotCore:
    """The core of one bot over `keyring` (from `open_runtime` or `sync_keys`)."""
    accountant = Accountant(config.bot.name, Pricer(config.pricing))
    ai = TrackedClient(config, keyring, accountant)
    run_blocking = database_runner(accountant)
    replier = AutoReplier(config, ai, run_blocking=run_blocking, clock=clock, sleep=sleep)
    return BotCore(config, accountant, ai, run_blocking, replier, default_registry())


def database_runner(accountant: Accountant):
    """Run blocking database work on the accounting thread, retrying outages with backoff
    (`shared.core.db.retrying`), so the event loop never waits on the database."""
    async def run(fn, *args, **kwargs):
        what = getattr(fn, "__name__", "database call")
        return await accountant.run(functools.partial(retrying, fn, *args, what=what, **kwargs))
    return run
