"""The bot's core objects, built in one place for the real bot, the simulated bot and tests.

Everything below Telegram: the database executor (the bot's one database thread), the
accountant, the tracked AI client, the auto-replier and the command registry. `userbot.app` puts Pyrogram on top;
`userbot.simulate` puts a logging transport on top.

Several accounts in one process (`build_cores`) share the `SharedParts`: the database
thread, the provider dialect with its one HTTP connection pool, and the pricer. Each
account has its own accountant (its bot name on every call), tracked client (its key
selection), auto-replier, store and commands.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.ai.client import TrackedClient
from shared.ai.dialect import Dialect
from shared.ai.openai_dialect import OpenAICompatible
from shared.core.accounting import Accountant
from shared.core.config import Config
from shared.core.db_executor import DatabaseExecutor
from shared.core.inflight import InFlight
from shared.core.journal import CallJournal, journal_path
from shared.core.keys import KeyRing
from shared.core.models import utcnow
from shared.core.pricing import Pricer
from userbot.autoreply import AutoReplier
from userbot.commands import Registry, default_registry


@dataclass
class SharedParts:
    """What the accounts of one process share: one database thread, one HTTP pool (the
    provider dialect, one client per key over one connection pool), one pricer."""
    database: DatabaseExecutor
    dialect: Dialect
    pricer: Pricer

    @classmethod
    def make(cls, config: Config, keyring: KeyRing, *, out_of_process_pricing: bool) -> SharedParts:
        dialect = OpenAICompatible(config.client.timeout_seconds)
        dialect.prepare(keyring.held())
        return cls(DatabaseExecutor(), dialect, Pricer(config.pricing, out_of_process=out_of_process_pricing))

    async def aclose(self) -> None:
        await self.dialect.aclose()
        self.database.close()


@dataclass
class BotCore:
    config: Config
    database: DatabaseExecutor
    accountant: Accountant
    ai: TrackedClient
    run_blocking: Callable[..., Awaitable]
    replier: AutoReplier
    registry: Registry          # empty when built without commands (the simulated bot)
    shared: SharedParts
    owns_shared: bool = True    # the first account's core closes what the accounts share

    async def aclose(self) -> None:
        if self.accountant.inflight is not None:
            self.accountant.inflight.close()
        if self.owns_shared:
            await self.shared.aclose()


def build_core(config: Config, keyring: KeyRing, *, clock: Callable[[], dt.datetime] = utcnow,
               sleep: Callable[[float], Awaitable] = asyncio.sleep, commands: bool = True,
               journal: bool = False, shared: SharedParts | None = None) -> BotCore:
    """The core of one bot over `keyring` (from `open_runtime` or `sync_keys`). Without
    `commands` the registry stays empty and the report modules (charts, exports) unloaded;
    with `journal` (the real bots) calls are journaled in data_dir before they are booked,
    and model prices are found by a short-lived helper process (genai-prices' data stays
    out of the long-lived bot; `Pricer(out_of_process=True)`). With `shared` (another
    account's `core.shared`) this core uses those parts and leaves closing them to their owner."""
    owns_shared = shared is None
    if shared is None:
        shared = SharedParts.make(config, keyring, out_of_process_pricing=journal)
    database = shared.database
    call_journal = CallJournal(journal_path(config.data_dir, config.bot.name)) if journal else None
    inflight = InFlight(config.data_dir, config.bot.name) if journal else None
    accountant = Accountant(config.bot.name, shared.pricer, executor=database, journal=call_journal,
                            inflight=inflight)
    ai = TrackedClient(config, keyring, accountant, shared.dialect, database=database)
    run_blocking = database_runner(database)
    replier = AutoReplier(config, ai, run_blocking=run_blocking, clock=clock, sleep=sleep)
    return BotCore(config, database, accountant, ai, run_blocking, replier,
                   default_registry() if commands else Registry(), shared, owns_shared)


def build_cores(configs: list[Config], keyring: KeyRing, **options) -> list[BotCore]:
    """One core per account (configs from `userbot.accounts.account_configs`), sharing the
    first one's `SharedParts`. Close them in reverse order (`close_cores`)."""
    first = build_core(configs[0], keyring, **options)
    return [first] + [build_core(config, keyring, shared=first.shared, **options) for config in configs[1:]]


async def close_cores(cores: list[BotCore]) -> None:
    for core in reversed(cores):        # the owner of the shared parts last
        await core.aclose()


def keep_trio_out() -> None:
    """The bot runs on asyncio. httpx's transport (httpcore) imports trio whenever trio is
    installed (the test extra's selenium installs it): ~3 MB resident for nothing. The bot's
    entry point calls this before the first HTTP client is made; nothing in the bot uses trio."""
    if "trio" not in sys.modules:
        sys.modules["trio"] = None     # type: ignore[assignment]   # `import trio` raises ImportError


def database_runner(database: DatabaseExecutor | Accountant):
    """`run_blocking` for the bot's parts: blocking database work on the bot's one database
    thread, with its retry policy, so the event loop never waits on the database."""
    executor = database.executor if isinstance(database, Accountant) else database

    async def run(fn, *args, **kwargs):
        return await executor.run(fn, *args, **kwargs)
    return run
