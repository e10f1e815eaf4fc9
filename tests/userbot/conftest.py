"""A whole bot over real parts: the simulator, the tracked client, a migrated database,
real Pyrogram messages and a recording Pyrogram client."""
from __future__ import annotations

import datetime as dt

import pytest

from shared.ai.client import TrackedClient
from shared.core.accounting import Accountant
from shared.core.db import database
from shared.core.keys import sync_keys
from shared.core.models import utcnow
from shared.core.pricing import Pricer
from shared.tools.simulator import Simulator
from tests.shared.client_fixtures import sim_config
from tests.userbot.recording import RecordingClient, deliver
from userbot.app import BotApp, database_runner
from userbot.autoreply import AutoReplier
from userbot.commands import default_registry

# Defaults for tests: no cooldown unless a test sets one, no mute lookups unless asked.
TEST_AUTOREPLY = {"cooldown_seconds": 0}


class Clock:
    """The bot's clock; tests move it."""

    def __init__(self, now: dt.datetime | None = None):
        self.now = now or utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)


class BotHarness:
    """One bot: config, core objects, Telegram handlers and a recording client."""

    def __init__(self, config, clock: Clock):
        self.config = config
        self.clock = clock
        self.ring = sync_keys(config)
        self.accountant = Accountant(config.bot.name, Pricer(config.pricing))
        self.ai = TrackedClient(config, self.ring, self.accountant)
        self.run_blocking = database_runner(self.accountant)
        self.replier = AutoReplier(config, self.ai, run_blocking=self.run_blocking, clock=clock)
        self.app = BotApp(config, self.replier, default_registry(), run_blocking=self.run_blocking, clock=clock)
        self.client = RecordingClient()
        self.handlers = self.app.handlers()

    @property
    def store(self):
        return self.replier.store

    async def send(self, message) -> bool:
        """Deliver a Pyrogram message to the bot's handlers (as its dispatcher would)."""
        return await deliver(self.client, self.handlers, message)

    async def close(self) -> None:
        await self.ai.aclose()
        await self.accountant.run(database.close)
        self.accountant.close()


@pytest.fixture
async def simulator():
    async with Simulator() as sim:
        yield sim


@pytest.fixture
async def make_bot(sqlite_db, sqlite_url, simulator):
    """`await make_bot(autoreply={...}, bot={...}, keys=2)`: a bot on SQLite."""
    made = []

    async def make(*, keys: int = 2, clock: Clock | None = None, config=None, **sections):
        sections["autoreply"] = {**TEST_AUTOREPLY, **sections.get("autoreply", {})}
        config = config or sim_config(simulator, sqlite_url, keys, **sections)
        harness = BotHarness(config, clock or Clock())
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.close()


@pytest.fixture
async def any_bot(db, db_url, simulator):
    """A bot on every backend (SQLite, PostgreSQL, MariaDB)."""
    config = sim_config(simulator, db_url, 2, autoreply=dict(TEST_AUTOREPLY))
    harness = BotHarness(config, Clock())
    yield harness
    await harness.close()
