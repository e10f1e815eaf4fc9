"""A whole bot over real parts: the simulator, the tracked client, a migrated database,
real Pyrogram messages and a recording Pyrogram client."""
from __future__ import annotations

import datetime as dt

import pytest

from shared.core.db import database
from shared.core.keys import sync_keys
from shared.core.models import utcnow
from shared.tools.simulator import Simulator
from tests.shared.client_fixtures import sim_config
from tests.userbot.recording import RecordingClient, deliver
from userbot.app import BotApp
from userbot.core import build_core

# Defaults for tests: no cooldown, no quiet period and no caps unless a test sets them.
TEST_AUTOREPLY = {"cooldown_seconds": 0, "reply_after_quiet_seconds": 0, "max_replies_per_minute": 0,
                  "max_replies_per_chat_per_hour": 0}


class Clock:
    """The bot's clock; tests move it."""

    def __init__(self, now: dt.datetime | None = None):
        self.now = now or utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += dt.timedelta(**delta)

    async def sleep(self, seconds: float) -> None:
        """The bot's sleeps (human pacing) move this clock instead of waiting."""
        self.now += dt.timedelta(seconds=seconds)


class BotHarness:
    """One bot: config, core objects, Telegram handlers and a recording client."""

    def __init__(self, config, clock: Clock):
        self.config = config
        self.clock = clock
        self.ring = sync_keys(config)
        self.core = build_core(config, self.ring, clock=clock, sleep=clock.sleep)
        self.accountant, self.ai, self.run_blocking = self.core.accountant, self.core.ai, self.core.run_blocking
        self.replier = self.core.replier
        self.app = BotApp(config, self.replier, self.core.registry, run_blocking=self.run_blocking, clock=clock)
        self.client = RecordingClient()
        self.handlers = self.app.handlers()

    @property
    def store(self):
        return self.replier.store

    async def send(self, message) -> bool:
        """Deliver a Pyrogram message to the bot's handlers (as its dispatcher would)."""
        return await deliver(self.client, self.handlers, message)

    async def tick(self) -> int:
        """What the bot's conversation task does every second: answer what may go now."""
        return await self.app.tick(self.client)

    async def close(self) -> None:
        await self.accountant.run(database.close)
        await self.core.aclose()


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
