"""The worker's tick against real databases, with the clock moved by time-machine."""
import datetime as dt
import time

import pytest
import time_machine

from shared.core.accounting import Outcome
from shared.core.db import database
from shared.core.models import (
    Alert,
    ApiKey,
    DailyRollup,
    KeyRanking,
    KeyReset,
    Lease,
    UsageEvent,
    utcnow,
)
from shared.core.status import Status, window_usage
from shared.core.windows import WINDOW, window_end
from tests.conftest import make_config
from tests.worker.conftest import T0, alert_counts, key, latest_ranking, record
from worker.leadership import LostLeadership
from worker.resets import WINDOW_COUNTERS
from worker.tick import Ticker

MICRO = dt.timedelta(microseconds=1)


def new_ticker(config, name="w1"):
    return Ticker(config, name=name, holder=name)


def events_in_window(key_id, start):
    return sum(e.total_tokens for e in UsageEvent.select().where(
        (UsageEvent.key == key_id) & (UsageEvent.at >= start) & (UsageEvent.at < start + WINDOW)))


@pytest.mark.parametrize("reset", ["rolling", "utc-day"])
def test_used_up_key_is_exhausted_skipped_and_fresh_exactly_when_its_window_ends(db, db_url, reset):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(3, url=db_url, pool={"reset": reset}))
        ticker.tick()
        k1 = key("k1")
        record(k1.id, 400_000)
        record(k1.id, 600_000)                       # exactly the 1,000,000 limit
        ticker.tick()
        assert key("k1").status == "EXHAUSTED"
        assert k1.id not in latest_ranking()
        end = window_end(k1.window_anchor, utcnow())
        assert end == (T0.replace(tzinfo=None) + WINDOW if reset == "rolling" else dt.datetime(2026, 3, 2))

        clock.move_to(end - MICRO)
        ticker.tick()
        assert key("k1").status == "EXHAUSTED" and k1.id not in latest_ranking()
        assert KeyReset.select().count() == 0

        clock.move_to(end)
        ticker.tick()
        row = key("k1")
        assert row.status == "FRESH" and row.status_changed_at == end
        assert k1.id in latest_ranking()
        assert (row.window_start, row.used_today, row.calls_today) == (end, 0, 0)
        assert all(getattr(row, c.name) == 0 for c in WINDOW_COUNTERS)
        assert [(r.key_id, r.window_start) for r in KeyReset.select()] == [(k1.id, end)]
        assert row.total_tokens == 1_000_000         # lifetime counters are untouched

        clock.move_to(end + dt.timedelta(hours=1))
        record(k1.id, 1_234)
        ticker.tick()
        row = key("k1")
        assert row.used_today == window_usage(row, utcnow()).used == events_in_window(k1.id, end) == 1_234
        assert row.status == "ACTIVE"
        for _ in range(3):
            ticker.tick()
        assert KeyReset.select().count() == 1


def test_reset_never_wipes_a_call_already_counted_in_the_new_window(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(1, url=db_url))
        ticker.tick()
        k1 = key("k1")
        record(k1.id, 5_000)
        ticker.tick()                                # the worker has seen the old window
        end = window_end(k1.window_anchor, utcnow())
        clock.move_to(end + dt.timedelta(seconds=5))
        record(k1.id, 700)                           # a bot opened the new window before the worker ran
        ticker.tick()
        row = key("k1")
        assert row.used_today == 700 == events_in_window(k1.id, end)
        assert KeyReset.select().count() == 0        # nothing was left to reset


