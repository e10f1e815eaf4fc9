"""While a served call can be booked nowhere (the database and the journal on one full disk;
PostgreSQL down and the journal's disk full), no new call is sent; once either takes writes
again, sending resumes by itself and every served call is booked once."""
import asyncio
import logging

import pytest

from shared.ai.client import BookingPaused, TrackedClient
from shared.core.accounting import Accountant
from shared.core.db import connect_database, database
from shared.core.db_executor import DatabaseExecutor
from shared.core.journal import CallJournal, journal_path
from shared.core.keys import sync_keys
from shared.core.models import Alert, UsageEvent
from shared.core.schema import ensure_schema
from shared.tools.simulator import Simulator
from tests.reliability.small_disk import fill
from tests.reliability.small_disk import small_disk as mounted_small_disk
from tests.reliability.test_journal import pg_behind_proxy  # noqa: F401  (a fixture)
from tests.shared.client_fixtures import sim_config

HI = [{"role": "user", "content": "hello"}]


@pytest.fixture
def small_disk(tmp_path):
    with mounted_small_disk(tmp_path / "small-disk") as mount:
        yield mount


async def test_nothing_is_sent_while_calls_cannot_be_booked_and_sending_resumes_by_itself(small_disk, caplog,
                                                                                          capsys):
    url = f"sqlite:///{small_disk}/tokenpool.db"
    executor = DatabaseExecutor(attempts=2, base_delay=0.01)
    async with Simulator() as sim:
        # No reservations: with them, a full disk refuses the reservation before anything is sent.
        config = sim_config(sim, url, 1, client={"reserve_key_limits": False})
        ensure_schema(connect_database(url, busy_timeout_seconds=1))
        ring = sync_keys(config)
        journal = CallJournal(journal_path(small_disk, "b"))          # on the same, soon full, disk
        accountant = Accountant(config.bot.name, executor=executor, journal=journal)
        client = TrackedClient(config, ring, accountant)
        try:
            await client.chat(HI, operation="warm-up")
            fill(small_disk / "filler")
            with caplog.at_level(logging.WARNING):
                for _ in range(300):                     # SQLite fills its last free pages first
                    await client.chat(HI, operation="op")
                    if accountant.booking_paused:
                        break
                assert accountant.booking_paused
                served_when_paused = sim.requests_for("k1")
                for _ in range(3):
                    with pytest.raises(BookingPaused):
                        await client.chat(HI, operation="op")
                assert sim.requests_for("k1") == served_when_paused   # nothing more was sent
                assert caplog.text.count("calls cannot be booked anywhere") == 1
                (small_disk / "filler").unlink()                       # room again
                while True:                                            # it resumes by itself
                    try:
                        await client.chat(HI, operation="op")
                        break
                    except BookingPaused:
                        await asyncio.sleep(0.1)
                assert "sending resumes" in caplog.text
            await accountant.settle_journal()
            served = sim.requests_for("k1")
            booked = await executor.run(lambda: [e.call_id for e in UsageEvent.select(UsageEvent.call_id)])
            alerts = await executor.run(lambda: [a.kind for a in Alert.select()])
            assert alerts == ["booking_paused"]                # the owner hears of it once
            lost, doubled = served - len(set(booked)), len(booked) - len(set(booked))
            assert (lost, doubled) == (0, 0) and not journal.path.exists()
        finally:
            await client.aclose()
            await executor.run_once(database.close)
            executor.close()
    with capsys.disabled():
        print(f"\n[SQLite: database and journal on one full disk] served {served}, booked {len(booked)}, "
              f"lost {lost}, doubled {doubled}; sends refused while paused: 3, simulator untouched")


async def test_postgres_down_mid_call_and_the_journal_full_no_call_is_sent_until_one_recovers(
        pg_behind_proxy, small_disk, caplog, capsys):  # noqa: F811
    url, proxy = pg_behind_proxy
    executor = DatabaseExecutor(attempts=2, base_delay=0.01)
    async with Simulator() as sim:
        config = sim_config(sim, url, 1, client={"reserve_key_limits": False, "timeout_seconds": 30},
                            database={"url": url, "busy_timeout_seconds": 1})
        ensure_schema(connect_database(url, busy_timeout_seconds=1))
        ring = sync_keys(config)
        journal = CallJournal(journal_path(small_disk, "b"))
        accountant = Accountant(config.bot.name, executor=executor, journal=journal)
        client = TrackedClient(config, ring, accountant)
        try:
            await client.chat(HI, operation="warm-up")
            fill(small_disk / "filler")                                   # the journal's disk is full
            with caplog.at_level(logging.WARNING):
                sim.hold_answers()
                call = asyncio.create_task(client.chat(HI, operation="op"))
                while sim.requests_for("k1") < 2:                          # the call is at the provider ...
                    await asyncio.sleep(0.01)
                proxy.stop()                                               # ... when the database goes
                sim.release_answers()
                await call                                                 # answered; booked nowhere
                assert accountant.booking_paused
                served_when_paused = sim.requests_for("k1")
                for _ in range(3):
                    with pytest.raises(BookingPaused):
                        await client.chat(HI, operation="op")
                assert sim.requests_for("k1") == served_when_paused
                proxy.start()                                              # the database is back
                while True:
                    try:
                        await client.chat(HI, operation="op")
                        break
                    except BookingPaused:
                        await asyncio.sleep(0.1)
                assert caplog.text.count("calls cannot be booked anywhere") == 1
            served = sim.requests_for("k1")
            booked = await executor.run(lambda: [e.call_id for e in UsageEvent.select(UsageEvent.call_id)])
            alerts = await executor.run(lambda: [a.kind for a in Alert.select()])
            assert alerts == ["booking_paused"]                # the owner hears of it once
            lost, doubled = served - len(set(booked)), len(booked) - len(set(booked))
            assert (lost, doubled) == (0, 0)
        finally:
            await client.aclose()
            await executor.run_once(database.close)
            executor.close()
    with capsys.disabled():
        print(f"\n[PostgreSQL down mid-call and the journal's disk full] served {served}, booked {len(booked)}, "
              f"lost {lost}, doubled {doubled}; sends refused while paused: 3, simulator untouched")
