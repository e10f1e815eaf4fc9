"""kill -9 of the leading worker while it persists thousands of resets: the standby
finishes them; no key is reset twice and none is missed."""
import datetime as dt
import signal
import sqlite3
import time
from urllib.parse import urlparse

from peewee import fn

from shared.core.keys import fingerprint
from shared.core.models import ApiKey, KeyReset, utcnow
from shared.core.windows import WINDOW, window_start
from tests.worker.test_process import lease, shared_db, wait_for, workers, write_config  # noqa: F401

KEYS = 4000


def _keys_due_for_reset(now):
    """KEYS keys whose counters belong to the previous window, so each needs one reset."""
    anchor = (now - WINDOW - dt.timedelta(hours=1)).replace(microsecond=0)
    rows = [dict(fingerprint=fingerprint(f"bulk-{i}"), label=f"bulk{i}", masked="…", position=10 + i,
                 daily_token_limit=1_000_000, reset_mode="rolling", window_anchor=anchor, created_at=anchor,
                 window_start=anchor, used_today=1000 + i, calls_today=3) for i in range(KEYS)]
    for start in range(0, KEYS, 500):
        ApiKey.insert_many(rows[start:start + 500]).execute()
    return window_start(anchor, now)


def _in_write_transaction(url, db) -> bool:
    """Is some other session inside a write transaction right now?"""
    if url.startswith("sqlite"):
        probe = sqlite3.connect(urlparse(url).path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    row = db.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                         "AND xact_start IS NOT NULL AND backend_xid IS NOT NULL").fetchone()
    return row[0] > 0


def test_standby_finishes_resets_after_the_leader_is_killed_mid_transaction(shared_db, tmp_path,  # noqa: F811
                                                                              workers):  # noqa: F811
    url, db = shared_db
    config = write_config(tmp_path, url)
    current = _keys_due_for_reset(utcnow())
    db.close()
    leader = workers(config, tmp_path / "a.log")
    deadline = time.monotonic() + 30
    while not _in_write_transaction(url, db):      # the first tick is writing its resets ...
        assert time.monotonic() < deadline and leader.proc.poll() is None, leader.output
        time.sleep(0.002)
    leader.stop(signal.SIGKILL)                    # ... and dies in the middle
    db.close()
    killed_mid_tick = KeyReset.select().count() == 0
    standby = workers(config, tmp_path / "b.log")
    bulk = ApiKey.select().where(ApiKey.label.startswith("bulk"))
    wait_for(lambda: bulk.where(ApiKey.window_start == current).count() == KEYS, 60, "every reset", db)
    assert bulk.where(ApiKey.used_today != 0).count() == 0
    per_key = (KeyReset.select(KeyReset.key, fn.COUNT(KeyReset.id).alias("n"))
               .where(KeyReset.window_start == current).group_by(KeyReset.key))
    counts = {row.key_id: row.n for row in per_key}
    assert {k.id for k in bulk} <= set(counts)               # none missed
    assert max(counts.values()) == 1                          # none twice
    assert lease().holder == standby.holder
    assert killed_mid_tick, "the leader committed before it was killed: the test did not hit mid-tick"
    assert "Traceback" not in standby.output
