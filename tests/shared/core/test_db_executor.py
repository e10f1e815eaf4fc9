"""The bot's database thread: one call's retries wait off the thread, so other calls go on; a
tracked call's short work on SQLite runs on the loop's thread unless it would wait."""
import asyncio
import logging
import sqlite3
import threading

import peewee
import pytest

from shared.core import db_executor
from shared.core.accounting import Accountant, CallRecord
from shared.core.backoff import Backoff, backoff_delay
from shared.core.db import BOT_CACHE_KIB, INLINE_CACHE_KIB, DatabaseUnavailable, database
from shared.core.db_executor import DatabaseExecutor
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.startup import open_runtime
from tests.conftest import make_config


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


# --- run_inline: a tracked call's pick and booking on the loop's own thread (SQLite) ---------

def _booking(accountant: Accountant, threads: list[str]):
    def book(call: CallRecord, db=None):
        threads.append(threading.current_thread().name)
        return accountant.record_once(call, db)
    return book


def _call(keyring, tokens: int = 15) -> CallRecord:
    return CallRecord(key_id=keyring.ids()[0], bot="bot", operation="test", model="gpt-4o-mini",
                      input_tokens=tokens - 5, output_tokens=5)


async def test_a_booking_runs_on_the_loops_thread_only_on_sqlite(db, db_url):
    keyring = sync_keys(make_config(1, url=db_url))
    executor = DatabaseExecutor()
    accountant = Accountant("bot", executor=executor)
    threads: list[str] = []
    try:
        for _ in range(3):
            await executor.run_inline(_booking(accountant, threads), _call(keyring))
    finally:
        executor.close()
    on_loop = threading.current_thread().name
    assert threads == [on_loop] * 3 if db_url.startswith("sqlite") else all(t != on_loop for t in threads)
    assert ApiKey.get_by_id(keyring.ids()[0]).used_today == 45
    assert UsageEvent.select().count() == 3


async def test_a_database_not_opened_yet_leaves_later_bookings_on_the_loops_thread(sqlite_db, sqlite_url,
                                                                                   monkeypatch):
    from shared.core.db import database
    keyring = sync_keys(make_config(1, url=sqlite_url))
    executor = DatabaseExecutor()
    accountant = Accountant("bot", executor=executor)
    threads: list[str] = []
    try:
        with monkeypatch.context() as patched:
            patched.setattr(database, "obj", None)
            assert await executor.run_inline(_booking(accountant, threads), _call(keyring), fallback=False) is None
        await executor.run_inline(_booking(accountant, threads), _call(keyring))
    finally:
        executor.close()
    assert threads == [threading.current_thread().name]
    assert UsageEvent.select().count() == 1


async def test_a_write_lock_held_elsewhere_sends_the_booking_to_the_thread_without_stalling_the_loop(
        sqlite_db, sqlite_url):
    keyring = sync_keys(make_config(1, url=sqlite_url))
    executor = DatabaseExecutor()
    accountant = Accountant("bot", executor=executor)
    threads: list[str] = []
    book = _booking(accountant, threads)
    blocker = sqlite3.connect(sqlite_url.split(":///", 1)[1], isolation_level=None)
    try:
        await executor.run_inline(book, _call(keyring))          # opens the inline connection
        blocker.execute("BEGIN IMMEDIATE")                       # another process's write, say
        booking = asyncio.create_task(executor.run_inline(book, _call(keyring)))
        while len(threads) < 3 and not booking.done():   # the inline try met the lock at once; the thread waits
            await asyncio.sleep(0.01)    # (the loop goes on meanwhile)
        assert threads[1] == threading.current_thread().name and threads[2] != threads[1]
        assert not booking.done()
        blocker.execute("COMMIT")
        recorded = await booking
    finally:
        blocker.close()
        executor.close()
    assert not recorded.duplicate
    assert UsageEvent.select().where(UsageEvent.call_id == recorded.call_id).count() == 1
    assert ApiKey.get_by_id(keyring.ids()[0]).used_today == 30


async def test_while_the_thread_has_work_an_inline_call_waits_its_turn_there(sqlite_db, sqlite_url):
    executor = DatabaseExecutor()
    started, gate = threading.Event(), threading.Event()
    order: list[str] = []

    def slow():
        started.set()
        gate.wait()
        order.append("slow")

    def quick(db=None):
        order.append(f"quick on {threading.current_thread().name}")

    try:
        first = asyncio.create_task(executor.run(slow))
        while not started.is_set():
            await asyncio.sleep(0.01)
        second = asyncio.create_task(executor.run_inline(quick))
        await asyncio.sleep(0)
        assert order == []                       # not run on the loop ahead of `slow`
        gate.set()
        await asyncio.gather(first, second)
        await executor.run_inline(quick)         # nothing waits now: on the loop
    finally:
        executor.close()
    loop_thread = threading.current_thread().name
    assert order[0] == "slow" and order[1].startswith("quick on database")
    assert order[2] == f"quick on {loop_thread}"


async def test_the_checkpoints_asked_of_the_thread_leave_its_connection_able_to_commit(
        sqlite_db, sqlite_url, monkeypatch, caplog):
    """The inline connection never checkpoints; every CHECKPOINT_EVERY inline runs the thread
    does. Its PRAGMA's row must be read to the end, or the thread's next COMMIT fails
    ("cannot commit transaction - SQL statements in progress")."""
    monkeypatch.setattr(db_executor, "CHECKPOINT_EVERY", 3)
    keyring = sync_keys(make_config(1, url=sqlite_url))
    executor = DatabaseExecutor(attempts=1)
    accountant = Accountant("bot", executor=executor)
    threads: list[str] = []
    try:
        for _ in range(3):
            await executor.run_inline(_booking(accountant, threads), _call(keyring))
        assert len(db_executor._checkpoints) == 1                  # asked of the thread
        await asyncio.gather(*db_executor._checkpoints)
        with caplog.at_level(logging.WARNING, logger="tokenpool.db"):
            await executor.run(accountant.record_once, _call(keyring))     # a commit on the thread
    finally:
        executor.close()
    assert "database unavailable" not in caplog.text
    assert UsageEvent.select().count() == 4


async def test_a_bots_two_sqlite_connections_keep_their_page_caches_small(sqlite_url):
    """A bot's memory stays flat over hours only while both its SQLite page caches have a small
    cap that fills within minutes (bench/soak.py): SQLite's default, 2,000 KiB each, filled for an
    hour and more. Read back on the database thread's connection (opened as the bot opens it) and
    on the inline one."""
    def cache_kib(db=None):
        pages = (db or database.obj).execute_sql("PRAGMA cache_size").fetchone()[0]
        return -pages                       # negative: a size in KiB
    runtime = open_runtime(make_config(1, url=sqlite_url), cache_kib=BOT_CACHE_KIB)
    executor = DatabaseExecutor()
    threads: list[str] = []

    def inline_cache_kib(db):
        threads.append(threading.current_thread().name)
        return cache_kib(db)
    try:
        on_thread = await executor.run(cache_kib)
        inline = await executor.run_inline(inline_cache_kib)
    finally:
        executor.close()
        runtime.db.close()
    assert threads == [threading.current_thread().name]          # the inline connection's, on the loop
    assert (on_thread, inline) == (BOT_CACHE_KIB, INLINE_CACHE_KIB)
    assert INLINE_CACHE_KIB <= BOT_CACHE_KIB <= 1024                # well under SQLite's default
