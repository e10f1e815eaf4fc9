"""`tokenpool-bot simulate` (what the demo runs): the chat goes on until the bot has sent
`min_messages` replies, so a slow machine shows as much as a fast one."""
from __future__ import annotations

from shared.core.models import UsageEvent
from shared.tools.simulator import Simulator
from tests.shared.client_fixtures import sim_config
from tests.userbot.conftest import TEST_AUTOREPLY
from userbot.simulate import simulate

PEOPLE = 10          # rate 1.0: ten people, each writing once, then again after 5.5-15 s


async def test_the_chat_goes_on_until_the_bot_has_sent_min_messages(sqlite_db, sqlite_url, tmp_path):
    async with Simulator(latency=0.001) as sim:
        config = sim_config(sim, sqlite_url, data_dir=str(tmp_path), autoreply=TEST_AUTOREPLY)
        # A tenth of a second of chat time: only a second wave from the same people can reach 15.
        counts = await simulate(config, seconds=0.1, seed=3, rate=PEOPLE / 10, min_messages=15)
    assert counts.get("replied", 0) >= 15
    assert UsageEvent.select().where(UsageEvent.outcome == "ok").count() >= 15


async def test_without_min_messages_each_person_writes_once_in_a_short_chat(sqlite_db, sqlite_url, tmp_path):
    async with Simulator(latency=0.001) as sim:
        config = sim_config(sim, sqlite_url, data_dir=str(tmp_path), autoreply=TEST_AUTOREPLY)
        counts = await simulate(config, seconds=0.1, seed=3, rate=PEOPLE / 10)
    assert counts.get("replied", 0) <= PEOPLE           # the chat ended with its time
