"""Key selection: the worker's ranking while a worker lives, config order otherwise, and a
fresh status check of every candidate."""
from __future__ import annotations

import datetime as dt
import json
import logging

from shared.ai.selection import Selector, earliest_free, order_candidates, ranked_order
from shared.core.keys import KeyRing, sync_keys
from shared.core.liveness import ALIVE_WITHIN, beat
from shared.core.models import ApiKey, KeyRanking, utcnow
from tests.conftest import make_config

T0 = dt.datetime(2026, 3, 1, 12, 0)


def row(id, position, **kw):
    base = dict(id=id, position=position, daily_token_limit=1000, window_anchor=dt.datetime(2026, 3, 1),
                window_start=None, used_today=0, disabled=False, invalid=False, exhausted_window=None,
                cooldown_until=None)
    return ApiKey(**{**base, **kw})


def test_ranked_order_reads_ids_and_survives_garbage():
    assert ranked_order("[3, 1, 2]") == [3, 1, 2]
    assert ranked_order("not json") == []
    assert ranked_order('{"a": 1}') == []
    assert ranked_order('[1, "x", 2]') == [1, 2]


def test_order_candidates_follows_the_ranking_and_drops_unusable_keys():
    rows = [row(1, 0), row(2, 1, cooldown_until=T0 + dt.timedelta(seconds=5)), row(3, 2), row(4, 3, invalid=True)]
    ids = [r.id for r in order_candidates(rows, [4, 3, 2, 1], set(), T0, 100)]
    assert ids == [3, 1]
    assert [r.id for r in order_candidates(rows, None, set(), T0, 100)] == [1, 3]       # config order
    assert [r.id for r in order_candidates(rows, None, {1}, T0, 100)] == [3]            # already tried
    assert order_candidates(rows, [99], set(), T0, 100) == []                           # ranks unknown keys


def test_order_candidates_drops_keys_used_up_by_the_books():
    used_up = row(1, 0, used_today=1000, window_start=dt.datetime(2026, 3, 1))
    assert [r.id for r in order_candidates([used_up, row(2, 1)], None, set(), T0, 100)] == [2]


def test_earliest_free_ignores_keys_only_a_person_can_fix():
    rows = [row(1, 0, invalid=True), row(2, 1, cooldown_until=T0 + dt.timedelta(minutes=3)),
            row(3, 2, exhausted_window=dt.datetime(2026, 3, 1))]
    assert earliest_free(rows, T0) == T0 + dt.timedelta(minutes=3)
    assert earliest_free(rows[:1], T0) is None


def _selector(config):
    ring = sync_keys(config)
    return Selector(config, ring), {r.label: r.id for r in ApiKey.select()}


def test_newest_generation_wins_while_a_worker_is_alive(sqlite_db):
    selector, ids = _selector(make_config(3))
    now = utcnow()
    beat("worker", "w1", now=now - dt.timedelta(seconds=5))
    KeyRanking.create(generation=7, key_ids=json.dumps([ids["k2"], ids["k1"]]), policy="sticky", published_by="w1")
    KeyRanking.create(generation=8, key_ids=json.dumps([ids["k3"], ids["k2"]]), policy="sticky", published_by="w1")
    pick = selector.pick(now)
    assert (pick.key.label, pick.generation, pick.degraded) == ("k3", 8, False)
    assert selector.pick(now, {ids["k3"]}).key.label == "k2"
    # k1 is not in the ranking: once k3 and k2 are spent, nothing is left.
    none = selector.pick(now, {ids["k3"], ids["k2"]})
    assert none.key is None


def test_degrades_to_config_order_without_a_live_worker_and_warns_once(sqlite_db, caplog):
    caplog.set_level(logging.INFO, logger="tokenpool.selection")
    selector, ids = _selector(make_config(3))
    KeyRanking.create(generation=1, key_ids=json.dumps([ids["k3"]]), policy="sticky", published_by="w1")
    now = utcnow()
    beat("worker", "w1", now=now - ALIVE_WITHIN - dt.timedelta(seconds=1))     # not alive any more
    for _ in range(3):
        pick = selector.pick(now)
        assert (pick.key.label, pick.degraded) == ("k1", True)
    beat("worker", "w1", now=now)
    assert selector.pick(now).key.label == "k3"
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO]
    assert "config order" in messages[0][1] and "again" in messages[1][1]


def test_no_ranking_published_yet_means_config_order(sqlite_db):
    selector, _ids = _selector(make_config(2))
    beat("worker", "w1")
    assert selector.pick(utcnow()).key.label == "k1"


def test_re_reads_the_row_so_a_freshly_failed_key_is_skipped(sqlite_db):
    selector, ids = _selector(make_config(2))
    now = utcnow()
    assert selector.pick(now).key.label == "k1"
    ApiKey.update(invalid=True).where(ApiKey.id == ids["k1"]).execute()
    assert selector.pick(now).key.label == "k2"
    assert not selector.still_usable(ids["k1"], now) and selector.still_usable(ids["k2"], now)


def test_only_keys_this_process_holds_are_picked(sqlite_db):
    config = make_config(3)
    ring = sync_keys(config)
    mine = KeyRing([ring.get(ring.ids()[2])])
    selector = Selector(config, mine)
    assert selector.pick(utcnow()).key.label == "k3"
    assert "holds no API keys" in Selector(config, KeyRing([])).pick(utcnow()).reason


def test_says_when_the_first_key_frees_up(sqlite_db):
    selector, ids = _selector(make_config(2))
    now = utcnow()
    ApiKey.update(cooldown_until=now + dt.timedelta(minutes=2)).where(ApiKey.id == ids["k1"]).execute()
    ApiKey.update(disabled=True).where(ApiKey.id == ids["k2"]).execute()
    pick = selector.pick(now)
    assert pick.key is None and pick.frees_up_at == now + dt.timedelta(minutes=2)
    assert "cooling down" in pick.reason
