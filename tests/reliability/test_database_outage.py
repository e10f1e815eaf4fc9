"""A database outage is retried with backoff and reported; nothing is recorded twice
and nothing acknowledged is lost."""
import logging
import sqlite3
import threading
from urllib.parse import urlparse, urlunparse

import pytest

from shared.core.accounting import Accountant, CallRecord
from shared.core.db import DatabaseUnavailable, connect_database
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, UsageEvent
from shared.core.schema import ensure_schema
from tests.backends import fresh_database_url
from tests.conftest import make_config
from tests.shared.books import assert_books_exact
from tests.tcp_proxy import TcpProxy


def _call(key_id, i):
    return CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=100 + i,
                      output_tokens=10, call_id=f"call-{i:06d}")


class _ReleaseOnRetry(logging.Handler):
    """Commits the blocking transaction when the writer says it will retry: a condition, not a timer."""

    def __init__(self, blocker: sqlite3.Connection):
        super().__init__(logging.WARNING)
        self.blocker, self.released = blocker, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.released and "retrying" in record.getMessage():
            self.released = True
            self.blocker.execute("COMMIT")


def test_sqlite_locked_by_another_writer_is_waited_out(sqlite_url, caplog):
    db = connect_database(sqlite_url, busy_timeout_seconds=0.2)
    ensure_schema(db)
    ring = sync_keys(make_config(1, url=sqlite_url))
    accountant = Accountant("b")
    blocker = sqlite3.connect(urlparse(sqlite_url).path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")          # another process holds the write lock until we retry
    release = _ReleaseOnRetry(blocker)
    logging.getLogger("tokenpool.db").addHandler(release)
    try:
        with caplog.at_level(logging.WARNING, logger="tokenpool.db"):
            recorded = accountant.record(_call(ring.ids()[0], 1))
    finally:
        logging.getLogger("tokenpool.db").removeHandler(release)
        blocker.close()
    assert release.released                     # the lock really was met, and waited out
    assert not recorded.duplicate
    assert "database unavailable" in caplog.text and "retrying" in caplog.text
    assert ApiKey.get_by_id(ring.ids()[0]).calls_today == 1
    assert_books_exact()


@pytest.fixture
def pg_behind_proxy(tmp_path):
    with fresh_database_url("postgres", tmp_path) as url:
        parts = urlparse(url)
        proxy = TcpProxy(parts.hostname, parts.port or 5432)
        proxy.start()
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        yield urlunparse(parts._replace(netloc=netloc)), proxy
        proxy.close()


def test_postgres_outage_is_retried_and_nothing_is_lost_or_doubled(pg_behind_proxy, caplog):
    url, proxy = pg_behind_proxy
    db = connect_database(url, busy_timeout_seconds=1)
    ensure_schema(db)
    key_id = sync_keys(make_config(1, url=url)).ids()[0]
    accountant = Accountant("b")
    acknowledged = []
    for i in range(20):
        acknowledged.append(accountant.record(_call(key_id, i)).call_id)
    proxy.stop()                                  # the server goes away mid-burst ...
    threading.Timer(1.5, proxy.start).start()     # ... and comes back
    with caplog.at_level(logging.INFO, logger="tokenpool.db"):
        for i in range(20, 40):
            acknowledged.append(accountant.record(_call(key_id, i)).call_id)
    assert "database unavailable" in caplog.text and "reachable again" in caplog.text
    # A retried call whose first commit did land is not counted twice (idempotent call_id).
    assert accountant.record(_call(key_id, 39)).duplicate
    assert sorted(e.call_id for e in UsageEvent.select()) == sorted(acknowledged)
    assert ApiKey.get_by_id(key_id).calls_today == 40
    assert_books_exact()


def test_a_long_outage_ends_in_a_clear_error_not_a_hang(pg_behind_proxy):
    url, proxy = pg_behind_proxy
    db = connect_database(url, busy_timeout_seconds=1)
    ensure_schema(db)
    key_id = sync_keys(make_config(1, url=url)).ids()[0]
    accountant = Accountant("b", retry_attempts=3)
    accountant.record(_call(key_id, 1))
    proxy.stop()
    with pytest.raises(DatabaseUnavailable, match="recording a call: database unavailable"):
        accountant.record(_call(key_id, 2))
