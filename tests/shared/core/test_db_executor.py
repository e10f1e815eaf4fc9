"""The bot's database thread: one call's retries wait off the thread, so other calls go on."""
import asyncio
import logging

import peewee
import pytest

from shared.core.backoff import Backoff, backoff_delay
from shared.core.db import DatabaseUnavailable
from shared.core.db_executor import DatabaseExecutor


def test_backoff_doubles_up_to_its_cap_and_stays_finite():
    assert [backoff_delay(n, 0.5, 3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(10**9, 1.0, 30.0) == 30.0
    backoff = Backoff(1.0, 4.0)
    assert [backoff.failed() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.failed() == 1.0


async def test_a_retrying_call_does_not_hold_up_the_others(caplog):
    executor = DatabaseExecutor(base_delay=0.3, max_delay=0.3)
    done: list[str] = []
    failures = iter([True, False])

    def flaky():
        if next(failures):
            raise peewee.OperationalError("server closed the connection unexpectedly")
        done.append("flaky")
        return "flaky"

    def quick():
        done.append("quick")
        return "quick"

    try:
        with caplog.at_level(logging.INFO, logger="tokenpool.db"):
            slow = asyncio.create_task(executor.run(flaky, what="recording a call"))
            while not executor.unavailable:
                await asyncio.sleep(0.01)
            assert await executor.run(quick) == "quick"     # runs while `flaky` waits to retry
            assert await slow == "flaky"
        assert done == ["quick", "flaky"]
        assert not executor.unavailable
        assert caplog.text.count("database unavailable") == 1 and "reachable again" in caplog.text
    finally:
        executor.close()


async def test_after_the_last_attempt_the_caller_hears_database_unavailable():
    executor = DatabaseExecutor(attempts=2, base_delay=0.01)

    def down():
        raise peewee.OperationalError("connection refused")

    try:
        with pytest.raises(DatabaseUnavailable, match="choosing a key: database unavailable"):
            await executor.run(down, what="choosing a key")
        assert executor.unavailable
    finally:
        executor.close()


@pytest.mark.parametrize("locked", ["database is locked", "canceling statement due to lock timeout",
                                    "(1205, 'Lock wait timeout exceeded; try restarting transaction')"])
async def test_a_lock_wait_that_timed_out_is_not_retried_when_the_caller_says_so(locked):
    executor = DatabaseExecutor(attempts=5, base_delay=0.01)
    tries = []

    def blocked():
        tries.append(1)
        raise peewee.OperationalError(locked)

    try:
        with pytest.raises(DatabaseUnavailable, match="stayed locked"):
            await executor.run(blocked, retry_locked=False)
        assert len(tries) == 1
        with pytest.raises(DatabaseUnavailable):
            await executor.run(blocked)                 # by default it is retried like any outage
        assert len(tries) == 1 + 5
    finally:
        executor.close()
