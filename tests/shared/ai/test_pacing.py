"""Per-minute pacing from the provider's rate-limit headers: a key whose response says no
requests (or tokens) remain is not picked until that limit's reset, so it is spaced before
it would answer 429 (against the simulator, which sends such headers)."""
from __future__ import annotations

import datetime as dt

import pytest

from shared.ai.client import NoKeyAvailable
from shared.ai.rate_limits import paced_until, rate_limit_snapshot
from shared.core.models import UsageEvent, utcnow
from shared.core.status import Status, frees_up_at, key_status
from shared.tools.simulator import Simulator
from tests.shared.client_fixtures import close_harness, open_harness, secret

HELLO = [{"role": "user", "content": "hello"}]
NOW = dt.datetime(2026, 3, 1, 12, 0)


def test_paced_until_is_the_reset_of_the_limit_that_ran_out():
    none_left = rate_limit_snapshot({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s",
                                     "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "1s"}, NOW)
    assert paced_until(none_left) == NOW + dt.timedelta(seconds=20)
    both = rate_limit_snapshot({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s",
                                "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, NOW)
    assert paced_until(both) == NOW + dt.timedelta(minutes=6)
    some_left = rate_limit_snapshot({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"}, NOW)
    assert paced_until(some_left) is None and paced_until(None) is None


async def test_a_key_with_no_requests_left_is_spaced_not_sent_a_429(db, db_url):
    async with Simulator(latency=0.0) as sim:
        h = await open_harness(sim, db_url, n=2)
        try:
            sim.add_key(secret(1), label="k1", rpm=3)
            for _ in range(3):
                await h.client.chat(HELLO, operation="pace", model="gpt-4o-mini")
            k1 = h.key("k1")
            assert key_status(k1, utcnow()) is Status.RATE_LIMITED     # paced: its headers said 0 left
            assert frees_up_at(k1, utcnow()) > utcnow() + dt.timedelta(seconds=30)
            for _ in range(3):
                await h.client.chat(HELLO, operation="pace", model="gpt-4o-mini")
            assert sim.requests_for("k1") == 3 and sim.requests_for("k2") == 3
            assert sim.stats("k1").ok == 3                           # k1 never answered 429
            assert UsageEvent.select().where(UsageEvent.outcome == "rate_limited").count() == 0
        finally:
            await close_harness(h)


async def test_a_lone_paced_key_says_when_it_frees_up_instead_of_sending(db, db_url):
    async with Simulator(latency=0.0) as sim:
        h = await open_harness(sim, db_url, n=1)
        try:
            sim.add_key(secret(1), label="k1", rpm=2)
            for _ in range(2):
                await h.client.chat(HELLO, operation="pace", model="gpt-4o-mini")
            with pytest.raises(NoKeyAvailable) as refused:
                await h.client.chat(HELLO, operation="pace", model="gpt-4o-mini")
            assert refused.value.frees_up_at is not None and refused.value.frees_up_at > utcnow()
            assert sim.requests_for("k1") == 2
        finally:
            await close_harness(h)
