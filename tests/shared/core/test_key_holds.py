"""A key's own daily limit is reserved like an allowance (the one-allowance case): several
processes near the limit cannot together pass it (every backend)."""
from __future__ import annotations

import datetime as dt

import pytest

from shared.core.allowances import AllowanceFull, reserve, settle
from shared.core.keys import sync_keys
from shared.core.models import ApiKey, KeyHold, utcnow
from shared.core.status import window_usage
from shared.tools.simulator import Simulator
from tests.conftest import make_config
from tests.shared.client_fixtures import race_until_refused, racers

TTL = dt.timedelta(minutes=10)


def _key(limit: int, used: int, now: dt.datetime) -> int:
    ring = sync_keys(make_config([{"label": "solo", "api_key": "sk-solo-" + "x" * 24, "daily_token_limit": limit}]))
    key_id = ring.ids()[0]
    row = ApiKey.get_by_id(key_id)
    ApiKey.update(used_today=used, window_start=window_usage(row, now).window_start).execute()
    return key_id


def test_a_key_reservation_counts_used_tokens_and_live_holds_all_or_nothing(db):
    now = utcnow()
    key_id = _key(1_000, 600, now)
    first = reserve([], 300, now, TTL, key_id)
    with pytest.raises(AllowanceFull, match="the daily limit of key 'solo'") as refused:
        reserve([], 200, now, TTL, key_id)
    assert refused.value.frees_up_at > now
    assert KeyHold.select().count() == 1
    settle(first, 50, 1)                                  # the call used 50 of its 300
    assert KeyHold.select().count() == 0
    reserve([], 390, now, TTL, key_id)                    # 600 used (the record adds the 50) + 390 fits


def test_a_crashed_process_key_hold_stops_counting_when_it_expires(db):
    now = utcnow()
    key_id = _key(1_000, 0, now)
    reserve([], 900, now, dt.timedelta(seconds=30), key_id)       # never settled
    with pytest.raises(AllowanceFull):
        reserve([], 200, now + dt.timedelta(seconds=10), TTL, key_id)
    reserve([], 200, now + dt.timedelta(seconds=31), TTL, key_id)


async def test_eight_clients_racing_one_nearly_used_key_do_not_pass_its_limit(db, db_url):
    """Eight clients, each with its own connection and accounting thread, on one key."""
    limit, room = 250_000, 3_000
    async with Simulator(latency=0.01) as sim, racers(sim, db_url, 8, n=1, limit=limit) as harnesses:
        row = harnesses[0].key("k1")
        ApiKey.update(used_today=limit - room, window_start=window_usage(row, utcnow()).window_start).execute()
        served = await race_until_refused(harnesses)
    used = window_usage(ApiKey.get(ApiKey.label == "k1"), utcnow()).used
    assert sum(served) > 5                                     # the room was really used, by several calls
    assert used <= limit                                       # no overshoot
    assert KeyHold.select().where(KeyHold.expires_at > utcnow()).count() == 0
