"""A leader frozen (SIGSTOP) inside its commit blocks nobody for long.

PostgreSQL: the server ends its idle transaction, its locks go, a bot's call is recorded
and the standby leads, all while the frozen process is still stopped; when it wakes it
leads no more. SQLite: the frozen process keeps the file's write lock (nothing can take it
from a stopped process), so a bot's call waits one busy timeout, then goes to the call
journal, and is booked once the lock is free: none lost, none doubled."""
import os
import signal
import time
from pathlib import Path

import pytest
from peewee import fn

from shared.core.accounting import Accountant, CallRecord
from shared.core.db import connect_database
from shared.core.db_executor import DatabaseExecutor
from shared.core.journal import CallJournal, journal_path
from shared.core.models import ApiKey, KeyReset, UsageEvent, utcnow
from tests.backends import fresh_database_url
from tests.conftest import open_test_db
from tests.reliability.test_journal import _call
from tests.reliability.test_kill_worker import KEYS, _in_write_transaction, _keys_due_for_reset
from tests.shared.books import assert_books_exact
from tests.worker.test_process import LEASE, lease, wait_for, workers, write_config  # noqa: F401


def _tcp_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process `pid` has open (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _writing(db, pid: int) -> bool:
    """Is process `pid`'s database session inside a transaction that has written?"""
    ports = _tcp_ports(pid)
    rows = db.execute_sql("SELECT client_port FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                          "AND client_port IS NOT NULL").fetchall()
    return any(port in ports for (port,) in rows)


@pytest.fixture
def pg_db(tmp_path):
    with fresh_database_url("postgres", tmp_path) as url:
        db = open_test_db(url)
        yield url, db
        db.close()


def test_a_leader_frozen_in_its_commit_is_cut_off_and_replaced(pg_db, tmp_path, workers, capsys):  # noqa: F811
    url, db = pg_db
    config = write_config(tmp_path, url)
    current = _keys_due_for_reset(utcnow())
    victim = ApiKey.get(ApiKey.label == "bulk7").id
    db.close()
    leader = workers(config, tmp_path / "a.log")
    wait_for(lambda: "leading as" in leader.output, 30, "the leader to claim the lease")
    deadline = time.monotonic() + 30
    while not _writing(db, leader.proc.pid):       # its first commit is writing the resets ...
        assert time.monotonic() < deadline and leader.proc.poll() is None, leader.output
        time.sleep(0.002)
    leader.proc.send_signal(signal.SIGSTOP)        # ... and freezes in the middle, locks held
    frozen_at = time.monotonic()
    before = leader.output
    try:
        db.close()
        # A bot records a call on a key whose row the frozen transaction may hold.
        Accountant("b").record(CallRecord(key_id=victim, bot="b", operation="op", model="m", input_tokens=7))
        recorded_after = time.monotonic() - frozen_at
        started = time.monotonic()
        standby = workers(config, tmp_path / "b.log")
        led_after = wait_for(lambda: getattr(lease(), "holder", None) == standby.holder, 60,
                             "the standby to lead", db) - started
        bulk = ApiKey.select().where(ApiKey.label.startswith("bulk"))
        wait_for(lambda: bulk.where(ApiKey.window_start == current).count() == KEYS, 60, "every reset", db)
        assert leader.proc.poll() is None                  # all of it while the leader is still stopped
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    # Awake again, its transaction is gone: it finds out, and from then on follows the lease
    # (it may even lead again later, by expiry, under a new term: the fence keeps terms apart).
    wait_for(lambda: leader.output != before, 30, "the old leader to notice", db)
    per_key = (KeyReset.select(KeyReset.key, fn.COUNT(KeyReset.id).alias("n"))
               .where(KeyReset.window_start == current).group_by(KeyReset.key))
    assert max(row.n for row in per_key) == 1                  # no key reset twice: no split brain
    assert ApiKey.get_by_id(victim).total_calls == 1
    booked = UsageEvent.select().count()
    assert booked == 1
    assert_books_exact()
    with capsys.disabled():
        print(f"\n[PostgreSQL frozen leader (SIGSTOP in its commit), lease {LEASE} s] served 1, booked {booked}, "
              f"lost {1 - booked}, doubled 0; bot recorded after {recorded_after:.1f} s; "
              f"standby led {led_after:.1f} s after it was spawned (python start-up included)")


class CountingAccountant(Accountant):
    """An Accountant that counts its attempts at the database on the database thread (an
    attempt on the loop's thread, `db` given, meets a held lock at once and never waits)."""

    attempts = 0

    def record_once(self, call, db=None):
        if db is None:
            self.attempts += 1
        return super().record_once(call, db)


def _freeze_inside_a_write(proc, url) -> None:
    """SIGSTOP `proc` while it holds SQLite's write lock (retrying until it is caught there)."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and proc.poll() is None, "never caught the leader writing"
        if _in_write_transaction(url, None):
            proc.send_signal(signal.SIGSTOP)
            if _in_write_transaction(url, None):
                return                                 # stopped with the lock held
            proc.send_signal(signal.SIGCONT)           # it committed in between: try again
        time.sleep(0.001)


async def test_sqlite_a_leader_frozen_in_its_commit_holds_a_bot_up_one_busy_timeout(
        tmp_path, workers, capsys):  # noqa: F811
    busy = 2.0
    with fresh_database_url("sqlite", tmp_path) as url:
        db = open_test_db(url)
        config = write_config(tmp_path, url)
        current = _keys_due_for_reset(utcnow())           # a long first commit: thousands of resets
        victim = ApiKey.get(ApiKey.label == "bulk7").id
        db.close()
        leader = workers(config, tmp_path / "a.log")
        wait_for(lambda: "leading as" in leader.output, 30, "the leader to claim the lease")
        connect_database(url, busy_timeout_seconds=busy)    # the bot's connection and busy timeout
        journal = CallJournal(journal_path(tmp_path, "b"))
        executor = DatabaseExecutor(attempts=8, base_delay=0.05)
        bot = CountingAccountant("b", executor=executor, journal=journal)
        await executor.run(bot.anchor, victim)          # warmed up, as a running bot is
        sent: list[str] = []
        try:
            _freeze_inside_a_write(leader.proc, url)
            try:
                started = time.monotonic()
                first = await bot.arecord(_call(victim, 0))
                journaled_after = time.monotonic() - started
                for i in range(1, 4):
                    sent.append((await bot.arecord(_call(victim, i))).call_id)
                sent.insert(0, first.call_id)
                # Each call tried the database once, waited one busy timeout, and was kept.
                assert first.journaled and bot.attempts == 4 and len(journal) == 4
                assert leader.proc.poll() is None and _in_write_transaction(url, None)   # still frozen
            finally:
                leader.proc.send_signal(signal.SIGCONT)
            wait_for(lambda: not _in_write_transaction(url, None), 30, "the leader's commit to end")
            sent.append((await bot.arecord(_call(victim, 4))).call_id)   # books the journal too
            assert not journal.path.exists()
            booked = await executor.run(lambda: [e.call_id for e in UsageEvent.select(UsageEvent.call_id)])
            lost, doubled = set(sent) - set(booked), len(booked) - len(set(booked))
            assert not lost and not doubled and len(booked) == len(sent)
            await executor.run(assert_books_exact)
            bulk = ApiKey.select().where(ApiKey.label.startswith("bulk"))
            wait_for(lambda: bulk.where(ApiKey.window_start == current).count() == KEYS, 60, "every reset")
        finally:
            await executor.run_once(lambda: None)
            executor.close()
    with capsys.disabled():
        print(f"\n[SQLite frozen leader (SIGSTOP in its commit), busy timeout {busy:.0f} s] "
              f"served {len(sent)}, booked {len(booked)}, lost {len(lost)}, doubled {doubled}; "
              f"first call journaled after {journaled_after:.1f} s")
