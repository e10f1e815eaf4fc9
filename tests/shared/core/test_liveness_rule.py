"""One liveness rule (docs/design.md invariant 13): the same heartbeat is alive or down for
every reader at once — reports, doctor, the worker's count of bots, and selection."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from shared.ai.selection import Selector
from shared.core.keys import sync_keys
from shared.core.liveness import ALIVE_WITHIN, beat, count_alive, recently_seen
from shared.core.models import ApiKey, KeyRanking, utcnow
from shared.reports.queries import process_health
from shared.tools.doctor import Level, _process_checks
from tests.conftest import make_config

T0 = dt.datetime(2026, 3, 1, 12, 0)


def test_alive_up_to_and_including_the_threshold():
    assert recently_seen(T0 - ALIVE_WITHIN, T0)
    assert not recently_seen(T0 - ALIVE_WITHIN - dt.timedelta(microseconds=1), T0)
    assert recently_seen(T0, T0)
    assert not recently_seen(None, T0)


@pytest.mark.parametrize("age, alive", [(ALIVE_WITHIN - dt.timedelta(seconds=1), True),
                                        (ALIVE_WITHIN + dt.timedelta(seconds=1), False)])
def test_every_reader_agrees(sqlite_db, age, alive):
    config = make_config(2)
    ring = sync_keys(config)
    ids = {k.label: k.id for k in ApiKey.select()}
    now = utcnow()
    beat("worker", "w1", now=now - age)
    beat("bot", "b1", now=now - age)
    KeyRanking.create(generation=1, key_ids=json.dumps([ids["k2"]]), policy="sticky", published_by="w1")

    assert {p.name: p.alive for p in process_health(now)} == {"w1": alive, "b1": alive}
    worker_check, bots_check = _process_checks(config, now)
    assert (worker_check.level is Level.OK) == alive
    assert ("b1 up" in bots_check.detail) == alive
    assert count_alive("bot", now) == int(alive)                # the worker's count (worker/tick.py)
    pick = Selector(config, ring).pick(now)
    assert (pick.key.label, pick.degraded) == (("k2", False) if alive else ("k1", True))