def test_ranking_is_published_only_when_it_changes(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(3, url=db_url))
        ticker.tick()
        ids = [key(f"k{i}").id for i in (1, 2, 3)]
        assert latest_ranking() == ids
        for _ in range(5):
            clock.shift(dt.timedelta(seconds=2))
            record(ids[0], 10_000)                   # usage that does not change the order
            ticker.tick()
        assert KeyRanking.select().count() == 1
        record(ids[0], 0, Outcome.QUOTA_EXHAUSTED)
        ticker.tick()
        ticker.tick()
        assert KeyRanking.select().count() == 2
        assert latest_ranking() == [ids[1], ids[2]]   # sticky: the next key in config order
        generations = [r.generation for r in KeyRanking.select().order_by(KeyRanking.generation)]
        assert generations == [1, 2]


def test_each_transition_writes_exactly_one_alert(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        config = make_config(2, url=db_url, pool={"low_threshold": 500_000},
                             worker={"rate_limit_alert_hits": 2})
        ticker = new_ticker(config)
        ticker.tick()
        k1, k2 = key("k1").id, key("k2").id

        def settle(expected):
            for _ in range(3):
                clock.shift(dt.timedelta(seconds=1))
                ticker.tick()
            assert alert_counts() == expected

        record(k1, 600_000)                                   # 400,000 left: LOW
        settle({"key_low": 1})
        record(k1, 1_000)                                     # still LOW: no new alert
        settle({"key_low": 1})

        for alerted in (0, 1, 1):                             # 429s: rate limited repeatedly (2 = threshold)
            record(k2, 0, Outcome.RATE_LIMITED, cooldown_until=utcnow() + dt.timedelta(seconds=1))
            settle({"key_low": 1, "key_rate_limited": alerted} if alerted else {"key_low": 1})

        record(k1, 399_000)                                   # the whole allowance: EXHAUSTED
        settle({"key_low": 1, "key_rate_limited": 1, "key_exhausted": 1})

        record(k2, 0, Outcome.INVALID_KEY, error_code="invalid_api_key")
        settle({"key_low": 1, "key_rate_limited": 1, "key_exhausted": 1, "key_invalid": 1, "pool_exhausted": 1})
        (text,) = [a.text for a in Alert.select().where(Alert.kind == "pool_exhausted")]
        first_free = window_end(key("k1").window_anchor, utcnow())
        assert f"{first_free:%Y-%m-%d %H:%M} UTC" in text

        ApiKey.update(invalid=False).where(ApiKey.id == k2).execute()    # `tokenpool keys enable k2`
        settle({"key_low": 1, "key_rate_limited": 1, "key_exhausted": 1, "key_invalid": 1, "pool_exhausted": 1,
                "pool_healthy": 1})

        record(k2, 0, Outcome.INVALID_KEY)                    # a new transition: alerted again, once
        settle({"key_low": 1, "key_rate_limited": 1, "key_exhausted": 1, "key_invalid": 2, "pool_exhausted": 2,
                "pool_healthy": 1})
        assert all(a.key_id in (k1, k2) for a in Alert.select().where(Alert.kind.startswith("key_")))


def test_a_new_leader_alerts_its_takeover_once_and_the_old_one_is_fenced_out(db, db_url, tickers):
    with time_machine.travel(T0, tick=False) as clock:
        config = make_config(2, url=db_url, worker={"lease_seconds": 10.0})
        a, b = tickers(config, "a"), tickers(config, "b")
        assert a.tick().role == "leader"
        assert b.tick().role == "standby"
        clock.shift(dt.timedelta(seconds=11))        # a stalls past its lease
        report = b.tick()
        assert report.role == "leader" and report.term == 2
        assert alert_counts() == {"worker_takeover": 1}
        b.tick()
        assert alert_counts() == {"worker_takeover": 1}

        # The stalled leader wakes up with a write planned: its fence fails, nothing is written.
        before = (KeyRanking.select().count(), Alert.select().count())
        with pytest.raises(LostLeadership):
            a.run(lambda: a.ticker.leadership.fence(utcnow()))
        assert a.tick().role == "standby"
        assert (KeyRanking.select().count(), Alert.select().count()) == before
        assert Lease.get().holder == "b"


def test_a_leader_that_shuts_down_releases_the_lease_and_nobody_alerts_a_takeover(db, db_url, tickers):
    with time_machine.travel(T0, tick=False):
        config = make_config(1, url=db_url)
        a, b = tickers(config, "a"), tickers(config, "b")
        a.tick()
        assert a.run(a.ticker.release) is True
        lease = Lease.get()
        assert (lease.holder, lease.expires_at, lease.locked) == ("", None, False)
        assert b.tick().role == "leader"
        assert alert_counts() == {}


def test_old_events_are_pruned_and_rollups_kept(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(1, url=db_url, worker={"retention_days": 30}))
        ticker.tick()
        k1 = key("k1").id
        record(k1, 100)
        clock.shift(dt.timedelta(days=20))
        record(k1, 200)
        clock.shift(dt.timedelta(days=15))           # the first call is 35 days old, the second 15
        ticker.tick()
        assert [e.total_tokens for e in UsageEvent.select()] == [200]
        assert sorted(r.total_tokens for r in DailyRollup.select()) == [100, 200]
        assert key("k1").total_tokens == 300


def test_budget_crossing_is_alerted_once(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(1, url=db_url, budgets={"daily_tokens": 50_000}))
        ticker.tick()
        record(key("k1").id, 30_000)
        ticker.tick()
        assert alert_counts() == {}
        record(key("k1").id, 30_000)
        for _ in range(3):
            clock.shift(dt.timedelta(seconds=1))
            ticker.tick()
        assert alert_counts() == {"budget": 1}


def test_statuses_are_stored_with_the_shared_status_function(db, db_url):
    with time_machine.travel(T0, tick=False) as clock:
        ticker = new_ticker(make_config(3, url=db_url, pool={"low_threshold": 500_000}))
        ticker.tick()
        k1, k2, k3 = (key(f"k{i}").id for i in (1, 2, 3))
        record(k1, 100)
        record(k2, 600_000)
        record(k3, 0, Outcome.RATE_LIMITED, cooldown_until=utcnow() + dt.timedelta(seconds=30))
        ticker.tick()
        assert [key(f"k{i}").status for i in (1, 2, 3)] == ["ACTIVE", "LOW", "RATE_LIMITED"]
        assert latest_ranking() == [k1, k2]
        clock.shift(dt.timedelta(seconds=30))         # the cooldown ends on the clock alone
        ticker.tick()
        assert key("k3").status == str(Status.FRESH)
        assert latest_ranking() == [k1, k2, k3]


def test_leader_whose_session_ends_is_replaced_at_once_where_the_database_has_advisory_locks(db, db_url, tickers):
    with time_machine.travel(T0, tick=False):
        config = make_config(1, url=db_url, worker={"lease_seconds": 60.0})
        a, b = tickers(config, "a"), tickers(config, "b")
        assert a.tick().role == "leader"
        assert b.tick().role == "standby"
        a.run(lambda: database.obj.close())                        # a's session ends, as if killed
        takes_over = db_url.startswith("postgres")                 # without the lock: only on expiry
        if takes_over:                                             # the server ends a's session shortly
            hang_guard = time.monotonic() + 300                    # (a loaded machine may take a while)
            while b.tick().role != "leader":
                assert time.monotonic() < hang_guard, "b never took over the advisory lock"
                time.sleep(0.02)
        else:                                                      # the clock stands still: the lease holds
            assert [b.tick().role for _ in range(5)] == ["standby"] * 5
        assert (Lease.get().holder, Lease.get().locked) == (("b", True) if takes_over else ("a", False))


def test_a_worker_without_keys_in_its_config_keeps_the_keys_bots_registered(db, db_url):
    with time_machine.travel(T0, tick=False):
        new_ticker(make_config(2, url=db_url)).tick()           # as if a bot had registered them
        new_ticker(make_config(0, url=db_url), name="w2").start()
        assert [k.in_config for k in ApiKey.select()] == [True, True]
