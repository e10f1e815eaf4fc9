"""Nothing served is lost: calls the database cannot book (server away, disk full) wait in
a local journal and are booked once it is back, each exactly once."""
import logging
import os
import stat
from urllib.parse import urlparse, urlunparse

import pytest

from shared.core.accounting import Accountant, CallRecord, Outcome
from shared.core.db import connect_database
from shared.core.db_executor import DatabaseExecutor
from shared.core.journal import CallJournal, journal_path
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.schema import ensure_schema
from tests.backends import fresh_database_url
from tests.conftest import make_config
from tests.reliability.small_disk import fill, small_disk
from tests.shared.books import assert_books_exact
from tests.tcp_proxy import TcpProxy


def _call(key_id: int, i: int) -> CallRecord:
    return CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=100 + i,
                      output_tokens=10, call_id=f"call-{i:06d}", outcome=Outcome.OK)


def _books(key_id: int, sent: list[str], phase: str) -> str:
    booked = [e.call_id for e in UsageEvent.select(UsageEvent.call_id)]
    lost, doubled = set(sent) - set(booked), len(booked) - len(set(booked))
    assert not lost and not doubled and len(booked) == len(sent), (phase, lost, doubled)
    assert ApiKey.get_by_id(key_id).total_calls == len(sent)
    assert_books_exact()
    return f"[{phase}] served {len(sent)}, booked {len(booked)}, lost {len(lost)}, doubled {doubled}"


@pytest.fixture
def pg_behind_proxy(tmp_path):
    with fresh_database_url("postgres", tmp_path) as url:
        parts = urlparse(url)
        proxy = TcpProxy(parts.hostname, parts.port or 5432)
        proxy.start()
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        yield urlunparse(parts._replace(netloc=netloc)), proxy
        proxy.close()


async def test_postgres_outage_calls_wait_in_the_journal_and_are_booked_once(pg_behind_proxy, tmp_path, caplog,
                                                                             capsys):
    url, proxy = pg_behind_proxy
    # The outage is a refused or cut connection, seen at once whatever the timeouts; generous
    # ones (connect, lock wait, idle in a transaction) keep a loaded machine, where a thread can
    # stall for seconds, from looking like an outage while the server is up.
    ensure_schema(connect_database(url, busy_timeout_seconds=300))
    key_id = sync_keys(make_config(1, url=url)).ids()[0]
    journal = CallJournal(journal_path(tmp_path, "b"))
    executor = DatabaseExecutor(attempts=2, base_delay=0.05)
    accountant = Accountant("b", executor=executor, journal=journal)
    sent: list[str] = []
    try:
        for i in range(10):
            recorded = await accountant.arecord(_call(key_id, i))
            assert not recorded.journaled, f"call {i} journaled while the server was up"
            sent.append(recorded.call_id)
        assert not journal.path.exists()
        proxy.stop()                                   # the server goes away for a while
        with caplog.at_level(logging.WARNING):
            for i in range(10, 25):
                recorded = await accountant.arecord(_call(key_id, i))
                assert recorded.journaled
                sent.append(recorded.call_id)
        assert len(journal) == 15 and "keeping them in" in caplog.text
        assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
        proxy.start()                                  # back: the next call books the journal too
        recorded = await accountant.arecord(_call(key_id, 25))
        assert not recorded.journaled
        sent.append(recorded.call_id)
        assert not journal.path.exists()
        # A replay that finds calls already booked (a crash before the journal was cut) doubles nothing.
        journal.append(_call(key_id, 3))
        journal.append(_call(key_id, 12))
        await accountant.settle_journal()
        assert not journal.path.exists()
        figures = await executor.run(_books, key_id, sent, "PostgreSQL outage (TCP proxy)")
    finally:
        executor.close()
    with capsys.disabled():
        print("\n" + figures)


async def test_sqlite_disk_full_calls_wait_in_the_journal_and_are_booked_once(tmp_path, caplog, capsys):
    executor = DatabaseExecutor(attempts=2, base_delay=0.05)
    with small_disk(tmp_path / "small-disk") as mount:
        try:
            url = f"sqlite:///{mount}/tokenpool.db"
            ensure_schema(connect_database(url, busy_timeout_seconds=1))
            key_id = sync_keys(make_config(1, url=url)).ids()[0]
            journal = CallJournal(journal_path(tmp_path, "b"))      # on another disk
            accountant = Accountant("b", executor=executor, journal=journal)
            fill(mount / "filler")                                    # the disk fills up
            sent: list[str] = []
            with caplog.at_level(logging.WARNING):
                for i in range(200):
                    recorded = await accountant.arecord(_call(key_id, i))
                    sent.append(recorded.call_id)
                    if len(journal) >= 5:
                        break
            assert "database or disk is full" in caplog.text
            journaled = len(journal)
            (mount / "filler").unlink()                                # space again
            sent.append((await accountant.arecord(_call(key_id, 999))).call_id)
            assert not journal.path.exists()
            figures = await executor.run(_books, key_id, sent, f"SQLite full disk ({journaled} journaled)")
        finally:
            await executor.run_once(lambda: None)
            executor.close()
    with capsys.disabled():
        print("\n" + figures)


def test_a_line_cut_short_by_a_crash_does_not_swallow_the_next_call(tmp_path, caplog):
    journal = CallJournal(journal_path(tmp_path, "b"))
    journal.append(_call(1, 1))
    with journal.path.open("ab") as f:                 # the process died in the middle of a write
        f.write(b'{"key_id":1,"bot":"b","operation":"o')
    journal.append(_call(1, 2))                        # acknowledged: fsynced before the caller hears it
    journal.append(_call(1, 3))
    with caplog.at_level(logging.WARNING):
        assert [c.call_id for c in journal.pending()] == ["call-000001", "call-000002", "call-000003"]
    assert "unreadable line" in caplog.text            # only the torn fragment is skipped
