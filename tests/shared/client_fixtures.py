"""Fixtures for the tracked-client tests: a real simulator and a real pool pointed at it."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from shared.ai.client import NoKeyAvailable, TrackedClient
from shared.core.accounting import Accountant
from shared.core.config import Config
from shared.core.db import database
from shared.core.keys import KeyRing, sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.pricing import Pricer
from shared.tools.simulator import Simulator
from tests.conftest import make_config

# The client timeout only guards against a hang (a loaded CI box can stall an answer for seconds);
# tests of timeouts set their own.
FAST_CLIENT = {"timeout_seconds": 300.0, "retry_backoff_seconds": 0.01, "rate_limit_cooldown_seconds": 5.0}


def secret(i: int) -> str:
    return f"sk-test-{i:02d}-" + "x" * 20 + f"{i:04d}"


def sim_config(sim: Simulator, url: str, n: int = 3, *, limit: int = 1_000_000, client: dict | None = None,
               base_urls: dict[int, str] | None = None, key_settings: dict[int, dict] | None = None,
               **sections) -> Config:
    """A config of `n` keys (k1..kn) whose base_url is the simulator, registered with it.
    `key_settings` adds settings to some keys (by number), e.g. {2: {"models": ["llama-*"]}}."""
    keys = [{"label": f"k{i}", "api_key": secret(i), "daily_token_limit": limit,
             "base_url": (base_urls or {}).get(i, sim.base_url), **(key_settings or {}).get(i, {})}
            for i in range(1, n + 1)]
    config = make_config(keys, url=url, client={**FAST_CLIENT, **(client or {})}, **sections)
    for key in config.keys:
        sim.add_key(key.secret, label=key.label)
    return config


@dataclass
class Harness:
    config: Config
    ring: KeyRing
    accountant: Accountant
    client: TrackedClient
    sim: Simulator

    def key(self, label: str) -> ApiKey:
        return ApiKey.get(ApiKey.label == label)

    def events(self, label: str | None = None) -> list[UsageEvent]:
        query = UsageEvent.select().order_by(UsageEvent.id)
        if label is not None:
            query = query.where(UsageEvent.key == self.key(label).id)
        return list(query)

    def sent(self, label: str) -> int:
        """Requests the simulator received with this key."""
        return self.sim.requests_for(label)


async def open_harness(sim: Simulator, url: str, **kwargs) -> Harness:
    config = sim_config(sim, url, **kwargs)
    ring = sync_keys(config)
    accountant = Accountant(config.bot.name, Pricer(config.pricing))
    return Harness(config, ring, accountant, TrackedClient(config, ring, accountant), sim)


async def close_harness(harness: Harness) -> None:
    await harness.client.aclose()
    await harness.accountant.run(database.close)   # the accounting thread's own connection
    harness.accountant.close()


@contextlib.asynccontextmanager
async def racers(sim: Simulator, url: str, count: int, **kwargs) -> AsyncIterator[list[Harness]]:
    """`count` harnesses on one database, as as many processes would be: each its own client,
    accounting thread and connection."""
    opened = [await open_harness(sim, url, **kwargs) for _ in range(count)]
    try:
        yield opened
    finally:
        for h in opened:
            await close_harness(h)


async def race_until_refused(harnesses: list[Harness], *, model: str = "gpt-4o", max_tokens: int = 120) -> list[int]:
    """Every harness calls at once, again and again, until the pool refuses it (NoKeyAvailable);
    returns how many calls each had served."""
    async def drain(h: Harness, i: int) -> int:
        served = 0
        while True:
            try:
                await h.client.chat([{"role": "user", "content": f"racer {i} call {served}"}],
                                    operation="race", model=model, max_tokens=max_tokens)
            except NoKeyAvailable:
                return served
            served += 1

    return list(await asyncio.gather(*[drain(h, i) for i, h in enumerate(harnesses)]))


@pytest.fixture
async def sim():
    async with Simulator() as server:
        yield server


@pytest.fixture
async def harness(sqlite_db, sqlite_url, sim):
    """Three keys on SQLite, all pointed at the simulator."""
    h = await open_harness(sim, sqlite_url)
    yield h
    await close_harness(h)
